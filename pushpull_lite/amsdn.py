"""AMSDN in miniature: a multi-stage defense, small enough to train on a CPU.

The Adaptive Multi-Scale Defense Network of seed 002 chains five stages; this module builds each one
at a size a CPU can train in a minute (``quick``) and a GPU in minutes (``full``):

1. **Backbone**: a ConvNeXt-style network (depthwise 7x7 conv, inverted-bottleneck MLP with GELU,
   layer scale, residual; BatchNorm instead of LayerNorm, which is faster on CPUs) with four stages at
   16, 8, 4 and 2 pixels (the stem runs at 32), and a feature pyramid (FPN, Lin et al. 2017) on top:
   P2..P5, all with ``fpn_channels`` channels. The stem is a 3x3 conv or a push-pull layer (chapter 2).
2. **Attention**: per level, channel attention (squeeze-and-excitation) times spatial attention
   (CBAM-style: a 7x7 conv on the channel mean and max), then *pyramid attention*: one weight per level
   and image (a softmax over levels) that fuses the levels' pooled features.
3. **Selective purification**: an *anomaly score* in [0, 1] per image (an MLP on per-level feature
   statistics, trained to tell adversarial from clean inputs), a feature denoiser per level (a 3x3 mean
   filter + 1x1 conv + residual, as in Xie et al. 2019), and a gate that mixes purified and raw
   features: the score itself while training (soft, differentiable), the *detection decision*
   ``score > threshold`` at inference (hard). Optionally, input bit-depth reduction
   (``squeeze_bits``, "feature squeezing", Xu et al. 2018) before the stem.
4. **Prediction consistency** (optional, randomised): classify ``consistency_views`` noisy copies of
   the input, average their probabilities, and flag the input when too few views agree.
5. **Head**: a linear classifier on the fused features. :class:`AMSDN` returns a dict with ``logits``
   ``(N, K)``, ``anomaly`` ``(N,)`` and ``detected`` ``(N,)`` (bool).

Which parts stop gradients, and how to attack them (Athalye et al. 2018):

- bit-depth reduction (``round``) has zero gradient almost everywhere, and the hard gate is a step
  function of the score: both are **non-differentiable**, so gradient attacks on the plain model are
  *obfuscated*; attack with BPDA (:class:`LogitsOnly` with ``bpda=True``: identity gradient through the
  rounding, the soft score's gradient through the gate);
- the consistency check is **randomised**: attack it with EOT (average the gradient over draws).

Training (:func:`train_amsdn`) runs up to three stages, each cached with the model: ``"ssrt"``
(self-supervised robustness pre-training, a contrastive loss between two augmented, noisy views),
``"adv"`` (PGD adversarial training, plus the detector's loss), ``"multi"`` (fine-tuning on a mix of
attacks and Gaussian noise). ``"clean"`` trains on clean images only (the undefended baseline).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks, checks, config, measure, train
from .data import Batches, load_cifar10, random_crop_flip, stratified_indices, to_float, training_data_id
from .models import Normalize, check_images, first_layer

__all__ = [
    "AMSDN",
    "Architecture",
    "AMSDNRecipe",
    "LogitsOnly",
    "RECIPES",
    "STAGES",
    "SWITCHES",
    "EVAL_BUDGETS",
    "EvalBudget",
    "build",
    "calibrate_threshold",
    "calibration_split",
    "detector_aware_pgd",
    "get_budget",
    "get_recipe",
    "model_path",
    "switched",
    "train_amsdn",
    "Backbone",
    "BitSqueeze",
    "CACHE_VERSION",
    "ChannelSpatialAttention",
    "ConvNeXtBlock",
    "Denoiser",
    "FPN",
    "box3",
    "checkpoint_path",
    "squeeze_bits",
    "training_config",
]

#: Training stages, in the order they run.
STAGES = ("ssrt", "clean", "adv", "multi")
#: Inference-time stage switches of :class:`AMSDN` (see :func:`switched`).
SWITCHES = ("squeeze", "attention", "pyramid", "purification", "consistency")
#: Bump when a change to this module makes old AMSDN checkpoints wrong to reuse (2: the key records the
#: training data's content).
CACHE_VERSION = 2


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Architecture:
    """The model's sizes and inference settings (all enter the cache key)."""

    widths: tuple[int, ...] = (16, 32, 48, 64)  # backbone channels at 16, 8, 4, 2 pixels
    depths: tuple[int, ...] = (1, 1, 1, 1)  # ConvNeXt blocks per stage
    fpn_channels: int = 16
    stem: str = "conv"  # "conv" or "pushpull"
    num_classes: int = 10
    squeeze_bits: int | None = 5  # input bit-depth reduction; None: off
    threshold: float = 0.5  # detection decision: anomaly score > threshold
    consistency_views: int = 8  # noisy views for the consistency check
    consistency_sigma: float = 0.1  # their Gaussian noise, in [0, 1] pixel units
    consistency_agreement: float = 0.75  # flag when fewer views than this agree with the average

    def __post_init__(self):
        if len(self.widths) != 4 or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be 4 positive ints (one per stage), got {self.widths!r}")
        if len(self.depths) != 4 or any(not isinstance(d, int) or d < 1 for d in self.depths):
            raise ValueError(f"depths must be 4 ints >= 1, got {self.depths!r}")
        checks.integer("fpn_channels", self.fpn_channels, minimum=4)
        checks.one_of("stem", self.stem, ("conv", "pushpull"))
        checks.integer("num_classes", self.num_classes, minimum=2)
        if self.squeeze_bits is not None and not (
            isinstance(self.squeeze_bits, int) and 1 <= self.squeeze_bits <= 8
        ):
            raise ValueError(f"squeeze_bits must be None or an int in 1..8, got {self.squeeze_bits!r}")
        checks.probability("threshold", self.threshold)
        checks.integer("consistency_views", self.consistency_views, minimum=2)
        checks.real("consistency_sigma", self.consistency_sigma, positive=True)
        checks.real("consistency_agreement", self.consistency_agreement, positive=True, maximum=1.0)


