"""Adversarial evaluation built on :mod:`pushpull_lite.attacks` and :func:`pushpull_lite.measure.correct`:
accuracy-vs-eps sweeps, the seed's units and its clamped FGSM (comparisons: :mod:`pushpull_lite.stats`).

Images are ``(N, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]; every ``eps`` is in [0, 1] pixel units
(L-inf). Per-image results are boolean tensors ``(N,)`` on the CPU: True where the model classifies the
(attacked) image correctly. Keeping them per image lets a chapter take the worst case over several attacks
(an image is robust only if no attack fooled it) and compare two models on the same images.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from torch import nn

from . import checks, config, measure
from .attacks import fgsm, pgd
from .measure import Attack

__all__ = [
    "SEED_EPS",
    "SEED_STEP",
    "SEED_STEPS",
    "STANDARD_EPS",
    "STANDARD_STEP",
    "Sweep",
    "from_symmetric_scale",
    "seed_clamp",
    "seed_fgsm",
    "sweep",
]


def from_symmetric_scale(value: float) -> float:
    """A length on the [-1, 1] scale of ``Normalize((0.5,) * 3, (0.5,) * 3)`` in [0, 1] pixel units.

    That normalisation maps a pixel ``x`` to ``z = 2 x - 1``, so a length ``d`` in ``z`` is ``d / 2`` in
    ``x``.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"value must be a finite number >= 0 on the [-1, 1] scale, got {value!r}")
    return float(value) / 2


#: The seed's attack settings (eps 0.03, PGD step 0.01, 10 steps on its [-1, 1] scale) in pixel units.
SEED_EPS = from_symmetric_scale(0.03)
SEED_STEP = from_symmetric_scale(0.01)
SEED_STEPS = 10
#: The usual CIFAR-10 L-inf budget and PGD step (Madry et al. 2018).
STANDARD_EPS = 8 / 255
STANDARD_STEP = 2 / 255


def seed_clamp(x: torch.Tensor) -> torch.Tensor:
    """What the seed's ``clamp(z, 0, 1)`` on ``z = 2 x - 1`` does, in pixel units: ``clamp(x, 0.5, 1)``.

    x: (N, C, H, W) in [0, 1]. Every pixel darker than mid-grey becomes mid-grey, whatever eps is.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x))}")
    return x.clamp(0.5, 1.0)


def seed_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = SEED_EPS) -> torch.Tensor:
    """The seed's FGSM, replayed in pixel units: ``clamp(x + eps * sign(grad), 0.5, 1)``.

    The seed stepped by 0.03 on its [-1, 1] scale and clamped the result to [0, 1] *on that scale*;
    the sign of the gradient is the same on both scales (``z = 2 x - 1``), so in pixel units this is
    FGSM with ``eps`` (default 0.015) followed by :func:`seed_clamp`. x: (N, C, H, W) in [0, 1].
    """
    return seed_clamp(fgsm(model, x, y, eps))


# --------------------------------------------------------------------------------------------------
# Accuracy against eps


@dataclass
class Sweep:
    """Accuracy of one model against eps. ``correct[i]`` is the per-image result at ``eps[i]``."""

    eps: np.ndarray  #: (E,) increasing, pixel units
    correct: np.ndarray  #: (E, N) bool
    attack: str  #: a label, e.g. ``pgd-10 (step eps/4)``
    nested: bool  #: True when each row only attacked the survivors of the row before
    seconds: float = 0.0

    @property
    def accuracy(self) -> np.ndarray:
        """(E,) accuracy in [0, 1]."""
        return self.correct.mean(axis=1)

    def at(self, eps: float) -> float:
        """Accuracy at one of the swept eps values (matched to 1e-9)."""
        hits = np.flatnonzero(np.isclose(self.eps, eps, rtol=0, atol=1e-9))
        if hits.size == 0:
            raise ValueError(f"eps={eps!r} was not swept; swept: {self.eps.tolist()}")
        return float(self.accuracy[hits[0]])


def _attack_at(attack: str, eps: float, steps: int, step_ratio: float, restarts: int) -> Attack:
    if attack == "fgsm":
        return functools.partial(fgsm, eps=eps)
    return functools.partial(pgd, eps=eps, step_size=step_ratio * eps, steps=steps, restarts=restarts)


def sweep(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    eps_values: Sequence[float],
    attack: str = "pgd",
    *,
    steps: int = 10,
    step_ratio: float = 0.25,
    restarts: int = 1,
    nested: bool = True,
    clean: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Sweep:
    """Per-image accuracy under ``attack`` ("fgsm" or "pgd") at every eps of ``eps_values`` (increasing).

    PGD takes ``steps`` steps of ``step_ratio * eps`` with a random start (``restarts`` of them). Only
    images the model gets right without attack are attacked: the others are already wrong at
    ``delta = 0``, which every ball contains. With ``nested`` (the default) each eps only attacks the
    images that survived the eps before: an image fooled inside a smaller ball is fooled inside every
    larger one by the same perturbation, so a row is the best attack found up to its eps, accuracy can
    only fall with eps, and the sweep costs far less. ``nested=False`` attacks every clean-correct image
    at every eps (to check the attack itself). ``clean``: the model's per-image clean result, bool (N,),
    when the caller already has it (else computed here). Random starts come from ``seed``; the global
    RNG is left as it was.
    """
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    eps = np.asarray([float(e) for e in eps_values], dtype=np.float64)
    if eps.ndim != 1 or eps.size == 0 or not np.isfinite(eps).all() or (eps < 0).any():
        raise ValueError(
            f"eps_values must be a non-empty sequence of finite numbers >= 0, got {eps_values!r}"
        )
    if (np.diff(eps) <= 0).any():
        raise ValueError(f"eps_values must be strictly increasing, got {eps.tolist()}")
    if not 0 < step_ratio <= 1:
        raise ValueError(f"step_ratio must be in (0, 1], got {step_ratio!r}")
    start = time.perf_counter()
    kwargs = {"batch_size": batch_size, "device": device}
    if clean is None:
        clean = measure.correct(model, images, labels, None, **kwargs)
    elif not isinstance(clean, torch.Tensor) or clean.dtype != torch.bool or clean.shape != (len(labels),):
        raise ValueError(
            f"clean must be a bool tensor of shape ({len(labels)},), got {getattr(clean, 'shape', clean)}"
        )
    clean = clean.cpu()
    rows: list[torch.Tensor] = []
    dev = torch.device(device) if device is not None else checks.model_device_dtype(model)[0]
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for e in config.progress(eps, desc=f"{attack} sweep", enabled=progress, leave=False):
            if e == 0:
                rows.append(clean.clone())
                continue
            alive = rows[-1] if nested and rows else clean
            hit = _attack_at(attack, float(e), steps, step_ratio, restarts)
            rows.append(measure.correct(model, images, labels, hit, only=alive, **kwargs))
    label = "fgsm" if attack == "fgsm" else f"pgd-{steps} (step {step_ratio:g} eps, {restarts} start(s))"
    return Sweep(eps, torch.stack(rows).numpy(), label, nested, time.perf_counter() - start)
