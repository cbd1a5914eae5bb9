"""Adversarial evaluation built on :mod:`pushpull_lite.attacks`: per-image results, accuracy-vs-eps sweeps,
the seed's units and its clamped FGSM, and model comparisons with error bars.

Images are ``(N, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]; every ``eps`` is in [0, 1] pixel units
(L-inf). Per-image results are boolean tensors ``(N,)`` on the CPU: True where the model classifies the
(attacked) image correctly. Keeping them per image lets a chapter take the worst case over several attacks
(an image is robust only if no attack fooled it) and compare two models on the same images.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from torch import nn

from . import config
from .attacks import _check_images_labels, eval_mode, fgsm, pgd

__all__ = [
    "SEED_EPS",
    "SEED_STEP",
    "SEED_STEPS",
    "STANDARD_EPS",
    "STANDARD_STEP",
    "Comparison",
    "Sweep",
    "binomial_se",
    "compare",
    "correct_under_attack",
    "from_symmetric_scale",
    "seed_clamp",
    "seed_fgsm",
    "sweep",
]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


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
# Per-image results


def _model_device(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    params = list(model.parameters())
    if not params:
        return config.device(), torch.float32
    return params[0].device, params[0].dtype


def correct_under_attack(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    attack: Attack | None = None,
    *,
    only: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Per image: is ``model`` right on ``attack(model, x, y)`` (on ``x`` itself when ``attack`` is None)?

    images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) integers. only: optional bool (N,);
    images outside it are not attacked and count as wrong (use it to attack only the images that
    survived an earlier, weaker attack). Returns a bool tensor (N,) on the CPU.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images, labels = _check_images_labels(images, labels)
    if images.is_floating_point() and not bool(((images >= 0) & (images <= 1)).all()):
        raise ValueError(
            "images must lie in [0, 1] (the models normalise inside); got values in "
            f"[{images.min().item():.4g}, {images.max().item():.4g}]"
        )
    n = images.shape[0]
    if attack is not None and not callable(attack):
        raise TypeError(
            f"attack must be callable (model, x, y) -> x_adv, or None; got {type(attack).__name__}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if only is None:
        todo = torch.arange(n)
    else:
        if not isinstance(only, torch.Tensor) or only.dtype != torch.bool or only.shape != (n,):
            raise ValueError(
                f"only must be a bool tensor of shape ({n},), got {getattr(only, 'shape', only)}"
            )
        todo = only.cpu().nonzero().squeeze(1)
    model_device, dtype = _model_device(model)
    dev = torch.device(device) if device is not None else model_device
    result = torch.zeros(n, dtype=torch.bool)
    chunks = todo.split(batch_size)
    desc = "clean" if attack is None else "attack"
    with eval_mode(model):
        for idx in config.progress(chunks, desc=desc, unit="batch", enabled=progress, leave=False):
            x = images[idx].to(dev)
            x = x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
            y = labels[idx].to(dev, torch.long)
            if attack is not None:
                x = attack(model, x, y)
            with torch.no_grad():
                result[idx] = (model(x).argmax(dim=1) == y).cpu()
    return result


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
        clean = correct_under_attack(model, images, labels, None, **kwargs)
    elif not isinstance(clean, torch.Tensor) or clean.dtype != torch.bool or clean.shape != (len(labels),):
        raise ValueError(
            f"clean must be a bool tensor of shape ({len(labels)},), got {getattr(clean, 'shape', clean)}"
        )
    clean = clean.cpu()
    rows: list[torch.Tensor] = []
    dev = torch.device(device) if device is not None else _model_device(model)[0]
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for e in config.progress(eps, desc=f"{attack} sweep", enabled=progress, leave=False):
            if e == 0:
                rows.append(clean.clone())
                continue
            alive = rows[-1] if nested and rows else clean
            hit = _attack_at(attack, float(e), steps, step_ratio, restarts)
            rows.append(correct_under_attack(model, images, labels, hit, only=alive, **kwargs))
    label = "fgsm" if attack == "fgsm" else f"pgd-{steps} (step {step_ratio:g} eps, {restarts} start(s))"
    return Sweep(eps, torch.stack(rows).numpy(), label, nested, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Comparing two models


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` independent images."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


@dataclass(frozen=True)
class Comparison:
    """Accuracy of model A minus model B, over seeds, with two sources of noise.

    ``sampling_se``: binomial standard error of a difference of two accuracies on ``n_images`` images
    (the same images for every seed, so more seeds do not shrink it). ``seed_sd``: standard deviation of
    the per-seed differences (NaN with one seed). ``se`` combines them: ``sqrt(sampling_se^2 +
    seed_sd^2 / n_seeds)`` (just ``sampling_se`` with one seed, which then leaves training noise unmeasured).
    """

    per_seed: tuple[float, ...]
    n_images: int
    sampling_se: float
    seed_sd: float

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    @property
    def difference(self) -> float:
        """Mean over seeds of accuracy(A) - accuracy(B), in [-1, 1]."""
        return float(np.mean(self.per_seed))

    @property
    def se(self) -> float:
        seed_part = 0.0 if self.n_seeds < 2 else self.seed_sd**2 / self.n_seeds
        return math.sqrt(self.sampling_se**2 + seed_part)

    def outcome(self, z: float = 2.0) -> str:
        """``"A higher"``, ``"B higher"`` or ``"within noise"``: is the absolute difference above ``z``
        standard errors?"""
        if self.difference > z * self.se:
            return "A higher"
        if self.difference < -z * self.se:
            return "B higher"
        return "within noise"


def compare_accuracies(acc_a: Sequence[float], acc_b: Sequence[float], n_images: int) -> Comparison:
    """:func:`compare` from per-seed accuracies in [0, 1] (e.g. a results file's ``per_seed``), seed i of A
    paired with seed i of B, each measured on the same ``n_images`` images."""
    a = np.asarray(acc_a, dtype=float)
    b = np.asarray(acc_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"acc_a and acc_b must be 1-D with one accuracy per seed, the same seeds for both; got "
            f"{a.shape} and {b.shape}"
        )
    if not (
        np.isfinite(a).all()
        and np.isfinite(b).all()
        and (a >= 0).all()
        and (a <= 1).all()
        and (b >= 0).all()
        and (b <= 1).all()
    ):
        raise ValueError(f"accuracies must be fractions in [0, 1], got {a.tolist()} and {b.tolist()}")
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive int, got {n_images!r}")
    per_seed = a - b
    sampling = math.sqrt(
        binomial_se(float(a.mean()), n_images) ** 2 + binomial_se(float(b.mean()), n_images) ** 2
    )
    seed_sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return Comparison(tuple(float(d) for d in per_seed), n_images, sampling, seed_sd)


def compare(correct_a: np.ndarray | torch.Tensor, correct_b: np.ndarray | torch.Tensor) -> Comparison:
    """Compare per-image results ``(S, N)`` bool of two models (S seeds, the same N images for both)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    # one seed may come as (N,)
    a = a[None] if a.ndim == 1 else a
    b = b[None] if b.ndim == 1 else b
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(
            f"correct_a and correct_b must be bool arrays of the same shape (seeds, images), got "
            f"{a.shape} and {b.shape}"
        )
    per_seed = a.mean(axis=1) - b.mean(axis=1)
    n = a.shape[1]
    pa, pb = float(a.mean()), float(b.mean())
    sampling = math.sqrt(binomial_se(pa, n) ** 2 + binomial_se(pb, n) ** 2)
    seed_sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return Comparison(tuple(float(d) for d in per_seed), n, sampling, seed_sd)