@dataclass(frozen=True)
class AMSDNRecipe:
    """Data, epochs and attack budgets of the training stages (all enter the cache key).

    Epochs per stage: ``ssrt_epochs``, ``adv_epochs``, ``multi_epochs``; the ``"clean"`` stage runs
    ``adv_epochs + multi_epochs`` so the undefended baseline sees as many batches. eps in [0, 1] pixel
    units. ``multi`` cycles through ``multi_attacks`` batch by batch.
    """

    name: str
    arch: Architecture = field(default_factory=Architecture)
    train_limit: int | None = 1_500
    batch_size: int = 64
    lr: float = 5e-3  # AdamW peak learning rate (one-cycle)
    weight_decay: float = 0.05
    ssrt_epochs: int = 1
    adv_epochs: int = 3
    multi_epochs: int = 1
    temperature: float = 0.5  # NT-Xent temperature of the contrastive pre-training
    ssrt_noise: float = 0.1  # Gaussian noise (sd, pixel units) on the second view
    eps: float = 8 / 255  # PGD L-inf budget of adversarial training
    eps_warmup: float = 0.3  # share of the "adv" stage over which eps rises linearly from 0 to eps
    pgd_steps: int = 2
    l2_eps: float = 0.5
    patch_size: int = 4
    patch_steps: int = 3
    pixels: int = 5
    pixel_steps: int = 3
    noise_sigma: float = 0.25  # Gaussian noise of the "noise" batches (for randomized smoothing)
    multi_attacks: tuple[str, ...] = ("linf", "l2", "patch", "pixels", "noise")
    detector_weight: float = 1.0  # weight of the detector's BCE loss
    clean_weight: float = 1.0  # weight of the clean CE loss next to the attacked one

    def __post_init__(self):
        for k in ("ssrt_epochs", "adv_epochs", "multi_epochs"):
            checks.integer(k, getattr(self, k), minimum=0)
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 (contrastive pairs), got {self.batch_size!r}")
        checks.real("eps_warmup", self.eps_warmup, minimum=0.0, maximum=1.0)
        checks.real("eps", self.eps, positive=True, pixel_units=True)  # L-inf, [0, 1] pixel units
        for k in ("lr", "temperature", "l2_eps", "noise_sigma"):
            checks.real(k, getattr(self, k), positive=True)
        for k in ("pgd_steps", "patch_steps", "pixel_steps", "patch_size", "pixels"):
            checks.integer(k, getattr(self, k))
        unknown = set(self.multi_attacks) - {"linf", "l2", "patch", "pixels", "noise"}
        if unknown or not self.multi_attacks:
            raise ValueError(
                "multi_attacks must be a non-empty subset of linf, l2, patch, pixels, noise; "
                f"got {self.multi_attacks!r}"
            )


#: One recipe per profile. ``quick`` fits chapter 6's 2.5-minute budget on 2 CPU cores.
RECIPES: dict[str, AMSDNRecipe] = {
    "quick": AMSDNRecipe("quick"),
    # medium: about 10 minutes of training per model on 2 CPU cores (estimated from quick's speed)
    "medium": AMSDNRecipe(
        "medium",
        arch=Architecture(widths=(24, 48, 72, 96), depths=(1, 1, 1, 1), fpn_channels=24),
        train_limit=10_000,
        batch_size=128,
        ssrt_epochs=1,
        adv_epochs=4,
        multi_epochs=1,
        pgd_steps=2,
        patch_steps=3,
        pixel_steps=3,
    ),
    # paper: a GPU with hours to spare; all 50,000 images, a ConvNeXt closer to the seed's
    "paper": AMSDNRecipe(
        "paper",
        arch=Architecture(widths=(48, 96, 192, 384), depths=(2, 2, 4, 2), fpn_channels=64),
        train_limit=None,
        batch_size=128,
        lr=1e-3,
        ssrt_epochs=5,
        adv_epochs=15,
        multi_epochs=3,
        pgd_steps=5,
        patch_steps=10,
        pixel_steps=5,
    ),
}
# full: the same network on a budget that keeps chapter 6 on a T4 near 30 minutes (about 3.4 PFLOP of
# training per model counted with torch's FlopCounterMode, against 7.5 for paper; not timed on a GPU yet)
RECIPES["full"] = replace(
    RECIPES["paper"], name="full", ssrt_epochs=2, adv_epochs=8, multi_epochs=2, pgd_steps=3
)


