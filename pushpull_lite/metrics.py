"""Corruption-robustness metrics of Hendrycks & Dietterich (2019): mCE and relative mCE (rCE).

All errors are in percent (0-100), keyed by corruption name (:data:`pushpull_lite.corruptions.CORRUPTIONS`),
each already averaged over the 5 severities (:func:`average_over_severities` does that). For each
corruption c, with AlexNet as the normaliser:

- ``CE_c = E_c(model) / E_c(AlexNet)`` and ``mCE = 100 * mean_c CE_c``;
- ``rCE_c = (E_c(model) - E_clean(model)) / (E_c(AlexNet) - E_clean(AlexNet))`` and
  ``rCE = 100 * mean_c rCE_c``.

The AlexNet CIFAR-10-C errors are those of Strisciuglio et al. (2020), used there for Tables 2-3.

Matching ``errors`` against the baseline (every function here that takes a ``baseline``):

- every corruption of the baseline must be in ``errors``: one missing is an error (leaving it out would
  change the mean without a word);
- a corruption in ``errors`` that the baseline lacks (e.g. one added to
  :data:`pushpull_lite.corruptions.REGISTRY` with no published AlexNet error) is **left out** of the
  per-corruption results and the means, and named in a :class:`MissingBaselineWarning`;
  :func:`without_baseline` returns those names, so a caller can show them beside the number.

The ICPR 2024 "R_net" is deliberately not here: its definition is not confirmed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

from .corruptions import SEVERITIES  # the one definition; metrics.SEVERITIES is the same object

__all__ = [
    "ALEXNET_CLEAN_ERROR",
    "ALEXNET_ERRORS",
    "MissingBaselineWarning",
    "average_over_severities",
    "mce",
    "normalized_corruption_errors",
    "rce",
    "relative_corruption_errors",
    "without_baseline",
]

#: AlexNet CIFAR-10-C errors (%), averaged over severities: the normaliser of the 2020 Push-Pull paper.
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 38.44,
    "shot_noise": 31.82,
    "impulse_noise": 46.13,
    "speckle_noise": 31.26,
    "defocus_blur": 23.53,
    "glass_blur": 40.97,
    "motion_blur": 29.32,
    "zoom_blur": 26.89,
    "gaussian_blur": 27.78,
    "snow": 26.94,
    "frost": 28.26,
    "fog": 30.31,
    "spatter": 25.19,
    "brightness": 17.84,
    "contrast": 46.77,
    "elastic_transform": 22.25,
    "pixelate": 18.36,
    "jpeg_compression": 18.48,
    "saturate": 22.15,
}

#: AlexNet's clean CIFAR-10 test error (%) in the same paper.
ALEXNET_CLEAN_ERROR: float = 13.87


class MissingBaselineWarning(UserWarning):
    """Some corruptions in ``errors`` have no baseline error: they were left out of CE/mCE/rCE."""


def _check_percent(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{what} must be a number (error in %), got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"{what} must be an error in percent, between 0 and 100, got {value}")
    return value


def _check_not_fractions(what: str, values: Sequence[float]) -> None:
    """Refuse errors that are all in [0, 1] with one above 0: fractions (0.235) passed for percent (23.5).

    A real CIFAR-10(-C) error set is never all below 1 %, and a fraction silently gives a 100x smaller
    mCE/rCE, so this is an error, not a guess. All zeros (a perfect model) are accepted.
    """
    if values and all(v <= 1.0 for v in values) and any(v > 0 for v in values):
        shown = ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if len(values) > 4 else "")
        raise ValueError(
            f"{what} are all <= 1 ({shown}): errors must be percentages (e.g. 23.5 for 23.5 %), "
            "not fractions; multiply them by 100"
        )


def _check_mappings(errors: Mapping[str, float], baseline: Mapping[str, float]) -> None:
    if not isinstance(errors, Mapping):
        raise TypeError(
            f"errors must be a mapping corruption name -> error in %, got {type(errors).__name__}"
        )
    if not isinstance(baseline, Mapping):
        raise TypeError(
            f"baseline must be a mapping corruption name -> error in %, got {type(baseline).__name__}"
        )


def without_baseline(
    errors: Mapping[str, float], baseline: Mapping[str, float] | None = None
) -> tuple[str, ...]:
    """The corruptions of ``errors`` (in its order) that ``baseline`` (default: AlexNet's) has no error for:
    the ones :func:`mce`, :func:`rce` and the per-corruption functions leave out."""
    baseline = ALEXNET_ERRORS if baseline is None else baseline
    _check_mappings(errors, baseline)
    return tuple(name for name in errors if name not in baseline)


def _matched(
    errors: Mapping[str, float], baseline: Mapping[str, float], what: str
) -> list[tuple[str, float, float]]:
    """(name, model error, baseline error) for every corruption of ``baseline``, in its order.

    Raises when ``errors`` lacks one of them; warns (:class:`MissingBaselineWarning`, attributed to the
    caller of the public function ``what``) about the ones of ``errors`` that the baseline lacks, which
    are left out.
    """
    _check_mappings(errors, baseline)
    if not baseline:
        raise ValueError("baseline is empty: it must give an error for at least one corruption")
    unknown = without_baseline(errors, baseline)
    missing = [name for name in baseline if name not in errors]
    if missing:
        parts = [f"missing from errors: {', '.join(map(str, missing))}"]
        if unknown:
            parts.insert(0, f"not in the baseline: {', '.join(map(str, unknown))}")
        raise ValueError(
            "errors must give every corruption of the baseline (" + "; ".join(parts) + "). "
            "Pass a baseline with exactly the corruptions you evaluated."
        )
    for name in unknown:  # left out of the result, but still no nonsense accepted
        _check_percent(f"errors[{name!r}]", errors[name])
    rows = [
        (name, _check_percent(f"errors[{name!r}]", errors[name]), _check_percent(f"baseline[{name!r}]", base))
        for name, base in baseline.items()
    ]
    _check_not_fractions("the errors", [err for _, err, _ in rows])
    _check_not_fractions("the baseline errors", [base for _, _, base in rows])
    if unknown:
        warnings.warn(
            f"{what}: {len(unknown)} corruption(s) without a baseline error left out "
            f"({', '.join(map(str, unknown))}); computed over the {len(rows)} that have one",
            MissingBaselineWarning,
            stacklevel=4,  # _matched <- private helper <- public function <- its caller
        )
    return rows


def _ces(errors: Mapping[str, float], baseline: Mapping[str, float] | None, what: str) -> dict[str, float]:
    rows = _matched(errors, ALEXNET_ERRORS if baseline is None else baseline, what)
    out = {}
    for name, err, base in rows:
        if base == 0:
            raise ValueError(f"baseline[{name!r}] is 0: CE is undefined")
        out[name] = err / base
    return out


def normalized_corruption_errors(
    errors: Mapping[str, float], baseline: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-corruption ``CE_c = E_c / E_c(baseline)`` (ratios, not percent; baseline: AlexNet's).

    errors: {corruption: error in %, averaged over severities}. Returns {corruption: CE_c} for the
    baseline's corruptions, in its order; ones without a baseline are left out with a
    :class:`MissingBaselineWarning` (see :func:`without_baseline`).
    """
    return _ces(errors, baseline, "normalized_corruption_errors")


def mce(errors: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> float:
    """Mean corruption error, ``100 * mean_c E_c / E_c(baseline)``; 100 means "as robust as the baseline".

    errors: {corruption: error in %, averaged over severities}; baseline defaults to AlexNet's. The mean is
    over the baseline's corruptions; ones without a baseline are left out with a
    :class:`MissingBaselineWarning` (:func:`without_baseline` names them).
    """
    ces = _ces(errors, baseline, "mce")
    return 100.0 * sum(ces.values()) / len(ces)


def _rces(
    errors: Mapping[str, float],
    clean_error: float,
    baseline: Mapping[str, float] | None,
    baseline_clean_error: float | None,
    what: str,
) -> dict[str, float]:
    if baseline is None:
        if baseline_clean_error is not None:
            raise ValueError("baseline_clean_error was given without baseline; pass both or neither")
        baseline, baseline_clean_error = ALEXNET_ERRORS, ALEXNET_CLEAN_ERROR
    elif baseline_clean_error is None:
        raise ValueError("baseline_clean_error is required with a custom baseline (rCE subtracts it)")
    clean = _check_percent("clean_error", clean_error)
    base_clean = _check_percent("baseline_clean_error", baseline_clean_error)
    rows = _matched(errors, baseline, what)
    # clean_error counts among the errors given (all-zero errors with clean_error 0.08: fractions too).
    _check_not_fractions("clean_error and the errors", [clean] + [err for _, err, _ in rows])
    _check_not_fractions(
        "baseline_clean_error and the baseline", [base_clean] + [base for _, _, base in rows]
    )
    out = {}
    for name, err, base in rows:
        gap = base - base_clean
        if gap == 0:
            raise ValueError(f"baseline[{name!r}] equals baseline_clean_error: rCE is undefined")
        out[name] = (err - clean) / gap
    return out


def relative_corruption_errors(
    errors: Mapping[str, float],
    clean_error: float,
    baseline: Mapping[str, float] | None = None,
    baseline_clean_error: float | None = None,
) -> dict[str, float]:
    """Per-corruption ``rCE_c = (E_c - E_clean) / (E_c(baseline) - E_clean(baseline))`` (ratios).

    Errors in %; baseline and ``baseline_clean_error``: AlexNet's unless both are given. Corruptions
    without a baseline are left out as in :func:`normalized_corruption_errors`.
    """
    return _rces(errors, clean_error, baseline, baseline_clean_error, "relative_corruption_errors")


def rce(
    errors: Mapping[str, float],
    clean_error: float,
    baseline: Mapping[str, float] | None = None,
    baseline_clean_error: float | None = None,
) -> float:
    """Relative mCE, ``100 * mean_c (E_c - E_clean) / (E_c(base) - E_clean(base))``: how much a model's
    error grows under corruption compared with the baseline's growth. Errors in %; baseline: AlexNet.
    Corruptions without a baseline are left out with a :class:`MissingBaselineWarning`."""
    rces = _rces(errors, clean_error, baseline, baseline_clean_error, "rce")
    return 100.0 * sum(rces.values()) / len(rces)


def average_over_severities(
    errors_by_severity: Mapping[str, Sequence[float] | Mapping[int, float]],
) -> dict[str, float]:
    """{corruption: 5 errors (a sequence for severities 1..5, or a {severity: error} mapping)} ->
    {corruption: mean error}. All 5 severities are required: a partial mean is not the benchmark's."""
    if not isinstance(errors_by_severity, Mapping):
        raise TypeError(
            "errors_by_severity must map corruption -> errors per severity, "
            f"got {type(errors_by_severity).__name__}"
        )
    out = {}
    every: list[float] = []
    for name, per in errors_by_severity.items():
        if isinstance(per, Mapping):
            if sorted(per) != list(SEVERITIES):
                raise ValueError(f"errors_by_severity[{name!r}] must have severities 1..5, got {sorted(per)}")
            values = [per[s] for s in SEVERITIES]
        else:
            values = list(per)
            if len(values) != len(SEVERITIES):
                raise ValueError(
                    f"errors_by_severity[{name!r}] must hold 5 errors (severities 1..5), got {len(values)}"
                )
        checked = [_check_percent(f"errors_by_severity[{name!r}]", v) for v in values]
        every += checked
        out[name] = sum(checked) / len(checked)
    _check_not_fractions("the errors in errors_by_severity", every)
    return out
