"""Argument checks shared by the whole package: one place, one signature, ``check(name, value, ...)``.

Every check names the argument it was given and says what was expected, then returns the value in a
canonical form (``float``, ``int``, a tensor), so callers write ``eps = checks.real("eps", eps, ...)``.
The first argument is always the name the user typed; modules never define private ``_check_*`` copies.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

import numpy as np
import torch
from torch import nn

from . import config

__all__ = [
    "INT_DTYPES",
    "as_tensor",
    "image_batch",
    "images_labels",
    "integer",
    "labels",
    "logits",
    "model",
    "model_device_dtype",
    "odd_size",
    "one_of",
    "pixels",
    "probability",
    "real",
]

#: dtypes accepted for class-index labels
INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def real(
    name: str,
    value: object,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    pixel_units: bool = False,
) -> float:
    """``value`` as a finite float (not a bool), > 0 with ``positive``, within [minimum, maximum].

    ``pixel_units`` is for L-inf budgets and step sizes: images are in [0, 1], so a value above 1 is
    almost surely a budget in grey levels (``eps=8`` meant as 8/255) and would erase the image; it
    also implies ``minimum=0``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if pixel_units and minimum is None:
        minimum = 0.0
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be a finite number <= {maximum:g}, got {value!r}")
    if pixel_units and value > 1:
        raise ValueError(
            f"{name}={value:g} is larger than 1: {name} is in [0, 1] pixel units "
            f"(for {value:g}/255 write {value:g}/255)"
        )
    return value


def probability(name: str, value: object) -> float:
    """``value`` as a float strictly inside (0, 1) (a confidence level, an error rate alpha)."""
    value = real(name, value, positive=True)
    if value >= 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return value


def integer(name: str, value: object, *, minimum: int | None = 1, odd: bool = False) -> int:
    """``value`` as an int (not a bool), >= ``minimum`` (None: any), odd when ``odd``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (odd and value % 2 == 0):
        what = "an odd int" if odd else "an int"
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be {what}{bound}, got {value!r}")
    return value


def odd_size(name: str, value: object) -> int:
    """A kernel side: a positive odd int (the kernel needs a centre pixel)."""
    return integer(name, value, minimum=1, odd=True)


def one_of(name: str, value: object, choices: Collection) -> object:
    """``value`` itself when it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def as_tensor(name: str, value: object) -> torch.Tensor:
    """A torch tensor from a tensor or numpy array (no copy), or a TypeError naming ``name``."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")


def model(name: str, value: object) -> nn.Module:
    """``value`` when it is a ``torch.nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def model_device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a model's weights live and their floating dtype (the configured device and float32 if none)."""
    tensors = [*net.parameters(), *net.buffers()]
    device = tensors[0].device if tensors else config.device()
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    return device, dtype


def image_batch(
    name: str, x: object, *, channels: int | None = None, unit_range: bool = True
) -> torch.Tensor:
    """A float batch ``(N, C, H, W)`` (C == ``channels`` when given), values in [0, 1] when ``unit_range``.

    Models of this book normalise inside, so they take unnormalised [0, 1] images; attacks clamp there.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x))}")
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else str(channels)
        raise ValueError(f"{name} must have shape (N, {c}, H, W), got {tuple(x.shape)}")
    if unit_range and x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"{name} must lie in [0, 1] (found min {x.min().item():.4g}, max {x.max().item():.4g}); "
            "models take unnormalised images and normalise inside"
        )
    return x


def pixels(name: str, images: object) -> torch.Tensor:
    """A batch ``(N, C, H, W)`` of uint8 pixels or float pixels in [0, 1] (NaN refused).

    Catches what a model that normalises inside would silently get wrong, e.g. float pixels in
    [0, 255] (which turned 79 % accuracy into 10 %).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, C, H, W), got {shape}")
    if images.dtype == torch.uint8 or images.numel() == 0:
        return images
    if not images.is_floating_point():
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ValueError(
            f"{name} must be float pixels in [0, 1] (or uint8 in [0, 255]), got values in [{low:g}, {high:g}]"
            + ("; divide by 255" if 1.0 < high <= 255.0 and low >= 0.0 else "")
        )
    return images


def labels(name: str, y: object, n: int) -> torch.Tensor:
    """Class indices ``(n,)`` as an integer tensor (returned as given)."""
    y = as_tensor(name, y)
    if y.dtype not in INT_DTYPES:
        raise TypeError(f"{name} must be an integer torch.Tensor of class indices, got {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape (N,) = ({n},) to match the images, got {tuple(y.shape)}")
    return y


def images_labels(
    images: object, labels_: object, *, what: str = "accuracy"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``images: (N, C, H, W)`` uint8 or float and ``labels: (N,)`` as tensors, N >= 1, or a clear error."""
    images = as_tensor("images", images)
    labels_ = as_tensor("labels", labels_)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    if labels_.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape (N,) = ({images.shape[0]},), got {tuple(labels_.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"images is empty: {what} of no examples is undefined")
    return images, labels_


def logits(out: object, y: torch.Tensor) -> torch.Tensor:
    """A model's output as logits ``(N, K)`` matching labels ``y: (N,)`` with indices in [0, K)."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != y.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return logits of shape (N, K) = ({y.shape[0]}, K), got {shape}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
        raise ValueError(f"y must hold class indices in [0, {out.shape[1] - 1}] for this model")
    return out
