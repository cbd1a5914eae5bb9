"""The book's named model configurations, trained (or loaded from the cache) in one call.

Chapter 2 trains the ResNet-20 variants and chapter 3 evaluates the very same ones: both ask for
``train_resnet_variants()`` with the active profile, so the second call only loads checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import config
from .models import FirstLayer, first_layer
from .train import TrainedModel, train_model

__all__ = ["RESNET_VARIANTS", "SEED_CNN_VARIANTS", "train_resnet_variants"]

#: label -> first layer of ResNet-20 (None: the plain 3x3 convolution)
RESNET_VARIANTS: dict[str, FirstLayer | None] = {
    "ResNet-20": None,
    "PushPull2d": first_layer("pushpull", alpha=1.0, scale=2.0),
    "PushPullConv2d avg3": first_layer("pushpull-conv", avg_kernel_size=3),
    "PushPullConv2d avg5": first_layer("pushpull-conv", avg_kernel_size=5),
    "Multi-scale PP": first_layer("multiscale"),
}

#: label -> first layer of the multi-scale project's CNN (chapter 4; chapters 7 and 8 use the same)
SEED_CNN_VARIANTS: dict[str, FirstLayer] = {
    "conv": first_layer("conv", bias=True),
    "push-pull": first_layer("pushpull"),
    "multi-scale, seed's pull": first_layer("multiscale", derived_pull=False),
    "multi-scale, derived pull": first_layer("multiscale", derived_pull=True),
}


def train_resnet_variants(
    profile: str | None = None,
    seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    arch: str = "resnet20",
    progress: bool = True,
) -> dict[str, list[TrainedModel]]:
    """Train (or load) each variant for each seed with the profile's ResNet recipe and training subset.

    Returns {label: [TrainedModel per seed]} in the order of :data:`RESNET_VARIANTS`.
    """
    prof = config.get_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    labels = list(RESNET_VARIANTS) if variants is None else list(variants)
    unknown = [v for v in labels if v not in RESNET_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; expected labels from {list(RESNET_VARIANTS)}")
    if not seeds:
        raise ValueError("seeds must not be empty")
    return {
        label: [
            train_model(
                arch, RESNET_VARIANTS[label], prof.resnet_recipe, prof.train_limit, seed, progress=progress
            )
            for seed in seeds
        ]
        for label in labels
    }
