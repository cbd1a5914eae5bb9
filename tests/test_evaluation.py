"""Sanity checks (Carlini et al. 2019), adaptive attacks (Athalye et al. 2018), the torchattacks cross-check
and PGD adversarial training.

The bar: the checks flag deliberately gradient-masked toy models (input rounding with a zero gradient,
a saturated softmax) and pass a plainly trained small CNN. The CNNs train in seconds on the colour-coded
look-alike images of ``conftest.make_images``, where the class is readable from a colour channel's
brightness, so an attack must shift whole channels by about 25/255 to change it: eps 24/255 leaves a
plain model partly right, and everything below is measured at that budget.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_images
from pushpull_lite import advtrain, attacks, autoattack, evaluation, models, train
from pushpull_lite.defenses import Defended, quantize
from pushpull_lite.evaluation import (
    Check,
    SanityReport,
    check_clean_matches,
    check_non_increasing,
    check_not_above,
    check_unbounded,
    sanity_checks,
    worst_case,
)
from pushpull_lite.stats import binomial_se

EPS = 24 / 255
RECIPE = train.Recipe(
    "test-adam",
    epochs=6,
    batch_size=50,
    optimizer="adam",
    lr=1e-2,
    weight_decay=0.0,
    schedule="constant",
    augment=False,
    channels_last=False,
)


@pytest.fixture(autouse=True)
def one_thread():
    # Several workers share two cores: more threads only add contention here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_images(n, seed)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        models.Normalize(),
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def trained():
    """Two tiny CNNs trained on the same 600 look-alike images (seeds 0 and 1), and 200 test images."""
    torch.set_num_threads(1)
    xtr, ytr = _data(600, seed=1)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = tiny_cnn()
        train.fit(net, xtr, ytr, RECIPE, seed=seed, device="cpu", progress=False)
        nets.append(net.eval())
    xte, yte = _data(200, seed=2)
    return nets[0], nets[1], xte, yte


class Saturated(nn.Module):
    """Logits times 10^4: the softmax saturates, cross-entropy's gradient underflows to exactly 0."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return 1e4 * self.net(x)


# --------------------------------------------------------------------------------------------------
# The checks' logic on hand-built numbers


def _right(n: int, *indices: range) -> np.ndarray:
    """bool (n,): right on the images in ``indices``."""
    out = np.zeros(n, dtype=bool)
    for r in indices:
        out[r] = True
    return out


def test_check_not_above_uses_the_exact_mcnemar_test_on_the_same_images():
    from scipy.stats import binomtest

    both = range(30)  # right under both attacks: they say nothing about the difference
    b = _right(100, both)
    assert check_not_above(b, b) and check_not_above(_right(100), _right(100))
    # A right on 5 more images, B on none: exact p = 2 / 2**5 = 0.0625, noise; on 6: p = 0.031, a violation
    assert binomtest(5, 5).pvalue == pytest.approx(0.0625)
    assert check_not_above(_right(100, both, range(30, 35)), b)
    assert not check_not_above(_right(100, both, range(30, 36)), b)
    # 4 against 0: the Wald interval of stats.mcnemar excludes 0 there, the exact test (p = 0.125) does not
    assert check_not_above(_right(100, both, range(30, 34)), b)
    # discordant both ways: 10 against 4 (p = 0.18) is noise, 20 against 5 (p = 0.004) is not
    assert check_not_above(_right(100, both, range(30, 40)), _right(100, both, range(40, 44)))
    assert not check_not_above(_right(100, both, range(30, 50)), _right(100, both, range(50, 55)))
    assert check_not_above(b, _right(100, both, range(30, 60)))  # below is always fine
    # the level: 5 against 0 (p = 0.0625) is a violation at 90 %
    assert not check_not_above(_right(100, both, range(30, 35)), b, confidence=0.9)
    # torch tensors too, and a 10-point gap on 10,000 images is far beyond noise
    assert not check_not_above(
        torch.from_numpy(_right(10_000, range(6_000))), torch.from_numpy(_right(10_000, range(5_000)))
    )


