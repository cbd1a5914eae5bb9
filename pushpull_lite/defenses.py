"""Input-transform defenses: a preprocessing stage in front of a classifier, and a deliberately broken one.

:class:`Defended` runs ``classifier(preprocess(x))``; :func:`quantize` (bit-depth reduction) is the
textbook gradient-masking stage that BPDA breaks (chapter 7). Models take images (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import checks

__all__ = ["Defended", "quantize"]


def quantize(x: torch.Tensor, levels: int = 8) -> torch.Tensor:
    """Round every pixel to ``levels`` evenly spaced values in [0, 1] ("bit-depth reduction").

    x: (N, C, H, W) float in [0, 1]. ``torch.round`` has a zero gradient everywhere, so a classifier
    behind this stage gives gradient attacks nothing to follow: the textbook gradient-masking defense
    that BPDA breaks (Athalye et al. 2018).
    """
    levels = checks.integer("levels", levels, minimum=2)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x))}")
    return torch.round(x * (levels - 1)) / (levels - 1)


class Defended(nn.Module):
    """``classifier(preprocess(x))``: a defense made of an input transformation and a classifier.

    preprocess: maps x (N, C, H, W) in [0, 1] to the same shape (may be random, non-differentiable or
    detached from the graph; a result without a graph gets a zero gradient, which is what a naive
    attacker sees). classifier: an ``nn.Module`` mapping [0, 1] images to logits (N, K).
    """

    def __init__(self, classifier: nn.Module, preprocess: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        checks.model("classifier", classifier)
        if not callable(preprocess):
            raise TypeError(f"preprocess must be callable, got {type(preprocess).__name__}")
        self.classifier = classifier
        self.preprocess = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.preprocess(x)
        if x.requires_grad and not z.requires_grad:
            z = z + 0 * x  # no path back to x: a zero gradient instead of an autograd error
        return self.classifier(z)

    def extra_repr(self) -> str:
        if isinstance(self.preprocess, nn.Module):
            return ""
        name = getattr(self.preprocess, "__name__", None) or getattr(
            getattr(self.preprocess, "func", None), "__name__", type(self.preprocess).__name__
        )
        return f"preprocess={name}"
