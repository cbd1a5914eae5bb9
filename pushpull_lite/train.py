"""Training and evaluation, and a cache of trained models keyed by their full training config.

``train_model("resnet20", first_layer("pushpull"), recipe="quick", train_limit=5000, seed=0)`` trains once
and loads from ``<cache>/models/`` afterwards, so later chapters (and the book build after the tests)
reuse what earlier chapters trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import cachefiles, config
from .data import Batches, load_cifar10, training_data_id
from .measure import accuracy, hits
from .models import FirstLayer, build

__all__ = [
    "CACHE_VERSION",
    "RECIPES",
    "BelowFloorError",
    "check_loss",
    "CheckpointMismatchError",
    "config_key",
    "default_first_layer",
    "fit",
    "get_recipe",
    "load_checkpoint",
    "load_or_train",
    "lr_at",
    "make_optimizer",
    "memory_format",
    "model_path",
    "NonFiniteLossError",
    "Perturb",
    "Recipe",
    "require_floor",
    "save_checkpoint",
    "train_model",
    "TrainedModel",
    "training_batches",
    "training_config",
    "with_epochs",
]

#: ``perturb(model, x, y, autocast) -> x'``: a hook of :func:`fit` that replaces a training batch
Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, Callable[[], object]], torch.Tensor]

#: Bump when a change to the training code or the cache key makes old checkpoints wrong to reuse
#: (2: the key records the training data's content, not only its label).
CACHE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    """How to train: optimiser, schedule, epochs, batch size, augmentation."""

    name: str
    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.1  # peak learning rate for "onecycle"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # "onecycle", "step" or "constant"
    milestones: tuple[int, ...] = ()  # epochs at which "step" divides the lr by 10
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (4-pixel padding) + horizontal flip
    warmup_fraction: float = 0.25  # share of "onecycle" spent rising to the peak
    channels_last: bool = True  # faster convolutions on CPUs and tensor cores
    amp: bool = False  # mixed precision: bfloat16 autocast on CPU, float16 with loss scaling on CUDA

    def __post_init__(self):
        def whole(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")

        def number(
            name: str, low: float, high: float, *, open_low: bool = False, open_high: bool = False
        ) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
            if not ok:
                lo, hi = "(" if open_low else "[", ")" if open_high else "]"
                raise ValueError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {v!r}")

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        whole("epochs", 1)
        whole("batch_size", 1)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "step", "constant"):
            raise ValueError(f"schedule must be 'onecycle', 'step' or 'constant', got {self.schedule!r}")
        number("lr", 0, 10, open_low=True)
        number("momentum", 0, 1, open_high=True)
        number("weight_decay", 0, 1)
        number("label_smoothing", 0, 1, open_high=True)
        number("warmup_fraction", 0, 1)
        for flag in ("nesterov", "augment", "channels_last", "amp"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        m = self.milestones
        if not isinstance(m, tuple) or any(isinstance(e, bool) or not isinstance(e, int) for e in m):
            raise ValueError(f"milestones must be a tuple of ints (epochs), got {m!r}")
        if list(m) != sorted(set(m)) or any(not 0 < e < self.epochs for e in m):
            raise ValueError(
                f"milestones must be increasing epochs between 1 and {self.epochs - 1}, got {m!r}"
            )


RECIPES: dict[str, Recipe] = {
    # ResNets: SGD + one-cycle + label smoothing, bfloat16/float16 autocast, scaled to each profile's budget
    "quick": Recipe("quick", epochs=6, batch_size=128, lr=0.2, label_smoothing=0.1, amp=True),
    "medium": Recipe("medium", epochs=15, batch_size=128, lr=0.2, label_smoothing=0.1, amp=True),
    "full": Recipe("full", epochs=40, batch_size=256, lr=0.4, label_smoothing=0.1, amp=True),
    # the 2020 paper: SGD lr 0.1, momentum 0.9, wd 1e-4, lr / 10 at epochs 80 and 120, 160 epochs, batch 128
    "paper": Recipe(
        "paper",
        epochs=160,
        batch_size=128,
        lr=0.1,
        nesterov=False,
        weight_decay=1e-4,
        schedule="step",
        milestones=(80, 120),
        channels_last=False,
    ),
    # the multi-scale seed's CNN: Adam lr 1e-3, batch 64, 10 epochs, no augmentation
    **{
        f"cnn-{name}": Recipe(
            f"cnn-{name}",
            epochs=epochs,
            batch_size=64,
            optimizer="adam",
            lr=1e-3,
            weight_decay=0.0,
            schedule="constant",
            augment=False,
            amp=name != "paper",
        )
        for name, epochs in (("quick", 3), ("medium", 6), ("full", 10), ("paper", 10))
    },
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A :class:`Recipe` by name (see :data:`RECIPES`), or the recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} is unknown; expected one of {sorted(RECIPES)} or a Recipe")
    return RECIPES[recipe]


# --------------------------------------------------------------------------------------------------
# Training


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # no weight decay on BatchNorm parameters, biases and inhibition strengths (1-D tensors)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def lr_at(recipe: Recipe, step: int, total: int, steps_per_epoch: int) -> float:
    """The learning rate of ``recipe`` at optimiser step ``step`` of ``total`` (constant, step, one-cycle)."""
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "step":
        epoch = step // steps_per_epoch
        return recipe.lr * 0.1 ** sum(epoch >= m for m in recipe.milestones)
    # one-cycle: linear warm-up to the peak, then cosine down to zero
    warm = max(1, int(recipe.warmup_fraction * total))
    if step < warm:
        return recipe.lr * (0.1 + 0.9 * step / warm)
    progress = (step - warm) / max(1, total - warm)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite. Nothing is cached."""


