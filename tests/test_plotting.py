"""Tests for pushpull_lite.plotting: panel conversion (hand-computed) and that the grids draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pushpull_lite import plotting  # noqa: E402


def test_kernel_panels_modes():
    w = torch.zeros(2, 3, 3, 3)
    w[0, 0, 1, 1] = 2.0  # filter 0: red channel only, positive at the centre
    w[0, 2, 0, 0] = -1.0  # blue channel negative in a corner
    w[1, 1] = 1.0
    rgb = plotting.kernel_panels(w, mode="rgb")
    assert rgb.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(rgb[0, 1, 1], [1.0, 0.5, 0.5])  # 0.5 + 2 / (2 * 2)
    np.testing.assert_allclose(rgb[0, 0, 0], [0.5, 0.5, 0.25])  # 0.5 - 1 / 4
    np.testing.assert_allclose(rgb[1, 2, 2], [0.5, 1.0, 0.5])
    mean = plotting.kernel_panels(w, mode="mean")
    assert mean.shape == (2, 3, 3) and mean[0, 1, 1] == pytest.approx(2 / 3)
    np.testing.assert_allclose(plotting.kernel_panels(w, mode="first")[0], w[0, 0].numpy())
    assert plotting.kernel_panels(torch.ones(5, 5)).shape == (1, 5, 5)
    with pytest.raises(ValueError, match="mode"):
        plotting.kernel_panels(w, mode="max")
    with pytest.raises(ValueError, match="3 input channels"):
        plotting.kernel_panels(torch.zeros(2, 4, 3, 3), mode="rgb")


def test_image_panels_layouts():
    u8 = torch.full((2, 3, 4, 5), 255, dtype=torch.uint8)
    out = plotting.image_panels(u8)
    assert out.shape == (2, 4, 5, 3) and out.max() == 1.0
    assert plotting.image_panels(torch.zeros(2, 1, 4, 5)).shape == (2, 4, 5)
    assert plotting.image_panels(torch.zeros(4, 5)).shape == (1, 4, 5)
    assert plotting.image_panels(torch.zeros(3, 4, 5)).shape == (3, 4, 5)  # 3-D is a stack, never RGB
    assert plotting.image_panels(torch.zeros(1, 3, 4, 5)).shape == (1, 4, 5, 3)
    assert plotting.image_panels([torch.zeros(4, 5), torch.ones(4, 5)]).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="channels"):
        plotting.image_panels(torch.zeros(2, 2, 4, 5))
    with pytest.raises(TypeError, match="images"):
        plotting.image_panels("not an image")


def test_figures_have_one_axis_per_panel_and_titles():
    fig = plotting.show_kernels(torch.randn(5, 7, 7), ncols=3, titles=list("abcde"))
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 5 and len(fig.axes) == 6
    assert drawn[0].get_title() == "a"
    vmin, vmax = drawn[0].images[0].get_clim()
    assert vmin == -vmax  # the diverging colormap is centred on 0
    plt.close(fig)
    fig = plotting.show_images(torch.rand(3, 8, 8) * 5, normalize=True)
    assert len(fig.axes) == 3
    assert fig.axes[0].images[0].get_array().max() == pytest.approx(1.0)
    plt.close(fig)
    with pytest.raises(ValueError, match="titles"):
        plotting.show_images(torch.rand(3, 8, 8), titles=["a"])
