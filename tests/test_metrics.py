"""Tests of pushpull_lite.metrics against the 2020 Push-Pull paper's own numbers and hand-computed cases.

A test that a trained model's corruption error grows with severity belongs with the trained models
(to be written by whoever has one).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from pushpull_lite import corruptions, measure, metrics
from pushpull_lite.corruptions import CORRUPTIONS

# Table 2 of Strisciuglio et al. (2020): CIFAR-10-C errors (%), averaged over severities.
RESNET20 = dict(
    gaussian_noise=57.41, shot_noise=45.75, impulse_noise=41.88, speckle_noise=41.34, defocus_blur=21.43,
    glass_blur=58.82, motion_blur=30.62, zoom_blur=27.54, gaussian_blur=31.32, snow=25.06, frost=31.39,
    fog=16.56, spatter=19.03, brightness=9.73, contrast=29.59, elastic_transform=20.37, pixelate=32.33,
    jpeg_compression=23.81, saturate=11.52,
)  # fmt: skip
RESNET20_PP = dict(
    gaussian_noise=49.90, shot_noise=39.98, impulse_noise=37.20, speckle_noise=37.55, defocus_blur=22.30,
    glass_blur=58.56, motion_blur=29.50, zoom_blur=29.68, gaussian_blur=33.24, snow=25.59, frost=31.29,
    fog=17.58, spatter=17.85, brightness=10.34, contrast=30.50, elastic_transform=20.65, pixelate=32.70,
    jpeg_compression=22.16, saturate=11.70,
)  # fmt: skip


def test_alexnet_baseline_covers_the_19_corruptions():
    assert set(metrics.ALEXNET_ERRORS) == set(CORRUPTIONS)
    assert metrics.ALEXNET_CLEAN_ERROR == 13.87
    # Table 3 prints E_corr = 29.08 for AlexNet: the mean of these errors is 29.089 (truncated there)
    assert abs(sum(metrics.ALEXNET_ERRORS.values()) / 19 - 29.08) < 0.01


def test_table3_resnet20():
    assert round(sum(RESNET20.values()) / 19, 2) == 30.29  # E_corr in Table 3
    assert round(metrics.mce(RESNET20)) == 104
    assert round(metrics.rce(RESNET20, clean_error=7.56)) == 169


def test_table3_resnet20_pp():
    assert round(sum(RESNET20_PP.values()) / 19, 2) == 29.38  # Table 3 prints 29.83: a typo
    assert round(metrics.mce(RESNET20_PP)) == 101
    assert round(metrics.rce(RESNET20_PP, clean_error=8.29)) == 158


def test_baseline_against_itself_is_100():
    assert metrics.mce(metrics.ALEXNET_ERRORS) == pytest.approx(100.0)
    assert metrics.rce(metrics.ALEXNET_ERRORS, metrics.ALEXNET_CLEAN_ERROR) == pytest.approx(100.0)


def test_hand_computed_custom_baseline():
    base = {"a": 20.0, "b": 40.0}
    errors = {"a": 10.0, "b": 60.0}
    # CE = 10/20 = 0.5 and 60/40 = 1.5 -> mean 1.0
    assert metrics.mce(errors, baseline=base) == pytest.approx(100.0)
    assert metrics.normalized_corruption_errors(errors, base) == pytest.approx({"a": 0.5, "b": 1.5})
    # rCE = (10 - 5) / (20 - 10) = 0.5 and (60 - 5) / (40 - 10) = 55/30 -> mean 35/30
    assert metrics.rce(errors, 5.0, baseline=base, baseline_clean_error=10.0) == pytest.approx(100 * 35 / 30)


def test_missing_names_raise():
    partial = dict(RESNET20)
    del partial["saturate"]
    with pytest.raises(ValueError, match="missing from errors: saturate"):
        metrics.mce(partial)
    with pytest.raises(ValueError, match="missing from errors: saturate"):
        metrics.rce(partial, 7.56)
    # a misspelt name: the real one is missing (an error) and the misspelt one is named beside it
    with pytest.raises(ValueError, match="not in the baseline: Gaussian Noise; missing from errors"):
        metrics.mce({"Gaussian Noise": 50.0})
    with pytest.raises(ValueError, match="baseline is empty"):
        metrics.mce({"a": 10.0}, baseline={})


def test_corruptions_without_a_baseline_are_left_out_and_named():
    """A corruption with no AlexNet error (e.g. a newly registered one) is left out of every result and
    named in a MissingBaselineWarning; the numbers over the others are exactly those without it."""
    extra = dict(RESNET20, rain=61.0, gaussian_noize=50.0)
    assert metrics.without_baseline(extra) == ("rain", "gaussian_noize")
    assert metrics.without_baseline(RESNET20) == ()
    assert metrics.without_baseline({"a": 1.0, "rain": 2.0}, baseline={"a": 20.0}) == ("rain",)
    cases = [
        (lambda e: metrics.mce(e), "mce"),
        (lambda e: metrics.rce(e, 7.56), "rce"),
        (lambda e: metrics.normalized_corruption_errors(e), "normalized_corruption_errors"),
        (lambda e: metrics.relative_corruption_errors(e, 7.56), "relative_corruption_errors"),
    ]
    for call, what in cases:
        with pytest.warns(
            metrics.MissingBaselineWarning, match=rf"{what}: 2 .*\(rain, gaussian_noize\).*19"
        ) as rec:
            got = call(extra)
        assert got == call(RESNET20)  # bit-identical to the result without them
        assert rec[0].filename == __file__  # the warning points at the caller's line
    assert round(metrics.mce(RESNET20)) == 104  # and no warning at all without such names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.mce(RESNET20)
        metrics.rce(RESNET20, 7.56)
    # a left-out error is still checked: nonsense is refused, not silently dropped
    with pytest.raises(ValueError, match=r"errors\['rain'\] must be an error in percent"):
        metrics.mce(dict(RESNET20, rain=150.0))


def test_corruption_errors_is_not_a_metrics_name():
    assert not hasattr(metrics, "corruption_errors")  # robustness.corruption_errors is the measurement


def test_severities_defined_once():
    assert metrics.SEVERITIES is corruptions.SEVERITIES
    assert "SEVERITIES" not in metrics.__all__


def test_alexnet_baseline_covers_every_registered_corruption():
    # a registration without a published AlexNet error would be left out of mCE with a warning
    assert metrics.without_baseline(dict.fromkeys(corruptions.REGISTRY, 50.0)) == ()


def test_bad_values_raise():
    for bad in (-1.0, 100.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="percent"):
            metrics.mce(dict(RESNET20, fog=bad))
    with pytest.raises(ValueError, match="percent"):
        metrics.rce(RESNET20, clean_error=0.0756 * 1e4)
    with pytest.raises(TypeError, match="number"):
        metrics.mce(dict(RESNET20, fog="16.56"))
    with pytest.raises(TypeError, match="mapping"):
        metrics.mce(list(RESNET20.values()))


def test_fractions_instead_of_percentages_raise():
    """0.2353 for 23.53 % would give a 100x smaller mCE without a word: every such input is refused."""
    fractions = {name: err / 100 for name, err in RESNET20.items()}
    for call in (
        lambda: metrics.mce(fractions),
        lambda: metrics.normalized_corruption_errors(fractions),
        lambda: metrics.rce(fractions, clean_error=0.0756),
        lambda: metrics.relative_corruption_errors(fractions, 0.0756),
        lambda: metrics.average_over_severities({"fog": [0.1, 0.2, 0.3, 0.4, 0.5]}),
        lambda: metrics.mce({"a": 0.1}, baseline={"a": 20.0}),
        lambda: metrics.mce({"a": 10.0}, baseline={"a": 0.2}),
        lambda: metrics.rce({"a": 0.0}, 0.05, baseline={"a": 20.0}, baseline_clean_error=10.0),
    ):
        with pytest.raises(ValueError, match=r"percentages \(e.g. 23.5 for 23.5 %\), not fractions"):
            call()
    # all zeros is a perfect model, and one error above 1 % makes the set percentages
    assert metrics.mce({"a": 0.0}, baseline={"a": 20.0}) == 0.0
    assert metrics.mce({"a": 0.5, "b": 2.0}, baseline={"a": 20.0, "b": 40.0}) == pytest.approx(100 * 0.0375)
    assert metrics.average_over_severities({"fog": [0, 0, 0, 0, 0]}) == {"fog": 0.0}


def test_rce_baseline_arguments_go_together():
    with pytest.raises(ValueError, match="baseline_clean_error is required"):
        metrics.rce(RESNET20, 7.56, baseline=metrics.ALEXNET_ERRORS)
    with pytest.raises(ValueError, match="without baseline"):
        metrics.rce(RESNET20, 7.56, baseline_clean_error=13.87)
    with pytest.raises(ValueError, match="undefined"):
        metrics.rce({"a": 10.0}, 5.0, baseline={"a": 20.0}, baseline_clean_error=20.0)


def test_average_over_severities():
    got = metrics.average_over_severities(
        {"fog": [10, 20, 30, 40, 50], "snow": {5: 5.0, 1: 1.0, 2: 2, 3: 3, 4: 4}}
    )
    assert got == {"fog": 30.0, "snow": 3.0}
    with pytest.raises(ValueError, match="5 errors"):
        metrics.average_over_severities({"fog": [10, 20, 30, 40]})
    with pytest.raises(ValueError, match="severities 1..5"):
        metrics.average_over_severities({"fog": {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}})
    with pytest.raises(ValueError, match="percent"):
        metrics.average_over_severities({"fog": [10, 20, 30, 40, 150]})


def test_accuracy_from_logits_is_measure_hits():
    # metrics holds error-rate arithmetic only; right/wrong is counted by measure.hits alone
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 2])  # right, right, wrong, wrong
    assert measure.hits(logits, labels).tolist() == [True, True, False, False]
    assert not hasattr(metrics, "accuracy") and not hasattr(metrics, "error_rate")