def check_loss(loss: torch.Tensor, epoch: int, step: int, recipe: object) -> None:
    """Stop training with :class:`NonFiniteLossError` when ``loss`` is NaN or infinite, before the step:
    a diverged model must never be saved to the cache. Every training loop calls it."""
    if not math.isfinite(loss.detach().float().item()):
        name = getattr(recipe, "name", "?")
        raise NonFiniteLossError(
            f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (recipe {name!r}, "
            f"lr {getattr(recipe, 'lr', '?')}): training stopped, nothing was cached; lower the learning rate"
        )


def memory_format(recipe: Recipe) -> torch.memory_format:
    """The memory format the recipe trains in (channels-last convolutions are faster on CPUs)."""
    return torch.channels_last if recipe.channels_last else torch.contiguous_format


def training_batches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    seed: int,
    device: torch.device | str | None,
) -> tuple[torch.device, Batches]:
    """Move ``model`` to ``device`` (default :func:`config.device`) in the recipe's memory format and
    return the device and the shuffled, augmented training batches: the set-up every training loop shares."""
    dev = config.device(device)
    model.to(dev)
    model.to(memory_format=memory_format(recipe))
    batches = Batches(
        images,
        labels,
        recipe.batch_size,
        shuffle=True,
        augment=recipe.augment,
        seed=seed,
        device=dev,
        drop_last=len(labels) > recipe.batch_size,
    )
    return dev, batches


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: str | Recipe = "quick",
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    perturb: Perturb | None = None,
    desc: str = "training",
) -> list[dict]:
    """Train ``model`` in place on images uint8 (N, 3, H, W) and labels (N,); return the per-epoch history.

    Each history entry: ``epoch``, ``loss`` (mean training loss), ``train_acc`` (on the batches trained
    on), ``lr`` (at the epoch's end), ``seconds`` (cumulative) and ``val_acc`` when ``val`` is given.
    ``perturb(model, x, y, autocast) -> x'`` replaces each augmented batch ``x: (B, 3, H, W)`` in [0, 1]
    before the update (adversarial training, :mod:`pushpull_lite.advtrain`); ``autocast()`` is the
    recipe's mixed-precision context.

    The one supervised loop of the book (chapters 2-4, 7). CNN-F (:func:`pushpull_lite.feedback.fit_cnnf`)
    and AMSDN (:mod:`pushpull_lite.amsdn`) keep their own loops: their losses are not one cross-entropy on
    one batch (reconstruction terms per feedback cycle; staged training with a detector), and hooks for
    them would hide the objective each chapter explains. They share the batches (data.Batches),
    :func:`check_loss` and :func:`pushpull_lite.measure.hits`.
    """
    recipe = get_recipe(recipe)
    dev, batches = training_batches(model, images, labels, recipe, seed, device)
    opt = make_optimizer(model, recipe)
    epochs = config.smoke_epochs(recipe.epochs)
    total = epochs * len(batches)
    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(dev.type, enabled=recipe.amp and dev.type == "cuda")
    bar = config.progress(total=total, desc=desc, enabled=progress, leave=False)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=recipe.amp)

    model.train()
    for epoch in range(epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in batches:
            for group in opt.param_groups:
                group["lr"] = lr_at(recipe, step, total, len(batches))
            x = x.contiguous(memory_format=memory_format(recipe))
            if perturb is not None:
                x = perturb(model, x, y, autocast)
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            check_loss(loss, epoch, step, recipe)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.item() * len(y)
            correct += hits(logits, y).sum().item()
            seen += len(y)
            step += 1
            bar.update()
        entry = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_acc": correct / seen,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        if val is not None:
            entry["val_acc"] = accuracy(model, val[0], val[1], batch_size=100, device=dev)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['train_acc']:.3f}")
        history.append(entry)
    bar.close()
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