def test_check_non_increasing():
    n = 100
    steps = [_right(n, range(100)), _right(n, range(80)), _right(n, range(50)), _right(n)]
    assert check_non_increasing(steps) == (True, pytest.approx(-0.2))
    # a 5-image bump (5 against 0, p = 0.0625) on 100 images is noise
    passed, rise = check_non_increasing([_right(n, range(50)), _right(n, range(55)), _right(n, range(30))])
    assert passed and rise == pytest.approx(0.05)
    passed, rise = check_non_increasing([_right(n, range(20)), _right(n, range(60))])
    assert not passed and rise == pytest.approx(0.4)
    with pytest.raises(ValueError, match="at least two"):
        check_non_increasing([_right(n, range(50))])


def test_check_clean_matches_exactly_unless_random():
    n = 100
    assert check_clean_matches(_right(n, range(50)), _right(n, range(50)), randomized=False)
    assert not check_clean_matches(_right(n, range(50)), _right(n, range(51)), randomized=False)
    # a random model: two draws on the same images; 5 images flip one way (p = 0.0625): within noise
    assert check_clean_matches(_right(n, range(50)), _right(n, range(55)), randomized=True)
    # 20 images flip each way: the same accuracy, within noise
    assert check_clean_matches(_right(n, range(50)), _right(n, range(20, 70)), randomized=True)
    # 30 images gained (or lost): beyond noise, in either direction
    assert not check_clean_matches(_right(n, range(50)), _right(n, range(80)), randomized=True)
    assert not check_clean_matches(_right(n, range(80)), _right(n, range(50)), randomized=True)


def test_check_unbounded():
    assert check_unbounded(0.0) and check_unbounded(0.02)
    assert not check_unbounded(0.1)
    assert not check_unbounded(0.05, limit=0.01)


def test_worst_case_is_per_image_and():
    correct = {"a": np.array([1, 1, 0, 1], bool), "b": torch.tensor([True, False, True, True])}
    assert worst_case(correct).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="one length"):
        worst_case({"a": np.ones(3, bool), "b": np.ones(4, bool)})
    with pytest.raises(ValueError, match="at least one"):
        worst_case({})


def test_report_from_hand_built_results():
    correct = {
        "clean": np.array([1, 1, 1, 1, 0], bool),
        "PGD": np.array([1, 1, 0, 1, 0], bool),
        "FGSM": np.array([1, 0, 1, 1, 0], bool),
    }
    checks = [Check("a", "1", "1", True), Check("b", "2", "1", False)]
    report = SanityReport("toy", 8 / 255, 5, checks, correct, {})
    assert not report.passed and report.failures == ["b"]
    assert report.accuracy("PGD") == pytest.approx(0.6)
    assert report.robust_accuracy == pytest.approx(0.4)  # images 0 and 3 survive both attacks
    assert report.strongest_attack in ("PGD", "FGSM")
    text = report.to_markdown()
    assert "| b | 2 | 1 | FAIL |" in text and "robust accuracy 40.0 %" in text
    assert "<table>" in report._repr_html_()
    with pytest.raises(KeyError, match="not run"):
        report.accuracy("CW")


def test_quantize_rounds_and_has_no_gradient():
    x = torch.tensor([0.0, 0.07, 0.08, 0.5, 0.93, 1.0]).view(1, 1, 2, 3).requires_grad_(True)
    q = quantize(x, levels=8)  # grid k / 7: 0.0714 is the first step, 0.5 rounds to 4 / 7 (half to even: 3.5)
    assert q.flatten().tolist() == pytest.approx([0, 0, 1 / 7, 4 / 7, 1, 1])
    (grad,) = torch.autograd.grad(q.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))
    with pytest.raises(ValueError, match="levels"):
        quantize(x, levels=1)
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_defended_gives_a_zero_gradient_through_a_detached_stage():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    defended = Defended(net, lambda x: x.detach().clamp(0.2, 0.8))
    x = torch.rand(2, 3, 2, 2, requires_grad=True)
    out = defended(x)
    assert torch.allclose(out, net(x.detach().clamp(0.2, 0.8)))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))
    assert "preprocess=quantize" in repr(Defended(net, quantize))
    with pytest.raises(TypeError, match="classifier"):
        Defended(lambda x: x, quantize)


