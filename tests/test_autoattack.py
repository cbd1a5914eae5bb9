"""AutoAttack-style attacks (torchattacks wrappers), the one-threat-model cascade, and transfer attacks.

The independent expectation for the library attacks is a linear classifier, whose worst case over an
L-inf ball is known in closed form: with logits ``[w . (x - 0.5), 0, -1, -2]`` and label 0, an image is
foolable at radius eps exactly when its margin ``w . (x - 0.5)`` is below ``eps * ||w||_1`` (the box
[0, 1] is not binding for the images used).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from pushpull_lite import attacks, autoattack, config

needs_torchattacks = pytest.mark.skipif(
    autoattack.torchattacks_version() is None, reason="torchattacks is not installed"
)

EPS = 0.03


class Linear4(nn.Module):
    """logits (N, 4) = [w . (x - 0.5), 0, -1, -2] for x: (N, 1, 4, 4) in [0, 1]."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = ((x - 0.5).flatten(1) * self.w).sum(1, keepdim=True)
        # distinct constant logits for the other classes: DLR's denominator must depend on f (with ties
        # it is constant and targeted APGD has no gradient)
        rest = torch.tensor([0.0, -1.0, -2.0], dtype=f.dtype).expand(len(f), 3)
        return torch.cat([f, rest], dim=1)


def _linear_problem():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    # margin = scale * eps * ||w||_1: half the images at half the foolable margin, half at twice it
    scales = torch.tensor([0.5] * 6 + [2.0] * 6)
    x = 0.5 + (scales * EPS).view(-1, 1, 1, 1) * w.sign().view(1, 1, 4, 4)
    y = torch.zeros(len(x), dtype=torch.long)
    return Linear4(w), x, y, scales < 1


@needs_torchattacks
@pytest.mark.parametrize(
    "attack",
    [
        functools.partial(autoattack.apgd_ce, eps=EPS, steps=20),
        functools.partial(autoattack.apgd_t, eps=EPS, steps=20, targets=3),
        functools.partial(autoattack.square, eps=EPS, queries=1000),
    ],
    ids=["apgd-ce", "apgd-t", "square"],
)
def test_library_attacks_find_exactly_the_foolable_images_of_a_linear_model(attack):
    model, x, y, foolable = _linear_problem()
    model.train()  # the attack must restore the caller's mode
    before = torch.get_rng_state()
    x_adv = attack(model, x, y)
    assert torch.equal(torch.get_rng_state(), before), "the caller's random stream is untouched"
    assert model.training and model.w.grad is None
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    # every attack finds the images within reach; none can fool the others (the L-inf bound)
    assert fooled.tolist() == foolable.tolist()


@needs_torchattacks
def test_library_attacks_are_reproducible():
    model, x, y, _ = _linear_problem()
    a = autoattack.square(model, x, y, EPS, queries=50, seed=3)
    b = autoattack.square(model, x, y, EPS, queries=50, seed=3)
    assert torch.equal(a, b)


def test_library_attack_arguments_are_checked():
    model, x, y, _ = _linear_problem()
    with pytest.raises(ValueError, match="eps"):
        autoattack.square(model, x, y, -1.0)
    with pytest.raises((TypeError, ValueError), match="budget"):
        autoattack.library_attacks(EPS, {"apgd_steps": 3})


def test_without_torchattacks_no_library_attack_runs_and_the_note_says_how_to_install(monkeypatch):
    monkeypatch.setattr(autoattack, "torchattacks_version", lambda: None)
    made, note = autoattack.library_attacks(EPS, autoattack.budget("quick"))
    assert made == {} and "pip install" in note and "torchattacks" in note


@needs_torchattacks
def test_library_attacks_come_in_autoattack_order_with_the_budget_in_the_note():
    made, note = autoattack.library_attacks(8 / 255, autoattack.budget("full"))
    assert list(made) == ["APGD-CE", "APGD-T", "Square"] == list(autoattack.LIBRARY_ATTACKS)
    assert "100 iterations" in note and "9 target classes" in note and "5,000 queries" in note


@pytest.mark.parametrize("name", config.PROFILE_NAMES)
def test_every_profile_has_a_budget_and_bigger_profiles_attack_harder(name, monkeypatch):
    monkeypatch.delenv("PUSHPULL_SMOKE", raising=False)
    b = autoattack.budget(name)
    assert b == autoattack.BUDGETS[name]
    assert b.apgd_steps >= 10 and 1 <= b.apgd_targets <= 9 and b.square_queries >= 100
    quick, full = autoattack.BUDGETS["quick"], autoattack.BUDGETS["full"]
    assert quick.apgd_steps <= b.apgd_steps <= full.apgd_steps
    assert quick.square_queries <= b.square_queries <= full.square_queries
    # AutoAttack's standard version in the GPU profiles
    assert full == autoattack.Budget(apgd_steps=100, apgd_targets=9, square_queries=5000)


def test_smoke_runs_divide_the_budget(monkeypatch):
    monkeypatch.setenv("PUSHPULL_SMOKE", "10")
    b = autoattack.budget("full")
    assert b.apgd_steps == 10 and b.square_queries == 500 and b.apgd_targets == 9


class Threshold(nn.Module):
    """Class 0 when pixel (0, 0) is above 0.5, else class 1; x: (N, 1, 2, 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x[:, 0, 0, 0] - 0.5
        return torch.stack([f, -f], dim=1)


def _marked_attack(row: int, col: int, seen: list):
    # an "attack" that fools exactly the images marked at (row, col) and records which images it saw
    def attack(model, x, y):
        seen.append(len(x))
        out = x.clone()
        out[x[:, 0, row, col] == 1, 0, 0, 0] = 0.0
        return out

    return attack


def test_cascade_runs_each_attack_on_the_images_still_standing_and_credits_the_first():
    x = torch.zeros(6, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([1.0, 1, 1, 1, 1, 0])  # image 5 is wrong clean
    x[[0, 1], 0, 0, 1] = 1  # attack A fools images 0 and 1
    x[[1, 2], 0, 1, 0] = 1  # attack B fools 1 (already lost to A) and 2
    y = torch.zeros(6, dtype=torch.long)
    seen_a, seen_b = [], []
    c = autoattack.cascade(
        Threshold(),
        x,
        y,
        {"A": _marked_attack(0, 1, seen_a), "B": _marked_attack(1, 0, seen_b)},
        threat="linf test",
    )
    assert list(c.correct) == ["clean", "A", "B"]
    assert sum(seen_a) == 5 and sum(seen_b) == 3  # B only sees the images A left standing
    assert c.robust.tolist() == [False, False, False, True, True, False]
    assert c.accuracy == pytest.approx(2 / 6)
    assert c.found_by.tolist() == ["A", "A", "B", "", "", "clean"]
    assert c.counts() == {"clean": 1, "A": 2, "B": 1, "robust": 2}
    assert sum(c.counts().values()) == c.n == 6
    assert "linf test" in c.describe() and "33.3 %" in c.describe()


def test_cascade_starts_from_results_already_measured_on_every_image():
    x = torch.zeros(4, 1, 2, 2)
    x[:, 0, 0, 0] = 1.0
    x[3, 0, 1, 1] = 1
    y = torch.zeros(4, dtype=torch.long)
    done = {"PGD": torch.tensor([True, False, True, True]), "clean": np.array([True, True, False, True])}
    c = autoattack.cascade(Threshold(), x, y, {"X": _marked_attack(1, 1, [])}, threat="t", done=done)
    assert list(c.correct) == ["clean", "PGD", "X"]  # clean first, whatever the order given
    assert c.found_by.tolist() == ["", "PGD", "clean", "X"]
    with pytest.raises(ValueError, match="done"):
        autoattack.cascade(Threshold(), x, y, {}, threat="t", done={"PGD": np.ones(3, bool)})
    with pytest.raises(ValueError, match="already"):
        autoattack.cascade(Threshold(), x, y, {"PGD": _marked_attack(1, 1, [])}, threat="t", done=done)
    with pytest.raises(ValueError, match="threat"):
        autoattack.cascade(Threshold(), x, y, {}, threat="")


def test_a_transfer_attack_is_computed_on_the_source_model_only():
    model, x, y, _ = _linear_problem()
    source = Linear4(-model.w.detach())  # a source that disagrees with the target everywhere
    pgd = functools.partial(attacks.pgd, eps=EPS, step_size=EPS / 4, steps=5, random_start=False)
    transferred = attacks.transfer(source, pgd)
    assert torch.equal(transferred(model, x, y), pgd(source, x, y))
    with pytest.raises(TypeError, match="attack"):
        attacks.transfer(source, "pgd")
    with pytest.raises(TypeError, match="source"):
        attacks.transfer("model", pgd)