# --------------------------------------------------------------------------------------------------
# The model cache


class CheckpointMismatchError(ValueError):
    """A checkpoint was saved for a different config than the one asked for."""


@dataclass
class TrainedModel:
    """A trained model with its training config, history and wall time."""

    model: nn.Module
    config: dict
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    from_cache: bool = False
    path: Path | None = None

    @property
    def label(self) -> str:
        return (
            f"{self.config['arch']} / {FirstLayer(**_first_layer_args(self.config['first_layer'])).label()}"
        )


def _first_layer_args(key: dict) -> dict:
    return {"name": key["name"], "kwargs": tuple(sorted((k, _tuplify(v)) for k, v in key["kwargs"].items()))}


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def training_config(
    arch: str,
    first_layer: FirstLayer | None,
    recipe: Recipe,
    train_limit: int | None,
    seed: int,
    data_source: str,
) -> dict:
    """The JSON-able config that keys a trained model in the cache."""
    fl = first_layer if first_layer is not None else default_first_layer(arch)
    return {
        "cache_version": CACHE_VERSION,
        "arch": arch,
        "first_layer": fl.key(),
        "recipe": json.loads(json.dumps(asdict(recipe))),
        "train_limit": train_limit,
        "seed": seed,
        "data_source": data_source,
    }


def default_first_layer(arch: str) -> FirstLayer:
    return FirstLayer("conv", (("bias", True),)) if arch == "seed_cnn" else FirstLayer("conv")


