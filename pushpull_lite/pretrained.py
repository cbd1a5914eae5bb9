"""The trained CIFAR-10 ResNets published with the 2020 Push-Pull paper (Strisciuglio et al.), ready to use.

``load_strisciuglio2020("resnet20-pp")`` returns an eval-mode :class:`~pushpull_lite.models.CifarResNet`
that takes ``x: (N, 3, 32, 32)`` float in [0, 1] and normalises inside with the authors' mean/std. The
checkpoint's own record is on the model as ``model.checkpoint_info`` (a :class:`CheckpointInfo`: ``epoch``,
``best_prec1`` = the authors' clean CIFAR-10 test accuracy in %, ``path``).

Where a checkpoint ``resnet-{20,32,44,56}[-pp].pth.tar`` is looked for, in order:

1. ``<data root>/pp2020-checkpoints/`` (``PUSHPULL_DATA`` unless ``root`` is given);
2. ``<cache>/pp2020-checkpoints/``;
3. a download from the paper's public repository (:data:`REPOSITORY_URL`) into the cache (needs internet;
   skipped when ``PUSHPULL_OFFLINE`` is set). A download is kept only when its sha256 is the one pinned in
   :data:`CHECKPOINT_SHA256`; a cache copy that differs is downloaded again. A copy under the data root is
   the user's own: a different hash there only gives a warning.

Each file is a dict ``{epoch, best_prec1, state_dict}`` saved on a GPU. Its keys are those of
:class:`~pushpull_lite.models.CifarResNet` except the push-pull layer's push kernel, stored as
``conv1.push.weight`` (the authors' layer wraps an ``nn.Conv2d`` called ``push``); the pull kernel is derived
from it, so nothing else is stored for the layer (h = 2, alpha = 1 are fixed hyper-parameters).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import cachefiles, checks, config
from .models import CifarResNet, first_layer

__all__ = [
    "CHECKPOINT_SHA256",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "FOLDER",
    "NAMES",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PUSHPULL_KWARGS",
    "REPOSITORY_URL",
    "build_model",
    "checkpoint_filename",
    "checkpoint_url",
    "convert_state_dict",
    "describe_state_dict",
    "find_checkpoint",
    "load_strisciuglio2020",
    "parse_name",
    "read_checkpoint",
]

#: The eight published models: ResNet-20/32/44/56, each without and with a push-pull first layer.
NAMES: tuple[str, ...] = tuple(f"resnet{d}{s}" for d in (20, 32, 44, 56) for s in ("", "-pp"))

#: The folder, under the data root or the cache, that holds the checkpoint files.
FOLDER = "pp2020-checkpoints"

#: The paper's public repository (MIT licence); the checkpoints are under ``models/resnet-cifar/``.
REPOSITORY_URL = "https://github.com/nicstrisc/Push-Pull-CNN-layer"

#: The push-pull layer of the published models: pull kernel 2x the push kernel's size, full inhibition.
PUSHPULL_KWARGS = {"alpha": 1.0, "scale": 2.0}

#: Table 3 of the paper, for these checkpoints: clean CIFAR-10 test error ``clean_error`` and CIFAR-10-C
#: error ``corruption_error`` (%, mean over 19 corruptions x 5 severities), ``mce``, ``rce`` (AlexNet = 100).
#: ResNet-20-PP's corruption error is the mean of its Table 2 row (29.38); Table 3 prints 29.83, a typo.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "resnet20": {"clean_error": 7.56, "corruption_error": 30.29, "mce": 104, "rce": 169},
    "resnet20-pp": {"clean_error": 8.29, "corruption_error": 29.38, "mce": 101, "rce": 158},
    "resnet32": {"clean_error": 7.29, "corruption_error": 30.40, "mce": 104, "rce": 171},
    "resnet32-pp": {"clean_error": 7.15, "corruption_error": 26.63, "mce": 92, "rce": 145},
    "resnet44": {"clean_error": 6.76, "corruption_error": 28.57, "mce": 98, "rce": 162},
    "resnet44-pp": {"clean_error": 6.87, "corruption_error": 26.91, "mce": 92, "rce": 149},
    "resnet56": {"clean_error": 6.64, "corruption_error": 28.64, "mce": 97, "rce": 161},
    "resnet56-pp": {"clean_error": 7.01, "corruption_error": 26.23, "mce": 91, "rce": 144},
}

#: Table 2 of the paper: CIFAR-10-C error (%) per corruption, mean over the 5 severities, of ResNet-20
#: and ResNet-20-PP (the only per-corruption rows the book quotes).
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "resnet20": {
        "gaussian_noise": 57.41, "shot_noise": 45.75, "impulse_noise": 41.88, "speckle_noise": 41.34,
        "defocus_blur": 21.43, "glass_blur": 58.82, "motion_blur": 30.62, "zoom_blur": 27.54,
        "gaussian_blur": 31.32, "snow": 25.06, "frost": 31.39, "fog": 16.56, "spatter": 19.03,
        "brightness": 9.73, "contrast": 29.59, "elastic_transform": 20.37, "pixelate": 32.33,
        "jpeg_compression": 23.81, "saturate": 11.52,
    },
    "resnet20-pp": {
        "gaussian_noise": 49.90, "shot_noise": 39.98, "impulse_noise": 37.20, "speckle_noise": 37.55,
        "defocus_blur": 22.30, "glass_blur": 58.56, "motion_blur": 29.50, "zoom_blur": 29.68,
        "gaussian_blur": 33.24, "snow": 25.59, "frost": 31.29, "fog": 17.58, "spatter": 17.85,
        "brightness": 10.34, "contrast": 30.50, "elastic_transform": 20.65, "pixelate": 32.70,
        "jpeg_compression": 22.16, "saturate": 11.70,
    },
}  # fmt: skip

#: sha256 of each published checkpoint file (``model_best.pth.tar`` of the repository), keyed by
#: :func:`checkpoint_filename`; a downloaded file must match it or is not kept.
CHECKPOINT_SHA256: dict[str, str] = {
    "resnet-20.pth.tar": "8e45095e4bee87fb9c788f5969559008483556460b827a8891b7e19107aae6da",
    "resnet-20-pp.pth.tar": "3dc9714bca0da4c79dd7fad5e66b1e14b84c6abf20c30c91eb87de2a1b6ba54c",
    "resnet-32.pth.tar": "f35f6c21032d4043e8948368b306ebe304c1218fa304c193ee17fa3bb5896d1c",
    "resnet-32-pp.pth.tar": "942d17da9e019118e964af11c99d5e66d2fdaf9b466aaeb623c0f9a4545f3a95",
    "resnet-44.pth.tar": "f37445e3b64bef089d94446020ea3d73d94ca606264c08b84d210ba5ea2b4700",
    "resnet-44-pp.pth.tar": "3ccfca29f9a39c0105fbff40635b5fddb3950a5d2be283e3441d6d6098569efc",
    "resnet-56.pth.tar": "54b2947911396c00e60c189bba19f8e1acb7cdeaacce0e16774c48dce04184d9",
    "resnet-56-pp.pth.tar": "f7e2a873230fb6c7b4303c87e2cc8f9b10d065c7db98ea4ace4d24fb4d432895",
}

_REQUIRED = {"epoch", "best_prec1", "state_dict"}
_DOWNLOAD_TIMEOUT = 20.0  # seconds: fail fast on a machine without internet


class CheckpointNotFoundError(FileNotFoundError):
    """A published checkpoint is not on this machine and could not be downloaded."""


class CheckpointMismatchError(ValueError):
    """A checkpoint file does not hold the model it was asked for (or not a model of this family at all)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a published checkpoint says about itself.

    ``best_prec1`` is the authors' clean CIFAR-10 test accuracy in % (the original test set, 10,000
    images); ``epoch`` the training epoch it was saved at.
    """

    name: str
    depth: int
    pushpull: bool
    epoch: int
    best_prec1: float
    path: Path

    @property
    def best_error(self) -> float:
        """The authors' clean test error in %: ``100 - best_prec1``."""
        return 100.0 - self.best_prec1

    def label(self) -> str:
        """A human label, e.g. ``ResNet-20-PP``."""
        return f"ResNet-{self.depth}" + ("-PP" if self.pushpull else "")


# --------------------------------------------------------------------------------------------------
# Names and places


def parse_name(name: str) -> tuple[int, bool]:
    """``"resnet32-pp"`` -> ``(32, True)``; raises ValueError for a name not in :data:`NAMES`."""
    checks.one_of("name", name, NAMES)
    match = re.fullmatch(r"resnet(\d+)(-pp)?", name)
    assert match is not None  # every entry of NAMES matches
    return int(match.group(1)), match.group(2) is not None


def checkpoint_filename(name: str) -> str:
    """The file name of ``name``'s checkpoint, e.g. ``resnet-20-pp.pth.tar``."""
    depth, pp = parse_name(name)
    return f"resnet-{depth}{'-pp' if pp else ''}.pth.tar"


def checkpoint_url(name: str) -> str:
    """Where the paper's repository publishes ``name``'s checkpoint (its best epoch, ``model_best``)."""
    stem = checkpoint_filename(name).removesuffix(".pth.tar")
    # /raw/HEAD/ follows the default branch and serves Git LFS objects as well as plain files
    return f"{REPOSITORY_URL}/raw/HEAD/models/resnet-cifar/{stem}/model_best.pth.tar"


def _candidates(name: str, root: str | os.PathLike | None) -> list[Path]:
    filename = checkpoint_filename(name)
    return [config.data_root(root) / FOLDER / filename, config.cache_dir() / FOLDER / filename]


