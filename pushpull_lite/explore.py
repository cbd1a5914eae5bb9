"""Interactive explorations: the figures a chapter's sliders redraw, and the sliders themselves.

Each ``*_figure`` function draws one static figure from plain arguments; a chapter calls it once with
default values, so the HTML book shows the figure, and then offers the same function with sliders::

    explore.pushpull_layer_figure(weight, image)                     # the static figure
    explore.sliders(lambda alpha, scale: explore.pushpull_layer_figure(weight, image, alpha, scale),
                    alpha=explore.Slider(0.0, 3.0, 0.25, 1.0, "α"),
                    scale=explore.Slider(1.0, 3.0, 0.25, 2.0, "h"))   # in a cell tagged skip-execution

**Why the tag.** The book is executed headless (``jupyter-book build``, nbval, nbclient), and a cell that
creates ipywidgets can stall such an execution until the cell timeout (jupyter/nbclient#312: the
kernel's reply is not picked up while widget messages flow). So a cell that calls :func:`sliders` carries
the ``skip-execution`` tag: jupyter-book, nbclient, ``jupyter nbconvert --execute`` and papermill skip it,
the book's ``conftest.py`` makes nbval skip it too, and ``tests/test_headless.py`` checks that every such
cell is tagged and that nothing else in the book or the package creates a widget. A reader runs the cell
by hand in Jupyter or Colab. Defined in chapter 1; used in chapters 1-4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from . import attacks, checks, corruptions, layers, measure
from .data import CIFAR10_CLASSES, to_float

__all__ = [
    "Choice",
    "Slider",
    "adversarial_figure",
    "corruption_figure",
    "pushpull_layer_figure",
    "sliders",
]


@dataclass(frozen=True)
class Slider:
    """A numeric slider: ``Slider(min, max, step, value, label)``; whole numbers give an integer slider."""

    min: float
    max: float
    step: float
    value: float
    label: str = ""

    def __post_init__(self):
        if not self.min <= self.value <= self.max or self.step <= 0:
            raise ValueError(
                f"Slider needs min <= value <= max and step > 0, got {self.min}, {self.value}, {self.max}, "
                f"step {self.step}"
            )


@dataclass(frozen=True)
class Choice:
    """A drop-down list: ``Choice(options, value, label)``."""

    options: tuple
    value: object
    label: str = ""

    def __post_init__(self):
        if self.value not in self.options:
            raise ValueError(f"Choice value {self.value!r} is not one of its options {self.options!r}")


def _widget(name: str, control: Slider | Choice):
    import ipywidgets as w

    label = control.label or name
    if isinstance(control, Choice):
        return w.Dropdown(options=list(control.options), value=control.value, description=label)
    if isinstance(control, Slider):
        ints = all(float(v).is_integer() for v in (control.min, control.max, control.step, control.value))
        cls = w.IntSlider if ints else w.FloatSlider
        cast = int if ints else float
        return cls(
            value=cast(control.value),
            min=cast(control.min),
            max=cast(control.max),
            step=cast(control.step),
            description=label,
            continuous_update=False,  # redraw when the slider is released, not at every pixel
        )
    raise TypeError(f"control {name!r} must be a Slider or a Choice, got {type(control).__name__}")


def sliders(draw: Callable[..., object], **controls: Slider | Choice):
    """``draw`` with one widget per keyword (a :class:`Slider` or :class:`Choice`): an
    ``ipywidgets.interactive``, shown as the value of the cell (None, with a message, when ipywidgets is
    not installed).

    Only for cells tagged ``skip-execution`` (see the module docstring): never call it in a cell that a
    headless run executes.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    if not controls:
        raise ValueError("sliders needs at least one control, e.g. alpha=Slider(0, 3, 0.25, 1)")
    try:
        import ipywidgets
    except ImportError:
        print("ipywidgets is not installed: `pip install ipywidgets` for the sliders (the figure is static)")
        return None
    return ipywidgets.interactive(draw, **{name: _widget(name, c) for name, c in controls.items()})


def _hide_axes(axes) -> None:
    for ax in axes:
        ax.set_axis_off()


