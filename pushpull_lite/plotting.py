"""Small matplotlib helpers shared by the chapters: grids of kernels and of images.

Figures stay small (about 1.3 inches per panel) so notebooks render fast; every function returns the
``Figure`` and leaves showing or saving it to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from . import checks

__all__ = [
    "KERNEL_MODES",
    "center_pad",
    "image_panels",
    "kernel_panels",
    "show_accuracy_curves",
    "show_images",
    "show_kernel_rows",
    "show_kernels",
]

KERNEL_MODES = ("mean", "rgb", "first")


def _to_numpy(name: str, x: object) -> np.ndarray:
    """A tensor, an array or a non-empty list of them (stacked) as a numpy array; ``name`` for the error."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in x):
        return np.stack([_to_numpy(name, v) for v in x])
    raise TypeError(f"{name} must be a torch.Tensor, a numpy array or a list of them, got {type(x).__name__}")


def _grid(n: int, ncols: int | None, panel: float, titles: Sequence[str] | None) -> tuple[Figure, list]:
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per panel ({n}), got {len(titles)}")
    ncols = min(n, ncols if ncols else n)
    if ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols}")
    nrows = math.ceil(n / ncols)
    extra = 0.25 if titles is not None else 0.0
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel * ncols, (panel + extra) * nrows), squeeze=False, layout="constrained"
    )
    flat = list(axes.flat)
    for ax in flat:
        ax.set_axis_off()
    return fig, flat


def kernel_panels(kernels: torch.Tensor | np.ndarray, mode: str = "mean") -> np.ndarray:
    """Turn kernels into panels: (N, k, k) signed maps, or (N, k, k, 3) RGB in [0, 1] for ``mode='rgb'``.

    Args:
        kernels: (k, k), (N, k, k) or (out, in, k, k) (a conv weight).
        mode: for 4-D input, ``mean`` averages over input channels, ``first`` takes channel 0, ``rgb``
            shows a 3-channel filter as a colour image with 0 at mid-grey (``0.5 + w / (2 max|w|)``,
            scaled per filter).
    """
    w = _to_numpy("kernels", kernels).astype(np.float64)
    checks.one_of("mode", mode, KERNEL_MODES)
    if w.ndim == 2:
        w = w[None]
    if w.ndim == 3:
        if mode == "rgb":
            raise ValueError("mode='rgb' needs (out, 3, k, k) kernels")
        return w
    if w.ndim != 4:
        raise ValueError(f"kernels must have shape (k, k), (N, k, k) or (out, in, k, k), got {w.shape}")
    if mode == "mean":
        return w.mean(axis=1)
    if mode == "first":
        return w[:, 0]
    if w.shape[1] != 3:
        raise ValueError(f"mode='rgb' needs 3 input channels, got {w.shape[1]}")
    scale = np.abs(w).reshape(len(w), -1).max(axis=1).clip(min=1e-12)[:, None, None, None]
    return (0.5 + w / (2 * scale)).transpose(0, 2, 3, 1).clip(0.0, 1.0)


