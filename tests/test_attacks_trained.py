"""The attack sanity checks of Carlini et al. (2019) on a real trained CIFAR-10 model, not a toy.

The `quick` profile's ResNet-20 from the model cache (5,000 images, 6 epochs: about 55 %, well above
chance; the same model chapter 2 and tests/test_corruption_severity.py use, so it is trained once) and 300
test images. An attack that passes these bars is at least not broken in the obvious ways:

- eps = 0 gives the clean accuracy exactly;
- accuracy does not rise with eps, nor with the number of PGD steps (within a few images: random starts);
- a large eps drives accuracy to about 0 %;
- PGD is at least as strong as FGSM at the same eps.
"""

from __future__ import annotations

import functools

import pytest
import torch

from pushpull_lite import adversarial, config, data, measure, train
from pushpull_lite.attacks import fgsm, pgd
from pushpull_lite.measure import accuracy as robust_accuracy

pytestmark = pytest.mark.slow  # trains a model on CIFAR-10

QUICK = config.PROFILES["quick"]
TEST_IMAGES = 300
#: a few images of slack for the random starts of PGD
TOLERANCE = 3 / TEST_IMAGES


def _data_or_skip() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        return data.load_cifar10("test", limit=TEST_IMAGES)
    except data.DataNotFoundError as exc:
        pytest.skip(f"needs CIFAR-10 (set PUSHPULL_DATA=../shared/data or connect to the internet): {exc}")


@pytest.fixture(scope="module")
def setup():
    images, labels = _data_or_skip()
    trained = train.train_model(
        "resnet20", None, QUICK.resnet_recipe, train_limit=QUICK.train_limit, seed=0, progress=False
    )
    model = trained.model.to(memory_format=torch.channels_last)
    clean = measure.correct(model, images, labels)
    return model, images, labels, clean


@pytest.fixture(scope="module")
def sweeps(setup):
    """PGD-10 (step eps / 4) and FGSM at every eps, each attacking every clean-correct image (not nested)."""
    model, images, labels, _ = setup
    return {
        attack: adversarial.sweep(model, images, labels, EPS, attack, nested=False, seed=0)
        for attack in ("pgd", "fgsm")
    }


EPS = [0, 2 / 255, 4 / 255, 8 / 255]


def pgd_at(eps: float, steps: int = 10) -> functools.partial:
    return functools.partial(pgd, eps=eps, step_size=eps / 4, steps=steps)


def test_the_model_is_well_above_chance(setup):
    *_, clean = setup
    accuracy = clean.double().mean().item()
    assert accuracy >= 0.35, f"the test model reaches only {accuracy:.1%} clean accuracy (chance is 10 %)"


def test_eps_zero_is_clean_accuracy(setup, sweeps):
    model, images, labels, clean = setup
    accuracy = clean.double().mean().item()
    assert robust_accuracy(model, images, labels, None) == accuracy
    assert robust_accuracy(model, images, labels, functools.partial(fgsm, eps=0.0)) == accuracy
    assert robust_accuracy(model, images, labels, pgd_at(0.0)) == accuracy
    assert sweeps["pgd"].at(0) == sweeps["fgsm"].at(0) == accuracy


def test_accuracy_does_not_rise_with_eps_and_a_large_eps_reaches_zero(setup, sweeps):
    model, images, labels, clean = setup
    for attack, result in sweeps.items():
        acc = result.accuracy
        for i in range(1, len(acc)):
            assert acc[i] <= acc[i - 1] + TOLERANCE, (
                f"{attack}: accuracy rose with eps: {acc.round(3).tolist()}"
            )
    acc = sweeps["pgd"].accuracy
    assert acc[-1] < 0.5 * acc[0], f"PGD at 8/255 barely hurts: {acc.round(3).tolist()}"
    torch.manual_seed(0)
    large = measure.correct(model, images, labels, pgd_at(32 / 255), only=clean)
    assert large.float().mean() <= 0.01, f"PGD at 32/255 leaves {large.float().mean():.1%}; expected ~0 %"


def test_accuracy_does_not_rise_with_pgd_steps(setup, sweeps):
    model, images, labels, clean = setup
    eps = 2 / 255
    torch.manual_seed(0)
    acc = [
        measure.correct(model, images, labels, pgd_at(eps, steps), only=clean).float().mean()
        for steps in (1, 3)
    ]
    acc.append(sweeps["pgd"].at(eps))  # 10 steps
    for a, b in zip(acc, acc[1:]):
        assert b <= a + TOLERANCE, f"accuracy rose with PGD steps (1, 3, 10): {acc}"
    assert acc[-1] < acc[0], f"10 PGD steps are no stronger than 1: {acc}"


def test_pgd_is_at_least_as_strong_as_fgsm(sweeps):
    with_pgd, with_fgsm = sweeps["pgd"].accuracy, sweeps["fgsm"].accuracy
    assert (with_pgd <= with_fgsm + TOLERANCE).all(), f"PGD {with_pgd.round(3)} vs FGSM {with_fgsm.round(3)}"
    assert with_pgd[-1] < with_fgsm[-1], "PGD-10 is no stronger than FGSM at 8/255"
