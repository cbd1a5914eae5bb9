"""Every registered attack (``attacks.ATTACKS``), run the same way: the torchattacks ``test_atks.py``
pattern. Each must return images of x's shape and dtype in [0, 1], respect its threat model, leave the
model exactly as it found it, and be reproducible from the global seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pushpull_lite import attacks, config

NAMES = sorted(attacks.ATTACKS)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    ).train()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)


def test_registry_is_well_formed():
    for name, info in attacks.ATTACKS.items():
        assert callable(info.fn), name
        assert info.threat in attacks.THREATS, name
        assert info.fn.__doc__ and "x:" in info.fn.__doc__, f"{name}: docstring must give x's shape"
        assert (config.checkout_root() is None) or (
            config.checkout_root() / "book" / f"{info.chapter}.ipynb"
        ).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_every_attack_respects_its_threat_model(name, batch):
    info = attacks.ATTACKS[name]
    x, y = batch
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    x_adv = info.fn(model, x, y, **info.example)
    torch.manual_seed(0)
    again = info.fn(model, x, y, **info.example)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv, again), "not reproducible from the global seed"
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    delta = (x_adv - x).flatten(1)
    if info.threat == "linf":
        assert delta.abs().max() <= info.example["eps"] + 1e-6
    elif info.threat == "l2":
        assert delta.norm(dim=1).max() <= info.example["eps"] + 1e-5
    elif info.threat == "patch":
        changed = (x_adv != x).any(dim=1)  # (N, H, W)
        side = info.example["size"]
        for mask in changed:
            rows, cols = mask.nonzero(as_tuple=True)
            if len(rows):
                assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    elif info.threat == "pixels":
        changed = (x_adv != x).any(dim=1).flatten(1).sum(dim=1)
        assert changed.max() <= info.example["pixels"]


def test_every_attack_refuses_images_outside_the_unit_box(batch):
    x, y = batch
    for info in attacks.ATTACKS.values():
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            info.fn(_model(), 2 * x - 1, y, **info.example)
