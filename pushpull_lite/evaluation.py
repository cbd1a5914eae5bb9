"""How to tell if a defense works: the sanity checks of Carlini et al. (2019) and the adaptive attacks of
Athalye et al. (2018), run on one model and reported as a table, plus a cross-check of the book's PGD
against an independent library (torchattacks).

``sanity_checks(model, images, labels, eps=8/255)`` attacks the images in several ways and checks what
every sound evaluation shows: accuracy at eps = 0 is the clean accuracy; it falls as eps grows and as
PGD takes more steps; an unbounded attack reaches about 0 %; white-box PGD beats PGD transferred from
another model; more random restarts gain little; FGSM does not beat PGD; and, where the model is
randomised or has a non-differentiable stage, EOT / BPDA do no better than plain PGD. A check that fails
is a symptom of *gradient masking*: the attack failed, not the model's robustness succeeded. The robust
accuracy reported is the worst case over every attack run at ``eps``: an image counts as robust only if
no attack fooled it.

Images are ``(N, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]; every ``eps`` is in [0, 1] pixel units
(L-inf). Two attacks on the same ``N`` images are compared image by image: a check flags a difference
only when it is beyond sampling noise, by the exact McNemar test at 5 % (:func:`stats.mcnemar`).
"""

from __future__ import annotations

import functools
import html
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import attacks, checks, measure
from .attacks import fgsm, pgd
from .autoattack import torchattacks_version
from .defenses import Defended
from .measure import Attack
from .stats import binomial_se, mcnemar

__all__ = [
    "Check",
    "CrossCheck",
    "SanityReport",
    "check_clean_matches",
    "check_non_increasing",
    "check_not_above",
    "check_unbounded",
    "crosscheck",
    "sanity_checks",
    "worst_case",
]


# --------------------------------------------------------------------------------------------------
# The checks' logic, on accuracies alone (unit-testable on hand-built numbers)


@dataclass(frozen=True)
class Check:
    """One row of a :class:`SanityReport`: what was measured, what a sound evaluation shows, verdict."""

    name: str
    measured: str
    expected: str
    passed: bool
    values: Mapping[str, float] = field(default_factory=dict)


def _pct(acc: float) -> str:
    return f"{100 * acc:.1f} %"


_PerImage = np.ndarray | torch.Tensor  # bool (N,): right or wrong on each of the same N images


def _beyond_noise(correct_a: _PerImage, correct_b: _PerImage, confidence: float) -> int:
    """+1 when A is right on more of the same images than B beyond sampling noise, -1 when B is, else 0.

    The exact McNemar test of :func:`stats.mcnemar` (a binomial test on the images only one of the two gets
    right) at level ``1 - confidence``; its p-value, not its Wald interval, which is too narrow when only a
    handful of images differ (4 against 0 would count, though p = 0.125)."""
    test = mcnemar(correct_a, correct_b, confidence)
    if test.p >= 1 - confidence:
        return 0
    return 1 if test.difference > 0 else -1


def check_not_above(correct_a: _PerImage, correct_b: _PerImage, confidence: float = 0.95) -> bool:
    """False only when attack A leaves more images right than attack B beyond sampling noise.

    ``correct_a``, ``correct_b``: bool (N,), right under each attack, on the same images; compared image by
    image (exact McNemar test at level ``1 - confidence``, :func:`stats.mcnemar`).
    """
    return _beyond_noise(correct_a, correct_b, confidence) <= 0


def check_non_increasing(correct: Sequence[_PerImage], confidence: float = 0.95) -> tuple[bool, float]:
    """Does accuracy fall (or stay) along ``correct`` (bool (N,) per step, the same images), no step rising
    beyond noise (:func:`check_not_above`)? Returns (passed, largest rise in accuracy, a fraction)."""
    if len(correct) < 2:
        raise ValueError(f"correct must hold at least two per-image results, got {len(correct)}")
    acc = [float(np.asarray(c, dtype=float).mean()) for c in correct]
    rises = [b - a for a, b in zip(acc, acc[1:])]
    passed = all(check_not_above(b, a, confidence) for a, b in zip(correct, correct[1:]))
    return passed, max(rises)


