"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): certified L2 robustness by Gaussian noise.

The smoothed classifier ``g(x) = argmax_c P(f(x + d) = c)``, ``d ~ N(0, sigma^2 I)``, is constant on the
L2 ball of radius ``sigma * Phi^-1(pA)`` around ``x`` when the base classifier ``f`` returns class A with
probability at least ``pA`` under the noise. :func:`certify` and :func:`smoothed_predict` follow the paper's
CERTIFY and PREDICT exactly: Monte Carlo counts, a one-sided Clopper-Pearson lower bound on ``pA`` (so
the certificate holds with probability at least ``1 - alpha`` over the noise), a two-sided binomial test
for PREDICT, and class ``-1`` when they abstain.

Units: images ``x: (3, H, W)`` float in [0, 1]; the noise and ``sigma`` are in the same [0, 1] pixel
units (sigma = 0.25 is 64 grey levels), added before the model's own normalisation and not clipped, as in
the paper; radii are L2 norms in those units. The base model maps ``(N, 3, H, W)`` to logits ``(N, K)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from . import checks, config, measure

__all__ = [
    "ABSTAIN",
    "GaussianAugment",
    "certified_accuracy",
    "certify",
    "lower_confidence_bound",
    "smoothed_predict",
    "radius_for",
    "sample_counts",
]

ABSTAIN = -1


class GaussianAugment(nn.Module):
    """Add N(0, sigma^2) noise to [0, 1] images in training mode only (identity in eval mode).

    The base models of randomized smoothing are trained with the noise they will be smoothed with:
    ``nn.Sequential(GaussianAugment(0.25), model)``. No clipping, matching the certification noise.
    x: (N, C, H, W) float; returns the same shape.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = checks.real("sigma", sigma, minimum=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0:
            return x
        return x + self.sigma * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"


def _check_image(name: str, x: object) -> torch.Tensor:
    """One image ``(C, H, W)``, float in [0, 1]: :func:`checks.image_batch` on it as a batch of one."""
    if isinstance(x, torch.Tensor) and x.ndim != 3:
        raise ValueError(f"{name} must be one image of shape (C, H, W), got {tuple(x.shape)}")
    checks.image_batch(name, x[None] if isinstance(x, torch.Tensor) else x)
    return x


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    if seed is not None:
        return torch.Generator().manual_seed(checks.integer("seed", seed, minimum=None))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def lower_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    The ``alpha`` quantile of Beta(successes, trials - successes + 1); 0 when ``successes == 0``. Equals
    ``statsmodels.proportion_confint(successes, trials, alpha=2 * alpha, method="beta")[0]``, the call in
    Cohen et al.'s code.
    """
    successes = checks.integer("successes", successes, minimum=0)
    trials = checks.integer("trials", trials)
    if successes > trials:
        raise ValueError(f"successes ({successes}) must not exceed trials ({trials})")
    alpha = checks.probability("alpha", alpha)
    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


