"""One place for the run settings every chapter reads: profile, device, seeds, data root and cache.

Environment variables (all optional):

- ``PUSHPULL_PROFILE``: ``quick``, ``medium``, ``full`` or ``paper``. Default: ``full`` when CUDA is
  available, else ``quick``.
- ``PUSHPULL_DATA``: a read-only data root (CIFAR-10 in torchvision's format, an image-folder tree or
  the packed JPEG copy, plus ``frost/``, ``pp2020-checkpoints/``, ``CIFAR-10-C/``).
- ``PUSHPULL_CACHE``: a writable cache for downloads, unpacked data and trained models.
  Default: ``data/cache/`` in a checkout of the book, else ``./data/cache``.
- ``PUSHPULL_DEVICE``: force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

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
    #: seeds for model comparisons (spread is reported across them)
    seeds: tuple[int, ...]
    #: training recipe name for the ResNets (see ``pushpull_lite.train.RECIPES``)
    resnet_recipe: str
    #: training recipe name for the small CNNs (see ``pushpull_lite.train.RECIPES``)
    cnn_recipe: str
    #: training images for the small CNNs of chapter 4
    cnn_train_limit: int | None
    #: images per (corruption, severity) set, a different sample of the test subset for each (None: all)
    corruption_per_set: int | None = None
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
        description="a CPU with time to spare: about 10 minutes of training per model",
    ),
    "full": Profile(
        name="full",
        train_limit=None,
        test_limit=None,
        attack_limit=None,
        seeds=(0, 1, 2),
        resnet_recipe="full",
        cnn_recipe="cnn-full",
        cnn_train_limit=None,
        description="a Colab-class GPU (T4): full data, about 10 minutes per model",
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
    """The :class:`Profile` called ``name``, or the active one when ``name`` is None."""
    name = profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(f"profile={name!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


def device() -> torch.device:
    """``PUSHPULL_DEVICE`` if set, else CUDA when available, else the CPU."""
    forced = os.environ.get("PUSHPULL_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all GPUs) so a run can be repeated."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _checkout_root() -> Path | None:
    """The book's checkout when the package is used from one (editable install), else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "_config.yml").is_file() and (root / "pushpull_lite").is_dir() else None


def _default_data_dir() -> Path:
    root = _checkout_root()
    return (root / "data") if root is not None else Path.cwd() / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The read-only data root: ``root`` if given, else ``PUSHPULL_DATA``, else the book's ``data/``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PUSHPULL_DATA", "").strip()
    return Path(env).expanduser() if env else _default_data_dir()


def cache_dir() -> Path:
    """The writable cache (created on first use): ``PUSHPULL_CACHE`` or ``data/cache/``."""
    env = os.environ.get("PUSHPULL_CACHE", "").strip()
    path = Path(env).expanduser() if env else _default_data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_ci() -> bool:
    """True under a CI runner (``CI`` set to a true value): progress bars stay quiet there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def describe() -> str:
    """One line that labels a chapter's numbers: profile, device and torch version."""
    prof = get_profile()
    return f"profile `{prof.name}` ({prof.description}); device {device()}; torch {torch.__version__}"