def check_clean_matches(
    clean: _PerImage, at_zero: _PerImage, randomized: bool, confidence: float = 0.95
) -> bool:
    """Accuracy through the attack pipeline at eps = 0 (bool (N,), the same images as ``clean``) must equal
    the clean accuracy: exactly for a deterministic model, within noise for a randomised one (two draws on
    the same images, compared image by image as in :func:`check_not_above`, in either direction)."""
    if not randomized:
        return float(np.asarray(clean, dtype=float).mean()) == float(np.asarray(at_zero, dtype=float).mean())
    return _beyond_noise(clean, at_zero, confidence) == 0


def check_unbounded(accuracy: float, limit: float = 0.02) -> bool:
    """With eps = 1 any image can become any other: a working attack leaves (about) no image right."""
    return accuracy <= limit


def worst_case(correct: Mapping[str, np.ndarray | torch.Tensor]) -> np.ndarray:
    """Per image: right under *every* attack? ``correct``: {attack: bool (N,)} -> bool (N,)."""
    if not correct:
        raise ValueError("correct must hold at least one attack's per-image results")
    rows = [np.asarray(v, dtype=bool) for v in correct.values()]
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1:
        raise ValueError(
            f"every per-image result must be a 1-D array of one length, got {[r.shape for r in rows]}"
        )
    return np.logical_and.reduce(rows)


# --------------------------------------------------------------------------------------------------
# The report


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<table><caption style='caption-side: bottom'>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


@dataclass
class SanityReport:
    """The checks run on one model, and the per-image results of every attack at ``eps``.

    ``correct[name]``: bool (N,), right under that attack at ``eps`` (clean included as ``"clean"``).
    """

    name: str
    eps: float
    n: int
    checks: list[Check]
    correct: dict[str, np.ndarray]
    settings: dict
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if not c.passed]

    def accuracy(self, attack: str) -> float:
        """Accuracy in [0, 1] under one attack at ``eps`` (a key of :attr:`correct`)."""
        if attack not in self.correct:
            raise KeyError(f"attack {attack!r} was not run; run: {list(self.correct)}")
        return float(self.correct[attack].mean())

    @property
    def attacks(self) -> dict[str, float]:
        """{attack: accuracy} at ``eps``, clean first."""
        return {k: float(v.mean()) for k, v in self.correct.items()}

    @property
    def robust_correct(self) -> np.ndarray:
        """bool (N,): right under every attack run at ``eps``."""
        return worst_case(self.correct)

    @property
    def robust_accuracy(self) -> float:
        """Worst case over every attack run at ``eps``, in [0, 1]."""
        return float(self.robust_correct.mean())

    @property
    def strongest_attack(self) -> str:
        """The single attack with the lowest accuracy at ``eps`` (clean excluded)."""
        adv = {k: v for k, v in self.attacks.items() if k != "clean"}
        return min(adv, key=adv.get)

    def rows(self) -> list[list[str]]:
        return [[c.name, c.measured, c.expected, "pass" if c.passed else "FAIL"] for c in self.checks]

    def summary(self) -> str:
        verdict = "all checks pass" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (
            f"{self.name}: robust accuracy {_pct(self.robust_accuracy)} at eps {self.eps * 255:.3g}/255 "
            f"(worst case over {len(self.correct) - 1} attacks, strongest single: {self.strongest_attack}), "
            f"clean {_pct(self.accuracy('clean'))}, {self.n} images; {verdict}"
        )

    def to_markdown(self) -> str:
        """The checks as a Markdown table, with the summary line below it."""
        return _table(["check", "measured", "expected", "verdict"], self.rows()) + "\n\n" + self.summary()

    def to_frame(self):
        """The checks as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["check", "measured", "expected", "verdict"])

    def _repr_html_(self) -> str:
        return _html_table(["check", "measured", "expected", "verdict"], self.rows(), self.summary())

    def __str__(self) -> str:
        return self.to_markdown()


# --------------------------------------------------------------------------------------------------
# Running the checks


def _device_of(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(iter(model.parameters()), torch.empty(0)).device


def _pgd_at(eps: float, steps: int, restarts: int = 1, model: nn.Module | None = None) -> Attack:
    """PGD with Madry et al.'s step rule (2.5 eps / steps), on ``model`` when given (else the scored one)."""
    # a step beyond the whole pixel range is the same step after clamping (and the attacks refuse it)
    step = min(1.0, 2.5 * eps / steps)
    attack = functools.partial(pgd, eps=eps, step_size=step, steps=steps, restarts=restarts)
    if model is None:
        return attack
    return lambda _scored, x, y: attack(model, x, y)


