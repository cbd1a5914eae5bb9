"""Tests of the push-pull layers against re-implementations of their formulas and hand-computed cases.

The references below are written from the definitions (reference.md sections 1-3) with plain
``F.interpolate`` / ``F.conv2d`` / ``F.avg_pool2d`` calls and autograd; they share no code with the layers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pushpull_lite import layers
from pushpull_lite.layers import MultiScalePushPull2d, PushPull2d, PushPullConv2d, pull_kernel_size


@pytest.fixture(autouse=True)
def one_thread():
    # the tensors here are tiny: waking a second thread for each op costs more than the work
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------
# independent references


def ref_pull_size(k: int, h: float) -> int:
    size = int(math.floor(k * h))
    return size + 1 if size % 2 == 0 else size


def ref_pushpull(x, w, b, alpha, h, stride, padding):
    """ReLU(conv(x, w) + b) - alpha * ReLU(conv(x, -U(w)) - b), U = bilinear, align_corners=True."""
    k = w.shape[-1]
    size = ref_pull_size(k, h)
    pull_w = -F.interpolate(w, size=(size, size), mode="bilinear", align_corners=True)
    push = F.conv2d(x, w, b, stride, padding)
    pull = F.conv2d(x, pull_w, None if b is None else -b, stride, size // 2 - k // 2 + padding)
    a = F.relu(alpha).view(1, -1, 1, 1) if torch.is_tensor(alpha) else alpha
    return F.relu(push) - a * F.relu(pull)


def ref_pushpull_conv(x, w, b, alpha, avg, stride, padding):
    """ReLU(conv(x, w)) - alpha * ReLU(AvgPool(conv(x, -w + max + min))) + b."""
    flat = w.reshape(w.shape[0], -1)
    pull_w = -w + (flat.max(dim=1).values + flat.min(dim=1).values).view(-1, 1, 1, 1)
    push = F.conv2d(x, w, None, stride, padding)
    pull = F.conv2d(x, pull_w, None, stride, padding)
    if avg:
        pull = torch.nn.AvgPool2d(avg, stride=1, padding=(avg - 1) // 2, count_include_pad=False)(pull)
    a = F.relu(alpha) if torch.is_tensor(alpha) else alpha
    out = F.relu(push) - a * F.relu(pull)
    return out if b is None else out + b.view(1, -1, 1, 1)


def ref_multiscale(x, layer: MultiScalePushPull2d):
    out = 0.0
    for i, k in enumerate(layer.kernel_sizes):
        w = layer.push_weights[i]
        a = F.relu(layer.alphas[i])
        if layer.derived_pull:
            out = out + ref_pushpull(
                x, w, None, a.reshape(1).expand(w.shape[0]), layer.scale, layer.stride, k // 2
            )
        else:
            push = F.conv2d(x, w, None, layer.stride, k // 2)
            pull = F.conv2d(x, layer.pull_weights[i], None, layer.stride, k // 2)
            out = out + F.relu(push) - a * F.relu(-pull)
    return out


def grads(out, inputs, seed=0):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


def params_of(layer):
    return [p for p in layer.parameters()]


# --------------------------------------------------------------------------------------------------------
# the pull kernel of the 2020 layer


@pytest.mark.parametrize(
    "k, h, expected",
    [
        (3, 2.0, 7),
        (5, 2.0, 11),
        (7, 2.0, 15),
        (1, 2.0, 3),
        (3, 1.5, 5),
        (5, 1.5, 7),
        (3, 1.0, 3),
        (3, 2.5, 7),
    ],
)
def test_pull_kernel_size_rule(k, h, expected):
    # floor(k*h), +1 when even: 3*1.5 = 4.5 -> 4 -> 5 (even bump); 5*1.5 = 7.5 -> 7 (odd, kept)
    assert pull_kernel_size(k, h) == expected
    layer = PushPull2d(2, 3, k, scale=h)
    assert layer.pull_weight().shape == (3, 2, expected, expected)


@pytest.mark.parametrize("k, size", [(3, 7), (5, 11), (3, 5), (1, 3), (7, 15), (5, 7)])
def test_upsampling_matrix_is_separable_bilinear_interpolation(k, size):
    w = torch.randn(4, 3, k, k, dtype=torch.float64)
    a = layers.upsampling_matrix(k, size, dtype=torch.float64)
    assert a.shape == (size, k)
    expected = F.interpolate(w, size=(size, size), mode="bilinear", align_corners=True)
    torch.testing.assert_close(a @ w @ a.T, expected, rtol=0, atol=1e-12)
    # each output sample is a convex combination of at most two neighbouring input samples
    torch.testing.assert_close(a.sum(dim=1), torch.ones(size, dtype=torch.float64))
    assert ((a > 0).sum(dim=1) <= 2).all()


def test_pull_weight_is_negated_upsampled_push_kernel():
    layer = PushPull2d(1, 1, 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]]))
    pull = layer.pull_weight()[0, 0]
    # a centred delta upsampled 3 -> 7 with align_corners=True: a tent 0, 1/3, 2/3, 1, 2/3, 1/3, 0 per axis
    tent = torch.tensor([0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0], dtype=torch.float64)
    torch.testing.assert_close(pull, -torch.outer(tent, tent), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# PushPull2d


def test_pushpull_hand_computed_pixels():
    # 1 channel, 7x7 input with a single 1 at the centre, padding 1 (output 7x7), alpha 0.5.
    # w = [[-1, 0, 0], [0, 2, 0], [0, 0, 0]]: push(i, j) = w[4 - i, 4 - j]; with
    # A0 = (1, 2/3, 1/3, 0, 0, 0, 0) and A1 = (0, 1/3, 2/3, 1, 2/3, 1/3, 0), U = -A0 A0^T + 2 A1 A1^T
    # and pull(i, j) = -U[6 - i, 6 - j].
    layer = PushPull2d(1, 1, 3, padding=1, alpha=0.5).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]]]))
    x = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    x[0, 0, 3, 3] = 1.0
    y = layer(x)[0, 0]
    assert y.shape == (7, 7)
    assert y[3, 3].item() == pytest.approx(2.0)  # push 2, pull -2 -> 0
    assert y[4, 4].item() == pytest.approx(0.0)  # push -1 -> 0, pull -(-1/9 + 8/9) -> 0
    assert y[5, 5].item() == pytest.approx(-0.5 * 2 / 9)  # push 0, pull -(-4/9 + 2/9) = 2/9
    assert y[6, 6].item() == pytest.approx(-0.5 * 1.0)  # push 0, pull -(-1) = 1
    assert y[6, 3].item() == pytest.approx(-0.5 * 0.0)  # pull -(-A0[0] A0[3] + 2 A1[0] A1[3]) = 0
    assert y[0, 0].item() == pytest.approx(0.0)  # outside both kernels' reach


def test_pushpull_hand_computed_bias_and_border():
    # k = 1, scale 2: pull kernel = -w * ones(3, 3), padding 1. w = -1, b = 0.25, x = 1 on a 5x5 map:
    # push = -1 + 0.25 < 0 -> 0; pull = (number of in-image neighbours) - 0.25.
    layer = PushPull2d(1, 1, 1, alpha=2.0, bias=True).double()
    with torch.no_grad():
        layer.weight.fill_(-1.0)
        layer.bias.fill_(0.25)
    y = layer(torch.ones(1, 1, 5, 5, dtype=torch.float64))[0, 0]
    assert y[2, 2].item() == pytest.approx(-2.0 * 8.75)
    assert y[0, 2].item() == pytest.approx(-2.0 * 5.75)
    assert y[0, 0].item() == pytest.approx(-2.0 * 3.75)
    # and with the opposite sign the push passes and the pull is silent
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert torch.allclose(
        layer(torch.ones(1, 1, 5, 5, dtype=torch.float64)), torch.tensor(1.25, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "k, stride, padding, bias, trainable, alpha, scale",
    [
        (3, 1, 1, False, False, 1.0, 2.0),
        (5, 2, 0, True, False, 0.7, 2.0),
        (3, 1, 2, True, True, 1.0, 2.0),
        (1, 1, 0, False, False, 1.0, 2.0),
        (7, 3, 3, False, True, 1.0, 1.5),
        (3, 2, 1, True, False, 0.0, 3.0),
    ],
)
def test_pushpull_matches_formula(k, stride, padding, bias, trainable, alpha, scale):
    torch.manual_seed(0)
    layer = PushPull2d(
        3, 5, k, stride, padding, alpha=alpha, scale=scale, bias=bias, trainable_alpha=trainable
    )
    layer = layer.double()
    x = torch.randn(4, 3, 13, 11, dtype=torch.float64, requires_grad=True)
    a = layer.alpha if trainable else alpha
    y = layer(x)
    expected = ref_pushpull(x, layer.weight, layer.bias, a, scale, stride, padding)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    inputs = [x, *params_of(layer)]
    for got, want in zip(grads(y, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_pushpull_float32_within_1e5_of_straightforward():
    torch.manual_seed(1)
    layer = PushPull2d(3, 16, 3, padding=1)
    x = torch.rand(8, 3, 32, 32)
    expected = ref_pushpull(x, layer.weight, None, 1.0, 2.0, 1, 1)
    assert (layer(x) - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "layer_fn",
    [
        lambda: PushPull2d(3, 4, 3, padding=1, bias=True, trainable_alpha=True),
        lambda: MultiScalePushPull2d(3, 4, (3, 5), alphas=(0.5, 0.3)),
    ],
)
def test_batch_chunks_give_the_same_numbers_and_gradients(monkeypatch, layer_fn):
    torch.manual_seed(2)
    layer = layer_fn().double()
    x = torch.randn(7, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    y_whole = layer(x)
    g_whole = grads(y_whole, [x, *params_of(layer)])
    # 4 * 9 * 9 * 3 elements per chunk: 3 images, so chunks of 3, 3 and 1 (a ragged last chunk)
    monkeypatch.setattr(layers, "CPU_CHUNK_ELEMENTS", 3 * 4 * 81)
    assert layers._chunk_size(x, 4, 3, 1, 1) == 3
    y_chunks = layer(x)
    torch.testing.assert_close(y_chunks, y_whole, rtol=0, atol=1e-12)
    for got, want in zip(grads(y_chunks, [x, *params_of(layer)]), g_whole):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # gradcheck through two chunks of one image each
    monkeypatch.setattr(layers, "CPU_CHUNK_ELEMENTS", 4 * 25)
    assert torch.autograd.gradcheck(
        layer, (torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True),)
    )


def test_pushpull_gradcheck():
    torch.manual_seed(3)
    layer = PushPull2d(2, 3, 3, stride=2, padding=1, bias=True, trainable_alpha=True).double()
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))

    # gradients of the parameters too: a function of (x, weight, bias, alpha)
    def fn(x, w, b, a):
        return torch.func.functional_call(layer, {"weight": w, "bias": b, "alpha": a}, (x,))

    args = (x, *(p.detach().clone().requires_grad_() for p in (layer.weight, layer.bias, layer.alpha)))
    assert torch.autograd.gradcheck(fn, args)


def test_input_gradient_with_frozen_weights_as_in_attacks():
    layer = PushPull2d(3, 6, 3, padding=1).eval()
    layer.requires_grad_(False)
    x = torch.rand(5, 3, 10, 10, requires_grad=True)
    (g,) = grads(layer(x), [x])
    (g_ref,) = grads(ref_pushpull(x, layer.weight, None, 1.0, 2.0, 1, 1), [x])
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


def test_no_grad_path_and_channels_last_input_give_the_same_numbers():
    layer = PushPull2d(3, 8, 5, padding=2)
    x = torch.rand(3, 3, 12, 12)
    y = layer(x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y, rtol=0, atol=0)
        torch.testing.assert_close(
            layer(x.contiguous(memory_format=torch.channels_last)), y, rtol=1e-5, atol=1e-6
        )


def test_trainable_alpha_init_range_and_non_negativity():
    torch.manual_seed(4)
    layer = PushPull2d(3, 16, 3, padding=1, trainable_alpha=True)
    spread = 1 / math.sqrt(3 * 16)
    assert layer.alpha.shape == (16,)
    assert ((layer.alpha >= 0.5 - spread) & (layer.alpha <= 0.5 + spread)).all()
    assert layer.alpha.std().item() > 0.2 * spread  # drawn at random, not constant
    # a negative learned value means no inhibition at all (ReLU), and no gradient to push it back
    with torch.no_grad():
        layer.alpha[:8] = -0.3
    assert (layer.inhibition() >= 0).all() and (layer.inhibition()[:8] == 0).all()
    x = torch.rand(2, 3, 8, 8)
    y = layer(x)
    push_only = F.relu(F.conv2d(x, layer.weight, None, 1, 1))
    torch.testing.assert_close(y[:, :8], push_only[:, :8], rtol=1e-6, atol=1e-6)
    (g_alpha,) = grads(y, [layer.alpha])
    assert (g_alpha[:8] == 0).all() and (g_alpha[8:] != 0).any()


def test_fixed_alpha_has_no_parameter_and_state_dict_is_the_push_kernel():
    layer = PushPull2d(3, 16, 3, padding=1)
    assert list(layer.state_dict()) == ["weight"]
    torch.testing.assert_close(layer.inhibition(), torch.ones(16))
    assert list(PushPull2d(3, 16, 3, bias=True).state_dict()) == ["weight", "bias"]


# --------------------------------------------------------------------------------------------------------
# PushPullConv2d


def test_pushpull_conv_hand_computed():
    # w = [[2, 0, 0], [0, 1, 0], [0, 0, 0]]: max + min = 2, pull kernel 2 - w = [[0,2,2], [2,1,2], [2,2,2]]
    # and x = ones 5x5, no padding: push = 3 and pull = 15 everywhere on the 3x3 output; the average of a
    # constant map without counting padding is the constant, also at the corners (counted: 15 * 4 / 9).
    layer = PushPullConv2d(1, 1, 3, avg_kernel_size=3, alpha=0.15, bias=True).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]]))
        layer.bias.fill_(0.5)
    torch.testing.assert_close(layer.pull_weight()[0, 0], 2.0 - layer.weight[0, 0])
    y = layer(torch.ones(1, 1, 5, 5, dtype=torch.float64))[0, 0]
    assert y.shape == (3, 3)
    torch.testing.assert_close(y, torch.full((3, 3), 3 - 0.15 * 15 + 0.5, dtype=torch.float64))


def test_pushpull_conv_hand_computed_average():
    # a 1x1 kernel w = 1: pull kernel = -1 + (1 + 1) = 1, so pull = push = x; AvgPool 3 of a ramp
    layer = PushPullConv2d(1, 1, 1, avg_kernel_size=3, alpha=1.0, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.arange(4, dtype=torch.float64).view(1, 1, 1, 4)  # a 1x4 row 0, 1, 2, 3
    y = layer(x)[0, 0, 0]
    # averages over the in-image part of each 3-window: (0+1)/2, (0+1+2)/3, (1+2+3)/3, (2+3)/2
    torch.testing.assert_close(y, x[0, 0, 0] - torch.tensor([0.5, 1.0, 2.0, 2.5], dtype=torch.float64))


@pytest.mark.parametrize(
    "k, stride, padding, avg, bias, trainable, alpha",
    [
        (3, 1, 1, 3, True, False, 1.0),
        (5, 1, 2, 5, False, False, 0.5),
        (3, 2, 0, 0, True, True, 1.0),
        (7, 2, 3, 3, True, False, 2.0),
    ],
)
def test_pushpull_conv_matches_formula(k, stride, padding, avg, bias, trainable, alpha):
    torch.manual_seed(5)
    layer = PushPullConv2d(
        3, 4, k, stride, padding, avg_kernel_size=avg, alpha=alpha, bias=bias, trainable_alpha=trainable
    ).double()
    x = torch.randn(3, 3, 12, 13, dtype=torch.float64, requires_grad=True)
    a = layer.alpha if trainable else alpha
    y = layer(x)
    expected = ref_pushpull_conv(x, layer.weight, layer.bias, a, avg, stride, padding)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-10)
    inputs = [x, *params_of(layer)]
    for got, want in zip(grads(y, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


def test_pushpull_conv_gradcheck():
    torch.manual_seed(6)
    layer = PushPullConv2d(2, 3, 3, padding=1, avg_kernel_size=3, trainable_alpha=True).double()
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_pushpull_conv_trainable_alpha_is_one_non_negative_scalar():
    layer = PushPullConv2d(3, 8, 3, alpha=0.7, trainable_alpha=True)
    assert layer.alpha.shape == () and layer.alpha.item() == pytest.approx(0.7)
    with torch.no_grad():
        layer.alpha.fill_(-1.0)
    assert layer.inhibition().item() == 0.0


# --------------------------------------------------------------------------------------------------------
# MultiScalePushPull2d


@pytest.mark.parametrize("derived", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_multiscale_matches_formula(derived, stride):
    torch.manual_seed(7)
    layer = MultiScalePushPull2d(3, 4, (3, 5, 7), stride, derived_pull=derived).double()
    with torch.no_grad():
        layer.alphas[1] = -0.2  # used through a ReLU: this scale has no inhibition
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 4, 11, 11) if stride == 1 else (2, 4, 6, 6)
    expected = ref_multiscale(x, layer)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    inputs = [x, *params_of(layer)]
    for got, want in zip(grads(y, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_multiscale_parameters_and_inhibition():
    derived = MultiScalePushPull2d(3, 8)
    assert derived.pull_sizes == (7, 11, 15) and len(derived.pull_weights) == 0
    torch.testing.assert_close(derived.inhibition(), torch.tensor([0.5, 0.3, 0.2]))
    assert derived.pull_weight(1).shape == (8, 3, 11, 11)
    seed = MultiScalePushPull2d(3, 8, derived_pull=False)
    assert [tuple(w.shape) for w in seed.pull_weights] == [(8, 3, k, k) for k in (3, 5, 7)]
    assert seed.pull_weight(2).shape == (8, 3, 7, 7)


def test_multiscale_gradcheck():
    torch.manual_seed(8)
    layer = MultiScalePushPull2d(2, 2, (1, 3), alphas=(0.5, 0.4)).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


# --------------------------------------------------------------------------------------------------------
# dtypes, devices, repr


ALL_LAYERS = {
    "pushpull": lambda: PushPull2d(3, 8, 3, padding=1, bias=True, trainable_alpha=True),
    "pushpull-conv": lambda: PushPullConv2d(3, 8, 3, padding=1),
    "multiscale": lambda: MultiScalePushPull2d(3, 8, (3, 5), alphas=(0.5, 0.3)),
    "multiscale-seed": lambda: MultiScalePushPull2d(3, 8, (3, 5), alphas=(0.5, 0.3), derived_pull=False),
}


@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
def test_bfloat16_runs_and_is_close_to_float32(name):
    torch.manual_seed(9)
    layer = ALL_LAYERS[name]()
    x = torch.rand(4, 3, 16, 16)
    y32 = layer(x)
    layer16 = layer.to(torch.bfloat16)
    y16 = layer16(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    scale = y32.abs().max().item()
    assert (y16.float() - y32).abs().max().item() < 0.05 * scale
    y16.float().sum().backward()
    for p in layer16.parameters():
        assert p.grad is not None and p.grad.dtype == torch.bfloat16 and torch.isfinite(p.grad.float()).all()


@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
def test_autocast_bfloat16_training_step(name):
    torch.manual_seed(11)
    layer = ALL_LAYERS[name]()
    x = torch.rand(4, 3, 16, 16)
    y32 = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert (y.float() - y32).abs().max().item() < 0.05 * y32.abs().max().item()
    y.float().sum().backward()
    for p in layer.parameters():  # float32 parameters get float32 gradients through the casts
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
def test_gpu_matches_cpu(name):
    torch.manual_seed(10)
    layer = ALL_LAYERS[name]()
    x = torch.rand(4, 3, 16, 16)
    y_cpu = layer(x)
    gpu = layer.to("cuda")
    y_gpu = gpu(x.to("cuda"))
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    y_gpu.sum().backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in gpu.parameters())


def test_extra_repr():
    assert repr(PushPull2d(3, 16, 3, padding=1)) == (
        "PushPull2d(3, 16, kernel_size=3, stride=1, padding=1, pull_size=7, scale=2, alpha=1, bias=False)"
    )
    assert "alpha=trainable" in repr(PushPull2d(3, 16, 5, trainable_alpha=True, scale=1.5))
    assert "pull_size=7, scale=1.5" in repr(PushPull2d(3, 16, 5, scale=1.5))
    text = repr(PushPullConv2d(3, 16, 3, 2, 1, avg_kernel_size=5, alpha=0.5))
    assert text == (
        "PushPullConv2d(3, 16, kernel_size=3, stride=2, padding=1, avg_kernel_size=5, alpha=0.5, bias=True)"
    )
    text = repr(MultiScalePushPull2d(3, 64, derived_pull=False))
    assert "3, 64, kernel_sizes=(3, 5, 7), stride=1, pull_sizes=(3, 5, 7), derived_pull=False" in text


# --------------------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: PushPull2d(3, 16, 4), ValueError, "kernel_size must be an odd int >= 1, got 4"),
        (lambda: PushPull2d(3, 16, 0), ValueError, "kernel_size"),
        (lambda: PushPull2d(3, 16, (3, 3)), TypeError, "kernel_size must be an int"),
        (lambda: PushPull2d(3, 16, 3.0), TypeError, "kernel_size must be an int"),
        (lambda: PushPull2d(0, 16, 3), ValueError, "in_channels must be an int >= 1, got 0"),
        (lambda: PushPull2d(3, -1, 3), ValueError, "out_channels"),
        (lambda: PushPull2d(3, 16, 3, 0), ValueError, "stride must be an int >= 1, got 0"),
        (lambda: PushPull2d(3, 16, 3, padding=-1), ValueError, "padding must be an int >= 0, got -1"),
        (lambda: PushPull2d(3, 16, 3, scale=0.5), ValueError, "scale must be a finite number >= 1"),
        (lambda: PushPull2d(3, 16, 3, alpha=-0.1), ValueError, "alpha must be a finite number >= 0"),
        (lambda: PushPull2d(3, 16, 3, alpha=float("nan")), ValueError, "alpha"),
        (lambda: PushPull2d(3, 16, 3, alpha=True), TypeError, "alpha must be a real number, got bool"),
        (lambda: PushPullConv2d(3, 16, 3, avg_kernel_size=4), ValueError, "avg_kernel_size must be 0 or"),
        (lambda: PushPullConv2d(3, 16, 3, avg_kernel_size=-3), ValueError, "avg_kernel_size"),
        (lambda: PushPullConv2d(3, 16, 2), ValueError, "kernel_size"),
        (lambda: PushPullConv2d(3, 16, 3, alpha=-1), ValueError, "alpha"),
        (lambda: PushPullConv2d(3, 16, 3, stride=0), ValueError, "stride"),
        (
            lambda: MultiScalePushPull2d(3, 8, (3, 5), alphas=(0.5, 0.3, 0.2)),
            ValueError,
            "one value per kernel",
        ),
        (lambda: MultiScalePushPull2d(3, 8, (3, 4), alphas=(0.5, 0.3)), ValueError, r"kernel_sizes\[1\]"),
        (lambda: MultiScalePushPull2d(3, 8, (), alphas=()), TypeError, "kernel_sizes must be a non-empty"),
        (lambda: MultiScalePushPull2d(3, 8, 3), TypeError, "kernel_sizes"),
        (lambda: MultiScalePushPull2d(3, 8, (3,), alphas=(-0.5,)), ValueError, r"alphas\[0\]"),
        (lambda: MultiScalePushPull2d(3, 8, (3,), alphas=0.5), TypeError, "alphas must be a sequence"),
        (lambda: MultiScalePushPull2d(3, 8, scale=0.9), ValueError, "scale"),
        (lambda: MultiScalePushPull2d(3, 8, stride=0), ValueError, "stride"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(2, 4, 8, 8), ValueError, r"x must have shape \(N, 3, H, W\), got \(2, 4, 8, 8\)"),
        (torch.rand(3, 8, 8), ValueError, r"x must have shape \(N, 3, H, W\), got \(3, 8, 8\)"),
        (
            torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
            TypeError,
            r"x must be a floating-point torch.Tensor, got torch.uint8",
        ),
        ([[1.0]], TypeError, r"x must be a floating-point torch.Tensor, got <class 'list'>"),
    ],
)
def test_forward_input_errors(name, x, error, match):
    layer = ALL_LAYERS[name]()
    with pytest.raises(error, match=match) as info:
        layer(x)
    assert str(info.value).startswith(f"{type(layer).__name__}: ")  # which layer refused it


def test_push_pull_response_needs_a_term():
    with pytest.raises(ValueError, match="terms"):
        layers.push_pull_response(torch.rand(1, 3, 4, 4), [])


@pytest.mark.parametrize("name", sorted(layers.FIRST_LAYERS))
def test_every_registered_first_layer_keeps_the_size_and_describes_itself(name):
    """The registry run over every first layer: built by name through models.first_layer, it maps
    (N, 3, H, W) to (N, C, H, W), takes gradients, and says what it is in its repr."""
    from pushpull_lite import models

    layer = models.first_layer(name)(3, 8)
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 8, 12, 12)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert repr(layer) and (name == "conv" or layer.extra_repr())


def test_a_first_layer_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        layers.register_first_layer("pushpull")(lambda i, o: None)