def show_kernels(
    kernels: torch.Tensor | np.ndarray,
    ncols: int | None = 8,
    titles: Sequence[str] | None = None,
    mode: str = "mean",
    shared_scale: bool = False,
    panel: float = 1.1,
    cmap: str = "RdBu_r",
) -> Figure:
    """A grid of 2-D kernels, a diverging colormap centred on 0 (red > 0, blue < 0).

    Args:
        kernels: (k, k), (N, k, k) or (out, in, k, k); see :func:`kernel_panels` for ``mode``.
        ncols: panels per row (None: all in one row).
        titles: one per kernel.
        shared_scale: one colour scale for all panels (compare amplitudes) instead of one per panel.
    """
    panels = kernel_panels(kernels, mode)
    fig, axes = _grid(len(panels), ncols, panel, titles)
    vmax_all = float(np.abs(panels).max()) if panels.size else 1.0
    for i, p in enumerate(panels):
        ax = axes[i]
        if p.ndim == 3:
            ax.imshow(p, interpolation="nearest")
        else:
            vmax = vmax_all if shared_scale else float(np.abs(p).max())
            vmax = vmax if vmax > 0 else 1.0
            ax.imshow(p, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def image_panels(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images as float arrays for ``imshow``: (N, H, W) or (N, H, W, 3).

    Accepts (H, W), (N, H, W) (always N single-channel panels), (N, 1, H, W) or (N, 3, H, W); uint8 is
    divided by 255. A single colour image is (1, 3, H, W).
    """
    x = _to_numpy("images", images)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4:
        if x.shape[1] == 1:
            x = x[:, 0]
        elif x.shape[1] == 3:
            x = x.transpose(0, 2, 3, 1)
        else:
            raise ValueError(f"images must have 1 or 3 channels in dim 1, got shape {x.shape}")
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (H, W), (N, H, W) or (N, C, H, W), got shape {x.shape}")
    return x


def show_images(
    images: torch.Tensor | np.ndarray | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    normalize: bool = False,
    panel: float = 1.8,
) -> Figure:
    """A grid of images or response maps.

    Args:
        images: see :func:`image_panels`; a list of equally sized 2-D tensors works too.
        normalize: scale each panel to its own [min, max] (response maps); otherwise values are shown
            on [0, 1] (images), clipped.
        cmap: for single-channel panels.
    """
    panels = image_panels(images)
    fig, axes = _grid(len(panels), ncols, panel, titles)
    for i, p in enumerate(panels):
        ax = axes[i]
        if normalize:
            lo, hi = float(p.min()), float(p.max())
            p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
        p = p.clip(0.0, 1.0)
        if p.ndim == 3:
            ax.imshow(p, interpolation="nearest")
        else:
            ax.imshow(p, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def center_pad(kernels: torch.Tensor | np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the last two axes of ``kernels: (..., k, k)`` around the centre to ``(..., size, size)``.

    Kernels of different sizes drawn on one canvas then show their true extent. ``size - k`` must be even.
    """
    w = _to_numpy("kernels", kernels)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"kernels must be square in the last two axes, got shape {w.shape}")
    extra = size - w.shape[-1]
    if extra < 0 or extra % 2:
        raise ValueError(
            f"size must be >= the kernel side {w.shape[-1]} and differ from it by an even number, got {size}"
        )
    p = extra // 2
    return np.pad(w, [(0, 0)] * (w.ndim - 2) + [(p, p), (p, p)])


def show_kernel_rows(
    rows: Sequence[torch.Tensor | np.ndarray],
    row_labels: Sequence[str] | None = None,
    n: int = 8,
    mode: str = "mean",
    panel: float = 1.0,
    cmap: str = "RdBu_r",
) -> Figure:
    """Related kernels in rows, one column per output filter, e.g. push kernels above their pull kernels.

    Args:
        rows: kernels ``(out, in, k, k)`` or ``(out, k, k)``, sizes may differ between rows; each is
            zero-padded around the centre to the largest size, so every panel shows its true extent.
        row_labels: one per row, written left of the row.
        n: the first ``n`` filters (columns).
        mode: as in :func:`kernel_panels` (``mean``, ``first`` or ``rgb``).

    Each column has one colour scale (``max |w|`` over its rows), so a pull kernel's amplitude reads
    against its own push kernel's. In ``rgb`` mode 0 is mid-grey and the same scale applies.
    """
    if not rows:
        raise ValueError("rows must hold at least one kernel tensor")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"row_labels must have one entry per row ({len(rows)}), got {len(row_labels)}")
    n = checks.integer("n", n)
    checks.one_of("mode", mode, KERNEL_MODES)
    arrays = [_to_numpy(f"rows[{i}]", r).astype(np.float64) for i, r in enumerate(rows)]
    for i, a in enumerate(arrays):
        if a.ndim not in (3, 4) or (mode == "rgb" and (a.ndim != 4 or a.shape[1] != 3)):
            need = "(out, 3, k, k)" if mode == "rgb" else "(out, in, k, k) or (out, k, k)"
            raise ValueError(f"rows[{i}] must have shape {need} for mode={mode!r}, got {a.shape}")
    cols = min(n, min(len(a) for a in arrays))
    size = max(a.shape[-1] for a in arrays)
    padded = [center_pad(a[:cols], size) for a in arrays]
    if mode == "rgb":
        scale = np.max([np.abs(a).reshape(cols, -1).max(axis=1) for a in padded], axis=0).clip(min=1e-12)
        panels = [
            (0.5 + a / (2 * scale[:, None, None, None])).transpose(0, 2, 3, 1).clip(0, 1) for a in padded
        ]
    else:
        panels = [kernel_panels(a, mode) if a.ndim == 4 else a for a in padded]
        scale = np.max([np.abs(p).reshape(cols, -1).max(axis=1) for p in panels], axis=0)
        scale = np.where(scale > 0, scale, 1.0)
    fig, axes = _grid(len(rows) * cols, cols, panel, None)
    for r, row in enumerate(panels):
        for c in range(cols):
            ax = axes[r * cols + c]
            if mode == "rgb":
                ax.imshow(row[c], interpolation="nearest")
            else:
                ax.imshow(row[c], cmap=cmap, vmin=-scale[c], vmax=scale[c], interpolation="nearest")
            if c == 0 and row_labels is not None:
                ax.text(
                    -0.08,
                    0.5,
                    row_labels[r],
                    transform=ax.transAxes,
                    rotation=90,
                    ha="right",
                    va="center",
                    fontsize=8,
                )
    return fig


def show_accuracy_curves(
    eps: torch.Tensor | np.ndarray,
    curves: dict[str, torch.Tensor | np.ndarray],
    ax: plt.Axes | None = None,
    eps_scale: float = 255.0,
    linestyle: str = "-",
    title: str | None = None,
) -> Figure:
    """Accuracy against the attack budget, one line per model: the mean over seeds, a band from min to max.

    Args:
        eps: (E,) budgets in [0, 1] pixel units; drawn times ``eps_scale`` (default: in 1/255).
        curves: label -> accuracy in [0, 1], (E,) or (S, E) for S seeds; drawn in per cent.
        ax: draw into these axes (e.g. one panel per attack), else a new figure.
    """
    e = _to_numpy("eps", eps).astype(np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"eps must be a non-empty 1-D array, got shape {e.shape}")
    if not curves:
        raise ValueError("curves must hold at least one label -> accuracy entry")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.0), layout="constrained")
    else:
        fig = ax.figure
    for i, (label, acc) in enumerate(curves.items()):
        a = np.atleast_2d(_to_numpy(f"curves[{label!r}]", acc).astype(np.float64)) * 100
        if a.shape[1] != e.size:
            raise ValueError(f"curves[{label!r}] needs {e.size} values per row (one per eps), got {a.shape}")
        ax.plot(e * eps_scale, a.mean(axis=0), linestyle, marker="o", ms=3, color=f"C{i}", label=label)
        if a.shape[0] > 1:
            ax.fill_between(e * eps_scale, a.min(axis=0), a.max(axis=0), color=f"C{i}", alpha=0.2, lw=0)
    unit = "eps x 255" if eps_scale == 255 else f"eps x {eps_scale:g}"
    ax.set(xlabel=unit, ylabel="accuracy (%)", ylim=(0, None))
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig
