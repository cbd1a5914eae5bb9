"""PGD adversarial training (Madry et al. 2018) for any of the book's classifiers, with the model cache.

``adversarial_fit`` is :func:`pushpull_lite.train.fit` with a hook that replaces each batch by its PGD
examples; ``train_adversarial_model`` trains once per config and loads from ``<cache>/models/`` afterwards,
keyed by the same config as :func:`pushpull_lite.train.train_model` plus the training attack.
"""

from __future__ import annotations

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
    config_key,
    default_first_layer,
    fit,
    get_recipe,
    load_or_train,
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
    attack = attack if attack is not None else TrainingAttack()
    return fit(
        model,
        images,
        labels,
        recipe,
        seed=seed,
        device=device,
        progress=progress,
        perturb=lambda m, x, y, autocast: _perturb(m, x, y, attack, autocast),
        desc="adversarial training",
    )


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
    fl = first_layer if first_layer is not None else default_first_layer(arch)
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
