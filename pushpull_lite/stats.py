"""The book's statistics: standard errors, model comparisons and the verdicts chapters print.

Accuracies are fractions in [0, 1] here; :func:`percent` and :func:`mean_sd` format them (or values
already in per cent) for tables. A chapter never writes its own ``verdict`` or table-cell helper: it
calls one of these, so every chapter judges a difference by the same rule.

Defined here, used in chapters 2-8: :func:`binomial_se`, :func:`compare`, :func:`compare_accuracies`,
:func:`seed_difference`, :func:`range_verdict`, :func:`shift_verdict`, :func:`percent`, :func:`mean_sd`;
:func:`detectable_difference` (chapter 4) says how large a true difference a test could have seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Comparison",
    "Test",
    "clustered_difference",
    "clustered_mean_se",
    "mcnemar",
    "proportion_ci",
    "seed_test",
    "binomial_se",
    "compare",
    "compare_accuracies",
    "detectable_difference",
    "mean_sd",
    "percent",
    "percent_of",
    "percent_se",
    "range_verdict",
    "seed_difference",
    "shift_verdict",
]

# --------------------------------------------------------------------------------------------------
# Comparing two models


def _outcome(low: float, high: float) -> str:
    """The verdict of a 95 % interval of A - B: "within noise" whenever it covers 0."""
    if low > 0:
        return "A higher"
    if high < 0:
        return "B higher"
    return "within noise"


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` independent images."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def _adjusted_variance(accuracy: float, n: int) -> float:
    """Agresti and Caffo's (2000) variance of an accuracy on ``n`` images: one pseudo-success and one
    pseudo-failure added, ``p~ (1 - p~) / (n + 2)`` with ``p~ = (p n + 1) / (n + 2)``. Unlike
    ``p (1 - p) / n`` it is not 0 at 0 % or 100 % (4 images right against 0 of 200 is not a sure win)."""
    adjusted = (accuracy * n + 1) / (n + 2)
    return adjusted * (1 - adjusted) / (n + 2)


def _sampling_se(acc_a: float, acc_b: float, n: int) -> float:
    if not (0 <= acc_a <= 1 and 0 <= acc_b <= 1):
        raise ValueError(f"accuracies must be in [0, 1], got {acc_a!r} and {acc_b!r}")
    return math.sqrt(_adjusted_variance(acc_a, n) + _adjusted_variance(acc_b, n))


@dataclass(frozen=True)
class Comparison:
    """Accuracy of model A minus model B, over seeds, with two sources of noise.

    ``sampling_se``: binomial standard error of a difference of two accuracies on ``n_images`` images
    (the same images for every seed, so more seeds do not shrink it), with Agresti and Caffo's adjustment
    (one pseudo-success and one pseudo-failure per model) so that it stays honest at 0 % and 100 %.
    ``seed_sd``: standard deviation of the per-seed differences (NaN with one seed). ``se`` combines
    them: ``sqrt(sampling_se^2 + seed_sd^2 / n_seeds)`` (just ``sampling_se`` with one seed, which then
    leaves training noise unmeasured). The verdict (:meth:`outcome`) asks whether the 95 % interval
    :attr:`ci` covers 0; with an estimated seed spread the interval uses Student's t quantile
    (``n_seeds - 1`` degrees of freedom), not 2.
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

    @property
    def quantile(self) -> float:
        """The two-sided 95 % quantile the interval uses: Student's t with ``n_seeds - 1`` degrees of
        freedom when the seed-to-seed spread is estimated (4.30 for three seeds), else the normal 1.96."""
        return _t_quantile(self.n_seeds - 1, 0.95) if self.n_seeds >= 2 else 1.959963984540054

    @property
    def ci(self) -> tuple[float, float]:
        """95 % interval of :attr:`difference`: ``difference +- quantile * se``."""
        half = self.quantile * self.se
        return self.difference - half, self.difference + half

    def outcome(self) -> str:
        """``"A higher"``, ``"B higher"`` or ``"within noise"`` (whenever :attr:`ci` covers 0)."""
        return _outcome(*self.ci)


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
    sampling = _sampling_se(float(a.mean()), float(b.mean()), n_images)
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
    sampling = _sampling_se(pa, pb, n)
    seed_sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return Comparison(tuple(float(d) for d in per_seed), n, sampling, seed_sd)