def _download(url: str, target: Path, timeout: float = _DOWNLOAD_TIMEOUT) -> None:
    """Fetch ``url`` into ``target`` (in the cache) atomically, checked against the sha256 pinned for
    ``target.name`` in :data:`CHECKPOINT_SHA256`: a failed, short or different download leaves nothing
    behind. ``timeout`` in seconds per network operation.

    Raises CheckpointMismatchError when the file's hash differs (e.g. an HTML page or a Git LFS pointer
    instead of the checkpoint), ValueError when ``target.name`` has no pinned hash.
    """
    expected = CHECKPOINT_SHA256.get(target.name)
    if expected is None:
        names = ", ".join(CHECKPOINT_SHA256)
        raise ValueError(f"target {target} has no pinned sha256: its name must be one of {names}")
    try:
        cachefiles.download_verified(url, target, expected, timeout)
    except ValueError as exc:  # the hash differs: the server sent something else than the checkpoint
        raise CheckpointMismatchError(str(exc)) from exc


def _warn_if_not_published(path: Path) -> None:
    """Warn (never fail) when a checkpoint under the data root differs from the published file."""
    expected = CHECKPOINT_SHA256.get(path.name)
    digest = cachefiles.sha256_file(path)
    if expected is not None and digest != expected:
        warnings.warn(
            f"{path} has sha256 {digest}, not the published checkpoint's {expected}: it is used as it is "
            "(a copy under the data root is yours); numbers from it may differ from the paper's",
            stacklevel=3,
        )