# --------------------------------------------------------------------------------------------------
# The checks on trained models: pass a plain CNN, flag masked ones


def test_plain_cnn_passes_every_check(trained):
    net, surrogate, x, y = trained
    rng_before = torch.random.get_rng_state()
    report = sanity_checks(net, x, y, eps=EPS, steps=5, surrogate=surrogate, name="tiny CNN")
    assert torch.equal(torch.random.get_rng_state(), rng_before), "the caller's RNG must be left alone"
    assert report.passed, report.to_markdown()
    clean = report.accuracy("clean")
    assert clean >= 0.9
    # not vacuous: the attacks bite at this eps, and the worst case is below every single attack
    assert report.accuracy("PGD-5") < clean - 0.3
    assert report.robust_accuracy <= min(report.attacks.values())
    names = [c.name for c in report.checks]
    assert names[:4] == [
        "clean = PGD at eps 0",
        "accuracy falls with eps",
        "accuracy falls with steps",
        "unbounded eps (= 1) reaches ~0 %",
    ]
    assert "white-box beats transfer" in names and "FGSM does not beat PGD" in names
    assert report.settings["step_counts"] == [1, 5, 15]


def test_rounding_defense_is_flagged_and_bpda_breaks_it(trained):
    net, surrogate, x, y = trained
    masked = Defended(net, quantize)
    naive = sanity_checks(masked, x, y, eps=EPS, steps=5, surrogate=surrogate, name="rounding")
    assert not naive.passed
    assert "unbounded eps (= 1) reaches ~0 %" in naive.failures
    assert "white-box beats transfer" in naive.failures
    # plain PGD sees a zero gradient: it "finds" the defense robust
    assert naive.accuracy("PGD-5") >= naive.accuracy("clean") - 0.05
    adaptive = sanity_checks(net, x, y, eps=EPS, steps=5, preprocess=quantize, name="rounding + BPDA")
    assert "BPDA not stronger than plain PGD" in adaptive.failures
    assert adaptive.accuracy("PGD-5 + BPDA") < adaptive.accuracy("PGD-5") - 0.3
    assert adaptive.robust_accuracy < naive.accuracy("PGD-5") - 0.5


def test_adaptive_view_is_scored_on_the_defense(trained):
    net, _, x, y = trained
    defense = Defended(net, quantize)
    view = nn.Sequential(attacks.BPDA(quantize), net)  # the same outputs, identity gradient through rounding
    report = sanity_checks(defense, x[:50], y[:50], eps=EPS, steps=3, adaptive=view, eps_factors=(1.0,))
    assert "adaptive view not stronger than plain PGD" in report.failures
    assert report.accuracy("PGD-3 + adaptive view") < report.accuracy("PGD-3") - 0.3
    with pytest.raises(ValueError, match="not both"):
        sanity_checks(net, x, y, preprocess=quantize, adaptive=view)


def test_saturated_softmax_is_flagged(trained):
    net, surrogate, x, y = trained
    report = sanity_checks(Saturated(net), x, y, eps=EPS, steps=5, surrogate=surrogate)
    assert not report.passed
    assert "unbounded eps (= 1) reaches ~0 %" in report.failures


def test_randomised_defense_gets_eot(trained):
    net, _, x, y = trained
    noisy = Defended(net, lambda z: (z + 0.05 * torch.randn_like(z)).clamp(0, 1))
    report = sanity_checks(noisy, x[:60], y[:60], eps=EPS, steps=3, randomized=True, eot_samples=3)
    names = [c.name for c in report.checks]
    assert "EOT-3 not stronger than plain PGD" in names
    assert "PGD-3 + EOT-3" in report.correct
    first = report.checks[0]
    assert first.name == "clean = PGD at eps 0" and first.expected.startswith("equal within noise")


def test_sanity_checks_reject_bad_arguments(trained):
    net, _, x, y = trained
    with pytest.raises(ValueError, match="eps"):
        sanity_checks(net, x, y, eps=0)
    with pytest.raises(ValueError, match="labels"):
        sanity_checks(net, x, y[:-1])
    with pytest.raises(ValueError, match="restarts"):
        sanity_checks(net, x, y, restarts=1)
    with pytest.raises(ValueError, match="step_counts"):
        sanity_checks(net, x, y, step_counts=[5])
    with pytest.raises(TypeError, match="surrogate"):
        sanity_checks(net, x, y, surrogate="resnet")
    with pytest.raises(TypeError, match="model"):
        sanity_checks(lambda t: t, x, y)


