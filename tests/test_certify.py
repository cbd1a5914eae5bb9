"""Tests for pushpull_lite.certify (randomized smoothing, Cohen et al. 2019).

The base classifier thresholds one pixel: class 0 when ``x[0, 0, 0] < t``, else class 1. Under
N(0, sigma^2) noise on an image whose pixel is ``v``, it returns class 0 with probability exactly
``pA = Phi((t - v) / sigma)``, so the radius the smoothed classifier deserves, ``sigma * Phi^-1(pA)``,
is known in closed form (and is tight: moving the pixel by more than ``t - v`` flips the smoothed class).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from pushpull_lite.certify import (
    ABSTAIN,
    GaussianAugment,
    certified_accuracy,
    certify,
    lower_confidence_bound,
    radius_for,
    sample_counts,
    smoothed_predict,
)

SIGMA = 0.25
SHAPE = (3, 4, 4)


class PixelThreshold(nn.Module):
    """Logits (N, 2): class 0 when the top-left red pixel is below ``threshold``, else class 1."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = self.threshold - x[:, 0, 0, 0]
        return torch.stack([gap, -gap], dim=1)


def image(pixel: float) -> torch.Tensor:
    x = torch.full(SHAPE, 0.5)
    x[0, 0, 0] = pixel
    return x


def model_with_pa(p_a: float, pixel: float = 0.5) -> PixelThreshold:
    """A base model that returns class 0 on ``image(pixel)`` with probability ``p_a`` under the noise."""
    return PixelThreshold(pixel + SIGMA * float(norm.ppf(p_a)))


# --------------------------------------------------------------------------------------------------
# The confidence bound


def test_lower_confidence_bound_matches_hand_values():
    # All successes: Beta(n, 1) has CDF p^n, so the alpha quantile is alpha^(1/n).
    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-9)
    assert lower_confidence_bound(0, 100, 0.001) == 0.0
    # The textbook exact 95 % interval for 5 of 10 is (0.1871, 0.8129); its lower end is alpha = 0.025.
    assert lower_confidence_bound(5, 10, 0.025) == pytest.approx(0.187086, abs=1e-6)


@pytest.mark.parametrize(
    "args, error",
    [((11, 10, 0.01), ValueError), ((-1, 10, 0.01), ValueError), ((5, 10, 1.0), ValueError)],
)
def test_lower_confidence_bound_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        lower_confidence_bound(*args)


def test_radius_for_known_probabilities():
    assert radius_for(0.5, SIGMA) == 0.0
    assert radius_for(0.3, SIGMA) == 0.0
    assert radius_for(norm.cdf(2.0), 0.5) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Sampling, PREDICT, CERTIFY


def test_sample_counts_sum_to_n_and_follow_pa():
    counts = sample_counts(model_with_pa(0.8), image(0.5), SIGMA, 10_001, 3000, generator=None)
    assert counts.dtype == np.int64 and counts.shape == (2,)
    assert counts.sum() == 10_001
    # Binomial(10001, 0.8): standard error 0.004, so 0.02 is five of them.
    assert counts[0] / counts.sum() == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("seed", range(5))
def test_certify_and_predict_abstain_on_a_coin_flip(seed):
    # The threshold sits on the pixel itself: pA = 0.5 exactly, nothing can be certified.
    model = PixelThreshold(0.5)
    assert certify(model, image(0.5), SIGMA, 100, 2000, 0.001, 1000, seed=seed) == (ABSTAIN, 0.0)
    assert smoothed_predict(model, image(0.5), SIGMA, 2000, 0.001, 1000, seed=seed) == ABSTAIN


@pytest.mark.parametrize("p_a", [0.75, 0.9, 0.99])
def test_certify_radius_matches_sigma_phi_inverse_pa(p_a):
    model = model_with_pa(p_a)
    n, alpha = 20_000, 0.001
    cls, radius = certify(model, image(0.5), SIGMA, 100, n, alpha, 5000, seed=1)
    assert cls == 0
    exact = SIGMA * norm.ppf(p_a)
    # Sound: not above the true radius (fails with probability <= alpha) ...
    assert radius <= exact
    # ... and tight: pA_lower is within a few standard errors of pA (3.09 of them for alpha = 0.001).
    se = math.sqrt(p_a * (1 - p_a) / n)
    assert radius >= SIGMA * norm.ppf(p_a - 5 * se)


def test_certify_radius_is_sigma_phi_inverse_of_the_lower_bound_of_its_own_counts():
    model = model_with_pa(0.9)
    n0, n, alpha = 50, 3000, 0.01
    cls, radius = certify(model, image(0.5), SIGMA, n0, n, alpha, 1000, seed=7)
    # Replay the same noise: the n0 selection draws come first, then the n estimation draws.
    gen = torch.Generator().manual_seed(7)
    sample_counts(model, image(0.5), SIGMA, n0, 1000, generator=gen)
    count_a = int(sample_counts(model, image(0.5), SIGMA, n, 1000, generator=gen)[0])
    assert cls == 0
    assert radius == pytest.approx(SIGMA * norm.ppf(lower_confidence_bound(count_a, n, alpha)), rel=1e-12)


