"""Tests for pushpull_lite.adversarial on small linear models, against hand computations.

- the seed's units: 0.03 on its [-1, 1] scale is 0.015 in pixels; its clamp and FGSM replayed in pixel
  units equal the same steps done on the [-1, 1] scale;
- per-image results agree with ``measure.accuracy`` and skip the images left out;
- a nested FGSM sweep is the running worst case of the unnested one; eps = 0 is clean accuracy;
- binomial standard errors and the comparison of two models, computed by hand.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pushpull_lite import adversarial as adv
from pushpull_lite import measure, stats
from pushpull_lite.attacks import fgsm


def linear_model(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, classes))
    return model.eval()


def batch(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


class CountingModel(nn.Module):
    """Counts the images it sees, to check which images were attacked."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.inner(x)


def test_seed_units_are_half_of_the_symmetric_scale():
    assert adv.from_symmetric_scale(0.03) == pytest.approx(0.015)
    assert adv.SEED_EPS * 255 == pytest.approx(3.825)
    assert adv.SEED_STEP == pytest.approx(0.005)
    assert adv.STANDARD_EPS == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="value"):
        adv.from_symmetric_scale(-0.1)


def test_seed_clamp_is_the_seeds_clamp_on_the_symmetric_scale():
    x = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0]).view(1, 1, 1, 5)
    torch.testing.assert_close(adv.seed_clamp(x), torch.tensor([0.5, 0.5, 0.5, 0.7, 1.0]).view(1, 1, 1, 5))
    z = 2 * x - 1
    torch.testing.assert_close(adv.seed_clamp(x), (z.clamp(0, 1) + 1) / 2)
    with pytest.raises(TypeError, match="x must"):
        adv.seed_clamp(torch.zeros(2, dtype=torch.long))


def test_seed_fgsm_equals_the_seeds_fgsm_done_on_the_symmetric_scale():
    model = linear_model()
    x, y = batch()
    # the seed's way: a model on z = 2x - 1, a step of 0.03 * sign(grad_z), clamp(z, 0, 1)
    z = (2 * x - 1).requires_grad_(True)
    loss = F.cross_entropy(model((z + 1) / 2), y)
    (grad,) = torch.autograd.grad(loss, z)
    z_adv = (z.detach() + 0.03 * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(adv.seed_fgsm(model, x, y), (z_adv + 1) / 2)


def test_measure_correct_matches_robust_accuracy_and_argmax():
    model = linear_model()
    x, y = batch()
    clean = measure.correct(model, x, y)
    assert clean.dtype == torch.bool and clean.shape == (40,)
    torch.testing.assert_close(clean, model(x).argmax(1) == y)
    attack = functools.partial(fgsm, eps=0.1)
    hit = measure.correct(model, x, y, attack, batch_size=7)
    assert hit.float().mean().item() == pytest.approx(measure.accuracy(model, x, y, attack))
    # uint8 images are divided by 255
    x8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(measure.correct(model, x8, y), model(x8.float() / 255).argmax(1) == y)


def test_measure_correct_only_touches_the_chosen_images():
    model = CountingModel(linear_model())
    x, y = batch()
    only = torch.zeros(40, dtype=torch.bool)
    only[[3, 7, 21]] = True
    out = measure.correct(model, x, y, functools.partial(fgsm, eps=0.05), only=only)
    assert not out[~only].any()
    # fgsm: one forward + backward per image, then one forward to classify
    assert model.seen == 2 * 3
    with pytest.raises(ValueError, match="only"):
        measure.correct(model, x, y, only=torch.ones(39, dtype=torch.bool))
    with pytest.raises(ValueError, match="labels"):
        measure.correct(model, x, y[:5])
    with pytest.raises(TypeError, match="attack"):
        measure.correct(model, x, y, attack="fgsm")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        measure.correct(model, 2 * x - 1, y)  # normalised outside the model, like the seed


def test_nested_fgsm_sweep_is_the_running_worst_case_of_the_plain_one():
    model = linear_model(classes=2)
    x, y = batch(60)
    y = y % 2
    eps = [0.0, 0.02, 0.05, 0.1, 0.3]
    plain = adv.sweep(model, x, y, eps, "fgsm", nested=False)
    nested = adv.sweep(model, x, y, eps, "fgsm")
    clean = measure.correct(model, x, y).numpy()
    np.testing.assert_array_equal(plain.correct[0], clean)
    np.testing.assert_array_equal(nested.correct, np.logical_and.accumulate(plain.correct, axis=0))
    assert (plain.correct <= clean).all()  # images wrong at eps = 0 are never counted as right
    assert (np.diff(nested.accuracy) <= 0).all()
    assert nested.at(0.0) == pytest.approx(clean.mean())
    with pytest.raises(ValueError, match="not swept"):
        nested.at(0.07)
    given = adv.sweep(model, x, y, eps, "fgsm", clean=torch.from_numpy(clean))
    np.testing.assert_array_equal(given.correct, nested.correct)
    with pytest.raises(ValueError, match="clean"):
        adv.sweep(model, x, y, eps, "fgsm", clean=torch.ones(59, dtype=torch.bool))


def test_pgd_sweep_is_repeatable_and_leaves_the_global_rng_alone():
    model = linear_model()
    x, y = batch()
    state = torch.random.get_rng_state()
    first = adv.sweep(model, x, y, [0.02, 0.05], "pgd", steps=3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = adv.sweep(model, x, y, [0.02, 0.05], "pgd", steps=3, seed=5)
    np.testing.assert_array_equal(first.correct, second.correct)
    assert first.nested and first.correct.shape == (2, 40)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps_values": [0.1, 0.05]}, "increasing"),
        ({"eps_values": [-0.1]}, "eps_values"),
        ({"eps_values": [0.1], "attack": "cw"}, "attack"),
        ({"eps_values": [0.1], "step_ratio": 0.0}, "step_ratio"),
    ],
)
def test_sweep_rejects_bad_arguments(kwargs, match):
    x, y = batch(4)
    with pytest.raises(ValueError, match=match):
        adv.sweep(linear_model(), x, y, **kwargs)


