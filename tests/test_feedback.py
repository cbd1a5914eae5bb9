"""CNN-F (pushpull_lite.feedback): the feedback path is the adjoint of the forward path, 0 cycles is the
plain CNN, cycles change a trained model's answer, gradients reach the input through every cycle."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from pushpull_lite import feedback as fb


def tiny(cycles: int = 2, channels=(4, 6, 8), first_layer: str = "conv", dtype=torch.float32) -> fb.CNNF:
    torch.manual_seed(0)
    return fb.CNNF(channels, cycles=cycles, first_layer=first_layer, image_size=16).to(dtype)


def images(n: int = 5, size: int = 16, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() * b.detach().double()).sum())


def trained(steps: int = 20) -> tuple[fb.CNNF, torch.Tensor, torch.Tensor]:
    """A tiny CNN-F after a few Adam steps of the CNN-F loss on random images with random labels."""
    model = tiny()
    x = images(10, seed=2)
    y = torch.arange(10)
    recipe = replace(fb.RECIPES["quick"], channels=(4, 6, 8), cycles=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss, _ = fb.cnnf_loss(model, x, (x + 0.03 * torch.randn_like(x)).clamp(0, 1), y, recipe)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x, y


# ---- the layers: feedback = adjoint of the forward map


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 7, 9)])
def test_conv_feedback_is_the_adjoint(shape):
    torch.manual_seed(0)
    conv = fb.FeedbackConv2d(shape[1], 4).double()
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randn(shape[0], 4, *shape[2:], dtype=torch.float64)
    assert conv.feedback(y).shape == x.shape
    assert inner(conv(x), y) == pytest.approx(inner(x, conv.feedback(y)), rel=1e-10)


def test_conv_feedback_of_a_one_hot_is_the_kernel():
    # transposed "same" convolution of a single 1 at the centre writes the kernel there (no flip)
    conv = fb.FeedbackConv2d(1, 1).double()
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9, dtype=torch.float64).view(1, 1, 3, 3))
    y = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    y[0, 0, 2, 2] = 1
    out = conv.feedback(y)[0, 0]
    assert torch.equal(out[1:4, 1:4], conv.weight[0, 0])
    assert out.abs().sum() == conv.weight.abs().sum()


def test_linear_feedback_is_the_adjoint_and_ignores_the_bias():
    torch.manual_seed(0)
    lin = fb.FeedbackLinear(12, 5).double()
    x, y = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    linear_part = lin(x) - lin.bias  # the adjoint is of x -> W x
    assert inner(linear_part, y) == pytest.approx(inner(x, lin.feedback(y)), rel=1e-10)
    assert torch.allclose(lin.feedback(y), y @ lin.weight)


def test_adarelu_hand_computed():
    relu = fb.AdaReLU()
    x = torch.tensor([[-2.0, -1.0, 0.5, 3.0]])
    out, mask = relu(x)
    assert out.tolist() == [[0.0, 0.0, 0.5, 3.0]]
    # with feedback: on only where input and feedback agree in sign (both negative counts: -2 * -1 > 0)
    out, mask = relu(x, hidden=torch.tensor([[-1.0, 1.0, 1.0, -1.0]]))
    assert mask.tolist() == [[True, False, True, False]]
    assert out.tolist() == [[-2.0, 0.0, 0.5, 0.0]]
    h = torch.randn(1, 4, dtype=torch.float64)
    # a fixed mask is a diagonal 0/1 map: its own adjoint
    assert inner(x.double() * mask, h) == pytest.approx(inner(x.double(), relu.feedback(h, mask)))


def test_adapool_hand_computed():
    pool = fb.AdaPool2d(2)
    x = torch.tensor([[[[1.0, -4.0], [3.0, 2.0]]]])
    out, state = pool(x)
    assert out.item() == 3.0
    assert pool.feedback(torch.tensor([[[[5.0]]]]), state).tolist() == [[[[0.0, 0.0], [5.0, 0.0]]]]
    # negative feedback: the min of the window, and the feedback goes back to the min's pixel
    out, state = pool(x, hidden=torch.tensor([[[[-1.0]]]]))
    assert out.item() == -4.0
    assert pool.feedback(torch.tensor([[[[5.0]]]]), state).tolist() == [[[[0.0, 5.0], [0.0, 0.0]]]]
    out, _ = pool(x, hidden=torch.zeros(1, 1, 1, 1))
    assert out.item() == 0.0


@pytest.mark.parametrize("with_hidden", [False, True])
def test_adapool_feedback_is_the_adjoint_of_picking_the_winners(with_hidden):
    torch.manual_seed(0)
    pool = fb.AdaPool2d(2)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    hidden = torch.randn(2, 3, 3, 4, dtype=torch.float64) if with_hidden else None
    out, state = pool(x, hidden)
    y = torch.randn_like(out)
    # out is x read at the winning pixels (a linear map for the fixed state): <P x, y> = <x, P^T y>
    assert inner(out, y) == pytest.approx(inner(x, pool.feedback(y, state)), rel=1e-10)


def test_pushpull_first_layer_feeds_back_through_its_push_kernel():
    model = tiny(first_layer="pushpull", dtype=torch.float64)
    layer = model.convs[0]
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    y = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    push = F.conv2d(x, layer.weight, padding=1)
    assert inner(push, y) == pytest.approx(inner(x, model._conv_feedback(0, y)), rel=1e-10)
    logits, recons = model(images(dtype=torch.float64), return_reconstructions=True)
    assert logits.shape == (5, 10) and len(recons) == 2


# ---- the model


def test_zero_cycles_is_the_feedforward_cnn():
    model = tiny()
    with torch.no_grad():  # non-zero biases, so the bias and ReLU order matter
        for b in model.biases:
            b.normal_()
    x = images()
    cnn = model.feedforward_cnn()
    assert torch.allclose(model(x, cycles=0), cnn(x), atol=1e-6)
    # the CNN shares the parameters: training one trains the other
    assert {id(p) for p in cnn.parameters()} <= {id(p) for p in model.parameters()}


def test_reconstructions_have_the_input_shape():
    model = tiny(cycles=3)
    x = images(4)
    logits, recons = model(x, return_reconstructions=True)
    assert logits.shape == (4, 10)
    assert len(recons) == 3 and all(r.shape == x.shape for r in recons)
    assert model(x, cycles=0, return_reconstructions=True)[1] == []
    t = model.trace(x)
    assert len(t.logits) == 4 and len(t.estimates) == 4 and len(t.feature_reconstructions) == 3
    for features, recs in zip([t.features] * 3, t.feature_reconstructions):
        assert [f.shape for f in features] == [r.shape for r in recs]


def test_cycle_moves_the_estimate_a_step_towards_the_reconstruction():
    model = tiny(cycles=2)
    x = images(3)
    t = model.trace(x)
    for k, image in enumerate(t.reconstructions):
        expected = t.estimates[k] + model.step * (image - t.estimates[k])
        assert torch.allclose(t.estimates[k + 1], expected)


def test_cycles_change_logits_and_reconstruction_error_of_a_trained_model():
    model, x, _ = trained()
    with torch.no_grad():
        t = model.trace(x, cycles=3)
    for a, b in zip(t.logits, t.logits[1:]):
        assert (a - b).abs().max() > 1e-3
    errors = [float((r - x).pow(2).mean()) for r in t.reconstructions]
    assert len(set(round(e, 6) for e in errors)) == 3, errors
    # training on the reconstruction loss makes the feedback reproduce the input better than at init
    with torch.no_grad():
        untrained = tiny().trace(x, cycles=1).reconstructions[0]
    assert errors[0] < float((untrained - x).pow(2).mean())


def test_gradients_flow_through_all_cycles():
    torch.manual_seed(0)
    model = fb.CNNF((2, 3), cycles=2, image_size=8).double()
    x = images(1, size=8, dtype=torch.float64).requires_grad_(True)
    # the input gradient of the logits after 2 cycles, checked against finite differences
    assert torch.autograd.gradcheck(lambda v: model(v, cycles=2), (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    g = [torch.autograd.grad(model(x, cycles=k)[0, 3], x)[0] for k in range(3)]
    assert (g[1] - g[0]).abs().max() > 0 and (g[2] - g[1]).abs().max() > 0
    model.zero_grad()
    model(x.detach(), cycles=2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(
    "cycles, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_bad_cycles_raise(cycles, error):
    model = tiny()
    with pytest.raises(error, match="cycles"):
        model(images(1), cycles=cycles)
    with pytest.raises(error, match="cycles"):
        fb.WithCycles(model, cycles)
    with pytest.raises(error, match="cycles"):
        fb.CNNF((4, 4), cycles=cycles, image_size=16)


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="image_size"):
        fb.CNNF((4, 4, 4), image_size=20)
    with pytest.raises(ValueError, match="step"):
        fb.CNNF(step=0)
    with pytest.raises(ValueError, match="first_layer"):
        fb.CNNF(first_layer="gabor")
    with pytest.raises(ValueError, match="recipe"):
        fb.get_recipe("enormous")


def test_with_cycles_runs_the_model_with_that_many_cycles():
    model = tiny()
    x = images(2)
    assert torch.equal(fb.WithCycles(model, 1)(x), model(x, cycles=1))


def test_default_readout_is_the_last_cycle():
    model = tiny()
    x = images(3)
    wrapped = fb.WithCycles(model, 2)
    assert wrapped.readout == "last"
    assert torch.equal(wrapped(x), model.trace(x, cycles=2).logits[-1])
    assert torch.equal(fb.WithCycles(model, 2, readout="last")(x), model(x))


def test_average_readout_is_the_mean_of_every_cycles_logits():
    model = tiny()
    x = images(3)
    t = model.trace(x, cycles=2)
    assert len(t.logits) == 3
    by_hand = (t.logits[0] + t.logits[1] + t.logits[2]) / 3
    assert torch.allclose(t.mean_logits(), by_hand, atol=1e-6)
    assert torch.allclose(fb.WithCycles(model, 2, readout="average")(x), by_hand, atol=1e-6)
    # with 0 cycles there is one pass: its logits, whichever the readout
    assert torch.allclose(fb.WithCycles(model, 0, readout="average")(x), model(x, cycles=0), atol=1e-6)


def test_average_readout_passes_gradients_through_every_cycle():
    model = tiny()
    x = images(2).requires_grad_(True)
    fb.WithCycles(model, 2, readout="average")(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_readout_raises():
    with pytest.raises(ValueError, match="readout"):
        fb.WithCycles(tiny(), 2, readout="mean")


# ---- training


def test_loss_with_zero_cycles_is_the_mean_of_clean_and_adversarial_cross_entropy():
    model = tiny()
    x, x_adv = images(4, seed=1), images(4, seed=2)
    y = torch.tensor([0, 1, 2, 3])
    recipe = replace(fb.RECIPES["quick"], channels=(4, 6, 8)).feedforward()
    loss, logits = fb.cnnf_loss(model, x, x_adv, y, recipe)
    expected = (F.cross_entropy(model(x, cycles=0), y) + F.cross_entropy(model(x_adv, cycles=0), y)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits, model(x, cycles=0), atol=1e-5)


def test_train_cnnf_trains_once_then_loads_from_the_cache(tree_root):
    recipe = fb.FeedbackRecipe(
        "tiny", epochs=1, train_limit=40, channels=(4, 4, 4), batch_size=20, pgd_steps=1
    )
    model, info = fb.train_cnnf(recipe, seed=0, progress=False, device="cpu")
    assert not info["from_cache"] and info["path"].is_file() and info["train_seconds"] > 0
    again, info2 = fb.train_cnnf(recipe, seed=0, progress=False, device="cpu")
    assert info2["from_cache"] and info2["train_seconds"] == info["train_seconds"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    cnn, info3 = fb.train_feedforward(recipe, seed=0, progress=False, device="cpu")
    assert isinstance(cnn, fb.FeedForwardCNN) and info3["config"]["recipe"]["cycles"] == 0
    assert info3["path"] != info["path"]