# --------------------------------------------------------------------------------------------------
# Verdicts and table cells, as the chapters print them


def seed_difference(diff: Sequence[float] | np.ndarray, unit: str = "points") -> str:
    """A paired per-seed difference (variant minus baseline, e.g. error in points) in words.

    ``"1.2 points lower"`` with one seed (no test: the seed-to-seed spread is unmeasured); with two or
    more seeds ``"1.2 ± 0.4 points lower (95 % CI -2.2 to -0.2, paired t over 3 seeds: clear)"``, where
    "clear" needs the interval (t quantile, ``seeds - 1`` degrees of freedom) to exclude 0, else
    "within noise". Pairing is by seed: the variant and its baseline trained with one seed see the same
    data order. Defined in chapter 2.
    """
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"diff must be a non-empty 1-D sequence, one value per seed; got shape {d.shape}")
    m = d.mean()
    word = "lower" if m < 0 else "higher"
    if len(d) == 1:
        return f"{abs(m):.1f} {unit} {word}"
    s = d.std(ddof=1)
    t = seed_test(d, np.zeros_like(d), paired=True)
    low, high = t.ci
    verdict = "clear" if t.outcome() != "within noise" else "within noise"
    return (
        f"{abs(m):.1f} ± {s:.1f} {unit} {word} (95 % CI {low:+.1f} to {high:+.1f}, paired t over "
        f"{len(d)} seeds: {verdict})"
    )


def range_verdict(p: float, n: int, low: float, high: float) -> str:
    """Is an accuracy ``p`` in [0, 1] on ``n`` images within a claimed range [low, high] (in per cent)?

    Below or above only when the 95 % Wilson interval of ``p`` misses the range (an interval that stays
    honest at 0 % and 100 %). Defined in chapter 6.
    """
    if math.isnan(p):
        return "not measurable (no successful attack)"
    a, b = (100 * v for v in proportion_ci(round(p * n), n))
    v = 100 * p
    if b < low:
        return f"**below** the claimed range ({low - v:.0f} points under its low end)"
    if a > high:
        return f"**above** the claimed range ({v - high:.0f} points over its high end)"
    return "within the claimed range (95 % interval)"


def shift_verdict(value: float, se: float, k: float = 3.0) -> str:
    """A shift in points with its standard error: within ``k`` SE of zero, or more / less. Defined in 3b."""
    if abs(value) <= k * se:
        return f"{value:+.1f} ± {se:.1f}: within noise of the clean shift"
    return f"{value:+.1f} ± {se:.1f}: {'more' if value > 0 else 'less'} than the clean shift predicts"