def find_checkpoint(name: str, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The local path of ``name``'s checkpoint, downloading it into the cache when it is nowhere local.

    A copy under the data root is used as it is (a warning when its sha256 is not the published file's);
    a cache copy is used only when its sha256 matches, otherwise it is named in a warning and downloaded
    again. Raises :class:`CheckpointNotFoundError` naming the places looked in and how to fix it.
    """
    candidates = _candidates(name, root)
    user_copy, target = candidates
    if user_copy.is_file():
        _warn_if_not_published(user_copy)
        return user_copy
    stale, expected = "", CHECKPOINT_SHA256[target.name]
    if target.is_file():
        digest = cachefiles.sha256_file(target)
        if digest == expected:
            return target
        stale = f"; the cache copy {target} has sha256 {digest}, not the published {expected}"
        warnings.warn(
            f"{target} has sha256 {digest}, not the published checkpoint's {expected} (truncated or "
            "corrupt): downloading it again",
            stacklevel=2,
        )
    url = checkpoint_url(name)
    if not download:
        reason = "download=False"
    elif os.environ.get("PUSHPULL_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        reason = "PUSHPULL_OFFLINE is set"
    else:
        try:
            _download(url, target)
            return target
        except Exception as exc:  # URLError, timeout, HTTPError, a bad file: all mean "no file from there"
            reason = f"download failed: {type(exc).__name__}: {exc}"
    looked = "\n  ".join(str(p) for p in candidates)
    raise CheckpointNotFoundError(
        f"The published checkpoint for {name!r} ({checkpoint_filename(name)}) was not found and could not "
        f"be downloaded ({reason}{stale}).\nLooked in:\n  {looked}\nFix it in one of two ways:\n"
        f"  1. connect to the internet: it is then downloaded from {url} into the cache "
        f"({target.parent}, set by PUSHPULL_CACHE);\n"
        f"  2. set PUSHPULL_DATA to a folder holding {FOLDER}/{checkpoint_filename(name)} "
        "(e.g. PUSHPULL_DATA=../shared/data)."
    )


# --------------------------------------------------------------------------------------------------
# Reading and checking a checkpoint


def read_checkpoint(
    file: str | os.PathLike | io.BytesIO, device: torch.device | str | None = "cpu", source: str | None = None
) -> dict:
    """Load a checkpoint dict ``{epoch, best_prec1, state_dict}`` with its tensors on ``device``.

    ``weights_only=True``: a checkpoint is data, never code to run. A ``module.`` prefix (from
    ``nn.DataParallel``) is removed from the state dict's keys.
    """
    where = source or str(file)
    try:
        blob = torch.load(file, map_location=device, weights_only=True)
    except Exception as exc:  # pickle, zip and torch each raise their own error for a non-checkpoint
        raise CheckpointMismatchError(
            f"{where} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not (isinstance(blob, dict) and _REQUIRED <= set(blob) and isinstance(blob["state_dict"], dict)):
        keys = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointMismatchError(
            f"{where} should be a dict with entries {sorted(_REQUIRED)} (state_dict a dict), got {keys}"
        )
    state = blob["state_dict"]
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {**blob, "state_dict": state}


def describe_state_dict(state: dict[str, torch.Tensor]) -> tuple[int, bool]:
    """``(depth, pushpull)`` of the CIFAR ResNet a state dict belongs to, read from its keys.

    depth = 6 n + 2 with n the blocks per stage; pushpull = the first layer is stored as ``conv1.push``.
    Raises :class:`CheckpointMismatchError` when the keys do not look like a CIFAR ResNet.
    """
    blocks = {}
    for stage in (1, 2, 3):
        ids = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks[stage] = len(ids)
    if "conv1.push.weight" in state:
        pushpull = True
    elif "conv1.weight" in state:
        pushpull = False
    else:
        raise CheckpointMismatchError(
            "the state dict has neither 'conv1.weight' nor 'conv1.push.weight': not a CIFAR ResNet of the "
            f"2020 Push-Pull paper (first keys: {list(state)[:5]})"
        )
    if not blocks[1] or len(set(blocks.values())) != 1:
        raise CheckpointMismatchError(
            f"the state dict has {blocks[1]}, {blocks[2]}, {blocks[3]} blocks in layer1..3; "
            "a CIFAR ResNet has the same number n >= 1 in each"
        )
    return 6 * blocks[1] + 2, pushpull


def _label(depth: int, pushpull: bool) -> str:
    return f"ResNet-{depth}" + (" with a push-pull first layer (-pp)" if pushpull else " (plain first conv)")


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' keys -> :class:`~pushpull_lite.models.CifarResNet`'s: ``conv1.push.weight`` ->
    ``conv1.weight`` (the push kernel is :class:`~pushpull_lite.layers.PushPull2d`'s ``weight``)."""
    return {("conv1.weight" if k == "conv1.push.weight" else k): v for k, v in state.items()}


def build_model(name: str) -> CifarResNet:
    """The untrained architecture of ``name``: a CIFAR ResNet, with a PushPull2d first layer (h=2, alpha=1)
    for the ``-pp`` names."""
    depth, pp = parse_name(name)
    return CifarResNet(depth, first_layer=first_layer("pushpull", **PUSHPULL_KWARGS) if pp else None)


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with errors that list what is missing, unexpected or of the wrong shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if wrong:
        problems.append(f"wrong shapes: {wrong}")
    if problems:
        raise CheckpointMismatchError(f"{where} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------------------
# Public entry point


def load_strisciuglio2020(
    name: str, root: str | os.PathLike | None = None, device: torch.device | str | None = None
) -> CifarResNet:
    """One of the paper's published CIFAR-10 models (see :data:`NAMES`), eval mode, on ``device``.

    The model maps ``x: (N, 3, H, W)`` float in [0, 1] to logits (N, 10); it normalises inside with mean
    (125.3, 123.0, 113.9)/255 and std (63.0, 62.1, 66.7)/255, as the authors trained it.
    ``model.checkpoint_info`` is a :class:`CheckpointInfo` (``epoch``, ``best_prec1`` in %, ``path``).

    Args:
        name: ``resnet20``, ``resnet20-pp``, ..., ``resnet56-pp``.
        root: data root holding ``pp2020-checkpoints/`` (default ``PUSHPULL_DATA``); see the module doc
            for the other places looked in.
        device: where the weights go (default :func:`pushpull_lite.config.device`).

    Raises:
        ValueError: unknown ``name``.
        CheckpointNotFoundError: the file is nowhere local and could not be downloaded.
        CheckpointMismatchError: the file holds another model (e.g. ResNet-32 weights asked for as
            ``resnet20``, or a push-pull model as a plain one), or keys/shapes do not fit.
    """
    depth, pp = parse_name(name)
    dev = config.device(device)
    path = find_checkpoint(name, root)
    blob = read_checkpoint(path, device=dev)
    state = blob["state_dict"]
    found_depth, found_pp = describe_state_dict(state)
    if (found_depth, found_pp) != (depth, pp):
        raise CheckpointMismatchError(
            f"{path} looks like a {_label(found_depth, found_pp)} checkpoint, but {name!r} asks for a "
            f"{_label(depth, pp)}; check the file name (expected {checkpoint_filename(name)})"
        )
    model = build_model(name).to(dev)
    _load_into(model, convert_state_dict(state), str(path))
    model.eval()
    model.checkpoint_info = CheckpointInfo(
        name=name,
        depth=depth,
        pushpull=pp,
        epoch=int(blob["epoch"]),
        best_prec1=float(blob["best_prec1"]),
        path=path,
    )
    return model
