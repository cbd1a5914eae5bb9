"""Tests for pushpull_lite.attacks on a tiny CNN trained here on coloured oriented stripes.

The checks follow Carlini et al. (2019): the attack stays in its budget, accuracy falls as eps and steps
grow, unbounded eps reaches ~0 %, PGD beats FGSM, restarts never hurt; plus hand-computed cases on a
linear model and the promise to leave the model exactly as it was found.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pushpull_lite import config
from pushpull_lite.attacks import fgsm, patch_attack, pgd, sparse_pixel_attack
from pushpull_lite.measure import accuracy as robust_accuracy

CLASSES = 4
SIZE = 16


def stripes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, SIZE, SIZE) in [0, 1]: class k = stripes at k * 45 degrees in colour k, plus noise."""
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    theta = y.float() * math.pi / CLASSES + 0.3 * (torch.rand(n, generator=generator) - 0.5)
    freq = 0.6 + 0.3 * torch.rand(n, generator=generator)
    phase = 2 * math.pi * torch.rand(n, generator=generator)
    grid = torch.arange(SIZE, dtype=torch.float32)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    along = torch.cos(theta).view(-1, 1, 1) * cols + torch.sin(theta).view(-1, 1, 1) * rows
    wave = 0.5 + 0.5 * torch.sin(freq.view(-1, 1, 1) * along + phase.view(-1, 1, 1))
    palette = torch.tensor([[1.0, 0.3, 0.2], [0.2, 1.0, 0.3], [0.3, 0.3, 1.0], [0.9, 0.9, 0.2]])
    colour = palette[y] * (0.7 + 0.3 * torch.rand(n, 1, generator=generator))
    images = 0.3 + 0.35 * wave[:, None] * colour[:, :, None, None]
    images = images + 0.1 * torch.randn(images.shape, generator=generator)
    return images.clamp(0, 1), y


class TinyCNN(nn.Module):
    """BatchNorm and Dropout on purpose: train and eval mode give different outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors run as fast on one thread, and a busy shared machine slows two threads ~5x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model in eval mode, test images (256, 3, 16, 16) in [0, 1], labels (256,))."""
    with one_thread():
        return train_tiny_cnn()


def train_tiny_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    config.seed_everything(0)
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = stripes(2000, generator)
    x_test, y_test = stripes(256, generator)
    model = TinyCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        order = torch.randperm(len(x_train))
        for start in range(0, len(x_train), 64):
            batch = order[start : start + 64]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, x_test, y_test


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack=None) -> float:
    return robust_accuracy(model, x, y, attack, batch_size=128)


def linf_pgd(eps: float, steps: int = 10, **kw):
    return functools.partial(pgd, eps=eps, step_size=2.5 * eps / steps, steps=steps, **kw)


def test_clean_accuracy_above_90_percent(trained):
    model, x, y = trained
    with torch.no_grad():
        by_hand = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy(model, x, y) == pytest.approx(by_hand)
    assert by_hand > 0.9


