"""AutoAttack-style attacks and the worst case of one threat model.

Croce and Hein's AutoAttack (ICML 2020) runs four attacks one after the other, each on the images the
previous ones failed to fool: APGD with cross-entropy (APGD-CE), targeted APGD on the DLR margin
(APGD-T), FAB-T and the gradient-free Square attack. This module wraps the maintained implementations
in torchattacks (:func:`apgd_ce`, :func:`apgd_t`, :func:`square`) in the book's attack signature
``(model, x, y) -> x_adv`` and runs any ordered set of attacks of one threat model as such a cascade
(:func:`cascade`), so a worst case is the per-image AND over attacks on the same images and every
adversarial example is credited to the attack that found it first.

torchattacks is optional (``pip install --no-deps torchattacks==3.5.1``; README's commands install it):
:func:`library_attacks` returns no attacks, and says why, when it cannot be imported. Square queries
only the model's outputs, so it also reaches defenses whose gradients are masked (CNN-F's hard masks,
AMSDN's quantisation); :func:`pushpull_lite.attacks.transfer` is the other check for those.

Budgets depend on the profile (:func:`budget`): AutoAttack's standard budget (100 APGD iterations,
9 target classes, 5,000 Square queries) in ``full`` and ``paper``, smaller ones in ``medium`` and
``quick``, always stated beside the numbers (:meth:`Budget.describe`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from . import checks, config
from .measure import Attack, correct

__all__ = [
    "BUDGETS",
    "LIBRARY_ATTACKS",
    "Budget",
    "Cascade",
    "apgd_ce",
    "apgd_t",
    "budget",
    "cascade",
    "library_attacks",
    "square",
    "torchattacks_version",
]

_INSTALL = "pip install --no-deps torchattacks==3.5.1"


def torchattacks_version() -> str | None:
    """The installed torchattacks version, or None when it cannot be imported."""
    try:
        import torchattacks
    except ImportError:
        return None
    return str(getattr(torchattacks, "__version__", "unknown"))


def _torchattacks():
    try:
        import torchattacks
    except ImportError as err:  # a clear error naming the fix, not a bare ModuleNotFoundError
        raise ImportError(f"this attack uses torchattacks, which is not installed: {_INSTALL}") from err
    return torchattacks


def _run_library(atk, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run a torchattacks attack with the caller's random stream untouched (torchattacks seeds the
    global generator itself) and the model's modes restored (it switches the model to eval)."""
    checks.model("model", model)
    checks.image_batch("x", x)
    y = checks.labels("y", y, x.shape[0]).to(device=x.device, dtype=torch.long)
    flags = [(m, m.training) for m in model.modules()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            x_adv = atk(x.detach(), y)
    finally:
        for m, flag in flags:
            m.training = flag
    # torchattacks works in float32; the book's attacks return the input's dtype, in the box
    return x_adv.detach().to(x.dtype).clamp_(0, 1)


def _linf(attack: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, **options):
    """torchattacks' ``attack`` class at L-inf radius ``eps`` (checked), run by :func:`_run_library`."""
    eps = checks.real("eps", eps, positive=True, pixel_units=True)
    atk = getattr(_torchattacks(), attack)(model, norm="Linf", eps=eps, seed=seed, **options)
    return _run_library(atk, model, x, y)


def apgd_ce(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 100,
    restarts: int = 1,
    eot_iter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """APGD on the cross-entropy loss (torchattacks ``APGD``, L-inf), ``x: (N, C, H, W)`` in [0, 1].

    eps: L-inf radius in [0, 1] pixel units; steps: iterations per restart; eot_iter: gradient samples
    per step for randomised models (EOT). Returns ``x_adv`` within ``eps`` of ``x``, in [0, 1].
    """
    return _linf(
        "APGD",
        model,
        x,
        y,
        eps,
        seed,
        steps=checks.integer("steps", steps),
        n_restarts=checks.integer("restarts", restarts),
        loss="ce",
        eot_iter=checks.integer("eot_iter", eot_iter),
    )


def apgd_t(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 100,
    targets: int = 9,
    eot_iter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Targeted APGD on the DLR margin loss (torchattacks ``APGDT``, L-inf), against each of the
    ``targets`` highest-scoring wrong classes in turn (AutoAttack's APGD-T; 9 = every other class of
    CIFAR-10). Other arguments as :func:`apgd_ce`. The model must output at least ``max(targets + 1, 4)``
    logits (the DLR loss compares the top four).
    """
    return _linf(
        "APGDT",
        model,
        x,
        y,
        eps,
        seed,
        steps=checks.integer("steps", steps),
        n_restarts=1,
        eot_iter=checks.integer("eot_iter", eot_iter),
        n_classes=checks.integer("targets", targets) + 1,
    )


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    queries: int = 5000,
    seed: int = 0,
) -> torch.Tensor:
    """The Square attack (Andriushchenko et al. 2020; torchattacks ``Square``, L-inf, margin loss): a
    random search that queries only the model's logits, at most ``queries`` per image, so it needs no
    gradient and is not fooled by masked ones. Arguments as :func:`apgd_ce`.
    """
    return _linf("Square", model, x, y, eps, seed, n_queries=checks.integer("queries", queries), n_restarts=1)


#: the library attacks of the L-inf cascade, in AutoAttack's order (FAB-T is left out: on CIFAR-10 it
#: adds almost nothing after APGD-T, per Croce and Hein's own ablation, and costs as much again)
LIBRARY_ATTACKS = {"APGD-CE": apgd_ce, "APGD-T": apgd_t, "Square": square}


@dataclass(frozen=True)
class Budget:
    """The library attacks' budget: APGD iterations, APGD-T target classes and Square queries."""

    apgd_steps: int
    apgd_targets: int
    square_queries: int

    def describe(self) -> str:
        return (
            f"APGD-CE {self.apgd_steps} iterations, APGD-T {self.apgd_steps} iterations x "
            f"{self.apgd_targets} target classes, Square {self.square_queries:,} queries"
        )

    def as_dict(self) -> dict:
        return asdict(self)


#: profile name -> :class:`Budget`. ``full``/``paper``: AutoAttack's standard version. ``medium``: about
#: a fifth of its cost on a CPU. ``quick``: enough to run in CI, not to certify anything.
BUDGETS: dict[str, Budget] = {
    "quick": Budget(apgd_steps=20, apgd_targets=3, square_queries=100),
    "medium": Budget(apgd_steps=50, apgd_targets=3, square_queries=1_000),
    "full": Budget(apgd_steps=100, apgd_targets=9, square_queries=5_000),
    "paper": Budget(apgd_steps=100, apgd_targets=9, square_queries=5_000),
}


def budget(profile: str | config.Profile | None = None) -> Budget:
    """The library attacks' budget for ``profile`` (default: the active one); smoke runs divide it."""
    name = profile.name if isinstance(profile, config.Profile) else config.get_profile(profile).name
    b = BUDGETS[name]
    return Budget(
        apgd_steps=config.smoke_size(b.apgd_steps),
        apgd_targets=b.apgd_targets,
        square_queries=config.smoke_size(b.square_queries),
    )


def library_attacks(
    eps: float, budget: Budget, *, eot_iter: int = 1, seed: int = 0
) -> tuple[dict[str, Attack], str]:
    """``({name: attack}, note)``: APGD-CE, APGD-T and Square at L-inf radius ``eps`` with ``budget``,
    in AutoAttack's order; no attacks and a note saying how to install torchattacks when it is missing.
    eot_iter: gradient samples per APGD step, for randomised models.
    """
    eps = checks.real("eps", eps, positive=True, pixel_units=True)
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be an autoattack.Budget, got {type(budget).__name__}")
    version = torchattacks_version()
    if version is None:
        return {}, f"torchattacks is not installed, so APGD and Square did not run ({_INSTALL})"
    steps, targets = budget.apgd_steps, budget.apgd_targets
    made = {
        "APGD-CE": functools.partial(apgd_ce, eps=eps, steps=steps, eot_iter=eot_iter, seed=seed),
        "APGD-T": functools.partial(
            apgd_t, eps=eps, steps=steps, targets=targets, eot_iter=eot_iter, seed=seed
        ),
        "Square": functools.partial(square, eps=eps, queries=budget.square_queries, seed=seed),
    }
    return made, f"torchattacks {version}: {budget.describe()}"


@dataclass
class Cascade:
    """Per-image results of one threat model's attacks on the same images.

    correct: name -> bool (N,): right on the clean image (``"clean"``) and after each attack. An attack
    of the cascade ran only on the images every earlier entry left standing; elsewhere it is False (the
    image was already lost). robust: the per-image AND of all of them. found_by: per image, the first
    entry that got it wrong (``"clean"`` for a clean error), or ``""`` for a robust image.
    """

    threat: str
    correct: dict[str, np.ndarray]
    note: str = ""
    budget: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(next(iter(self.correct.values())))

    @property
    def robust(self) -> np.ndarray:
        return np.logical_and.reduce(list(self.correct.values()))

    @property
    def accuracy(self) -> float:
        """The worst case, in [0, 1]: right clean and after every attack."""
        return float(self.robust.mean())

    @property
    def found_by(self) -> np.ndarray:
        out = np.full(self.n, "", dtype=object)
        standing = np.ones(self.n, dtype=bool)
        for name, ok in self.correct.items():
            out[standing & ~ok] = name
            standing &= ok
        return out

    def counts(self) -> dict[str, int]:
        """name -> how many images that entry was the first to get wrong (``"robust"``: none did)."""
        found = self.found_by
        out = {name: int((found == name).sum()) for name in self.correct}
        out["robust"] = int((found == "").sum())
        return out

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        text = f"{self.threat} worst case on {self.n} images, {100 * self.accuracy:.1f} % robust"
        return f"{text}; first lost to: {parts}" + (f" ({self.note})" if self.note else "")


def cascade(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Mapping[str, Attack],
    *,
    threat: str,
    done: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    note: str = "",
    budget: Budget | None = None,
    batch_size: int = 250,
    device: torch.device | str | None = None,
) -> Cascade:
    """Run ``attacks`` (all of one threat model, e.g. L-inf at one eps) in order, each on the images
    still standing; the result's :attr:`Cascade.robust` is the per-image worst case.

    images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,). done: per-image results already
    measured on all N images (``"clean"`` first, then e.g. FGSM and PGD over every image); the clean
    result is measured here when ``done`` has none. threat: the threat model's label, e.g. ``"linf 8/255"``.
    """
    if not isinstance(threat, str) or not threat:
        raise ValueError(f"threat must name the threat model, e.g. 'linf 8/255'; got {threat!r}")
    n = len(labels)
    results: dict[str, np.ndarray] = {}
    for name, ok in (done or {}).items():
        ok = np.asarray(ok.cpu() if isinstance(ok, torch.Tensor) else ok)
        if ok.dtype != bool or ok.shape != (n,):
            raise ValueError(
                f"done[{name!r}] must be a bool array of shape ({n},), got {ok.dtype} {ok.shape}"
            )
        results[name] = ok
    if "clean" not in results:
        clean = correct(model, images, labels, batch_size=batch_size, device=device).numpy()
        results = {"clean": clean, **results}
    elif next(iter(results)) != "clean":
        results = {"clean": results.pop("clean"), **results}
    standing = np.logical_and.reduce(list(results.values()))
    for name, attack in attacks.items():
        if name in results:
            raise ValueError(f"attack {name!r} is already in done")
        only = torch.from_numpy(standing.copy())
        ok = correct(model, images, labels, attack, only=only, batch_size=batch_size, device=device).numpy()
        results[name] = ok
        standing &= ok
    return Cascade(threat, results, note, budget.as_dict() if budget is not None else {})