def percent(value: float | torch.Tensor | np.ndarray) -> str:
    """A fraction in [0, 1], or a bool mask (its mean), as per cent with one decimal: ``"56.3"``."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = float(
            np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=float).mean()
        )
    return f"{100 * float(value):.1f}"


def mean_sd(values: Sequence[float] | np.ndarray, scale: float = 1.0) -> str:
    """One table cell: ``"mean ± sd"`` over seeds (``"mean"`` for one seed), values times ``scale``.

    Use ``scale=100`` for fractions, 1 for values already in per cent.
    """
    v = scale * np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else "")


def percent_of(mask: torch.Tensor | np.ndarray) -> float:
    """Per cent of True in a bool mask ``(N,)``, e.g. the images a model got right (NaN when empty).

    Defined in chapter 6."""
    m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=float)
    if m.ndim != 1:
        raise ValueError(f"mask must be a 1-D bool array, got shape {m.shape}")
    return 100 * float(m.mean()) if len(m) else float("nan")


def percent_se(mask: torch.Tensor | np.ndarray) -> float:
    """The binomial standard error of :func:`percent_of`, in points. Defined in chapter 6."""
    p = percent_of(mask)
    return 100 * binomial_se(p / 100, len(mask)) if len(mask) else float("nan")


# --------------------------------------------------------------------------------------------------
# Tests with honest small-sample statistics (t quantiles over seeds, exact tests over images)


@dataclass(frozen=True)
class Test:
    """A difference A - B with its confidence interval and p-value, and how it was obtained.

    difference: mean of A minus mean of B (in the units given); ci: (low, high) at ``confidence``;
    p: two-sided p-value (NaN when undefined, e.g. no spread at all); test: its name ("paired t",
    "Welch t", "McNemar (exact)"); n: seeds or images behind it; df: degrees of freedom (t tests);
    se: the standard error
    behind the interval.
    """

    difference: float
    ci: tuple[float, float]
    p: float
    test: str
    n: int
    df: float = float("nan")
    confidence: float = 0.95
    se: float = float("nan")

    def outcome(self) -> str:
        """``"A higher"``, ``"B higher"`` or ``"within noise"`` (whenever the interval covers 0)."""
        return _outcome(*self.ci)

    def describe(self, scale: float = 100.0, unit: str = "points") -> str:
        """``"+2.9 points (95 % CI -1.2 to +7.0; paired t, 3 seeds, p = 0.11): within noise"``."""
        low, high = (scale * v for v in self.ci)
        what = "seeds" if self.test.endswith(" t") else "images"
        p = "p n/a" if math.isnan(self.p) else f"p = {self.p:.2g}"
        level = f"{100 * self.confidence:.0f} % CI"
        return (
            f"{scale * self.difference:+.1f} {unit} ({level} {low:+.1f} to {high:+.1f}; "
            f"{self.test}, {self.n} {what}, {p}): {self.outcome()}"
        )


def _t_quantile(df: float, confidence: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def detectable_difference(
    se: float, df: float | None = None, confidence: float = 0.95, power: float = 0.8
) -> float:
    """The smallest true difference a two-sided test at ``confidence`` detects with probability ``power``.

    ``(q_{1 - a/2} + q_{power}) * se`` with ``a = 1 - confidence``: ``se`` is the standard error of the
    difference (e.g. :attr:`Comparison.se` or :attr:`Test.se`) and the result is in the same units (a
    fraction if ``se`` is one, points if ``se`` is in points). The quantiles are Student's t with ``df``
    degrees of freedom (e.g. ``n_seeds - 1`` for a paired t over seeds), or normal when ``df`` is None or
    infinite (a binomial or clustered SE over many images). For 95 % and 80 % power the factor is
    1.96 + 0.84 = 2.80 (normal), 4.30 + 1.06 = 5.36 with 2 degrees of freedom (three seeds).

    A "within noise" verdict with a detectable difference larger than the effect in question means the
    test cannot decide, not that there is no effect. The formula ignores the (tiny) chance of rejecting
    on the wrong side, and treats ``se`` as known.
    """
    from scipy.stats import norm, t

    if not (math.isfinite(se) and se >= 0):
        raise ValueError(f"se must be a finite number >= 0, got {se!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if df is None or math.isinf(df):
        q = float(norm.ppf(0.5 + confidence / 2)) + float(norm.ppf(power))
    else:
        if not df > 0:
            raise ValueError(f"df must be positive (or None for the normal quantiles), got {df!r}")
        q = float(t.ppf(0.5 + confidence / 2, df)) + float(t.ppf(power, df))
    return q * se


def seed_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    paired: bool,
    confidence: float = 0.95,
) -> Test:
    """Compare two models over training seeds: per-seed values ``a`` and ``b`` (e.g. accuracies).

    paired=True (seed i of A with seed i of B: only where the seed really shares randomness between the
    two runs, e.g. the same data order): a one-sample t test on the differences, ``n - 1`` degrees of
    freedom. paired=False: Welch's t test (unequal variances, Welch-Satterthwaite degrees of freedom).
    The interval uses the t quantile (4.30 for 3 seeds paired, not 2). Needs two or more seeds per model.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"a and b must be 1-D with two or more seeds each, got shapes {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a and b must be finite numbers")
    if paired:
        if x.shape != y.shape:
            raise ValueError(
                f"paired=True needs one value per seed for both models, got {len(x)} and {len(y)}"
            )
        d = x - y
        n, diff = len(d), float(d.mean())
        se = float(d.std(ddof=1)) / math.sqrt(n)
        df = n - 1
        name = "paired t"
    else:
        va, vb = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
        diff, se = float(x.mean() - y.mean()), math.sqrt(va + vb)
        df = (
            (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
            if va + vb > 0
            else float(len(x) + len(y) - 2)
        )
        n = min(len(x), len(y))
        name = "Welch t"
    half = _t_quantile(df, confidence) * se
    if se > 0:
        from scipy.stats import t

        p = float(2 * t.sf(abs(diff) / se, df))
    else:
        p = float("nan")
    return Test(diff, (diff - half, diff + half), p, name, n, float(df), confidence, se)


def mcnemar(
    correct_a: torch.Tensor | np.ndarray, correct_b: torch.Tensor | np.ndarray, confidence: float = 0.95
) -> Test:
    """Compare two models on the same images, image by image: bool ``(N,)`` right/wrong for each.

    Exact McNemar test (a binomial test on the discordant images); the interval for the difference in
    accuracy is the Wald interval of a paired difference of proportions (zero width, and "within
    noise", when no image is discordant).
    """
    from scipy.stats import binomtest, norm

    ra = np.asarray(correct_a.cpu() if isinstance(correct_a, torch.Tensor) else correct_a, dtype=bool)
    rb = np.asarray(correct_b.cpu() if isinstance(correct_b, torch.Tensor) else correct_b, dtype=bool)
    if ra.ndim != 1 or ra.shape != rb.shape or len(ra) == 0:
        raise ValueError(
            f"correct_a and correct_b must be bool (N,) on the same images, got {ra.shape}, {rb.shape}"
        )
    n = len(ra)
    only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    diff = (only_a - only_b) / n
    se = math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    half = float(norm.ppf(0.5 + confidence / 2)) * se
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return Test(diff, (diff - half, diff + half), float(p), "McNemar (exact)", n, confidence=confidence)


def clustered_difference(
    values: Sequence[float] | np.ndarray, clusters: Sequence[int] | np.ndarray, confidence: float = 0.95
) -> Test:
    """A mean per-image difference A - B (e.g. wrong_A - wrong_B over all corrupted sets) with its interval,
    the SE clustered by test image (:func:`clustered_mean_se`) and the normal quantile (hundreds of images).
    Defined in chapter 3."""
    from scipy.stats import norm

    mean, se = clustered_mean_se(values, clusters)
    half = float(norm.ppf(0.5 + confidence / 2)) * se
    p = float(2 * norm.sf(abs(mean) / se)) if se > 0 else float("nan")
    n = len(np.unique(np.asarray(clusters)))
    return Test(mean, (mean - half, mean + half), p, "clustered by image", n, confidence=confidence, se=se)


def proportion_ci(k: int, n: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Interval for an accuracy of ``k`` right out of ``n``, as fractions: ``"wilson"`` or ``"exact"``
    (Clopper-Pearson). Both stay honest at 0 % and 100 %, where the binomial SE is 0."""
    from scipy.stats import binomtest

    if isinstance(k, bool) or isinstance(n, bool) or not 0 <= int(k) <= int(n) or int(n) < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}")
    if method not in ("wilson", "exact"):
        raise ValueError(f"method must be 'wilson' or 'exact', got {method!r}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=method)
    return float(ci.low), float(ci.high)


def clustered_mean_se(
    values: Sequence[float] | np.ndarray, clusters: Sequence[int] | np.ndarray
) -> tuple[float, float]:
    """Mean of ``values`` and its standard error with observations grouped by ``clusters``.

    For averages over sets that share images (95 CIFAR-10-C sets drawn from one test set): pass every
    (set, image) error with the image's index as its cluster; the SE is then over images (the sandwich
    estimator), not over sets treated as independent. With every cluster of size 1 it is the usual
    ``sd / sqrt(n)`` (with ``n`` in the denominator instead of ``n - 1``).
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(clusters)
    if v.ndim != 1 or c.shape != v.shape or len(v) == 0:
        raise ValueError(f"values and clusters must be 1-D of the same length, got {v.shape} and {c.shape}")
    mean = float(v.mean())
    _, inverse = np.unique(c, return_inverse=True)
    sums = np.bincount(inverse, weights=v - mean)
    return mean, float(math.sqrt((sums**2).sum()) / len(v))
