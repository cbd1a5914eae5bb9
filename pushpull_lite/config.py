"""One place for the run settings every chapter reads: profile, device, seeds, data root and cache.

Environment variables (all optional):

- ``PUSHPULL_PROFILE``: ``quick``, ``medium``, ``full`` or ``paper``. Default: ``full`` when CUDA is
  available, else ``quick``.
- ``PUSHPULL_DATA``: a read-only data root (CIFAR-10 in torchvision's format, an image-folder tree or
  the packed JPEG copy, plus ``frost/``, ``pp2020-checkpoints/``, ``CIFAR-10-C/``).
- ``PUSHPULL_CACHE``: a writable cache for downloads, unpacked data and trained models.
  Default: ``data/cache/`` in a checkout of the book, else ``./data/cache``.
- ``PUSHPULL_DEVICE``: force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- ``PUSHPULL_SMOKE``: a whole number F > 1 turns every run into a *smoke run* of the active profile, for
  the tests: data sets 1/F of their size, every profile and budget size divided by F, one short epoch
  per training, at most two iterations (and restarts) per attack. It checks that a chapter's profile
  logic runs to its end; its numbers mean nothing, and its models and results go to a separate part of
  the cache.

A relative ``PUSHPULL_DATA`` or ``PUSHPULL_CACHE`` is resolved against the book's checkout when the
package is used from one (so ``PUSHPULL_DATA=../shared/data`` means the same folder at the repository
root and inside ``book/``, where the chapters' kernels run), else against the working directory.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "PROFILE_NAMES",
    "PROFILES",
    "Profile",
    "profile_name",
    "get_profile",
    "device",
    "seed_everything",
    "checkout_root",
    "resolve_path",
    "data_root",
    "cache_dir",
    "model_cache_dir",
    "output_dir",
    "smoke_factor",
    "smoke_size",
    "smoke_epochs",
    "smoke_steps",
    "in_ci",
    "progress",
    "describe",
]

PROFILE_NAMES = ("quick", "medium", "full", "paper")


@dataclass(frozen=True)
class Profile:
    """How much data, training and evaluation a chapter does.

    ``None`` for a limit means "all of it". Chapters read these fields instead of hard-coding sizes,
    so the same notebook is a 10-minute CI run or a paper-grade experiment.
    """

    name: str
    #: training images for the ResNet chapters (class-stratified subset)
    train_limit: int | None
    #: test images for clean and corruption accuracy
    test_limit: int | None
    #: test images for adversarial attacks
    attack_limit: int | None
    #: training seeds the chapters use (the 3-seed comparisons of ``full`` come from the reference results)
    seeds: tuple[int, ...]
    #: training recipe name for the ResNets (see ``pushpull_lite.train.RECIPES``)
    resnet_recipe: str
    #: training recipe name for the small CNNs (see ``pushpull_lite.train.RECIPES``)
    cnn_recipe: str
    #: training images for the small CNNs of chapter 4
    cnn_train_limit: int | None
    #: images per (corruption, severity) set, a different sample of the test subset for each (None: all)
    corruption_per_set: int | None = None
    #: training seeds of the reference-results runner (``python -m pushpull_lite.experiments``)
    reference_seeds: tuple[int, ...] = (0, 1, 2)
    description: str = field(default="", compare=False)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        train_limit=5_000,
        test_limit=1_000,
        attack_limit=200,
        seeds=(0,),
        resnet_recipe="quick",
        cnn_recipe="cnn-quick",
        cnn_train_limit=1_750,
        corruption_per_set=50,
        description="CI and a first look: the whole book in about 10 minutes on 2 CPU cores",
    ),
    "medium": Profile(
        name="medium",
        train_limit=None,
        test_limit=None,
        attack_limit=1_000,
        seeds=(0, 1, 2),
        resnet_recipe="medium",
        cnn_recipe="cnn-medium",
        cnn_train_limit=20_000,
        # 95 sets of 1,000 different seeded samples cover the 10,000 test images 9.5 times, at a tenth of
        # the cost of all of them in every set (the reference runner measures the same way)
        corruption_per_set=1_000,
        description="a CPU with time to spare: about 10 minutes of training per model",
    ),
    "full": Profile(
        name="full",
        train_limit=None,
        test_limit=None,
        attack_limit=None,
        # one seed per model keeps a chapter opened alone on a T4 within about 30 minutes; the 3-seed
        # comparisons come from the committed reference results and the runner (reference_seeds)
        seeds=(0,),
        resnet_recipe="full",
        cnn_recipe="cnn-full",
        cnn_train_limit=None,
        description="a Colab-class GPU (T4): full data, one training seed per model in the chapters",
    ),
    "paper": Profile(
        name="paper",
        train_limit=None,
        test_limit=None,
        attack_limit=None,
        seeds=(0, 1, 2),
        resnet_recipe="paper",
        cnn_recipe="cnn-paper",
        cnn_train_limit=None,
        description="the papers' own schedules (160+ epochs); opt-in only",
    ),
}


def profile_name() -> str:
    """The active profile's name: ``PUSHPULL_PROFILE`` or the default for this machine."""
    name = os.environ.get("PUSHPULL_PROFILE", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(
            f"PUSHPULL_PROFILE={name!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)}"
        )
    return name


def get_profile(name: str | None = None) -> Profile:
    """The :class:`Profile` called ``name``, or the active one when ``name`` is None.

    In a smoke run (``PUSHPULL_SMOKE``) every image count of the profile is divided by the smoke factor.
    """
    name = profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(f"profile={name!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)}")
    prof = PROFILES[name]
    factor = smoke_factor()
    if factor is None:
        return prof
    sizes = ("train_limit", "test_limit", "attack_limit", "cnn_train_limit", "corruption_per_set")
    return replace(
        prof,
        **{k: smoke_size(getattr(prof, k)) for k in sizes},
        description=f"SMOKE RUN of `{name}` (data and budgets / {factor}, one short epoch): "
        "its numbers mean nothing",
    )


def _available(value: object, name: str) -> torch.device:
    """``value`` as a torch device this machine has; a ValueError naming ``name`` otherwise."""
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name}={value!r} is not a torch device; expected e.g. cpu, cuda, cuda:1 or mps"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={value!r} but CUDA is not available here; use cpu (or leave it unset)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={value!r} but MPS is not available here; use cpu (or leave it unset)")
    return dev