@torch.no_grad()
def sample_counts(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """How often the base model predicts each class on ``n`` noisy copies ``x + N(0, sigma^2 I)``.

    x: (C, H, W) float in [0, 1]. The noise is drawn on ``generator``'s device (the CPU by default, so a
    seed gives the same noise on every device) in batches of ``batch_size``. Returns int64 counts (K,).
    """
    x = _check_image("x", x)
    sigma = checks.real("sigma", sigma, positive=True)
    n = checks.integer("n", n)
    batch_size = checks.integer("batch_size", batch_size)
    device, dtype = checks.model_device_dtype(checks.model("model", model))
    x = x.to(device, dtype)
    noise_device = generator.device if generator is not None else torch.device("cpu")
    counts: np.ndarray | None = None
    with measure.eval_mode(model):
        remaining = n
        while remaining:
            size = min(batch_size, remaining)
            remaining -= size
            noise = torch.randn((size, *x.shape), generator=generator, device=noise_device, dtype=dtype)
            logits = model(x + sigma * noise.to(device))
            if logits.ndim != 2 or logits.shape[0] != size:
                raise ValueError(f"model must return logits (N, K) = ({size}, K), got {tuple(logits.shape)}")
            batch = np.bincount(logits.argmax(dim=1).cpu().numpy(), minlength=logits.shape[1])
            counts = batch if counts is None else counts + batch
    return counts.astype(np.int64)


def smoothed_predict(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Cohen et al.'s PREDICT: the smoothed classifier's class at ``x`` (C, H, W), or -1 (abstain).

    Counts the top two classes over ``n`` noisy samples and returns the top one only if a two-sided
    binomial test rejects "both equally likely" at level ``alpha``; the returned class is wrong with
    probability at most ``alpha``.
    """
    alpha = checks.probability("alpha", alpha)
    counts = sample_counts(model, x, sigma, n, batch_size, generator=_generator(seed, generator))
    order = np.argsort(-counts, kind="stable")
    top, count_a = int(order[0]), int(counts[order[0]])
    count_b = int(counts[order[1]]) if counts.size > 1 else 0
    if binomtest(count_a, count_a + count_b, 0.5).pvalue > alpha:
        return ABSTAIN
    return top


def certify(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[int, float]:
    """Cohen et al.'s CERTIFY for one image ``x`` (C, H, W) in [0, 1]: ``(class, L2 radius)``.

    ``n0`` noisy samples pick the candidate class A; ``n`` fresh samples count how often the base model
    returns it; ``pA_lower`` is the one-sided (1 - alpha) Clopper-Pearson lower bound of that frequency.
    If ``pA_lower < 0.5`` it abstains: ``(-1, 0.0)``; else it returns ``(A, sigma * Phi^-1(pA_lower))``.
    With probability at least ``1 - alpha`` the smoothed classifier returns A on the whole ball.
    """
    alpha = checks.probability("alpha", alpha)
    n0 = checks.integer("n0", n0)
    gen = _generator(seed, generator)
    selection = sample_counts(model, x, sigma, n0, batch_size, generator=gen)
    candidate = int(np.argmax(selection))
    estimation = sample_counts(model, x, sigma, n, batch_size, generator=gen)
    p_lower = lower_confidence_bound(int(estimation[candidate]), n, alpha)
    if p_lower < 0.5:
        return ABSTAIN, 0.0
    return candidate, sigma * float(norm.ppf(p_lower))


def certified_accuracy(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    sigma: float,
    *,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 500,
    radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Certify every image and tabulate certified accuracy against the L2 radius (Cohen et al.'s curves).

    images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) integers. One generator seeded with
    ``seed`` serves all images in order, so the result is reproducible. Certified accuracy at radius r
    is the fraction of images certified with the correct class and a radius >= r (abstentions count as
    wrong). Returns ``{"predictions": int64 (N,) (-1 = abstain), "certified_radii": float64 (N,),
    "correct": bool (N,), "accuracy": {r: fraction in [0, 1] for r in radii}, "sigma", "n0", "n",
    "alpha"}`` (tensors on the CPU).
    """
    images, labels = checks.images_labels(images, labels, what="certified accuracy")
    radii = tuple(checks.real(f"radii[{i}]", r, minimum=0.0) for i, r in enumerate(radii))
    if not radii:
        raise ValueError("radii must name at least one radius")
    gen = _generator(seed, None)
    predictions, certified = [], []
    for image in config.progress(images, desc="certify", unit="image", enabled=progress):
        x = image.float() / 255 if image.dtype == torch.uint8 else image
        cls, radius = certify(model, x, sigma, n0, n, alpha, batch_size, generator=gen)
        predictions.append(cls)
        certified.append(radius)
    predictions_t = torch.tensor(predictions, dtype=torch.int64)
    radii_t = torch.tensor(certified, dtype=torch.float64)
    correct = measure.hits(predictions_t, labels.to(torch.int64).cpu())
    accuracy = {r: float((correct & (radii_t >= r)).double().mean()) for r in radii}
    return {
        "predictions": predictions_t,
        "certified_radii": radii_t,
        "correct": correct,
        "accuracy": accuracy,
        "sigma": float(sigma),
        "n0": n0,
        "n": n,
        "alpha": float(alpha),
    }


def radius_for(p_a: float, sigma: float) -> float:
    """The certified radius ``sigma * Phi^-1(p_a)`` for a known ``p_a`` in [0, 1] (0 when ``p_a <= 0.5``)."""
    p_a = checks.real("p_a", p_a, minimum=0.0, maximum=1.0)
    sigma = checks.real("sigma", sigma, positive=True)
    if p_a <= 0.5:
        return 0.0
    return sigma * float(norm.ppf(p_a))  # inf when p_a == 1