def test_predict_returns_the_majority_class_when_it_is_clear():
    assert smoothed_predict(model_with_pa(0.7), image(0.5), SIGMA, 2000, 0.001, 1000, seed=0) == 0
    assert smoothed_predict(model_with_pa(0.2), image(0.5), SIGMA, 2000, 0.001, 1000, seed=0) == 1


def test_certificate_holds_inside_and_fails_beyond_the_true_radius():
    p_a = 0.95
    model = model_with_pa(p_a)
    cls, radius = certify(model, image(0.5), SIGMA, 100, 20_000, 0.001, 5000, seed=2)
    exact = SIGMA * norm.ppf(p_a)
    # Move the pixel towards the threshold: inside the certified ball the smoothed class must not change ...
    inside = smoothed_predict(model, image(0.5 + 0.9 * radius), SIGMA, 20_000, 0.001, 5000, seed=3)
    assert inside == cls
    # ... and just beyond the exact radius it does (the bound of the paper is tight for this model).
    beyond = smoothed_predict(model, image(0.5 + exact + 0.05), SIGMA, 20_000, 0.001, 5000, seed=3)
    assert beyond == 1


def test_certify_is_reproducible_with_a_seed():
    model = model_with_pa(0.8)
    first = certify(model, image(0.5), SIGMA, 50, 1000, 0.001, 300, seed=11)
    assert certify(model, image(0.5), SIGMA, 50, 1000, 0.001, 300, seed=11) == first


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"alpha": 1.0}, ValueError, "alpha"),
        ({"alpha": 0}, ValueError, "alpha"),
        ({"sigma": 0}, ValueError, "sigma"),
        ({"n": 0}, ValueError, "n must"),
        ({"n0": 2.5}, TypeError, "n0"),
        ({"x": torch.zeros(1, *SHAPE)}, ValueError, "one image"),
        ({"x": torch.full(SHAPE, 2.0)}, ValueError, r"\[0, 1\]"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "not both"),
    ],
)
def test_certify_rejects_bad_arguments(kwargs, error, match):
    args = {"model": PixelThreshold(0.5), "x": image(0.5), "sigma": SIGMA, "n0": 10, "n": 100}
    args.update({"alpha": 0.01, "batch_size": 50})
    args.update(kwargs)
    with pytest.raises(error, match=match):
        certify(**args)


# --------------------------------------------------------------------------------------------------
# Certified accuracy and the training-time noise


def test_certified_accuracy_tabulates_correct_and_certified_per_radius():
    model = PixelThreshold(0.5 + SIGMA * float(norm.ppf(0.9)))
    # Pixels giving class 0 with pA = 0.9, a coin flip (abstains), and class 1 with pA = Phi(0.72) = 0.76.
    images = torch.stack([image(0.5), image(model.threshold), image(1.0)])
    labels = torch.tensor([0, 0, 0])
    result = certified_accuracy(
        model, images, labels, SIGMA, n0=100, n=5000, alpha=0.001, batch_size=5000, radii=(0.0, 0.25, 0.5)
    )
    assert result["predictions"].tolist() == [0, ABSTAIN, 1]
    assert result["correct"].tolist() == [True, False, False]
    radius = float(result["certified_radii"][0])
    assert 0.25 < radius < SIGMA * norm.ppf(0.9)
    # Only the first image counts, and only at radii up to its own.
    assert result["accuracy"] == {0.0: pytest.approx(1 / 3), 0.25: pytest.approx(1 / 3), 0.5: 0.0}
    again = certified_accuracy(
        model, images, labels, SIGMA, n0=100, n=5000, alpha=0.001, batch_size=5000, radii=(0.0, 0.25, 0.5)
    )
    assert torch.equal(again["certified_radii"], result["certified_radii"])


def test_certified_accuracy_accepts_uint8_images():
    model = model_with_pa(0.99, pixel=0.0)
    images = torch.zeros(2, *SHAPE, dtype=torch.uint8)
    result = certified_accuracy(model, images, np.array([0, 1]), SIGMA, n0=20, n=500, batch_size=500)
    assert result["predictions"].tolist() == [0, 0]
    assert result["accuracy"][0.0] == 0.5


def test_gaussian_augment_adds_noise_in_training_only():
    layer = GaussianAugment(0.3)
    x = torch.full((64, 3, 8, 8), 0.5)
    torch.manual_seed(0)
    noisy = layer.train()(x)
    # 12,288 draws: the sample standard deviation is within 2 % of 0.3 with overwhelming probability.
    assert float((noisy - x).std()) == pytest.approx(0.3, rel=0.02)
    assert float((noisy - x).mean()) == pytest.approx(0.0, abs=0.01)
    assert layer.eval()(x) is x
    assert repr(layer) == "GaussianAugment(sigma=0.3)"
    with pytest.raises(ValueError, match="sigma"):
        GaussianAugment(-0.1)
