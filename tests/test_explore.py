"""The interactive explorations: the figures the sliders redraw, and the sliders themselves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import pytest
import torch

from pushpull_lite import explore, layers, models


def test_sliders_build_one_widget_per_control_and_redraw_with_their_values():
    seen = []
    ui = explore.sliders(
        lambda alpha, name, k: seen.append((alpha, name, k)),
        alpha=explore.Slider(0.0, 3.0, 0.25, 1.0, "α"),
        name=explore.Choice(("a", "b"), "b"),
        k=explore.Slider(1, 5, 1, 3),
    )
    kinds = {type(w) for w in ui.kwargs_widgets}
    assert kinds == {ipywidgets.FloatSlider, ipywidgets.Dropdown, ipywidgets.IntSlider}
    assert seen[-1] == (1.0, "b", 3)  # drawn once with the defaults
    ui.kwargs_widgets[0].value = 2.0
    ui.update()
    assert seen[-1] == (2.0, "b", 3)
    assert all(not w.continuous_update for w in ui.kwargs_widgets if hasattr(w, "continuous_update"))


def test_controls_reject_bad_defaults():
    with pytest.raises(ValueError, match="min <= value <= max"):
        explore.Slider(0, 1, 0.1, 2)
    with pytest.raises(ValueError, match="not one of its options"):
        explore.Choice(("a",), "b")
    with pytest.raises(ValueError, match="at least one control"):
        explore.sliders(lambda: None)


def _image():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)


def test_pushpull_figure_cancels_nothing_without_inhibition_and_more_with_more():
    torch.manual_seed(0)
    w = layers.PushPull2d(3, 8, 3, padding=1).weight.detach()

    def cancelled(alpha):
        fig = explore.pushpull_layer_figure(w, _image(), alpha=alpha, channels=(0, 1))
        return [
            float(ax.get_title().split("%")[0].split()[-1])
            for ax in fig.axes[3:]
            if "cancelled" in ax.get_title()
        ]

    assert cancelled(0.0) == [0.0, 0.0]
    assert all(a <= b for a, b in zip(cancelled(1.0), cancelled(3.0)))


def test_corruption_and_adversarial_figures_draw_and_label_predictions():
    model = models.build("resnet20").eval()
    images = torch.stack([_image(), _image()])
    fig = explore.corruption_figure(images, "gaussian_noise", 5, model=model, labels=torch.tensor([0, 1]))
    assert len(fig.axes) == 4 and "severity 5" in fig.axes[0].get_title() + fig.axes[2].get_title()
    fig = explore.adversarial_figure(model, images[0], 3, eps_255=4, attack="fgsm")
    assert "FGSM at 4.0/255" in fig.axes[2].get_title()
    assert "largest pixel change 4.0/255" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="attack"):
        explore.adversarial_figure(model, images[0], 3, attack="cw")
