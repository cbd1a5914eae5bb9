"""What chapter 2 states about its layers and models, checked against independent expectations.

- the five ResNet-20 variants: shapes, first-layer parameter counts (hand-computed), one training step
  under the quick recipe's autocast;
- the 2020 layer with h = 1 is a convolution (alpha = 1) or a leaky ReLU of one (alpha < 1);
- its weight gradient equals that of the formula written with F.interpolate and two convolutions;
- PushPull-Conv's averaged pull equals a convolution with the pull kernel blurred by a box (interior pixels);
- the kernel-row figure helper: centre padding and one colour scale per column.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pushpull_lite import layers, plotting, train, zoo  # noqa: E402
from pushpull_lite.models import resnet20  # noqa: E402

# 16 filters on 3 input channels: 3x3 weights, plus a bias for PushPull-Conv, and the multi-scale layer's
# 3x3 + 5x5 + 7x7 push kernels plus its three inhibition strengths
FIRST_LAYER_PARAMETERS = {
    "ResNet-20": 16 * 3 * 9,
    "PushPull2d": 16 * 3 * 9,
    "PushPullConv2d avg3": 16 * 3 * 9 + 16,
    "PushPullConv2d avg5": 16 * 3 * 9 + 16,
    "Multi-scale PP": 16 * 3 * (9 + 25 + 49) + 3,
}


def test_variants_are_the_chapters_five_with_hand_counted_first_layers():
    assert list(zoo.RESNET_VARIANTS) == list(FIRST_LAYER_PARAMETERS)
    x = torch.rand(2, 3, 32, 32)
    for label, fl in zoo.RESNET_VARIANTS.items():
        torch.manual_seed(0)
        model = resnet20(first_layer=fl).eval()
        assert sum(p.numel() for p in model.conv1.parameters()) == FIRST_LAYER_PARAMETERS[label], label
        with torch.no_grad():
            assert model.conv1(x).shape == (2, 16, 32, 32), label
            assert model(x).shape == (2, 10), label


@pytest.mark.parametrize("label", list(zoo.RESNET_VARIANTS))
def test_every_variant_takes_a_training_step_under_the_quick_recipes_autocast(label):
    recipe = train.get_recipe("quick")
    torch.manual_seed(0)
    model = resnet20(first_layer=zoo.RESNET_VARIANTS[label]).to(memory_format=torch.channels_last)
    x = torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(8) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.amp):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    grad = model.conv1.weight.grad if hasattr(model.conv1, "weight") else model.conv1.push_weights[0].grad
    assert grad is not None and grad.dtype == torch.float32 and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_pushpull_with_h_1_is_a_convolution_or_a_leaky_relu_of_one():
    torch.manual_seed(0)
    layer = layers.PushPull2d(3, 5, 3, padding=1, scale=1.0)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        conv = F.conv2d(x, layer.weight, padding=1)
        torch.testing.assert_close(layer(x), conv, atol=1e-5, rtol=0)
        layer.alpha = 0.3
        torch.testing.assert_close(layer(x), F.leaky_relu(conv, 0.3), atol=1e-5, rtol=0)


def test_pushpull_weight_gradient_matches_the_formula_through_both_paths():
    torch.manual_seed(1)
    layer = layers.PushPull2d(3, 4, 3, padding=1, alpha=0.7).double()
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    target = torch.randn(3, 4, 10, 10, dtype=torch.float64)
    (layer(x) * target).sum().backward()
    w = layer.weight.detach().clone().requires_grad_(True)
    pull = -F.interpolate(w, size=(7, 7), mode="bilinear", align_corners=True)
    y = F.conv2d(x, w, padding=1).relu() - 0.7 * F.conv2d(x, pull, padding=3).relu()
    (y * target).sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)
    # the pull path contributes: a plain convolution's gradient differs
    w2 = layer.weight.detach().clone().requires_grad_(True)
    (F.conv2d(x, w2, padding=1).relu() * target).sum().backward()
    assert (w2.grad - w.grad).abs().max() > 1e-3


@pytest.mark.parametrize("m", [3, 5])
def test_averaged_pull_is_a_convolution_with_the_blurred_pull_kernel(m):
    torch.manual_seed(2)
    layer = layers.PushPullConv2d(3, 4, 3, padding=1, avg_kernel_size=m)
    x = torch.rand(2, 3, 16, 16)
    p = layer.pull_weight().detach()
    averaged = F.avg_pool2d(F.conv2d(x, p, padding=1), m, 1, (m - 1) // 2, count_include_pad=False)
    # blur each (out, in) slice with an m x m box of 1/m^2: a "full" convolution, side 3 + m - 1
    side = 3 + m - 1
    blurred = torch.zeros(4, 3, side, side)
    for dy in range(m):
        for dx in range(m):
            blurred[:, :, dy : dy + 3, dx : dx + 3] += p / m**2
    direct = F.conv2d(x, blurred, padding=side // 2)
    inner = (slice(None), slice(None), slice(m, -m), slice(m, -m))
    torch.testing.assert_close(averaged[inner], direct[inner], atol=1e-5, rtol=0)


def test_center_pad_hand_computed():
    k = np.arange(9.0).reshape(1, 3, 3)
    out = plotting.center_pad(k, 5)
    assert out.shape == (1, 5, 5)
    np.testing.assert_array_equal(out[0, 1:4, 1:4], k[0])
    assert out[0, 0].sum() == 0 and out[0, :, 0].sum() == 0
    np.testing.assert_array_equal(plotting.center_pad(k, 3), k)
    with pytest.raises(ValueError, match="size"):
        plotting.center_pad(k, 4)
    with pytest.raises(ValueError, match="size"):
        plotting.center_pad(k, 1)
    with pytest.raises(ValueError, match="square"):
        plotting.center_pad(np.zeros((2, 3)), 5)


def test_show_kernel_rows_shares_one_scale_per_column():
    push = torch.zeros(3, 2, 3, 3)
    push[:, :, 1, 1] = torch.tensor([1.0, 2.0, 4.0])[:, None]
    pull = -torch.ones(3, 2, 7, 7) * torch.tensor([3.0, 1.0, 1.0])[:, None, None, None]
    fig = plotting.show_kernel_rows([push, pull], ["push", "pull"], n=8)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x min(n, 3) columns
    # column scales: max |w| over push and pull of each filter -> 3, 2, 4
    for col, vmax in enumerate([3.0, 2.0, 4.0]):
        for row in range(2):
            img = axes[row * 3 + col].get_images()[0]
            assert img.get_clim() == pytest.approx((-vmax, vmax))
            assert img.get_array().shape == (7, 7)
    assert axes[0].texts[0].get_text() == "push" and axes[3].texts[0].get_text() == "pull"
    plt.close(fig)
    rgb = plotting.show_kernel_rows([torch.randn(4, 3, 3, 3), torch.randn(4, 3, 5, 5)], n=2, mode="rgb")
    assert len(rgb.axes) == 4 and rgb.axes[0].get_images()[0].get_array().shape == (5, 5, 3)
    plt.close(rgb)


def test_show_kernel_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="rows"):
        plotting.show_kernel_rows([])
    with pytest.raises(ValueError, match="row_labels"):
        plotting.show_kernel_rows([torch.zeros(2, 3, 3)], ["a", "b"])
    with pytest.raises(ValueError, match="rgb"):
        plotting.show_kernel_rows([torch.zeros(2, 1, 3, 3)], mode="rgb")
    with pytest.raises(ValueError, match="n must"):
        plotting.show_kernel_rows([torch.zeros(2, 3, 3)], n=0)