@dataclass(frozen=True)
class EvalBudget:
    """How hard chapter 6 evaluates an AMSDN in each profile: images and attack steps.

    ``n_test`` clean test images (accuracy, false-positive rate; None: every test image not held out);
    ``n_calibrate`` held-out clean test images that set the detector's threshold; ``n_attack`` images
    for the gradient attacks; ``n_slow`` for the expensive ones (C&W, patches, pixels, EOT);
    ``n_certify`` for randomized smoothing with ``cert_n0`` / ``cert_n`` noise samples, level ``cert_alpha``.
    """

    n_test: int | None = 1_000
    n_calibrate: int = 1_000
    n_attack: int = 100
    n_slow: int = 50
    pgd_steps: int = 10
    cw_steps: int = 20
    cw_search: int = 2
    patch_steps: int = 10
    patch_candidates: int = 2
    pixel_steps: int = 3
    eot_samples: int = 2
    eot_steps: int = 5
    ablation_steps: int = 5
    n_certify: int = 25
    cert_n0: int = 64
    cert_n: int = 1_000
    cert_alpha: float = 0.001
    sigma: float = 0.25


#: One evaluation budget per profile (``quick`` fits chapter 6's 2.5 minutes with the training).
EVAL_BUDGETS: dict[str, EvalBudget] = {
    "quick": EvalBudget(),
    "medium": EvalBudget(
        n_test=None,
        n_attack=500,
        n_slow=200,
        pgd_steps=20,
        cw_steps=50,
        cw_search=4,
        patch_steps=30,
        patch_candidates=4,
        pixel_steps=10,
        eot_samples=4,
        eot_steps=10,
        ablation_steps=10,
        n_certify=100,
        cert_n=2_000,
    ),
    "full": EvalBudget(
        n_test=None,
        n_attack=1_000,
        n_slow=500,
        pgd_steps=50,
        cw_steps=100,
        cw_search=5,
        patch_steps=50,
        patch_candidates=4,
        pixel_steps=10,
        eot_samples=8,
        eot_steps=20,
        ablation_steps=20,
        n_certify=500,
        cert_n0=100,
        cert_n=100_000,
    ),
}
EVAL_BUDGETS["paper"] = EVAL_BUDGETS["full"]
# full certifies fewer images with fewer noise draws (Cohen et al.'s n = 100,000 on 500 images is about 16
# PFLOP of forward passes for the full network, an hour or more on a T4); paper keeps them
EVAL_BUDGETS["full"] = replace(EVAL_BUDGETS["paper"], n_certify=100, cert_n=10_000)


def get_budget(profile: str | None = None) -> EvalBudget:
    """The evaluation budget of ``profile`` (default: the active profile)."""
    name = config.get_profile(profile).name
    budget = EVAL_BUDGETS[name]
    if config.smoke_factor():  # a smoke run: every image and sample count / F
        budget = replace(
            budget,
            n_test=config.smoke_size(budget.n_test),
            n_calibrate=config.smoke_size(budget.n_calibrate),
            n_attack=config.smoke_size(budget.n_attack),
            n_slow=config.smoke_size(budget.n_slow),
            n_certify=config.smoke_size(budget.n_certify, minimum=5),
            cert_n0=config.smoke_size(budget.cert_n0, minimum=16),
            cert_n=config.smoke_size(budget.cert_n, minimum=50),
        )
    return budget


def get_recipe(recipe: str | AMSDNRecipe | None = None) -> AMSDNRecipe:
    """A recipe by profile name (see :data:`RECIPES`), the active profile's when None, or the recipe."""
    if isinstance(recipe, AMSDNRecipe):
        return recipe
    name = config.get_profile().name if recipe is None else recipe
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r} is unknown; expected one of {sorted(RECIPES)} or an AMSDNRecipe")
    r = RECIPES[name]
    return replace(r, train_limit=config.smoke_size(r.train_limit)) if config.smoke_factor() else r


# --------------------------------------------------------------------------------------------------
# Building blocks


class ConvNeXtBlock(nn.Module):
    """x + gamma * pw2(GELU(pw1(BN(dw7x7(x))))): (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, expansion: int = 4, layer_scale: float = 1.0):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.BatchNorm2d(channels)
        self.pw1 = nn.Conv2d(channels, expansion * channels, 1)
        self.pw2 = nn.Conv2d(expansion * channels, channels, 1)
        # layer scale (ConvNeXt starts it at 1e-6 for deep nets; a 4-block net trains faster from 1)
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))

    def extra_repr(self) -> str:
        return f"channels={self.dw.in_channels}"


class Backbone(nn.Module):
    """Stem (at full resolution) + four ConvNeXt stages, each halving the resolution.

    x: (N, 3, 32, 32) in [0, 1] -> [C2 (16 px), C3 (8), C4 (4), C5 (2)] with ``arch.widths`` channels.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.normalize = Normalize()
        self.stem = first_layer(arch.stem)(3, arch.widths[0])
        self.stem_norm = nn.BatchNorm2d(arch.widths[0])
        stages = []
        for i, (w, d) in enumerate(zip(arch.widths, arch.depths)):
            # every stage halves the resolution (2x2 patchify conv), the first one too: at 16 pixels the
            # first stage costs a quarter of what it would at 32, and a CPU trains the network in a minute
            prev = arch.widths[i - 1] if i else arch.widths[0]
            down = nn.Sequential(nn.BatchNorm2d(prev), nn.Conv2d(prev, w, 2, 2))
            stages.append(nn.Sequential(down, *[ConvNeXtBlock(w) for _ in range(d)]))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = F.gelu(self.stem_norm(self.stem(self.normalize(x))))
        feats = []
        for stage in self.stages:
            out = stage(out)
            feats.append(out)
        return feats


