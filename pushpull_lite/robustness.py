"""Evaluate several models on the same perturbed test sets: additive Gaussian noise and CIFAR-10-C.

Each perturbed set is made (or read) once and every model is evaluated on it, so comparing five
models costs one pass of corruption generation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from . import config, measure, stats
from .corruptions import CORRUPTIONS, SEVERITIES
from .data import cifar10_source, load_cifar10, to_float
from .metrics import average_over_severities, mce, rce

__all__ = ["corruption_errors", "gaussian_noise", "noise_sweep", "summary"]


def gaussian_noise(images: torch.Tensor, variance: float, seed: int = 0) -> torch.Tensor:
    """images (N, C, H, W) uint8 or float in [0, 1] -> float in [0, 1] plus N(0, variance) noise, clipped.

    The noise of the 2020 paper's Table 4: the variance is in units of the [0, 1] pixel scale
    (variance 0.01 is a standard deviation of 0.1, about 25 grey levels).
    """
    if variance < 0:
        raise ValueError(f"variance must be >= 0, got {variance}")
    x = to_float(images)
    if variance == 0:
        return x.clone()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
    return (x + noise * variance**0.5).clamp_(0, 1)


def _error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Error in per cent (the unit of CIFAR-10-C tables)."""
    return 100.0 * (~measure.correct(model, images, labels, batch_size=batch_size)).double().mean().item()


def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping {label: model}")
    for label, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{label!r}] must be an nn.Module, got {type(model).__name__}")


def noise_sweep(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    variances: Sequence[float],
    seed: int = 0,
    batch_size: int = 100,
) -> dict[str, list[float]]:
    """Error (%) of every model at every noise variance: {label: [error at variances[0], ...]}.

    All models see the same noisy images (one noise draw per variance, seeded).
    """
    _check_models(models)
    out: dict[str, list[float]] = {label: [] for label in models}
    for v in variances:
        noisy = gaussian_noise(images, v, seed=seed)
        for label, model in models.items():
            out[label].append(_error(model, noisy, labels, batch_size))
    return out


#: small corrupted sets are evaluated together, about this many images a call: fewer model calls for tiny
#: sets, while larger calls were slower per image on a 2-core CPU (100: 19.9 s, 250: 28.7 s for 5 ResNets)
_GROUP_IMAGES = 100