def sanity_checks(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    eps: float = 8 / 255,
    steps: int = 10,
    step_counts: Sequence[int] | None = None,
    eps_factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    restarts: int = 3,
    surrogate: nn.Module | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    adaptive: nn.Module | None = None,
    randomized: bool = False,
    eot_samples: int = 8,
    confidence: float = 0.95,
    unbounded_limit: float = 0.02,
    name: str = "model",
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SanityReport:
    """Run the sanity checks of Carlini et al. (2019) on ``model`` and return a :class:`SanityReport`.

    model: maps x (N, 3, H, W) in [0, 1] to logits (N, K). When ``preprocess`` is given, the defense under
    test is ``model(preprocess(x))`` (see :class:`Defended`) and one more attack runs: PGD through
    ``attacks.BPDA(preprocess)`` (identity gradient). ``randomized=True`` says the model (or preprocess) is
    random even in eval mode; one more attack runs: PGD on ``attacks.EOT(..., eot_samples)``.
    adaptive: instead of ``preprocess``, a module with the same outputs as ``model`` and usable gradients
    (e.g. a BPDA view of a defense with non-differentiable stages built in); PGD on it is scored on ``model``.
    images: (N, 3, H, W) uint8 or float in [0, 1]; labels: (N,) integers; eps: the L-inf budget (pixel
    units). PGD takes ``steps`` steps of ``2.5 eps / steps`` from a random start (Madry et al. 2018).

    Checks (each attack runs on the images the model gets right without attack):

    1. clean accuracy = accuracy through the attack pipeline at eps = 0;
    2. accuracy of PGD falls with eps over ``eps_factors * eps`` (every eps attacked from scratch);
    3. accuracy falls with the number of steps, ``step_counts`` (default ``(1, steps, 3 * steps)``);
    4. PGD at eps = 1 leaves at most ``unbounded_limit`` accuracy;
    5. with ``surrogate``: white-box PGD is no weaker than PGD transferred from the surrogate;
    6. ``restarts`` random restarts do not beat one run by more than noise;
    7. FGSM does not beat PGD;
    8. with ``preprocess`` / ``adaptive`` / ``randomized``: PGD through BPDA, the adaptive view or EOT is not
       stronger than plain PGD beyond noise.

    "Within noise": two attacks on the same images do not differ by the exact McNemar test at level
    ``1 - confidence`` (:func:`stats.mcnemar`). The global RNG is left as it was (attacks draw from
    ``seed``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = checks.as_tensor("images", images)
    labels = checks.as_tensor("labels", labels)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({images.shape[0]},), got {tuple(labels.shape)}")
    eps = checks.real("eps", eps, positive=True, pixel_units=True)
    steps = checks.integer("steps", steps)
    restarts = checks.integer("restarts", restarts, minimum=2)
    eot_samples = checks.integer("eot_samples", eot_samples)
    step_counts = sorted({1, steps, 3 * steps} if step_counts is None else set(step_counts))
    if len(step_counts) < 2 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in step_counts
    ):
        raise ValueError(f"step_counts must hold at least two ints >= 1, got {step_counts!r}")
    factors = sorted({float(f) for f in eps_factors} | {1.0})
    if any(not math.isfinite(f) or f <= 0 for f in factors):
        raise ValueError(f"eps_factors must be positive numbers, got {eps_factors!r}")
    if surrogate is not None and not isinstance(surrogate, nn.Module):
        raise TypeError(f"surrogate must be a torch.nn.Module or None, got {type(surrogate).__name__}")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess must be callable or None, got {type(preprocess).__name__}")
    if adaptive is not None and not isinstance(adaptive, nn.Module):
        raise TypeError(f"adaptive must be a torch.nn.Module or None, got {type(adaptive).__name__}")
    if adaptive is not None and preprocess is not None:
        raise ValueError("give preprocess (attacked through BPDA) or adaptive (a ready view), not both")

    start = time.perf_counter()
    n = images.shape[0]
    scored = Defended(model, preprocess) if preprocess is not None else model
    kwargs = {"batch_size": batch_size, "device": device, "progress": progress}

    def run(attack: Attack | None, only: torch.Tensor | None = None) -> np.ndarray:
        return measure.correct(scored, images, labels, attack, only=only, **kwargs).numpy()

    done: list[Check] = []
    correct: dict[str, np.ndarray] = {}
    dev = _device_of(model, device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        clean = run(None)
        ok = torch.from_numpy(clean)
        correct["clean"] = clean
        acc_clean = float(clean.mean())

        # 1. eps = 0 through the attack pipeline (a second forward pass: differs only if the model is random)
        zero = run(functools.partial(pgd, eps=0.0, step_size=0.0, steps=steps))
        at_zero = float(zero.mean())
        done.append(
            Check(
                "clean = PGD at eps 0",
                f"clean {_pct(acc_clean)}, eps 0 {_pct(at_zero)}",
                "equal" + (" within noise (random model)" if randomized else " exactly"),
                check_clean_matches(clean, zero, randomized, confidence),
                {"clean": acc_clean, "eps0": at_zero},
            )
        )

        # 2. eps sweep, every eps from scratch (a nested sweep would be monotone by construction)
        sweep = {f: run(_pgd_at(f * eps, steps), ok) for f in factors}
        correct[f"PGD-{steps}"] = sweep[1.0]
        accs = [acc_clean] + [float(sweep[f].mean()) for f in factors]
        passed, rise = check_non_increasing([clean] + [sweep[f] for f in factors], confidence)
        done.append(
            Check(
                "accuracy falls with eps",
                ", ".join(f"{f * eps * 255:.3g}/255: {_pct(a)}" for f, a in zip([0.0, *factors], accs)),
                "non-increasing (within noise)",
                passed,
                {f"eps={f * eps:.6g}": a for f, a in zip([0.0, *factors], accs)},
            )
        )

        # 3. step sweep at eps
        by_steps = {k: (sweep[1.0] if k == steps else run(_pgd_at(eps, k), ok)) for k in step_counts}
        for k in step_counts:
            if k != steps:
                correct[f"PGD-{k}"] = by_steps[k]
        accs = [float(by_steps[k].mean()) for k in step_counts]
        passed, _ = check_non_increasing([by_steps[k] for k in step_counts], confidence)
        done.append(
            Check(
                "accuracy falls with steps",
                ", ".join(f"{k} steps: {_pct(a)}" for k, a in zip(step_counts, accs)),
                "non-increasing (within noise)",
                passed,
                {f"steps={k}": a for k, a in zip(step_counts, accs)},
            )
        )
        pgd_acc = float(sweep[1.0].mean())

        # 4. unbounded
        acc_unbounded = float(run(_pgd_at(1.0, steps), ok).mean())
        done.append(
            Check(
                "unbounded eps (= 1) reaches ~0 %",
                _pct(acc_unbounded),
                f"<= {_pct(unbounded_limit)}",
                check_unbounded(acc_unbounded, unbounded_limit),
                {"eps=1": acc_unbounded},
            )
        )

        # 5. transfer from a surrogate
        if surrogate is not None:
            transfer = run(_pgd_at(eps, steps, model=surrogate), ok)
            correct[f"transfer PGD-{steps}"] = transfer
            acc_t = float(transfer.mean())
            done.append(
                Check(
                    "white-box beats transfer",
                    f"white-box {_pct(pgd_acc)}, transfer {_pct(acc_t)}",
                    "white-box <= transfer (within noise)",
                    check_not_above(sweep[1.0], transfer, confidence),
                    {"white-box": pgd_acc, "transfer": acc_t},
                )
            )

        # 6. restarts
        with_restarts = run(_pgd_at(eps, steps, restarts=restarts), ok)
        correct[f"PGD-{steps} x{restarts} restarts"] = with_restarts
        acc_r = float(with_restarts.mean())
        done.append(
            Check(
                f"{restarts} restarts gain little",
                f"1 run {_pct(pgd_acc)}, {restarts} restarts {_pct(acc_r)}",
                "drop within noise (a big drop: a rugged, masked loss)",
                check_not_above(sweep[1.0], with_restarts, confidence),
                {"single": pgd_acc, "restarts": acc_r},
            )
        )

        # 7. FGSM vs PGD
        with_fgsm = run(functools.partial(fgsm, eps=eps), ok)
        correct["FGSM"] = with_fgsm
        acc_f = float(with_fgsm.mean())
        done.append(
            Check(
                "FGSM does not beat PGD",
                f"FGSM {_pct(acc_f)}, PGD {_pct(pgd_acc)}",
                "PGD <= FGSM (within noise)",
                check_not_above(sweep[1.0], with_fgsm, confidence),
                {"fgsm": acc_f, "pgd": pgd_acc},
            )
        )

        # 8. adaptive attacks: BPDA through the preprocessing, EOT over the randomness
        if preprocess is not None or adaptive is not None or randomized:
            view: nn.Module = model if adaptive is None else adaptive
            parts = [] if adaptive is None else ["adaptive view"]
            if preprocess is not None:
                view = nn.Sequential(attacks.BPDA(preprocess), model)
                parts.append("BPDA")
            if randomized:
                view = attacks.EOT(view, samples=eot_samples)
                parts.append(f"EOT-{eot_samples}")
            label = f"PGD-{steps} + " + " + ".join(parts)
            result = run(_pgd_at(eps, steps, model=view), ok)
            correct[label] = result
            acc_a = float(result.mean())
            done.append(
                Check(
                    f"{' / '.join(parts)} not stronger than plain PGD",
                    f"plain {_pct(pgd_acc)}, {' + '.join(parts)} {_pct(acc_a)}",
                    "plain <= adaptive (within noise); else plain gradients were obfuscated",
                    check_not_above(sweep[1.0], result, confidence),
                    {"plain": pgd_acc, "adaptive": acc_a},
                )
            )
    settings = {
        "eps": eps,
        "steps": steps,
        "step_size": 2.5 * eps / steps,
        "step_counts": list(step_counts),
        "eps_values": [f * eps for f in factors],
        "restarts": restarts,
        "surrogate": surrogate is not None,
        "preprocess": preprocess is not None,
        "adaptive": adaptive is not None,
        "randomized": randomized,
        "eot_samples": eot_samples if randomized else None,
        "confidence": confidence,
        "seed": seed,
    }
    return SanityReport(name, eps, n, done, correct, settings, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Cross-check against torchattacks


@dataclass
class CrossCheck:
    """Per-image results of the book's PGD and of independent implementations on the same images."""

    eps: float
    steps: int
    restarts: int
    correct: dict[str, np.ndarray]  #: attack (clean included) -> bool (N,)
    library: str | None  #: e.g. "torchattacks 3.5.1"; None when unavailable
    note: str = ""
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(next(iter(self.correct.values())))

    @property
    def attacks(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.correct.items()}

    @property
    def robust_accuracy(self) -> float:
        """Worst case over every attack, in [0, 1]."""
        return float(worst_case(self.correct).mean())

    def rows(self) -> list[list[str]]:
        out = []
        for k, acc in self.attacks.items():
            out.append([k, f"{100 * acc:.1f}", f"{100 * binomial_se(acc, self.n):.1f}"])
        out.append(["worst case over all attacks", f"{100 * self.robust_accuracy:.1f}", ""])
        return out

    def summary(self) -> str:
        return (
            f"eps {self.eps * 255:.3g}/255, {self.steps} steps, {self.restarts} restart(s), {self.n} images; "
            f"independent library: {self.library or 'none'}" + (f". {self.note}" if self.note else "")
        )

    def to_markdown(self) -> str:
        return _table(["attack", "accuracy %", "SE"], self.rows()) + "\n\n" + self.summary()

    def _repr_html_(self) -> str:
        return _html_table(["attack", "accuracy %", "SE"], self.rows(), self.summary())

    def __str__(self) -> str:
        return self.to_markdown()


def _torchattacks_attack(make: Callable[[nn.Module], object], repeats: int) -> Attack:
    """Wrap a torchattacks attack as ``(model, x, y) -> x_adv``; ``repeats`` independent runs, keeping the
    first that fools the model (torchattacks' PGD has no restarts of its own)."""

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        atk = make(model)
        best = atk(x, y)
        for _ in range(repeats - 1):
            with torch.no_grad():
                alive = measure.hits(model(best), y)
            if not alive.any():
                break
            candidate = atk(x[alive], y[alive])
            best[alive.nonzero().squeeze(1)] = candidate
        return best

    return attack


def crosscheck(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    eps: float,
    steps: int = 10,
    restarts: int = 1,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> CrossCheck:
    """The book's PGD beside torchattacks' PGD, APGD-CE and APGD-DLR, with matched budget, steps and
    restarts, on the same images; the robust accuracy is the worst case over all of them.

    PGD (both): ``steps`` steps of ``2.5 eps / steps`` from a random start, ``restarts`` runs (an image
    counts as fooled if any run fools it). APGD: ``steps`` iterations, ``n_restarts=restarts``.
    When torchattacks cannot be imported, only the book's attacks run and :attr:`CrossCheck.note` says so.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eps = checks.real("eps", eps, positive=True, pixel_units=True)
    steps = checks.integer("steps", steps)
    restarts = checks.integer("restarts", restarts)
    images = checks.as_tensor("images", images)
    labels = checks.as_tensor("labels", labels)
    start = time.perf_counter()
    kwargs = {"batch_size": batch_size, "device": device}
    alpha = 2.5 * eps / steps
    attacks_to_run: dict[str, Attack] = {
        "FGSM (book)": functools.partial(fgsm, eps=eps),
        f"PGD-{steps} (book)": functools.partial(
            pgd, eps=eps, step_size=alpha, steps=steps, restarts=restarts, random_start=True
        ),
    }
    version = torchattacks_version()
    note = ""
    if version is None:
        note = (
            "torchattacks is not installed, so only the book's own attacks ran: install it with "
            "`pip install --no-deps torchattacks==3.5.1` for the independent cross-check"
        )
    else:
        import torchattacks

        attacks_to_run[f"PGD-{steps} (torchattacks)"] = _torchattacks_attack(
            lambda m: torchattacks.PGD(m, eps=eps, alpha=alpha, steps=steps, random_start=True), restarts
        )
        for loss in ("ce", "dlr"):
            attacks_to_run[f"APGD-{loss.upper()} (torchattacks)"] = _torchattacks_attack(
                functools.partial(
                    torchattacks.APGD,
                    norm="Linf",
                    eps=eps,
                    steps=steps,
                    n_restarts=restarts,
                    seed=seed,
                    loss=loss,
                ),
                1,
            )
    correct: dict[str, np.ndarray] = {}
    dev = _device_of(model, device)
    # APGD seeds the global RNG itself: fork it so the caller's stream is untouched.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        correct["clean"] = measure.correct(model, images, labels, None, **kwargs).numpy()
        ok = torch.from_numpy(correct["clean"])
        for label, attack in attacks_to_run.items():
            correct[label] = measure.correct(model, images, labels, attack, only=ok, **kwargs).numpy()
    library = None if version is None else f"torchattacks {version}"
    return CrossCheck(eps, steps, restarts, correct, library, note, time.perf_counter() - start)