def test_binomial_se_by_hand():
    assert stats.binomial_se(0.25, 64) == pytest.approx(math.sqrt(0.25 * 0.75 / 64))
    assert stats.binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="accuracy"):
        stats.binomial_se(1.5, 10)
    with pytest.raises(ValueError, match="n must"):
        stats.binomial_se(0.5, 0)


def test_compare_one_seed_by_hand():
    a = np.arange(100) < 60  # 60 % right
    b = np.arange(100) < 50  # 50 % right
    c = stats.compare(a, b)
    assert c.difference == pytest.approx(0.10)
    # Agresti-Caffo: (61/102, 51/102) on 102 "images"
    pa, pb = 61 / 102, 51 / 102
    assert c.sampling_se == pytest.approx(math.sqrt(pa * (1 - pa) / 102 + pb * (1 - pb) / 102))
    assert math.isnan(c.seed_sd) and c.se == pytest.approx(c.sampling_se)
    assert c.outcome() == "within noise"  # one seed: 0.10 < 1.96 * 0.070
    big = stats.compare(np.tile(a, 10), np.tile(b, 10))  # same rates on 1,000 images
    assert (
        big.outcome() == "A higher" and stats.compare(np.tile(b, 10), np.tile(a, 10)).outcome() == "B higher"
    )


def test_compare_several_seeds_by_hand():
    n = 400
    a = np.stack([np.arange(n) < k for k in (200, 220, 240)])  # 50, 55, 60 %
    b = np.stack([np.arange(n) < 200] * 3)  # 50 %
    c = stats.compare(a, b)
    np.testing.assert_allclose(c.per_seed, [0.0, 0.05, 0.10])
    assert c.difference == pytest.approx(0.05) and c.seed_sd == pytest.approx(0.05)
    pa, pb = (0.55 * n + 1) / (n + 2), (0.5 * n + 1) / (n + 2)  # Agresti-Caffo adjusted
    sampling = math.sqrt(pa * (1 - pa) / (n + 2) + pb * (1 - pb) / (n + 2))
    assert c.se == pytest.approx(math.sqrt(sampling**2 + 0.05**2 / 3))
    with pytest.raises(ValueError, match="same shape"):
        stats.compare(a, b[:2])