def config_key(cfg: dict) -> str:
    """A short stable hash of a training config."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(
    path: Path, model: nn.Module, cfg: dict, history: list[dict], train_seconds: float
) -> None:
    """Save weights with their config (atomically, under a unique temporary name), loadable with
    ``weights_only=True``."""
    blob = {
        "config_json": json.dumps(cfg, sort_keys=True),
        "history_json": json.dumps(history),
        "train_seconds": float(train_seconds),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    cachefiles.save_torch(blob, path)


def load_checkpoint(path: Path, model: nn.Module, expected_config: dict) -> tuple[list[dict], float]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; returns (history, train_seconds).

    Raises :class:`CheckpointMismatchError` when the file was saved for another config, and
    :class:`pushpull_lite.cachefiles.CorruptCacheError` (naming the file) when it cannot be read.
    """
    blob = cachefiles.load_torch(path)
    try:
        saved = json.loads(blob["config_json"])
        history, seconds, state = (
            json.loads(blob["history_json"]),
            float(blob["train_seconds"]),
            blob["state_dict"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise cachefiles.CorruptCacheError(
            f"the cache entry {path} is not a checkpoint of this package ({exc})"
        ) from exc
    if saved != expected_config:
        diff = sorted(k for k in set(saved) | set(expected_config) if saved.get(k) != expected_config.get(k))
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with another config (differs in: {', '.join(diff)}); "
            f"saved {', '.join(f'{k}={saved.get(k)!r}' for k in diff)}; "
            f"asked for {', '.join(f'{k}={expected_config.get(k)!r}' for k in diff)}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise cachefiles.CorruptCacheError(f"the cache entry {path} does not fit the model ({exc})") from exc
    return history, seconds


def load_or_train(
    path: Path,
    model: nn.Module,
    cfg: dict,
    train: Callable[[], tuple[list[dict], float]],
    *,
    retrain: bool = False,
) -> tuple[list[dict], float, bool]:
    """Load ``model``'s weights from the checkpoint at ``path`` saved for ``cfg``, else ``train()`` and save.

    ``train()`` trains ``model`` in place and returns (history, training seconds). Returns (history,
    seconds, from_cache); the seconds of a cached model are those of the run that trained it. The entry
    is locked while it is read or made: a second process asking for the same model waits, then loads it.
    A corrupt entry is named in a warning and trained again.
    """
    with cachefiles.entry_lock(path):
        if path.is_file() and not retrain:
            try:
                history, seconds = load_checkpoint(path, model, cfg)
                return history, seconds, True
            except cachefiles.CorruptCacheError as exc:
                warnings.warn(f"{exc}; training the model again", stacklevel=2)
        history, seconds = train()
        save_checkpoint(path, model, cfg, history, seconds)
        return history, seconds, False


def _model_path(arch: str, fl: FirstLayer, cfg: dict) -> Path:
    return config.model_cache_dir() / f"{arch}-{fl.name}-{config_key(cfg)}.pt"


def model_path(
    arch: str,
    first_layer: FirstLayer | None = None,
    recipe: str | Recipe = "quick",
    train_limit: int | None = None,
    seed: int = 0,
    *,
    root=None,
) -> Path:
    """Where :func:`train_model` caches the model it trains for these arguments (it may not exist yet)."""
    cfg = training_config(arch, first_layer, get_recipe(recipe), train_limit, seed, training_data_id(root))
    return _model_path(arch, first_layer if first_layer is not None else default_first_layer(arch), cfg)


def train_model(
    arch: str,
    first_layer: FirstLayer | None = None,
    recipe: str | Recipe = "quick",
    train_limit: int | None = None,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    root=None,
    retrain: bool = False,
    progress: bool = True,
) -> TrainedModel:
    """Train ``arch`` with ``first_layer`` on ``train_limit`` CIFAR-10 images, or load it from the cache.

    The cache key is the full training config (architecture, first layer and its arguments, recipe,
    data subset and source, seed). The returned model is in eval mode on ``device``.
    """
    recipe = get_recipe(recipe)
    dev = config.device(device)
    cfg = training_config(arch, first_layer, recipe, train_limit, seed, training_data_id(root))
    fl = first_layer if first_layer is not None else default_first_layer(arch)
    path = _model_path(arch, fl, cfg)
    config.seed_everything(seed)
    model = build(arch, fl)

    def train() -> tuple[list[dict], float]:
        images, labels = load_cifar10("train", limit=train_limit, root=root)
        config.seed_everything(seed)
        history = fit(model, images, labels, recipe, seed=seed, device=dev, progress=progress)
        return history, history[-1]["seconds"]

    history, seconds, cached = load_or_train(path, model, cfg, train, retrain=retrain)
    return TrainedModel(model.to(dev).eval(), cfg, history, seconds, from_cache=cached, path=path)


class BelowFloorError(RuntimeError):
    """A trained model is below the accuracy a chapter needs: its recipe did not train it."""


def require_floor(accuracy: float, floor: float, what: str) -> None:
    """Raise :class:`BelowFloorError` when ``accuracy`` is below ``floor`` (both fractions in [0, 1]).

    Chapters use it so that a broken recipe fails the book instead of printing chance-level tables.
    ``what`` names the model and says what to change. A smoke run (``PUSHPULL_SMOKE``) barely trains,
    so there the check is skipped.
    """
    for name, v in (("accuracy", accuracy), ("floor", floor)):
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {v!r}")
    if accuracy < floor and not config.smoke_factor():
        raise BelowFloorError(f"{what}: {accuracy:.1%} clean accuracy, below the floor of {floor:.0%}")


def with_epochs(recipe: str | Recipe, epochs: int) -> Recipe:
    """A copy of ``recipe`` with another number of epochs (its name records the change)."""
    r = get_recipe(recipe)
    return replace(r, name=f"{r.name}-e{epochs}", epochs=epochs)
