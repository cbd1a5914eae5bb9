"""The bottom of every measurement in the book: is the model right on each image?

One function decides right or wrong, :func:`hits` (``logits.argmax(1) == y``); one function measures a
model image by image, :func:`correct`, with an optional attack applied batch by batch. Everything that
reports an accuracy (clean, noisy, corrupted, attacked; in the chapters, the leaderboard and the
sanity checks) is built on these two, so a number in chapter 4 and the same number in chapter 8 are
counted the same way. Accuracies are fractions in [0, 1] inside the package; per cent only at the
edges (tables, results files).

Defined here and used in chapters 2-8: :func:`correct`, :func:`accuracy`, :func:`predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from . import checks, config

__all__ = ["Attack", "accuracy", "correct", "eval_mode", "hits", "predict"]

#: an attack: ``(model, x: (N, C, H, W) in [0, 1], y: (N,)) -> x_adv`` of the same shape, in [0, 1]
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's own flag (mixed modes survive)."""
    checks.model("model", model)
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        # Set the attribute directly: ``module.train(flag)`` would recurse and overwrite children.
        for module, flag in flags:
            module.training = flag


def hits(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example, is the prediction the label? -> bool ``(N,)``.

    outputs: logits ``(N, K)`` (the top class counts; ties: the lowest class index, as ``argmax``) or
    predicted classes ``(N,)`` (e.g. a smoothed classifier's, where -1 abstains and is never right);
    labels: ``(N,)``, moved to the outputs' device. The one place in the package that turns outputs
    into right/wrong.
    """
    predicted = outputs.argmax(dim=1) if outputs.ndim == 2 else outputs
    return predicted == labels.to(predicted.device)


def _to_model_input(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels -> dtype in [0, 1]; float pixels -> dtype; on ``device``."""
    x = x.to(device)
    return x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 100,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits ``(N, K)``, float32 on the CPU, for ``images: (N, C, H, W)`` uint8 or float in [0, 1].

    Runs in eval mode and restores every submodule's mode afterwards.
    """
    checks.pixels("images", images)
    batch_size = checks.integer("batch_size", batch_size)
    model_device, dtype = checks.model_device_dtype(model)
    dev = torch.device(device) if device is not None else model_device
    with eval_mode(model):
        outs = [
            model(_to_model_input(images[i : i + batch_size], dev, dtype)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


def correct(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    attack: Attack | None = None,
    *,
    only: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Per image: is ``model`` right on ``attack(model, x, y)`` (on ``x`` itself when ``attack`` is None)?

    images: (N, C, H, W) uint8 or float in [0, 1] (converted per batch, so a uint8 test set never
    exists as floats all at once); labels: (N,) integers. attack: ``(model, x, y) -> x_adv``, e.g.
    ``functools.partial(attacks.pgd, eps=8/255, step_size=2/255, steps=10)``; it sees batches of
    ``batch_size`` in order, so a seeded attack is reproducible for a given batch size. only: optional
    bool (N,); images outside it are not evaluated and count as wrong (attack only the images that
    survived an earlier attack, or that the model classifies correctly). device: where batches go
    (default: the model's). Returns a bool tensor (N,) on the CPU.
    """
    checks.model("model", model)
    images, labels = checks.images_labels(images, labels)
    if images.is_floating_point():
        checks.pixels("images", images)
    if attack is not None and not callable(attack):
        raise TypeError(
            f"attack must be callable (model, x, y) -> x_adv, or None; got {type(attack).__name__}"
        )
    batch_size = checks.integer("batch_size", batch_size)
    n = images.shape[0]
    if only is None:
        todo = torch.arange(n)
    else:
        if not isinstance(only, torch.Tensor) or only.dtype != torch.bool or only.shape != (n,):
            raise ValueError(
                f"only must be a bool tensor of shape ({n},), got {getattr(only, 'shape', only)}"
            )
        todo = only.cpu().nonzero().squeeze(1)
    model_device, dtype = checks.model_device_dtype(model)
    dev = torch.device(device) if device is not None else model_device
    result = torch.zeros(n, dtype=torch.bool)
    desc = "clean" if attack is None else "attack"
    with eval_mode(model):
        for idx in config.progress(
            todo.split(batch_size), desc=desc, unit="batch", enabled=progress, leave=False
        ):
            x = _to_model_input(images[idx], dev, dtype)
            y = labels[idx].to(dev, torch.long)
            if attack is not None:
                x = attack(model, x, y)
            with torch.no_grad():
                out = model(x)
            result[idx] = hits(checks.logits(out, y), y).cpu()
    return result


def accuracy(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    attack: Attack | None = None,
    **kwargs,
) -> float:
    """Accuracy in [0, 1]: the mean of :func:`correct` (same arguments)."""
    return correct(model, images, labels, attack, **kwargs).double().mean().item()