def test_eps_zero_changes_nothing(trained):
    model, x, y = trained
    for attack in (functools.partial(fgsm, eps=0.0), linf_pgd(0.0), linf_pgd(0.0, norm="l2")):
        assert torch.equal(attack(model, x, y), x)
        assert accuracy(model, x, y, attack) == accuracy(model, x, y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_ball_and_box(trained, norm, random_start):
    model, x, y = trained
    eps = 8 / 255 if norm == "linf" else 0.5
    torch.manual_seed(1)
    x_adv = pgd(model, x, y, eps, eps / 4, 10, norm=norm, random_start=random_start)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    # The budget is used, not wasted: most perturbations reach (almost) the edge of the ball.
    assert (size > 0.9 * eps).float().mean() > 0.8


def test_fgsm_stays_in_ball_and_box(trained):
    model, x, y = trained
    x_adv = fgsm(model, x, y, 8 / 255)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_accuracy_falls_with_eps(trained):
    model, x, y = trained
    for norm, grid in (
        ("linf", [0, 4 / 255, 8 / 255, 12 / 255, 16 / 255, 24 / 255]),
        ("l2", [0, 0.25, 0.5, 1.0]),
    ):
        torch.manual_seed(0)
        accs = [accuracy(model, x, y, linf_pgd(eps, norm=norm)) for eps in grid]
        assert all(b <= a + 0.02 for a, b in zip(accs, accs[1:])), (norm, accs)
        assert accs[-1] < accs[0] - 0.5, (norm, accs)  # the grid spans the drop, so the test can fail


def test_accuracy_falls_with_steps(trained):
    model, x, y = trained
    eps = 10 / 255
    accs = [
        accuracy(model, x, y, functools.partial(pgd, eps=eps, step_size=eps / 4, steps=s, random_start=False))
        for s in (1, 2, 4, 8, 16)
    ]
    assert all(b <= a + 0.02 for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0] - 0.2, accs


def test_unbounded_eps_breaks_the_model(trained):
    model, x, y = trained
    torch.manual_seed(0)
    assert accuracy(model, x, y, functools.partial(pgd, eps=1.0, step_size=0.1, steps=20)) <= 0.02
    assert accuracy(model, x, y, functools.partial(pgd, eps=20.0, step_size=2.0, steps=20, norm="l2")) <= 0.02


@pytest.mark.parametrize("eps", [6 / 255, 10 / 255, 16 / 255])
def test_pgd_at_least_as_strong_as_fgsm(trained, eps):
    model, x, y = trained
    torch.manual_seed(0)
    acc_fgsm = accuracy(model, x, y, functools.partial(fgsm, eps=eps))
    acc_pgd = accuracy(model, x, y, linf_pgd(eps))
    assert acc_pgd <= acc_fgsm + 0.01


@pytest.mark.parametrize("targeted", [False, True])
def test_restarts_never_hurt(trained, targeted):
    model, x, y = trained
    labels = (y + 1) % CLASSES if targeted else y
    eps = 10 / 255

    def run(restarts: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(3)  # the first restart then draws the same start in both runs
        x_adv = pgd(model, x, labels, eps, eps / 4, 5, restarts=restarts, targeted=targeted)
        with torch.no_grad():
            logits = model(x_adv)
        loss = F.cross_entropy(logits, labels, reduction="none")
        hit = logits.argmax(1) == labels
        return (hit, -loss) if targeted else (~hit, loss)

    won_1, loss_1 = run(1)
    won_4, loss_4 = run(4)
    if not targeted:  # (targeted at a fixed class gains too little to demand a strict gain)
        assert won_4.sum() > won_1.sum()  # the restarts did something
    assert not (won_1 & ~won_4).any()  # and never lost an example the first run had won
    lost = ~won_1 & ~won_4
    assert (loss_4[lost] >= loss_1[lost] - 1e-5).all()


def test_targeted_pgd_reaches_targets(trained):
    model, x, y = trained
    target = (y + 1 + torch.arange(len(y)) % (CLASSES - 1)) % CLASSES
    assert not (target == y).any()
    torch.manual_seed(0)
    x_adv = pgd(model, x, target, 32 / 255, 4 / 255, 20, targeted=True)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == target).float().mean() > 0.9


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_cost_is_one_forward_per_step(trained):
    model, x, y = trained
    counting = Counting(model)
    pgd(counting, x, y, 8 / 255, 2 / 255, 10)
    assert counting.calls == 10
    counting.calls = 0
    fgsm(counting, x, y, 8 / 255)
    assert counting.calls == 1
    counting.calls = 0
    pgd(counting, x, y, 8 / 255, 2 / 255, 10, restarts=3)
    assert 10 < counting.calls <= 3 * 11


def linear_model(weight: torch.Tensor) -> nn.Module:
    """logits = (0, <weight, x>) for x: (N, 1, 2, 2): class 1 grows along ``weight``."""
    linear = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([torch.zeros(4), weight]))
    return nn.Sequential(nn.Flatten(), linear)


def test_linear_model_by_hand():
    weight = torch.tensor([1.0, -2.0, 0.5, -0.1])
    model = linear_model(weight)
    x = torch.tensor([0.5, 0.5, 0.99, 0.02]).view(1, 1, 2, 2)
    y = torch.tensor([0])
    # Fooling class 0 means raising <weight, x>: every pixel moves by eps along sign(weight), clipped.
    expected = torch.tensor([0.6, 0.4, 1.0, 0.0]).view(1, 1, 2, 2)
    assert torch.allclose(fgsm(model, x, y, 0.1), expected)
    assert torch.allclose(pgd(model, x, y, 0.1, 0.03, 5, random_start=False), expected)
    # Targeted at class 0 goes the other way.
    expected_t = torch.tensor([0.4, 0.6, 0.89, 0.12]).view(1, 1, 2, 2)
    assert torch.allclose(pgd(model, x, y, 0.1, 0.03, 5, random_start=False, targeted=True), expected_t)
    # L2: the constant gradient points along weight, so PGD ends at x + eps * weight / |weight|.
    x_mid = torch.full((1, 1, 2, 2), 0.5)
    x_l2 = pgd(model, x_mid, y, 0.2, 0.07, 5, norm="l2", random_start=False)
    assert torch.allclose(x_l2, x_mid + 0.2 * (weight / weight.norm()).view(1, 1, 2, 2), atol=1e-6)


def snapshot(model: nn.Module) -> dict:
    return {
        "modes": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires": [p.requires_grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires"] == after["requires"]
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert (g0 is None and g1 is None) or (g0 is not None and g1 is not None and torch.equal(g0, g1))
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key  # BatchNorm statistics untouched


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_model_left_exactly_as_found(trained, mode):
    model, x, y = trained
    model = copy.deepcopy(model)
    if mode == "train":
        model.train()
    elif mode == "mixed":
        model.eval()
        model.head[1].train()  # dropout on,
        model.features[5].train()  # one BatchNorm in train mode,
        model.features[0].weight.requires_grad_(False)  # one frozen weight
    params = list(model.parameters())
    params[1].grad = torch.full_like(params[1], 0.25)  # some existing gradients, the rest None
    params[-1].grad = torch.randn_like(params[-1])
    before = snapshot(model)
    fgsm(model, x[:32], y[:32], 8 / 255)
    pgd(model, x[:32], y[:32], 8 / 255, 2 / 255, 3)
    pgd(model, x[:32], y[:32], 0.5, 0.2, 3, norm="l2", restarts=2, targeted=True)
    robust_accuracy(model, x[:32], y[:32], linf_pgd(8 / 255, steps=2), batch_size=16)
    robust_accuracy(model, x[:32], y[:32], None)
    assert_same(before, snapshot(model))


def test_attack_runs_the_model_in_eval_mode(trained):
    model, x, y = trained
    in_train = copy.deepcopy(model).train()
    attack = functools.partial(pgd, eps=8 / 255, step_size=2 / 255, steps=3, random_start=False)
    assert torch.equal(attack(in_train, x[:64], y[:64]), attack(model, x[:64], y[:64]))
    assert robust_accuracy(in_train, x, y, None) == accuracy(model, x, y)


def test_works_inside_no_grad_and_inference_mode(trained):
    model, x, y = trained
    attack = functools.partial(pgd, eps=8 / 255, step_size=2 / 255, steps=3, random_start=False)
    reference = attack(model, x[:16], y[:16])
    with torch.no_grad():
        assert torch.equal(attack(model, x[:16], y[:16]), reference)
    with torch.inference_mode():
        assert torch.equal(attack(model, x[:16].clone(), y[:16].clone()), reference)


def test_robust_accuracy_inputs(trained):
    model, x, y = trained
    as_uint8 = (x * 255).round().to(torch.uint8)
    dequantised = as_uint8.float() / 255
    attack = functools.partial(pgd, eps=8 / 255, step_size=2 / 255, steps=3, random_start=False)
    for a in (None, attack):
        reference = robust_accuracy(model, dequantised, y, a)
        assert robust_accuracy(model, as_uint8, y, a, batch_size=37) == reference
        assert robust_accuracy(model, as_uint8.numpy(), y.numpy(), a, device="cpu") == reference
    with torch.no_grad():
        count = int((model(dequantised).argmax(1) == y).sum())
    assert robust_accuracy(model, as_uint8, y, None) == count / len(y)


