"""PGD adversarial training (Madry et al. 2018) for any of the book's classifiers, with the model cache.

``adversarial_fit`` trains in place like :func:`pushpull_lite.train.fit`, on PGD examples instead of clean
images; ``train_adversarial_model`` trains once per config and loads from ``<cache>/models/`` afterwards,
keyed by the same config as :func:`pushpull_lite.train.train_model` plus the training attack.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, config
from .data import load_cifar10, training_data_id
from .models import FirstLayer, build
from .train import (
    Recipe,
    TrainedModel,
    _default_first_layer,
    _lr_at,
    _optimizer,
    check_loss,
    config_key,
    get_recipe,
    load_or_train,
    memory_format,
    training_batches,
    training_config,
)

__all__ = ["TrainingAttack", "adversarial_fit", "train_adversarial_model"]


@dataclass(frozen=True)
class TrainingAttack:
    """The attack that makes the training examples: L-inf PGD, ``steps`` steps of ``step_size`` from a
    uniform random start in the ``eps`` ball (pixel units). ``steps=1, step_size=1.25 eps`` is the fast
    FGSM-with-random-start of Wong et al. (2020)."""

    eps: float = 8 / 255
    steps: int = 3
    step_size: float | None = None  # None: 2.5 eps / steps (Madry et al.)

    def __post_init__(self):
        checks.real("eps", self.eps, positive=True, pixel_units=True)  # L-inf, [0, 1] pixel units
        checks.integer("steps", self.steps)
        if self.step_size is not None:
            checks.real("step_size", self.step_size, positive=True, pixel_units=True)

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


def _perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: TrainingAttack, amp) -> torch.Tensor:
    """PGD examples for one batch x: (B, 3, H, W) in [0, 1], with the model in its current (training) mode.

    Training mode on purpose (as Madry et al.): BatchNorm uses the batch's statistics, so the attack sees
    the network that the update will train. Only the input's gradient is taken.
    """
    low, high = (x - attack.eps).clamp(min=0), (x + attack.eps).clamp(max=1)
    x_adv = (x + torch.empty_like(x).uniform_(-attack.eps, attack.eps)).clamp(0, 1)
    for _ in range(attack.steps):
        x_adv.requires_grad_(True)
        with amp():
            loss = F.cross_entropy(model(x_adv).float(), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.max(torch.min(x_adv.detach() + attack.step * grad.sign(), high), low)
    return x_adv.detach()


def adversarial_fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: str | Recipe = "quick",
    attack: TrainingAttack | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place on PGD examples of images uint8 (N, 3, H, W) with labels (N,).

    Same optimiser, schedule, batches and augmentation as :func:`pushpull_lite.train.fit` with ``recipe``;
    each batch is replaced by ``attack``'s adversarial examples (default :class:`TrainingAttack`: eps
    8/255, 3 steps). Cost: ``attack.steps + 1`` forward+backward passes per image. Returns the per-epoch
    history: ``epoch``, ``loss`` and ``train_acc`` (on the adversarial batches), ``lr``, ``seconds``.
    """
    recipe = get_recipe(recipe)
    attack = attack if attack is not None else TrainingAttack()
    dev, batches = training_batches(model, images, labels, recipe, seed, device)
    opt = _optimizer(model, recipe)
    epochs = config.smoke_epochs(recipe.epochs)
    total = epochs * len(batches)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(dev.type, enabled=recipe.amp and dev.type == "cuda")

    def amp():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=recipe.amp)

    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    bar = config.progress(total=total, desc="adversarial training", enabled=progress, leave=False)
    model.train()
    for epoch in range(epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in batches:
            for group in opt.param_groups:
                group["lr"] = _lr_at(recipe, step, total, len(batches))
            x_adv = _perturb(model, x.contiguous(memory_format=memory_format(recipe)), y, attack, amp)
            with amp():
                logits = model(x_adv)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            check_loss(loss, epoch, step, recipe)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            step += 1
            bar.update()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / seen,
                "train_acc": correct / seen,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['train_acc']:.3f}")
    bar.close()
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def train_adversarial_model(
    arch: str,
    first_layer: FirstLayer | None = None,
    recipe: str | Recipe = "quick",
    train_limit: int | None = None,
    seed: int = 0,
    attack: TrainingAttack | None = None,
    *,
    device: torch.device | str | None = None,
    root=None,
    retrain: bool = False,
    progress: bool = True,
) -> TrainedModel:
    """:func:`adversarial_fit` on ``train_limit`` CIFAR-10 images, or load the result from the cache.

    Keyed like :func:`pushpull_lite.train.train_model` (architecture, first layer, recipe, data subset
    and source, seed) plus the training attack, so it never collides with a cleanly trained model.
    """
    recipe = get_recipe(recipe)
    attack = attack if attack is not None else TrainingAttack()
    dev = config.device(device)
    cfg = training_config(arch, first_layer, recipe, train_limit, seed, training_data_id(root))
    cfg["adversarial_training"] = {"method": "pgd-linf", **asdict(attack), "step": attack.step}
    fl = first_layer if first_layer is not None else _default_first_layer(arch)
    path = config.model_cache_dir() / f"{arch}-{fl.name}-pgdtrained-{config_key(cfg)}.pt"
    config.seed_everything(seed)
    model = build(arch, fl)

    def train() -> tuple[list[dict], float]:
        images, labels = load_cifar10("train", limit=train_limit, root=root)
        config.seed_everything(seed)
        history = adversarial_fit(
            model, images, labels, recipe, attack, seed=seed, device=dev, progress=progress
        )
        return history, history[-1]["seconds"]

    history, seconds, cached = load_or_train(path, model, cfg, train, retrain=retrain)
    return TrainedModel(model.to(dev).eval(), cfg, history, seconds, from_cache=cached, path=path)