def test_accuracy_curve_plot_draws_the_seed_mean_in_per_cent():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pushpull_lite import plotting

    eps = np.array([0.0, 4 / 255, 8 / 255])
    fig = plotting.show_accuracy_curves(eps, {"a": np.array([[0.5, 0.2, 0.0], [0.7, 0.4, 0.2]]), "b": eps})
    line_a, line_b = fig.axes[0].get_lines()
    np.testing.assert_allclose(line_a.get_xdata(), [0, 4, 8])
    np.testing.assert_allclose(line_a.get_ydata(), [60, 30, 10])
    np.testing.assert_allclose(line_b.get_ydata(), eps * 100)
    assert len(fig.axes[0].collections) == 1  # a min-max band only for the curve with two seeds
    plt.close(fig)
    with pytest.raises(ValueError, match="values per row"):
        plotting.show_accuracy_curves(eps, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="curves"):
        plotting.show_accuracy_curves(eps, {})


def test_compare_accuracies_by_hand():
    # diffs 0.1, 0.2, 0.3 (sd 0.1); sampling with Agresti-Caffo's adjustment: (71/102, 51/102) on 102
    c = stats.compare_accuracies([0.6, 0.7, 0.8], [0.5, 0.5, 0.5], 100)
    assert c.difference == pytest.approx(0.2)
    assert c.seed_sd == pytest.approx(0.1)
    var = (71 / 102) * (31 / 102) / 102 + (51 / 102) * (51 / 102) / 102
    assert c.sampling_se == pytest.approx(math.sqrt(var))
    assert c.se == pytest.approx(math.sqrt(var + 0.01 / 3))
    # three seeds: the interval uses t with 2 degrees of freedom (4.303), so +0.20 +- 0.38 covers 0;
    # the old rule (2 standard errors, +0.20 > 0.18) called it "A higher"
    assert c.quantile == pytest.approx(4.303, abs=1e-3)
    assert c.ci == pytest.approx((0.2 - 4.3027 * c.se, 0.2 + 4.3027 * c.se), rel=1e-4)
    assert c.outcome() == "within noise"
    tight = stats.compare_accuracies([0.70, 0.71, 0.72], [0.50, 0.50, 0.51], 10_000)
    assert tight.outcome() == "A higher"
    assert stats.compare_accuracies([0.50, 0.50, 0.51], [0.70, 0.71, 0.72], 10_000).outcome() == "B higher"
    assert stats.compare_accuracies([0.52], [0.5], 100).outcome() == "within noise"


def test_a_comparison_at_0_percent_stays_honest():
    # 4 of 200 images against 0 of 200: the plain binomial SE of 0 % is 0, and 2.0 +- 1.9 points would
    # call it a win; the exact McNemar p on the same images is 0.125. Agresti-Caffo keeps it within noise.
    c = stats.compare_accuracies([0.02], [0.0], 200)
    assert c.sampling_se > stats.binomial_se(0.02, 200)
    assert c.outcome() == "within noise" and c.ci[0] < 0 < c.ci[1]
    both_zero = stats.compare(np.zeros(50, bool), np.zeros(50, bool))
    assert both_zero.se > 0 and both_zero.outcome() == "within noise"


def test_compare_accuracies_matches_per_image_compare():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 400)) < 0.6, rng.random((3, 400)) < 0.5
    per_image = stats.compare(a, b)
    from_files = stats.compare_accuracies(a.mean(1), b.mean(1), 400)
    assert from_files.per_seed == pytest.approx(per_image.per_seed)
    assert from_files.se == pytest.approx(per_image.se)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.5, 0.6], [0.5], 10), "one accuracy per seed"),
        (([], [], 10), "one accuracy per seed"),
        (([50.0], [0.5], 10), r"fractions in \[0, 1\]"),
        (([0.5], [0.5], 0), "n_images must be a positive int"),
    ],
)
def test_compare_accuracies_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        stats.compare_accuracies(*args)