BAD_PGD_ARGS = [
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps="0.1"), TypeError, "eps"),
    (dict(step_size=0.0), ValueError, "step_size"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(restarts=0), ValueError, "restarts"),
    (dict(restarts=2, random_start=False), ValueError, "random_start"),
    (dict(norm="l1"), ValueError, "norm"),
]


@pytest.mark.parametrize("kwargs, error, word", BAD_PGD_ARGS)
def test_pgd_argument_errors(trained, kwargs, error, word):
    model, x, y = trained
    args = dict(eps=0.03, step_size=0.01, steps=2) | kwargs
    with pytest.raises(error, match=word):
        pgd(model, x[:4], y[:4], **args)


def test_input_errors(trained):
    model, x, y = trained
    x4, y4 = x[:4], y[:4]
    cases = [
        ((model, x4 * 2, y4), ValueError, r"\[0, 1\]"),
        ((model, x4 - 0.5, y4), ValueError, r"\[0, 1\]"),
        ((model, x4.clone().fill_(float("nan")), y4), ValueError, r"\[0, 1\]"),
        ((model, x4[0], y4), ValueError, "x must have shape"),
        ((model, (x4 * 255).to(torch.uint8), y4), TypeError, "x must be a floating"),
        ((model, x4, y4[:3]), ValueError, "y must have shape"),
        ((model, x4, y4.view(4, 1)), ValueError, "y must have shape"),
        ((model, x4, y4.float()), TypeError, "y must be an integer"),
        ((model, x4, y4 + CLASSES), ValueError, "class indices"),
        ((lambda t: t, x4, y4), TypeError, "model"),
    ]
    for args, error, word in cases:
        with pytest.raises(error, match=word):
            pgd(*args, eps=0.03, step_size=0.01, steps=1)
        with pytest.raises(error, match=word):
            fgsm(*args, eps=0.03)
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x4, y4, eps=-1.0)


def test_pixel_unit_budgets_above_1_are_refused(trained):
    """eps=8 meant as 8/255 would wipe out the image: every L-inf budget and step size must be <= 1."""
    model, x, y = trained
    x4, y4 = x[:4], y[:4]
    with pytest.raises(
        ValueError, match=r"eps=8 is larger than 1: eps is in \[0, 1\] pixel units \(for 8/255"
    ):
        fgsm(model, x4, y4, eps=8)
    with pytest.raises(ValueError, match="eps=8 is larger than 1"):
        pgd(model, x4, y4, eps=8, step_size=2 / 255, steps=1)
    with pytest.raises(ValueError, match="step_size=2 is larger than 1"):
        pgd(model, x4, y4, eps=8 / 255, step_size=2, steps=1)
    with pytest.raises(ValueError, match="step_size=5 is larger than 1"):
        patch_attack(model, x4, y4, step_size=5, steps=1)
    with pytest.raises(ValueError, match="step_size=64 is larger than 1"):
        sparse_pixel_attack(model, x4, y4, step_size=64, steps=1)
    # the boundary itself is fine, and an L2 radius (a norm over all pixels) may exceed 1
    assert fgsm(model, x4, y4, eps=1.0).shape == x4.shape
    x_adv = pgd(model, x4, y4, eps=3.0, step_size=1.5, steps=1, norm="l2")
    assert float((x_adv - x4).flatten(1).norm(dim=1).max()) <= 3.0 + 1e-4


def test_robust_accuracy_errors(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="labels"):
        robust_accuracy(model, x, y[:-1], None)
    with pytest.raises(ValueError, match="images"):
        robust_accuracy(model, x[0], y, None)
    with pytest.raises(ValueError, match="empty"):
        robust_accuracy(model, x[:0], y[:0], None)
    with pytest.raises(TypeError, match="images"):
        robust_accuracy(model, x.tolist(), y, None)
    with pytest.raises(TypeError, match="attack"):
        robust_accuracy(model, x, y, "pgd")
    with pytest.raises(ValueError, match="batch_size"):
        robust_accuracy(model, x, y, None, batch_size=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        robust_accuracy(model, x * 2, y, None)
    with pytest.raises(TypeError, match="images"):
        robust_accuracy(model, np.zeros((2, 3, 4, 4), dtype=bool), np.zeros(2, dtype=np.int64), None)