def corruption_errors(
    models: Mapping[str, nn.Module],
    limit: int | None = None,
    names: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    root: str | os.PathLike | None = None,
    batch_size: int = 100,
    progress: bool = True,
    per_set: int | None = None,
    keep_wrong: bool = False,
) -> dict:
    """Errors (%) of every model on the clean test set and on every corruption and severity.

    ``limit`` takes a class-stratified subset of the test set. With ``per_set``, each (corruption,
    severity) set is a different seeded sample of ``per_set`` of those images (cheap, and the samples
    together cover far more images than one small subset would); otherwise every set holds all of them.
    The corrupted images come from the real CIFAR-10-C files when present, else they are generated
    with :func:`pushpull_lite.corruptions.corrupt` and the same seed as ``load_cifar10c``.

    Returns ``{"clean": {label: err}, "errors": {label: {name: {severity: err}}}, "source": str,
    "n_images": clean test images, "n_per_set": images per corrupted set}``, plus, with ``keep_wrong``,
    ``"wrong": {label: {name: {severity: bool tensor (n_per_set,)}}}`` (which images each model got
    wrong, for paired comparisons between models) and ``"images": {name: {severity: int64 (n_per_set,)}}``
    (which test images each set holds: the sets share images, so a standard error over all sets must be
    clustered by image, :func:`pushpull_lite.stats.clustered_mean_se`).
    """
    from .cifar10c import find_cifar10c, load_cifar10c
    from .corruptions import corrupt

    _check_models(models)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption names {unknown}; expected names from CORRUPTIONS")
    images, labels = load_cifar10("test", limit=limit, root=root)
    if per_set is not None and not 1 <= per_set <= len(labels):
        raise ValueError(f"per_set must be between 1 and the {len(labels)} test images, got {per_set}")
    clean = {label: _error(m, images, labels, batch_size) for label, m in models.items()}
    errors: dict[str, dict[str, dict[int, float]]] = {label: {n: {} for n in names} for label in models}
    wrong: dict[str, dict[str, dict[int, torch.Tensor]]] = {label: {n: {} for n in names} for label in models}
    images_of: dict[str, dict[int, torch.Tensor]] = {n: {} for n in names}
    sources = set()
    released = find_cifar10c(root) is not None
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    jobs = [(n, s) for n in names for s in severities]
    pending: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []  # sets not evaluated yet
    for k, (name, severity) in enumerate(
        config.progress(jobs, desc="corruptions", enabled=progress, leave=False)
    ):
        rows = torch.arange(len(labels))  # which test images (of the `limit` subset) the set holds
        if per_set is None or released:
            corrupted, c_labels, source = load_cifar10c(name, severity, root=root, limit=limit)
            if per_set is not None:
                rows = order[(k * per_set + torch.arange(per_set)) % len(labels)]
                corrupted, c_labels = corrupted[rows], c_labels[rows]
        else:  # generate only the sampled images, with load_cifar10c's recipe and seed
            rows = order[(k * per_set + torch.arange(per_set)) % len(labels)]
            corrupted, c_labels = corrupt(images[rows], name, severity, seed=severity), labels[rows]
            source = f"generated by pushpull_lite.corruptions from {cifar10_source(root)}"
        sources.add(source)
        pending.append((name, severity, corrupted, c_labels))
        images_of[name][severity] = rows
        if sum(len(p[3]) for p in pending) >= _GROUP_IMAGES or k == len(jobs) - 1:
            # small sets are evaluated together: one pass of every model over several sets
            x = torch.cat([p[2] for p in pending])
            y = torch.cat([p[3] for p in pending]).cpu()
            for label, model in models.items():
                missed = ~measure.correct(model, x, y, batch_size=batch_size)
                sizes = [len(p[3]) for p in pending]
                for (n, sev, _, _), part in zip(pending, missed.split(sizes)):
                    errors[label][n][sev] = 100.0 * part.double().mean().item()
                    if keep_wrong:
                        wrong[label][n][sev] = part
            pending = []
    out = {
        "clean": clean,
        "errors": errors,
        "source": "; ".join(sorted(sources)),
        "n_images": len(labels),
        "n_per_set": len(labels) if per_set is None else per_set,
    }
    if keep_wrong:
        out["wrong"] = wrong
        out["images"] = images_of
    return out


def summary(result: dict) -> dict[str, dict[str, float]]:
    """{label: {"E_clean", "E_corr", "E_corr_se", "mCE", "rCE"}} from :func:`corruption_errors`.

    mCE/rCE are normalised by AlexNet's errors (corruptions without one are left out, with a warning).
    ``E_corr_se``: the standard error of ``E_corr`` over test images. The corrupted sets reuse the same
    test images, so with the per-image results of ``keep_wrong=True`` it is clustered by image
    (:func:`pushpull_lite.stats.clustered_mean_se`); without them it is NaN rather than the binomial
    formula for independent sets, which understates it by up to the square root of the number of sets.
    """
    out = {}
    per_image = "wrong" in result and "images" in result
    for label, per_name in result["errors"].items():
        averaged = average_over_severities(per_name)
        se = float("nan")
        if per_image:
            sets = [(c, sev) for c, by_sev in per_name.items() for sev in by_sev]
            wrong = torch.cat([result["wrong"][label][c][sev] for c, sev in sets]).double()
            image = torch.cat([result["images"][c][sev] for c, sev in sets])
            se = 100 * stats.clustered_mean_se(wrong.numpy(), image.numpy())[1]
        out[label] = {
            "E_clean": result["clean"][label],
            "E_corr": sum(averaged.values()) / len(averaged),
            "E_corr_se": se,
            "mCE": mce(averaged),
            "rCE": rce(averaged, result["clean"][label]),
        }
    return out