def device(value: torch.device | str | None = None) -> torch.device:
    """``value`` if given (checked: this machine must have it), else ``PUSHPULL_DEVICE`` if set, else CUDA
    when available, else the CPU."""
    if value is not None:
        return _available(value, "device")
    forced = os.environ.get("PUSHPULL_DEVICE", "").strip()
    if forced:
        return _available(forced, "PUSHPULL_DEVICE")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all GPUs) so a run can be repeated."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def checkout_root() -> Path | None:
    """The book's checkout when the package is used from one (editable install), else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "_config.yml").is_file() and (root / "pushpull_lite").is_dir() else None


def resolve_path(value: str | os.PathLike) -> Path:
    """An absolute path for a setting: ``~`` expanded; a relative path taken from the book's checkout
    when the package runs from one (so it means the same folder at the root and in ``book/``), else
    from the working directory."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return (checkout_root() or Path.cwd()) / path


def _default_data_dir() -> Path:
    return (checkout_root() or Path.cwd()) / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The read-only data root, absolute: ``root`` if given, else ``PUSHPULL_DATA``, else ``data/``.

    A relative ``root`` is taken from the working directory, as any path argument; a relative
    ``PUSHPULL_DATA`` from the checkout (see :func:`resolve_path`).
    """
    if root is not None:
        return Path(root).expanduser().absolute()
    env = os.environ.get("PUSHPULL_DATA", "").strip()
    return resolve_path(env) if env else _default_data_dir()


def cache_dir() -> Path:
    """The writable cache (absolute, created on first use): ``PUSHPULL_CACHE`` or ``data/cache/``."""
    env = os.environ.get("PUSHPULL_CACHE", "").strip()
    path = resolve_path(env) if env else _default_data_dir() / "cache"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"the cache {path} is a file; PUSHPULL_CACHE must name a folder "
            f"(or be unset for {_default_data_dir() / 'cache'})"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the cache folder {path} (PUSHPULL_CACHE): {exc}") from exc
    return path


def model_cache_dir() -> Path:
    """Where trained models are cached: ``<cache>/models``, or ``<cache>/smoke-<F>/models`` in a smoke run,
    so a smoke run's barely trained models can never be handed to a real run."""
    return output_dir() / "models"


def output_dir() -> Path:
    """Where a run keeps what it produces (trained models, results files): the cache, or
    ``<cache>/smoke-<F>`` in a smoke run, which thus never mixes its models or numbers with real ones."""
    factor = smoke_factor()
    return cache_dir() / f"smoke-{factor}" if factor else cache_dir()


def smoke_factor() -> int | None:
    """``PUSHPULL_SMOKE`` as an int > 1, or None when unset (a normal run)."""
    raw = os.environ.get("PUSHPULL_SMOKE", "").strip()
    if not raw:
        return None
    try:
        factor = int(raw)
    except ValueError:
        factor = 0
    if factor < 2:
        raise ValueError(f"PUSHPULL_SMOKE={raw!r}: expected a whole number > 1 (the data reduction factor)")
    return factor


def smoke_size(n: int | None, minimum: int = 10) -> int | None:
    """An image count in a smoke run: ``ceil(n / factor)``, at least ``minimum``; ``n`` itself otherwise."""
    factor = smoke_factor()
    if n is None or factor is None:
        return n
    return max(minimum, math.ceil(n / factor))


def smoke_epochs(epochs: int) -> int:
    """Epochs to run: ``epochs``, or one in a smoke run."""
    return 1 if smoke_factor() else epochs


def smoke_steps(steps: int) -> int:
    """Iterations of an attack: ``steps``, or at most 2 in a smoke run (the loops run, cheaply)."""
    return min(steps, 2) if smoke_factor() else steps


def in_ci() -> bool:
    """True under a CI runner (``CI`` set to a true value): progress bars stay quiet there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs):
    """A plain-text progress bar (``tqdm``), off in CI or when ``enabled`` is False.

    Never the notebook widget bar of ``tqdm.auto``: a widget displayed while a notebook is executed
    headless (``jupyter-book build``, nbval, nbclient) can stall that execution.
    """
    from tqdm.std import tqdm

    return tqdm(iterable, disable=not enabled or in_ci(), **kwargs)


def describe() -> str:
    """One line that labels a chapter's numbers: profile, device and torch version."""
    prof = get_profile()
    return f"profile `{prof.name}` ({prof.description}); device {device()}; torch {torch.__version__}"
