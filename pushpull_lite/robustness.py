"""Evaluate several models on the same perturbed test sets: additive Gaussian noise and CIFAR-10-C.

Each perturbed set is made (or read) once and every model is evaluated on it, so comparing five
models costs one pass of corruption generation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import config
from .corruptions import CORRUPTIONS
from .data import load_cifar10, to_float
from .metrics import SEVERITIES, average_over_severities, mce, rce
from .train import predict


def add_gaussian_noise(images: torch.Tensor, variance: float, seed: int = 0) -> torch.Tensor:
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
    logits = predict(model, images, batch_size=batch_size)
    return 100.0 * (logits.argmax(1) != labels.cpu()).double().mean().item()


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
    batch_size: int = 500,
) -> dict[str, list[float]]:
    """Error (%) of every model at every noise variance: {label: [error at variances[0], ...]}.

    All models see the same noisy images (one noise draw per variance, seeded).
    """
    _check_models(models)
    out: dict[str, list[float]] = {label: [] for label in models}
    for v in variances:
        noisy = add_gaussian_noise(images, v, seed=seed)
        for label, model in models.items():
            out[label].append(_error(model, noisy, labels, batch_size))
    return out


def corruption_errors(
    models: Mapping[str, nn.Module],
    limit: int | None = None,
    names: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    root: str | os.PathLike | None = None,
    batch_size: int = 500,
    progress: bool = True,
) -> dict:
    """Errors (%) of every model on the clean test set and on every corruption and severity.

    Returns ``{"clean": {label: err}, "errors": {label: {name: {severity: err}}}, "source": str,
    "n_images": int}``. ``limit`` takes a class-stratified subset of the test set (the same for every
    corruption); the corrupted images come from the real CIFAR-10-C files when present, else they are
    generated (``source`` says which).
    """
    from .cifar10c import load_cifar10c

    _check_models(models)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption names {unknown}; expected names from CORRUPTIONS")
    images, labels = load_cifar10("test", limit=limit, root=root)
    clean = {label: _error(m, images, labels, batch_size) for label, m in models.items()}
    errors: dict[str, dict[str, dict[int, float]]] = {label: {n: {} for n in names} for label in models}
    sources = set()
    jobs = [(n, s) for n in names for s in severities]
    for name, severity in tqdm(jobs, desc="corruptions", disable=not progress or config.in_ci(), leave=False):
        corrupted, c_labels, source = load_cifar10c(name, severity, root=root, limit=limit)
        sources.add(source)
        for label, model in models.items():
            errors[label][name][severity] = _error(model, corrupted, c_labels, batch_size)
    return {"clean": clean, "errors": errors, "source": "; ".join(sorted(sources)), "n_images": len(labels)}


def summary(result: dict) -> dict[str, dict[str, float]]:
    """{label: {"E_clean", "E_corr", "mCE", "rCE"}} from :func:`corruption_errors` (all five severities
    and all 19 corruptions are needed for mCE/rCE, which are normalised by AlexNet's errors)."""
    out = {}
    for label, per_name in result["errors"].items():
        averaged = average_over_severities(per_name)
        out[label] = {
            "E_clean": result["clean"][label],
            "E_corr": sum(averaged.values()) / len(averaged),
            "mCE": mce(averaged),
            "rCE": rce(averaged, result["clean"][label]),
        }
    return out