def pushpull_layer_figure(
    weight: torch.Tensor,
    image: torch.Tensor,
    alpha: float = 1.0,
    scale: float = 2.0,
    noise: float = 0.1,
    channels: Sequence[int] = (0, 1, 2, 3),
    normalize: nn.Module | None = None,
    seed: int = 0,
) -> Figure:
    """What a push-pull first layer with push kernels ``weight`` does to one noisy image, for a chosen
    inhibition strength ``alpha`` and pull scale ``scale`` (h).

    weight: (C_out, 3, k, k) learned push kernels (e.g. a trained ``PushPull2d``'s ``.weight``); image:
    (3, H, W) uint8 or float in [0, 1]; noise: std of the Gaussian noise added (pixel units); normalize:
    the model's input normalisation. Rows: the plain convolution's response ``[w * x]+`` and the push-pull
    response ``[w * x]+ - alpha [-U_h(w) * x]+`` of the layer (same colour scale per channel), for the
    listed channels; the titles give the share of the push response the pull cancels.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"weight must be (C_out, 3, k, k), got {tuple(weight.shape)}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}")
    noise = checks.real("noise", noise, minimum=0.0)
    k = weight.shape[-1]
    layer = layers.PushPull2d(3, weight.shape[0], k, padding=k // 2, alpha=alpha, scale=scale)
    with torch.no_grad():
        layer.weight.copy_(weight.detach().cpu())
        gen = torch.Generator().manual_seed(seed)
        x = to_float(image.detach().cpu()).float()[None]
        x = (x + noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        z = normalize(x) if normalize is not None else x
        push = F.conv2d(z, layer.weight, padding=layer.padding).relu()[0]
        out = layer(z)[0]
    channels = list(channels)
    fig, axes = plt.subplots(
        2, len(channels) + 1, figsize=(1.9 * (len(channels) + 1), 4.0), layout="constrained"
    )
    axes[0, 0].imshow(x[0].permute(1, 2, 0).numpy())
    axes[0, 0].set_title(f"input, noise σ={noise:g}", fontsize=9)
    axes[1, 0].set_axis_off()
    for j, c in enumerate(channels, start=1):
        top = float(torch.maximum(push[c].abs().max(), out[c].abs().max())) or 1.0  # one scale per channel
        axes[0, j].imshow(push[c].numpy(), cmap="RdBu_r", vmin=-top, vmax=top)
        axes[0, j].set_title(f"channel {c}: [w*x]+", fontsize=9)
        axes[1, j].imshow(out[c].numpy(), cmap="RdBu_r", vmin=-top, vmax=top)
        cancelled = float(
            torch.minimum(push[c], push[c] - out[c]).clamp(min=0).sum() / push[c].sum().clamp(min=1e-12)
        )
        axes[1, j].set_title(f"push-pull: {100 * cancelled:.0f} % cancelled", fontsize=9)
    _hide_axes(axes.flat)
    fig.suptitle(
        f"push-pull with α = {alpha:g}, h = {scale:g} (pull kernel {layer.pull_size}x{layer.pull_size})",
        fontsize=10,
    )
    plt.show()
    return fig


def corruption_figure(
    images: torch.Tensor,
    name: str = "gaussian_noise",
    severity: int = 3,
    model: nn.Module | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
) -> Figure:
    """A few images, clean and with CIFAR-10-C corruption ``name`` at ``severity`` (1-5), generated by
    :func:`pushpull_lite.corruptions.corrupt`; with ``model`` and ``labels``, its prediction on each.

    images: (N, 3, 32, 32) uint8, N <= 8; labels: (N,) int64.
    """
    if images.dim() != 4 or not 1 <= len(images) <= 8:
        raise ValueError(f"images must be a batch of 1 to 8 images (N, 3, H, W), got {tuple(images.shape)}")
    corrupted = corruptions.corrupt(images, name, severity, seed=seed)
    rows = [images, corrupted]
    preds = None
    if model is not None:
        with torch.no_grad(), measure.eval_mode(model):
            dev = next(model.parameters()).device
            preds = [model(to_float(r).to(dev)).argmax(1).cpu() for r in rows]
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.4), layout="constrained", squeeze=False)
    for i, (row, label) in enumerate(zip(rows, ("clean", f"{name}, severity {severity}"))):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(row[j].permute(1, 2, 0).numpy())
            title = label if j == 0 else ""
            if preds is not None:
                guess = CIFAR10_CLASSES[int(preds[i][j])]
                ok = labels is not None and int(preds[i][j]) == int(labels[j])
                title = (title + "\n" if title else "\n") + f"{guess} {'✓' if ok else '✗'}"
            ax.set_title(title, fontsize=8)
    _hide_axes(axes.flat)
    plt.show()
    return fig


def adversarial_figure(
    model: nn.Module,
    image: torch.Tensor,
    label: int,
    eps_255: float = 8.0,
    attack: str = "pgd",
    steps: int = 10,
    seed: int = 0,
) -> Figure:
    """One image attacked at L-inf budget ``eps_255`` / 255 (FGSM, or PGD with ``steps`` steps of
    2.5 eps / steps and a random start): the clean image, the perturbation (magnified to the full grey
    range) and the adversarial image, with the model's prediction and confidence on each.

    image: (3, H, W) uint8 or float in [0, 1]; label: its true class.
    """
    checks.one_of("attack", attack, ("fgsm", "pgd"))
    if not 0 <= eps_255 <= 255:
        raise ValueError(f"eps_255 must be in [0, 255] (grey levels), got {eps_255}")
    dev = next(model.parameters()).device
    x = to_float(image.detach()).float()[None].to(dev)
    y = torch.tensor([int(label)], device=dev)
    eps = eps_255 / 255
    torch.manual_seed(seed)
    if eps == 0:
        adv = x.clone()
    elif attack == "fgsm":
        adv = attacks.fgsm(model, x, y, eps)
    else:
        adv = attacks.pgd(model, x, y, eps, 2.5 * eps / steps, steps)
    with torch.no_grad(), measure.eval_mode(model):
        probs = torch.softmax(model(torch.cat([x, adv])).float(), dim=1).cpu()
    delta = (adv - x)[0].cpu()
    spread = float(delta.abs().max()) or 1.0
    panels = [x[0].cpu(), 0.5 + 0.5 * delta / spread, adv[0].cpu()]
    names = ["clean", "perturbation, magnified", f"{attack.upper()} at {eps_255:.1f}/255"]
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.6), layout="constrained")
    for ax, panel, title, p in zip(axes, panels, names, (probs[0], None, probs[1])):
        ax.imshow(panel.permute(1, 2, 0).clamp(0, 1).numpy())
        if p is not None:
            guess = int(p.argmax())
            title += f"\n{CIFAR10_CLASSES[guess]} ({100 * p[guess]:.0f} %)"
        ax.set_title(title, fontsize=9)
    _hide_axes(axes)
    fig.suptitle(
        f"true class: {CIFAR10_CLASSES[int(label)]}; "
        f"largest pixel change {255 * float(delta.abs().max()):.1f}/255",
        fontsize=9,
    )
    plt.show()
    return fig
