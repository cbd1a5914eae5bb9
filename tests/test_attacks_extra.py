"""Tests for the attacks beyond FGSM/PGD: Carlini-Wagner L2, patch, sparse pixel, and the BPDA/EOT wrappers.

Small hand-built models make the expected answers independent of the code under test: on a linear
classifier the smallest L2 perturbation that changes the decision is known in closed form, a quantiser
has zero gradient almost everywhere, and a model that draws one of four linear heads at random has an
expected prediction we can compute exactly by enumerating the heads.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pushpull_lite.attacks import cw_l2, pgd

CLASSES = 3
SHAPE = (3, 4, 4)
DIM = 3 * 4 * 4


def linear_model(seed: int, scale: float = 0.5) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(DIM, CLASSES))
    with torch.no_grad():
        model[1].weight.copy_(scale * torch.randn(CLASSES, DIM, generator=gen))
        model[1].bias.zero_()
    return model


def images(n: int, seed: int, low: float = 0.3, high: float = 0.7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, *SHAPE, generator=gen)


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def l2(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_adv - x).flatten(1).norm(dim=1)


@torch.no_grad()
def linear_min_distance(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed form, box ignored: min over j != y of (z_y - z_j) / ||w_y - w_j||, the L2 distance to the
    nearest decision boundary. The box can only make the true minimum larger."""
    weight = model[1].weight
    logits = model(x)
    out = torch.full((x.shape[0],), math.inf)
    for j in range(CLASSES):
        gap = logits.gather(1, y[:, None]).squeeze(1) - logits[:, j]
        dist = gap / (weight[y] - weight[j]).norm(dim=1)
        out = torch.where(y == j, out, torch.minimum(out, dist))
    return out


# --------------------------------------------------------------------------------------------------
# Carlini-Wagner L2


def test_cw_l2_reaches_the_closed_form_minimum_on_a_linear_model():
    model = linear_model(0)
    x = images(48, 1)
    y = predictions(model, x)
    x_adv = cw_l2(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    fooled = predictions(model, x_adv) != y
    assert bool(fooled.all())
    ratio = l2(x_adv, x) / linear_min_distance(model, x, y)
    # Never below the minimum (that would be a wrong closed form or a wrong success check) ...
    assert float(ratio.min()) >= 1 - 1e-3
    # ... and close to it for most examples (Adam's step size limits the last few percent).
    assert float(ratio.median()) <= 1.05


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_cw_l2_finds_smaller_perturbations_than_pgd_l2(kind):
    torch.manual_seed(0)
    x = images(48, 2)
    if kind == "linear":
        model = linear_model(3)
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, CLASSES))
    y = predictions(model, x)
    x_cw = cw_l2(model, x, y)
    cw_fooled = predictions(model, x_cw) != y
    assert bool(cw_fooled.all())
    # PGD gets a budget that covers every C&W perturbation, so it can fool as many.
    eps = float(l2(x_cw, x).max())
    x_pgd = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=20, norm="l2")
    both = cw_fooled & (predictions(model, x_pgd) != y)
    assert int(both.sum()) >= 24
    cw_norm, pgd_norm = l2(x_cw, x)[both], l2(x_pgd, x)[both]
    assert float(cw_norm.mean()) < 0.8 * float(pgd_norm.mean())
    assert float((cw_norm <= pgd_norm + 1e-6).float().mean()) >= 0.9


def test_cw_l2_returns_x_unchanged_where_it_fails():
    model = linear_model(4)
    x = images(8, 5)
    y = predictions(model, x)
    # One step of a tiny learning rate cannot move far enough to cross any boundary.
    x_adv = cw_l2(model, x, y, steps=1, lr=1e-6, binary_search_steps=1)
    assert torch.equal(x_adv, x)


def test_cw_l2_targeted_reaches_the_target():
    model = linear_model(6)
    x = images(16, 7)
    target = (predictions(model, x) + 1) % CLASSES
    x_adv = cw_l2(model, x, target, targeted=True)
    assert torch.equal(predictions(model, x_adv), target)


def test_cw_l2_kappa_buys_a_logit_margin():
    model = linear_model(8)
    x = images(16, 9)
    y = predictions(model, x)
    kappa = 2.0
    x_adv = cw_l2(model, x, y, kappa=kappa)
    with torch.no_grad():
        logits = model(x_adv)
    others = logits.scatter(1, y[:, None], -math.inf).amax(1)
    assert bool((others - logits.gather(1, y[:, None]).squeeze(1) >= kappa - 1e-4).all())


def test_cw_l2_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Linear(DIM, 16), nn.Dropout(0.5), nn.Linear(16, CLASSES))
    model.train()
    x = images(4, 10)
    cw_l2(model, x, torch.zeros(4, dtype=torch.long), steps=3, binary_search_steps=2)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"c": 0}, ValueError),
        ({"kappa": -1}, ValueError),
        ({"steps": 0}, ValueError),
        ({"lr": "big"}, TypeError),
        ({"binary_search_steps": 1.5}, TypeError),
    ],
)
def test_cw_l2_rejects_bad_arguments(kwargs, error):
    model = linear_model(0)
    with pytest.raises(error):
        cw_l2(model, images(2, 0), torch.zeros(2, dtype=torch.long), **kwargs)