# --------------------------------------------------------------------------------------------------
# Adversarial training and the cross-check against torchattacks


@pytest.fixture(scope="module")
def adv_trained():
    torch.set_num_threads(1)
    xtr, ytr = _data(600, seed=1)
    torch.manual_seed(0)
    net = tiny_cnn()
    attack = advtrain.TrainingAttack(eps=EPS, steps=2)
    history = advtrain.adversarial_fit(net, xtr, ytr, RECIPE, attack, seed=0, device="cpu", progress=False)
    return net, history


def test_adversarial_fit_learns_on_adversarial_batches(adv_trained):
    net, history = adv_trained
    assert [h["epoch"] for h in history] == list(range(1, RECIPE.epochs + 1))
    assert not net.training
    # accuracy on the PGD batches themselves rises well above chance (10 %)
    assert history[-1]["train_acc"] > max(0.3, history[0]["train_acc"])


def test_training_attack_settings():
    assert advtrain.TrainingAttack(eps=8 / 255, steps=4).step == pytest.approx(2.5 * 8 / 255 / 4)
    assert advtrain.TrainingAttack(steps=1, step_size=0.01).step == 0.01
    with pytest.raises(ValueError, match="eps"):
        advtrain.TrainingAttack(eps=0)
    with pytest.raises(ValueError, match="steps"):
        advtrain.TrainingAttack(steps=0)


def test_train_adversarial_model_caches_apart_from_clean_training(tree_root):
    recipe = train.with_epochs(train.Recipe("test-sgd", epochs=1, batch_size=40, channels_last=False), 1)
    attack = advtrain.TrainingAttack(eps=4 / 255, steps=1)
    first = advtrain.train_adversarial_model("resnet20", None, recipe, None, 0, attack, progress=False)
    again = advtrain.train_adversarial_model("resnet20", None, recipe, None, 0, attack, progress=False)
    assert not first.from_cache and again.from_cache and again.path == first.path
    assert "pgdtrained" in first.path.name
    assert first.config["adversarial_training"]["eps"] == pytest.approx(4 / 255)
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    other = advtrain.train_adversarial_model(
        "resnet20", None, recipe, None, 0, advtrain.TrainingAttack(eps=2 / 255, steps=1), progress=False
    )
    assert not other.from_cache and other.path != first.path


def test_crosscheck_against_torchattacks(adv_trained, trained):
    if autoattack.torchattacks_version() is None:
        pytest.skip("torchattacks is not installed: pip install --no-deps torchattacks==3.5.1")
    net, _ = adv_trained
    _, _, x, y = trained
    result = evaluation.crosscheck(net, x, y, EPS, steps=10, restarts=1)
    assert result.library.startswith("torchattacks 3.5")
    acc = result.attacks
    book, theirs = acc["PGD-10 (book)"], acc["PGD-10 (torchattacks)"]
    assert 0.2 <= book <= 0.8, f"eps {EPS * 255:.0f}/255 should leave 20-80 % accuracy, got {book:.1%}"
    # same algorithm, same budget, different random starts: equal within two standard errors of a difference
    assert abs(book - theirs) <= 2 * math.hypot(binomial_se(book, result.n), binomial_se(theirs, result.n))
    assert acc["APGD-CE (torchattacks)"] <= book + 0.1
    assert result.robust_accuracy <= min(v for k, v in acc.items() if k != "clean")
    assert "worst case" in result.to_markdown()


def test_crosscheck_without_torchattacks_says_so(adv_trained, trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import fails
    net, _ = adv_trained
    _, _, x, y = trained
    result = evaluation.crosscheck(net, x[:40], y[:40], EPS, steps=2)
    assert result.library is None and "not installed" in result.note
    assert set(result.correct) == {"clean", "FGSM (book)", "PGD-2 (book)"}