class FPN(nn.Module):
    """Feature pyramid: lateral 1x1 convs, top-down nearest upsampling and sum, 3x3 smoothing.

    [C2..C5] with the backbone's widths -> [P2..P5], each (N, channels, H_l, W_l).
    """

    def __init__(self, widths: Sequence[int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
            for _ in widths
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [lat(f) for lat, f in zip(self.lateral, feats)]
        top = laterals[-1]
        merged = [top]
        for lat in reversed(laterals[:-1]):
            top = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            merged.append(top)
        merged.reverse()
        return [F.gelu(s(m)) for s, m in zip(self.smooth, merged)]


class ChannelSpatialAttention(nn.Module):
    """Channel attention (squeeze-and-excitation) then spatial attention (7x7 conv on channel mean, max).

    x: (N, C, H, W) -> (x * a_c * a_s, a_s) with a_c (N, C, 1, 1) and a_s (N, 1, H, W) in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(2, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_c = torch.sigmoid(self.mlp(x.mean((2, 3))))[:, :, None, None]
        x = x * a_c
        a_s = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * a_s, a_s


class Denoiser(nn.Module):
    """Feature denoising block (Xie et al. 2019): x + conv1x1(mean3x3(x)); (N, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.conv.weight)  # starts as the identity; training decides how much to smooth
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(box3(x))


def box3(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean filter with zero padding, per channel: (N, C, H, W) -> same. A depthwise conv, which
    runs several times faster than ``avg_pool2d`` (forward and backward) on CPUs."""
    weight = torch.full((x.shape[1], 1, 3, 3), 1 / 9, device=x.device, dtype=x.dtype)
    return F.conv2d(x, weight, padding=1, groups=x.shape[1])


def squeeze_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-depth reduction: round x (N, C, H, W) in [0, 1] to 2**bits levels. Zero gradient a.e."""
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


class BitSqueeze(nn.Module):
    """:func:`squeeze_bits` as a module (so an attacker can wrap it in BPDA)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_bits(x, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


# --------------------------------------------------------------------------------------------------
# The model


class AMSDN(nn.Module):
    """AMSDN in miniature; x (N, 3, H, W) in [0, 1] -> dict (see :meth:`forward`).

    Stage switches (attributes, all True by default except ``consistency``): ``squeeze``,
    ``attention``, ``pyramid``, ``purification``, ``consistency``. Switch them with :func:`switched`.
    ``gate`` is ``"auto"`` (soft while training, the hard detection decision in eval mode), ``"soft"``
    or ``"hard"``; ``bpda`` (set by :class:`LogitsOnly`) makes the rounding and the hard gate pass
    gradients straight through.
    """

    def __init__(self, arch: Architecture | None = None):
        super().__init__()
        self.arch = arch if arch is not None else Architecture()
        a = self.arch
        levels = len(a.widths)
        self.backbone = Backbone(a)
        self.fpn = FPN(a.widths, a.fpn_channels)
        self.attn = nn.ModuleList(ChannelSpatialAttention(a.fpn_channels) for _ in range(levels))
        self.level_score = nn.Linear(a.fpn_channels, 1)  # pyramid attention: one logit per level
        # BatchNorm first: the statistics differ in scale by orders of magnitude between levels
        self.detector = nn.Sequential(
            nn.BatchNorm1d(2 * levels * a.fpn_channels),
            nn.Linear(2 * levels * a.fpn_channels, 32),
            nn.ReLU(),
            nn.Linear(32, 1),
        )
        self.denoise = nn.ModuleList(Denoiser(a.fpn_channels) for _ in range(levels))
        self.head = nn.Linear(levels * a.fpn_channels, a.num_classes)
        self.squeezer: nn.Module | None = BitSqueeze(a.squeeze_bits) if a.squeeze_bits else None
        self.squeeze = a.squeeze_bits is not None
        self.attention = True
        self.pyramid = True
        self.purification = True
        self.consistency = False
        self.threshold = a.threshold  # the detection threshold; calibrate_threshold() moves it
        self.gate = "auto"
        self.bpda = False

    # ---- the deterministic network (one view)

    def _gate(self, score: torch.Tensor) -> torch.Tensor:
        mode = self.gate if self.gate != "auto" else ("soft" if self.training else "hard")
        if mode == "soft":
            return score
        if self.bpda:  # the decision forward, the soft score's gradient backward
            return attacks.BPDA(self._decide)(score)
        return self._decide(score)

    def _decide(self, score: torch.Tensor) -> torch.Tensor:
        return (score > self.threshold).to(score.dtype)

    def _squeeze(self, x: torch.Tensor) -> torch.Tensor:
        if not self.squeeze or self.squeezer is None:
            return x
        # BPDA with the identity: the rounding forward, the gradient of x backward (Athalye et al. 2018)
        return attacks.BPDA(self.squeezer)(x) if self.bpda else self.squeezer(x)

    def _single(self, x: torch.Tensor, details: bool) -> dict:
        pyramid = self.fpn(self.backbone(self._squeeze(x)))
        attended, spatial = [], []
        for att, p in zip(self.attn, pyramid):
            if self.attention:
                p, a_s = att(p)
                spatial.append(a_s)
            attended.append(p)
        # anomaly score from per-level statistics: mean activation and mean high-frequency energy
        stats = []
        for p in attended:
            stats += [p.mean((2, 3)), (p - box3(p)).abs().mean((2, 3))]
        score = torch.sigmoid(self.detector(torch.cat(stats, 1)).squeeze(1))
        if self.purification:
            g = self._gate(score)[:, None, None, None]
            fused = [g * d(p) + (1 - g) * p for d, p in zip(self.denoise, attended)]
        else:
            fused = attended
        pooled = torch.stack([f.mean((2, 3)) for f in fused], 1)  # (N, levels, C)
        if self.pyramid:
            weights = torch.softmax(self.level_score(pooled).squeeze(2), 1)  # (N, levels)
        else:
            weights = torch.full(pooled.shape[:2], 1 / pooled.shape[1], device=x.device, dtype=pooled.dtype)
        # each level's pooled features scaled by its weight (times the number of levels, so uniform
        # weights are the identity), concatenated: (N, levels * C)
        embedding = (pooled * (weights[:, :, None] * pooled.shape[1])).flatten(1)
        out = {"logits": self.head(embedding), "anomaly": score, "embedding": embedding}
        if details:
            out.update(pyramid=pyramid, attended=attended, spatial=spatial, purified=fused, weights=weights)
        return out

    def forward(self, x: torch.Tensor, *, details: bool = False) -> dict:
        """x: (N, 3, H, W) float in [0, 1] -> dict with

        - ``logits`` (N, K); with the consistency check, the log of the views' mean probabilities;
        - ``anomaly`` (N,) in [0, 1], the anomaly score (the views' mean with the consistency check);
        - ``detected`` (N,) bool: ``anomaly > threshold``, or, with the consistency check, fewer than
          ``consistency_agreement`` of the views agreeing with the averaged prediction;
        - ``agreement`` (N,) in [0, 1] with the consistency check;
        - ``embedding`` (N, 4 * fpn_channels), the fused features before the head;
        - with ``details=True`` (one view only): ``pyramid``, ``attended``, ``purified`` (lists of 4
          maps (N, C, H_l, W_l) for P2..P5), ``spatial`` (4 attention maps (N, 1, H_l, W_l); empty
          with attention off) and ``weights`` (N, 4), the pyramid attention.
        """
        check_images(x)
        if not self.consistency:
            out = self._single(x, details)
            out["detected"] = out["anomaly"] > self.threshold
            return out
        if details:
            raise ValueError("details=True needs the consistency check off (it describes one view)")
        k = self.arch.consistency_views
        views = x.unsqueeze(1) + self.arch.consistency_sigma * torch.randn(
            x.shape[0], k, *x.shape[1:], device=x.device, dtype=x.dtype
        )
        single = self._single(views.clamp(0, 1).flatten(0, 1), False)
        probs = single["logits"].float().softmax(1).view(x.shape[0], k, -1)
        mean = probs.mean(1)
        agreement = (probs.argmax(2) == mean.argmax(1, keepdim=True)).float().mean(1)
        anomaly = single["anomaly"].view(x.shape[0], k).mean(1)
        detected = (anomaly > self.threshold) | (agreement < self.arch.consistency_agreement)
        return {
            "logits": mean.clamp_min(1e-12).log().to(x.dtype),
            "anomaly": anomaly,
            "detected": detected,
            "agreement": agreement,
            "embedding": single["embedding"].view(x.shape[0], k, -1).mean(1),
        }

    def switches(self) -> dict[str, bool]:
        """The current stage switches, e.g. ``{"squeeze": True, ..., "consistency": False}``."""
        return {name: bool(getattr(self, name)) for name in SWITCHES}

    def extra_repr(self) -> str:
        a = self.arch
        on = ", ".join(k for k, v in self.switches().items() if v) or "none"
        return (
            f"widths={a.widths}, depths={a.depths}, fpn_channels={a.fpn_channels}, stem={a.stem!r}, "
            f"squeeze_bits={a.squeeze_bits}, threshold={self.threshold:.3g}, stages on: {on}, "
            f"gate={self.gate!r}"
        )


def build(arch: Architecture | None = None, **kwargs) -> AMSDN:
    """An untrained :class:`AMSDN`; ``kwargs`` override fields of ``arch`` (e.g. ``stem="pushpull"``)."""
    arch = arch if arch is not None else Architecture()
    return AMSDN(replace(arch, **kwargs) if kwargs else arch)


@contextlib.contextmanager
def switched(model: AMSDN, **flags: bool | str) -> Iterator[AMSDN]:
    """Set stage switches (``squeeze``, ``attention``, ``pyramid``, ``purification``, ``consistency``),
    ``gate`` or ``bpda`` for the duration of a ``with`` block, then restore them.

    >>> with switched(model, purification=False, consistency=True): ...
    """
    if not isinstance(model, AMSDN):
        raise TypeError(f"model must be an AMSDN, got {type(model).__name__}")
    allowed = (*SWITCHES, "gate", "bpda")
    for name, value in flags.items():
        if name not in allowed:
            raise ValueError(f"unknown switch {name!r}; expected one of {', '.join(allowed)}")
        if name == "gate":
            if value not in ("auto", "soft", "hard"):
                raise ValueError(f"gate must be 'auto', 'soft' or 'hard', got {value!r}")
        elif not isinstance(value, bool):
            raise TypeError(f"switch {name} must be a bool, got {type(value).__name__}")
    if flags.get("squeeze") and model.squeezer is None:
        raise ValueError("squeeze=True needs a model built with squeeze_bits")
    old = {name: getattr(model, name) for name in flags}
    for name, value in flags.items():
        setattr(model, name, value)
    try:
        yield model
    finally:
        for name, value in old.items():
            setattr(model, name, value)


@torch.no_grad()
def calibration_split(
    labels: torch.Tensor, n_test: int | None, n_calibrate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint test-set indices ``(evaluate, calibrate)`` for a detector: the threshold is set on images
    that no reported number is measured on.

    labels: (N,) test labels. With ``n_test`` a number, the evaluation set is the class-stratified subset
    ``load_cifar10("test", limit=n_test)`` reads and the calibration set the first ``n_calibrate`` of the
    other images; with ``n_test`` None, ``n_calibrate`` stratified images are held out first and every
    other test image is evaluated. Raises ``ValueError`` when the split cannot hold both.
    """
    n = len(labels)
    n_calibrate = checks.integer("n_calibrate", n_calibrate)
    n_test = None if n_test is None else checks.integer("n_test", n_test)
    wanted = n_calibrate + (n_test or 1)
    if wanted > n:
        raise ValueError(
            f"the test split has {n} images: too few for n_test={n_test} evaluated plus "
            f"n_calibrate={n_calibrate} held out for the threshold"
        )
    rest = torch.ones(n, dtype=torch.bool)
    if n_test is None:
        calibrate = stratified_indices(labels, n_calibrate)
        rest[calibrate] = False
        return rest.nonzero().flatten(), calibrate
    evaluate = stratified_indices(labels, n_test) if n_test < n else torch.arange(n)
    rest[evaluate] = False
    return evaluate, rest.nonzero().flatten()[:n_calibrate]


def calibrate_threshold(
    model: AMSDN, images: torch.Tensor, fpr: float = 0.05, batch_size: int = 500
) -> float:
    """Set ``model.threshold`` so that a share ``fpr`` of ``images`` is flagged.

    images must be clean and held out: not the images the false-positive rate is then measured on.

    images: (N, 3, H, W) uint8 or float in [0, 1]. The threshold is the (1 - fpr) quantile of their
    anomaly scores (consistency check off). Returns the new threshold.
    """
    if not isinstance(model, AMSDN):
        raise TypeError(f"model must be an AMSDN, got {type(model).__name__}")
    fpr = checks.probability("fpr", fpr)
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, 3, H, W), got {tuple(images.shape)}")
    dev = next(model.parameters()).device
    with torch.no_grad(), measure.eval_mode(model), switched(model, consistency=False):
        scores = torch.cat(
            [
                model(to_float(images[i : i + batch_size].to(dev)))["anomaly"].float().cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
    model.threshold = float(torch.quantile(scores, 1 - fpr))
    return model.threshold


class LogitsOnly(nn.Module):
    """A view of an :class:`AMSDN` whose forward returns only the logits (N, K), for ``attacks.pgd`` etc.

    ``bpda=True`` makes the non-differentiable parts pass gradients (BPDA, Athalye et al. 2018): the
    bit-depth reduction backward as the identity, the hard gate backward as its soft score. ``switches``
    (e.g. ``{"consistency": True}``) are applied during each forward. The wrapped model's parameters are
    shared, not copied.
    """

    def __init__(self, model: AMSDN, *, bpda: bool = False, **switches: bool | str):
        super().__init__()
        if not isinstance(model, AMSDN):
            raise TypeError(f"model must be an AMSDN, got {type(model).__name__}")
        with switched(model, bpda=bool(bpda), **switches):  # validates the names now, not at the first call
            pass
        self.model = model
        self.flags = {"bpda": bool(bpda), **switches}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with switched(self.model, **self.flags):
            return self.model(x)["logits"]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.flags.items())


# --------------------------------------------------------------------------------------------------
# Training stages


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's contrastive loss for two views z1, z2: (N, D); each view's positive is its pair."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _one_cycle(opt: torch.optim.Optimizer, lr: float, step: int, total: int) -> None:
    warm = max(1, total // 5)
    value = (
        lr * (0.1 + 0.9 * step / warm)
        if step < warm
        else lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    )
    for group in opt.param_groups:
        group["lr"] = value


def _optimizer(params, recipe: AMSDNRecipe) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )


def _attack_batch(
    model: AMSDN, x: torch.Tensor, y: torch.Tensor, kind: str, r: AMSDNRecipe, eps: float | None = None
) -> torch.Tensor:
    """Attacked (or noised) copies of x for one training batch; the attack sees gradients through BPDA."""
    target = LogitsOnly(model, bpda=True)
    if kind == "linf":
        eps = r.eps if eps is None else eps
        return attacks.pgd(target, x, y, eps, 2.5 * eps / r.pgd_steps, r.pgd_steps)
    if kind == "l2":
        return attacks.pgd(target, x, y, r.l2_eps, 2.5 * r.l2_eps / r.pgd_steps, r.pgd_steps, norm="l2")
    if kind == "patch":
        return attacks.patch_attack(target, x, y, size=r.patch_size, steps=r.patch_steps, location="random")
    if kind == "pixels":
        return attacks.sparse_pixel_attack(target, x, y, pixels=r.pixels, steps=r.pixel_steps)
    if kind == "noise":
        # not clipped to [0, 1], like the noise of randomized smoothing (pushpull_lite.certify)
        return x + r.noise_sigma * torch.randn_like(x)
    raise ValueError(f"unknown attack kind {kind!r}")


def _run_stage(
    model: AMSDN,
    stage: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    r: AMSDNRecipe,
    seed: int,
    dev: torch.device,
    progress: bool,
) -> list[dict]:
    """Train ``model`` in place for one stage; returns one history entry per epoch."""
    epochs = {
        "ssrt": r.ssrt_epochs,
        "clean": r.adv_epochs + r.multi_epochs,
        "adv": r.adv_epochs,
        "multi": r.multi_epochs,
    }[stage]
    epochs = min(epochs, config.smoke_epochs(epochs))
    if epochs == 0:
        return []
    batches = Batches(
        images,
        labels,
        r.batch_size,
        shuffle=True,
        augment=True,
        seed=seed,
        device=dev,
        drop_last=len(labels) > r.batch_size,  # fewer images than a batch: train on them all, not on none
    )
    projector = None
    params = list(model.parameters())
    if stage == "ssrt":
        c = len(r.arch.widths) * r.arch.fpn_channels  # the embedding's size
        projector = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c)).to(dev)
        params += list(projector.parameters())
    opt = _optimizer(params, r)
    total = epochs * len(batches)
    gen = torch.Generator().manual_seed(seed)
    history, step, start = [], 0, time.perf_counter()
    bar = config.progress(total=total, desc=f"AMSDN {stage}", enabled=progress, leave=False)
    for epoch in range(epochs):
        sums = {"loss": 0.0, "acc": 0.0, "det": 0.0}
        seen = 0
        for x, y in batches:
            _one_cycle(opt, r.lr, step, total)
            if stage == "ssrt":
                # two views: the augmented batch, and a re-cropped, flipped, noisy copy of it
                x2 = random_crop_flip(x, generator=gen)
                x2 = (x2 + r.ssrt_noise * torch.randn(x2.shape, generator=gen).to(dev)).clamp(0, 1)
                model.train()
                with switched(model, bpda=True):
                    e = model(torch.cat([x, x2]))["embedding"]
                z = projector(e)
                loss = _nt_xent(z[: len(x)], z[len(x) :], r.temperature)
                acc = det = 0.0
            else:
                if stage == "clean":
                    x_att, kind = None, "clean"
                elif stage == "adv":
                    kind = "linf"
                else:
                    kind = r.multi_attacks[step % len(r.multi_attacks)]
                if stage != "clean":
                    # a curriculum: the first eps_warmup of adversarial training ramps eps up from 0
                    ramp = min(1.0, (step + 1) / max(1.0, r.eps_warmup * total)) if stage == "adv" else 1.0
                    x_att = _attack_batch(model, x, y, kind, r, eps=ramp * r.eps)
                model.train()
                with switched(model, bpda=True):
                    both = x if x_att is None else torch.cat([x, x_att])
                    out = model(both)
                n = len(y)
                logits = out["logits"]
                loss = F.cross_entropy(logits[:n], y)
                if x_att is not None:
                    loss = r.clean_weight * loss + F.cross_entropy(logits[n:], y)
                    # the detector learns clean (0) against attacked (1); Gaussian noise counts as clean
                    flag = torch.cat([torch.zeros(n), torch.full((n,), float(kind != "noise"))]).to(dev)
                    det_loss = F.binary_cross_entropy(out["anomaly"].float().clamp(1e-6, 1 - 1e-6), flag)
                    loss = loss + r.detector_weight * det_loss
                    det = ((out["anomaly"] > r.arch.threshold).float() == flag).float().mean().item()
                else:
                    det = 0.0
                acc = measure.hits(logits[-n:], y).float().mean().item()
            train.check_loss(loss, epoch, step, r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += loss.item() * len(y)
            sums["acc"] += acc * len(y)
            sums["det"] += det * len(y)
            seen += len(y)
            step += 1
            bar.update()
        history.append(
            {
                "stage": stage,
                "epoch": epoch + 1,
                "loss": sums["loss"] / seen,
                "train_acc": sums["acc"] / seen,
                "detector_acc": sums["det"] / seen,
                "seconds": time.perf_counter() - start,
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    model.eval()
    return history


def _check_stages(name: str, stages: Sequence[str]) -> tuple[str, ...]:
    """``stages`` as a tuple in :data:`STAGES` order: known names, no repeats, one classifier stage."""
    if isinstance(stages, str):
        raise TypeError(f"{name} must be a sequence of stage names, e.g. ('ssrt', 'adv'), got {stages!r}")
    stages = tuple(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"{name}: unknown stage(s) {unknown}; expected names from {STAGES}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"{name} must not repeat, got {stages}")
    if not set(stages) & {"clean", "adv", "multi"}:
        raise ValueError(f"{name} {stages} train no classifier; include 'clean', 'adv' or 'multi'")
    if "clean" in stages and set(stages) & {"adv", "multi"}:
        raise ValueError("'clean' is the undefended baseline; it does not combine with 'adv' or 'multi'")
    return tuple(s for s in STAGES if s in stages)  # they always run in STAGES order


def training_config(recipe: AMSDNRecipe, stages: Sequence[str], seed: int, data_source: str) -> dict:
    """The JSON-able config that keys a trained AMSDN in the model cache."""
    return {
        "cache_version": CACHE_VERSION,
        "arch": "amsdn",
        "recipe": json.loads(json.dumps(asdict(recipe))),
        "stages": list(_check_stages("stages", stages)),
        "seed": seed,
        "data_source": data_source,
    }


def checkpoint_path(cfg: dict) -> Path:
    """Where the model cache keeps the AMSDN trained with ``cfg``."""
    stem = cfg["recipe"]["arch"]["stem"]
    return config.model_cache_dir() / f"amsdn-{stem}-{train.config_key(cfg)}.pt"


def model_path(
    recipe: str | AMSDNRecipe | None = None,
    seed: int = 0,
    *,
    stages: Sequence[str] = ("ssrt", "adv", "multi"),
    stem: str | None = None,
    root=None,
) -> Path:
    """Where :func:`train_amsdn` caches the model it trains for these arguments (it may not exist yet)."""
    r = get_recipe(recipe)
    if stem is not None:
        r = replace(r, arch=replace(r.arch, stem=stem))
    return checkpoint_path(training_config(r, _check_stages("stages", stages), seed, training_data_id(root)))


def train_amsdn(
    recipe: str | AMSDNRecipe | None = None,
    seed: int = 0,
    *,
    stages: Sequence[str] = ("ssrt", "adv", "multi"),
    stem: str | None = None,
    device: torch.device | str | None = None,
    root=None,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[AMSDN, dict]:
    """Train an AMSDN through ``stages`` on the recipe's CIFAR-10 subset, or load it from the cache.

    recipe: a profile name (``"quick"``, ``"medium"``, ``"full"``), an :class:`AMSDNRecipe`, or None
    for the active profile's. stem: ``"conv"`` or ``"pushpull"`` (overrides the recipe's). Stages run in
    the order of :data:`STAGES`, each starting from the previous one's weights.

    Returns ``(model, info)``: the model in eval mode on ``device``, and ``info`` with ``config``,
    ``history`` (per-epoch entries with their ``stage``), ``train_seconds`` (dict stage -> seconds,
    plus ``"total"``; the times of the original run when loaded), ``from_cache`` and ``path``.
    """
    r = get_recipe(recipe)
    if stem is not None:
        r = replace(r, arch=replace(r.arch, stem=stem))
    seed = checks.integer("seed", seed, minimum=0)
    stages = _check_stages("stages", stages)
    dev = config.device(device)
    cfg = training_config(r, stages, seed, training_data_id(root))
    path = checkpoint_path(cfg)
    config.seed_everything(seed)
    model = AMSDN(r.arch)

    def run() -> tuple[list[dict], float]:
        images, labels = load_cifar10("train", limit=r.train_limit, root=root)
        model.to(dev)
        history: list[dict] = []
        for i, stage in enumerate(stages):
            config.seed_everything(seed * 1_000 + i)
            history += _run_stage(model, stage, images, labels, r, seed, dev, progress)
        return history, sum(_stage_seconds(history).values())

    history, _, from_cache = train.load_or_train(path, model, cfg, run, retrain=retrain)
    per_stage = _stage_seconds(history)
    info = {
        "config": cfg,
        "history": history,
        "train_seconds": {**per_stage, "total": sum(per_stage.values())},
        "from_cache": from_cache,
        "path": path,
    }
    return model.to(dev).eval(), info


def _stage_seconds(history: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for h in history:
        out[h["stage"]] = max(out.get(h["stage"], 0.0), h["seconds"])
    return out


# --------------------------------------------------------------------------------------------------
# An adaptive attack on classifier and detector together


def detector_aware_pgd(
    model: AMSDN,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    *,
    weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L-inf PGD that must fool the classifier *and* stay below the detector's threshold.

    The attacker ascends ``CE(logits, y) + weight * log(1 - anomaly)`` (Carlini & Wagner 2017's recipe
    against detectors: one loss for both goals), with BPDA through the rounding and the hard gate, from
    a random start. x: (N, 3, H, W) in [0, 1]; y: (N,) true labels; eps, step_size in [0, 1] pixel
    units. Each example keeps the first iterate that is both misclassified and undetected (else the
    last). Returns ``(x_adv, evaded)``: images (N, 3, H, W) and a bool (N,) mask of examples that were
    misclassified and undetected. Cost: ``steps`` forward+backward passes plus one forward.
    """
    if not isinstance(model, AMSDN):
        raise TypeError(f"model must be an AMSDN, got {type(model).__name__}")
    eps = checks.real("eps", eps, positive=True, pixel_units=True)  # L-inf, [0, 1] pixel units
    step_size = checks.real("step_size", step_size, positive=True, pixel_units=True)
    steps = config.smoke_steps(checks.integer("steps", steps))
    weight = checks.real("weight", weight, minimum=0.0)
    x = checks.image_batch("x", x)
    y = checks.labels("y", y, x.shape[0]).to(device=x.device, dtype=torch.long)
    with measure.eval_mode(model), switched(model, bpda=True), torch.inference_mode(False):
        with torch.enable_grad():
            x = x.detach().clone()
            low, high = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
            x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
            best = x_adv.clone()
            evaded = torch.zeros(len(y), dtype=torch.bool, device=x.device)
            for step in range(steps + 1):
                x_adv.requires_grad_(True)
                out = model(x_adv)
                with torch.no_grad():
                    ok = ~measure.hits(out["logits"], y) & ~out["detected"]
                    new = ok & ~evaded
                    best[new] = x_adv.detach()[new]
                    evaded |= ok
                    keep = ~evaded
                    best[keep] = x_adv.detach()[keep]
                if step == steps:
                    break
                safe = (1 - out["anomaly"].float()).clamp_min(1e-6).log()
                loss = F.cross_entropy(out["logits"].float(), y, reduction="sum") + weight * safe.sum()
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = torch.max(torch.min(x_adv.detach() + step_size * grad.sign(), high), low)
    return best.detach(), evaded
