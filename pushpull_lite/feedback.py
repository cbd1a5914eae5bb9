"""CNN-F: a convolutional network with recurrent generative feedback (Huang et al., NeurIPS 2020).

The forward (recognition) path is a small CNN: three blocks of 3x3 convolution, instance normalisation,
a learned bias, ReLU and 2x2 max-pooling, then a linear classifier. The feedback (generative) path runs
the same weights backwards: transposed linear, "unpooling" and transposed convolutions, so each linear
map of the feedback path is the adjoint of its forward map. Two layers remember what the forward pass
did and make the generative path depend on it:

- :class:`AdaReLU` keeps the forward pass's on/off pattern and lets the feedback through only where the
  forward unit was on; in later forward passes a unit is on only where its input agrees in sign with the
  feedback (``x * h > 0``), the paper's self-consistency between the two paths.
- :class:`AdaPool2d` keeps which pixel won each pooling window and puts the feedback back there; in later
  forward passes it takes the max where the feedback is positive and the min where it is negative.

``model(x, cycles=k)`` alternates: a forward pass gives logits, the feedback pass turns the logits into a
reconstruction of the image, the image estimate moves a step ``step`` towards it, and the next forward
pass reads the new estimate with the states of the feedback. With ``cycles=0`` it is a plain CNN
(:meth:`CNNF.feedforward_cnn` builds that CNN from standard layers, sharing the weights).

Training (:func:`fit_cnnf`, :func:`train_cnnf`) follows the paper: PGD adversarial training with
cross-entropy on the clean and the adversarial logits of every cycle, plus mean squared errors between the
feedback reconstructions of the adversarial input and the clean input's features at every level.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks, checks, config, measure, train
from .data import Batches, load_cifar10, training_data_id
from .models import Normalize, check_images

__all__ = [
    "RECIPES",
    "AdaPool2d",
    "AdaReLU",
    "CNNF",
    "FeedForwardCNN",
    "FeedbackConv2d",
    "FeedbackLinear",
    "FeedbackRecipe",
    "Trace",
    "WithCycles",
    "cnnf_loss",
    "fit_cnnf",
    "instance_norm",
    "model_path",
    "train_cnnf",
    "train_feedforward",
    "PoolState",
    "READOUTS",
    "build",
    "get_recipe",
    "training_config",
]

# --------------------------------------------------------------------------------------------------
# Layers with a feedback path


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each channel of each image by its root mean square: x (N, C, H, W) -> same shape.

    As in the CNN-F reference code, the mean is not subtracted, so the sign of every unit (which AdaReLU
    and AdaPool read) survives the normalisation. Used in both paths.
    """
    return x / torch.sqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + eps)


class FeedbackConv2d(nn.Conv2d):
    """A bias-free 3x3 ("same") convolution whose :meth:`feedback` is its transposed convolution.

    forward: x (N, in, H, W) -> (N, out, H, W); feedback: y (N, out, H, W) -> (N, in, H, W), the adjoint:
    ``<conv(x), y> = <x, feedback(y)>`` for all x, y.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def feedback(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y, self.weight, padding=self.padding)


class FeedbackLinear(nn.Linear):
    """A linear layer (with bias) whose :meth:`feedback` is ``y @ W``, the adjoint of ``x -> W x``.

    The bias belongs to the forward path only, as in the reference code: the generative path is linear.
    forward: (N, in) -> (N, out); feedback: (N, out) -> (N, in).
    """

    def feedback(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.weight


class AdaReLU(nn.Module):
    """ReLU that returns its on/off pattern, and lets the feedback through the same pattern.

    forward(x, hidden=None) -> (out, mask): mask = x > 0 on a first pass, (x * hidden) > 0 when the
    feedback ``hidden`` at this layer is given (a unit stays on only where the bottom-up input and the
    top-down feedback agree in sign); out = x * mask. feedback(h, mask) = h * mask. x, hidden, h: same shape.
    """

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (x > 0) if hidden is None else (x * hidden > 0)
        return x * mask, mask

    @staticmethod
    def feedback(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return h * mask


@dataclass
class PoolState:
    """What :class:`AdaPool2d` remembers: the winners of each window and which of max/min was used."""

    size: torch.Size  # the input's shape, to unpool back to it
    max_index: torch.Tensor  # flat index of each window's max, (N, C, H/k, W/k)
    min_index: torch.Tensor | None = None  # and of its min (later passes only)
    positive: torch.Tensor | None = None  # where the max was used (later passes only)
    negative: torch.Tensor | None = None  # where the min was used (later passes only)


class AdaPool2d(nn.Module):
    """Max-pooling that remembers its winners; the feedback puts values back at the winning pixels.

    forward(x, hidden=None) -> (out, state): x (N, C, H, W) -> out (N, C, H/k, W/k). On a first pass this is
    max-pooling. With the feedback ``hidden`` (same shape as out) it is the max where hidden > 0, the min
    where hidden < 0 and 0 where hidden = 0. feedback(h, state): (N, C, H/k, W/k) -> (N, C, H, W), zero
    except at the winning pixels: the adjoint of picking those pixels.
    """

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, PoolState]:
        k = self.kernel_size
        top, max_index = F.max_pool2d(x, k, return_indices=True)
        if hidden is None:
            return top, PoolState(x.shape, max_index)
        neg_bottom, min_index = F.max_pool2d(-x, k, return_indices=True)
        positive, negative = hidden > 0, hidden < 0
        out = top * positive - neg_bottom * negative
        return out, PoolState(x.shape, max_index, min_index, positive, negative)

    def feedback(self, h: torch.Tensor, state: PoolState) -> torch.Tensor:
        k, size = self.kernel_size, state.size[-2:]
        if state.min_index is None:
            return F.max_unpool2d(h, state.max_index, k, output_size=size)
        up = F.max_unpool2d(h * state.positive, state.max_index, k, output_size=size)
        return up + F.max_unpool2d(h * state.negative, state.min_index, k, output_size=size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


# --------------------------------------------------------------------------------------------------
# The model


@dataclass
class Trace:
    """Everything one call of :meth:`CNNF.trace` computed, for training losses and figures.

    logits: k + 1 tensors (N, K), one per forward pass (index 0: the plain feed-forward pass).
    reconstructions: k tensors (N, 3, H, W), the feedback's image after each cycle, in [0, 1] pixel units
    (not clipped). estimates: k + 1 tensors (N, 3, H, W), the image each forward pass read (index 0: x).
    features: the first pass's activations after each AdaReLU, one tensor per block.
    feature_reconstructions: k lists, the feedback at the same places (after the AdaReLU mask).
    """

    logits: list[torch.Tensor]
    reconstructions: list[torch.Tensor] = field(default_factory=list)
    estimates: list[torch.Tensor] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)
    feature_reconstructions: list[list[torch.Tensor]] = field(default_factory=list)

    def mean_logits(self) -> torch.Tensor:
        """The logits averaged over all k + 1 forward passes, (N, K): the reference code's evaluation
        default (``run_average``), where :meth:`CNNF.forward` returns the last pass's."""
        return torch.stack(self.logits).mean(dim=0)


class CNNF(nn.Module):
    """CNN-F: x (N, 3, H, W) in [0, 1] -> logits (N, num_classes), after ``cycles`` feedback cycles.

    channels: output channels of the three conv blocks (each block halves the resolution).
    cycles: the default number of cycles of :meth:`forward`. step: how far each cycle moves the image
    estimate towards the feedback's reconstruction (the reference code's ``res_param``, 0.1).
    first_layer: ``"conv"``, or ``"pushpull"`` for a push-pull first layer (chapter 2's ``PushPull2d``);
    its feedback is the transposed push convolution (the adjoint of the layer's linear part).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 64),
        num_classes: int = 10,
        cycles: int = 2,
        step: float = 0.1,
        first_layer: str = "conv",
        image_size: int = 32,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        if image_size % 2 ** len(channels) != 0:
            raise ValueError(f"image_size must be divisible by 2 ** {len(channels)}, got {image_size}")
        step = checks.real("step", step, positive=True, maximum=1.0)
        checks.one_of("first_layer", first_layer, ("conv", "pushpull"))
        self.channels, self.num_classes, self.image_size = channels, num_classes, image_size
        self.cycles = checks.integer("cycles", cycles, minimum=0)
        self.step = float(step)
        self.first_layer = first_layer
        self.normalize = Normalize()
        ins = (3, *channels[:-1])
        convs: list[nn.Module] = [FeedbackConv2d(i, o) for i, o in zip(ins, channels)]
        if first_layer == "pushpull":
            from .layers import PushPull2d

            convs[0] = PushPull2d(3, channels[0], 3, padding=1)
        self.convs = nn.ModuleList(convs)
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in channels])
        self.relus = nn.ModuleList([AdaReLU() for _ in channels])
        self.pools = nn.ModuleList([AdaPool2d(2) for _ in channels])
        side = image_size // 2 ** len(channels)
        self.fc = FeedbackLinear(channels[-1] * side * side, num_classes)

    # ---- the two paths

    def _up(self, i: int, x: torch.Tensor, hidden: tuple | None):
        """Forward block i: conv -> instance norm -> bias -> AdaReLU -> AdaPool (hidden: its feedback)."""
        a = instance_norm(self.convs[i](x)) + self.biases[i]
        a, mask = self.relus[i](a, None if hidden is None else hidden[0])
        out, pool = self.pools[i](a, None if hidden is None else hidden[1])
        return out, a, (mask, pool)

    def _conv_feedback(self, i: int, h: torch.Tensor) -> torch.Tensor:
        conv = self.convs[i]
        if isinstance(conv, FeedbackConv2d):
            return conv.feedback(h)
        return F.conv_transpose2d(h, conv.weight, padding=conv.padding)  # push-pull: its push kernel

    def encode(self, x: torch.Tensor, hiddens: list | None = None):
        """One forward pass on images x (N, 3, H, W) in [0, 1]: (logits, activations, states)."""
        out = self.normalize(x)
        acts, states = [], []
        for i in range(len(self.channels)):
            out, a, state = self._up(i, out, None if hiddens is None else hiddens[i])
            acts.append(a)
            states.append(state)
        return self.fc(out.flatten(1)), acts, states

    def decode(self, logits: torch.Tensor, states: list):
        """The feedback pass: logits (N, K) -> (image (N, 3, H, W) in pixel units, block feedback, hiddens).

        hiddens[i] = (feedback at block i's AdaReLU, at its AdaPool): the states of the next forward pass.
        """
        n, side = logits.shape[0], self.image_size // 2 ** len(self.channels)
        h = self.fc.feedback(logits).view(n, self.channels[-1], side, side)
        hiddens, recons = [None] * len(self.channels), [None] * len(self.channels)
        for i in reversed(range(len(self.channels))):
            mask, pool = states[i]
            h = instance_norm(h)
            at_pool = h
            h = self.pools[i].feedback(h, pool)
            hiddens[i] = (h, at_pool)
            h = AdaReLU.feedback(h, mask)
            recons[i] = h
            h = self._conv_feedback(i, h)
        image = h * self.normalize.std.to(h.dtype) + self.normalize.mean.to(h.dtype)
        return image, recons, hiddens

    def trace(self, x: torch.Tensor, cycles: int | None = None) -> Trace:
        """Run ``cycles`` cycles (default ``self.cycles``) on x (N, 3, H, W) in [0, 1]; keep every step."""
        check_images(x)
        cycles = self.cycles if cycles is None else checks.integer("cycles", cycles, minimum=0)
        logits, acts, states = self.encode(x)
        t = Trace([logits], estimates=[x], features=acts)
        estimate = x
        for _ in range(cycles):
            image, recons, hiddens = self.decode(logits, states)
            # self-consistency: move the image estimate a step towards what the feedback generates
            estimate = estimate + self.step * (image - estimate)
            logits, _, states = self.encode(estimate, hiddens)
            t.logits.append(logits)
            t.reconstructions.append(image)
            t.estimates.append(estimate)
            t.feature_reconstructions.append(recons)
        return t

    def forward(
        self, x: torch.Tensor, cycles: int | None = None, return_reconstructions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (N, num_classes) of the last forward pass after ``cycles`` cycles (default ``self.cycles``).

        With ``return_reconstructions``: (logits, list of ``cycles`` images (N, 3, H, W) in pixel units).
        """
        t = self.trace(x, cycles)
        return (t.logits[-1], t.reconstructions) if return_reconstructions else t.logits[-1]

    def feedforward_cnn(self) -> FeedForwardCNN:
        """The feed-forward CNN made of standard layers, sharing (not copying) this model's parameters."""
        return FeedForwardCNN(self)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, cycles={self.cycles}, step={self.step:g}, "
            f"first_layer={self.first_layer}"
        )


class FeedForwardCNN(nn.Module):
    """The forward path of a :class:`CNNF` built from standard layers (ReLU, max-pool): x -> logits.

    It shares the CNN-F's parameters, so it is what a CNN-F computes with 0 cycles.
    """

    def __init__(self, cnnf: CNNF):
        super().__init__()
        self.normalize, self.convs, self.biases, self.fc = cnnf.normalize, cnnf.convs, cnnf.biases, cnnf.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        out = self.normalize(x)
        for conv, bias in zip(self.convs, self.biases):
            out = F.max_pool2d(F.relu(instance_norm(conv(out)) + bias), 2)
        return self.fc(out.flatten(1))


#: how :class:`WithCycles` reads its logits: the last forward pass's, or the mean over all passes
READOUTS = ("last", "average")


class WithCycles(nn.Module):
    """A CNN-F run with a fixed number of cycles, as a module mapping images to logits (for attacks).

    ``WithCycles(model, 2)`` is the full model: an attack on it differentiates through every cycle.
    ``WithCycles(model, 0)`` is its feed-forward pass only. readout: ``"last"`` (default, the book's
    choice) returns the last forward pass's logits; ``"average"`` the mean of the logits of all
    ``cycles + 1`` passes (:meth:`Trace.mean_logits`), as the reference code evaluates; an attack on an
    ``"average"`` model differentiates through the averaging.
    """

    def __init__(self, model: CNNF, cycles: int, readout: str = "last"):
        super().__init__()
        self.model, self.cycles = model, checks.integer("cycles", cycles, minimum=0)
        self.readout = checks.one_of("readout", readout, READOUTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.readout == "average":
            return self.model.trace(x, cycles=self.cycles).mean_logits()
        return self.model(x, cycles=self.cycles)

    def extra_repr(self) -> str:
        return f"cycles={self.cycles}" + (f", readout={self.readout}" if self.readout != "last" else "")


# --------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class FeedbackRecipe:
    """How to build and adversarially train a CNN-F (or, with ``cycles=0``, its feed-forward CNN).

    eps, pgd_step: the training attack's L-inf budget and step in [0, 1] pixel units; pgd_steps its steps.
    attack_cycles: cycles of the model the training attack differentiates through (the reference code
    attacks the feed-forward pass, 0, which is cheap). cycles: the cycles trained (losses at each).
    """

    name: str
    epochs: int
    train_limit: int | None
    channels: tuple[int, ...] = (32, 64, 64)
    cycles: int = 2
    step: float = 0.1
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    augment: bool = True
    eps: float = 8 / 255
    pgd_step: float = 2.5 / 255
    pgd_steps: int = 3
    attack_cycles: int = 0
    clean_weight: float = 1.0
    mse_weight: float = 1.0

    def __post_init__(self):
        checks.integer("epochs", self.epochs)
        checks.integer("cycles", self.cycles, minimum=0)
        checks.integer("attack_cycles", self.attack_cycles, minimum=0)
        checks.real("eps", self.eps, pixel_units=True)  # L-inf, [0, 1] pixel units
        checks.real("pgd_step", self.pgd_step, pixel_units=True)
        checks.integer("pgd_steps", self.pgd_steps)

    def feedforward(self) -> FeedbackRecipe:
        """The same recipe for the feed-forward baseline: 0 cycles, so only the cross-entropy terms."""
        return replace(self, name=f"{self.name}-ff", cycles=0, attack_cycles=0)


#: CNN-F recipes by profile name: Adam, PGD adversarial training at eps 8/255 against the feed-forward
#: pass (as the reference code), 2 cycles. ``quick`` fits its chapter's 90-second budget on 2 CPU cores.
RECIPES: dict[str, FeedbackRecipe] = {
    "quick": FeedbackRecipe(
        "cnnf-quick", epochs=3, train_limit=config.PROFILES["quick"].cnn_train_limit, channels=(16, 32, 64)
    ),
    "medium": FeedbackRecipe(
        "cnnf-medium", epochs=5, train_limit=8_000, channels=(32, 64, 64), pgd_steps=5, pgd_step=2 / 255
    ),
    # full: 8 epochs keep chapters 5 and 7 on a T4 near 30 minutes (benchmarks/full_plan.py: an estimate
    # from counted FLOPs, not timed on a GPU yet); paper trains 100
    "full": FeedbackRecipe(
        "cnnf-full", epochs=8, train_limit=None, channels=(64, 128, 128), pgd_steps=7, pgd_step=2 / 255
    ),
    "paper": FeedbackRecipe(
        "cnnf-paper", epochs=100, train_limit=None, channels=(64, 128, 128), pgd_steps=7, pgd_step=2 / 255
    ),
}


def get_recipe(recipe: str | FeedbackRecipe) -> FeedbackRecipe:
    """A :class:`FeedbackRecipe` by profile name (see :data:`RECIPES`), or the recipe itself."""
    if isinstance(recipe, FeedbackRecipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(
            f"recipe {recipe!r} is unknown; expected one of {sorted(RECIPES)} or a FeedbackRecipe"
        )
    r = RECIPES[recipe]
    return replace(r, train_limit=config.smoke_size(r.train_limit)) if config.smoke_factor() else r


def build(recipe: str | FeedbackRecipe, first_layer: str = "conv") -> CNNF:
    """An untrained CNN-F with the recipe's channels, cycles and step."""
    r = get_recipe(recipe)
    return CNNF(r.channels, cycles=r.cycles, step=r.step, first_layer=first_layer)


def cnnf_loss(
    model: CNNF, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, recipe: FeedbackRecipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's objective on one batch: (loss, clean logits of the last cycle).

    Cross-entropy on the clean and adversarial logits of every forward pass, averaged over the k + 1
    passes; plus ``mse_weight`` times the mean squared error between the feedback of the adversarial
    half and the clean half's first-pass features, at the image (in normalised units) and after each
    block's AdaReLU, averaged over levels and cycles. x, x_adv: (N, 3, H, W) in [0, 1]; y: (N,).
    """
    n, k = len(y), recipe.cycles
    t = model.trace(torch.cat([x, x_adv]), cycles=k)
    loss = x.new_zeros(())
    for logits in t.logits:
        clean = F.cross_entropy(logits[:n], y)
        adv = F.cross_entropy(logits[n:], y)
        loss = loss + (recipe.clean_weight * clean + adv) / (2 * (k + 1))
    if k > 0 and recipe.mse_weight > 0:
        target_image = model.normalize(x)
        targets = [f[:n].detach() for f in t.features]
        for image, recons in zip(t.reconstructions, t.feature_reconstructions):
            terms = [F.mse_loss(model.normalize(image[n:]), target_image)]
            terms += [F.mse_loss(r[n:], f) for r, f in zip(recons, targets)]
            loss = loss + recipe.mse_weight * sum(terms) / (len(terms) * k)
    return loss, t.logits[-1][:n]


def fit_cnnf(
    model: CNNF,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: str | FeedbackRecipe,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Adversarially train ``model`` in place on images uint8 (N, 3, H, W) with labels (N,).

    Each batch: PGD (``recipe.pgd_steps`` steps, random start) against the model run with
    ``recipe.attack_cycles`` cycles, then one Adam step on :func:`cnnf_loss`. Adam's learning rate
    follows a cosine from ``recipe.lr`` to 0. Returns the per-epoch history: ``epoch``, ``loss``,
    ``train_acc`` (clean, last cycle), ``seconds`` (cumulative).
    """
    recipe = get_recipe(recipe)
    dev = config.device(device)
    model.to(dev)
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
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    epochs = config.smoke_epochs(recipe.epochs)
    total = epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item())
    )
    attacked = WithCycles(model, recipe.attack_cycles)
    history: list[dict] = []
    start = time.perf_counter()
    bar = config.progress(total=total, desc="adversarial training", enabled=progress, leave=False)
    for epoch in range(epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in batches:
            x_adv = attacks.pgd(attacked, x, y, recipe.eps, recipe.pgd_step, recipe.pgd_steps)
            model.train()
            loss, logits = cnnf_loss(model, x, x_adv, y, recipe)
            train.check_loss(loss, epoch, seen // recipe.batch_size, recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            correct += measure.hits(logits, y).sum().item()
            seen += len(y)
            bar.update()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / seen,
                "train_acc": correct / seen,
                "seconds": time.perf_counter() - start,
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['train_acc']:.3f}")
    bar.close()
    model.eval()
    return history


def training_config(recipe: FeedbackRecipe, first_layer: str, seed: int, data_source: str) -> dict:
    """The JSON-able config that keys a trained CNN-F in the model cache."""
    return {
        "cache_version": train.CACHE_VERSION,
        "arch": "cnnf",
        "first_layer": first_layer,
        "recipe": json.loads(json.dumps(asdict(recipe))),
        "train_limit": recipe.train_limit,
        "seed": seed,
        "data_source": data_source,
    }


def _model_path(r: FeedbackRecipe, first_layer: str, cfg: dict) -> Path:
    return config.model_cache_dir() / f"cnnf-{first_layer}-c{r.cycles}-{train.config_key(cfg)}.pt"


def model_path(
    recipe: str | FeedbackRecipe = "quick", seed: int = 0, *, first_layer: str = "conv", root=None
) -> Path:
    """Where :func:`train_cnnf` caches the model it trains for these arguments (it may not exist yet);
    ``get_recipe(recipe).feedforward()`` for :func:`train_feedforward`'s."""
    r = get_recipe(recipe)
    return _model_path(r, first_layer, training_config(r, first_layer, seed, training_data_id(root)))


def train_cnnf(
    recipe: str | FeedbackRecipe = "quick",
    seed: int = 0,
    *,
    first_layer: str = "conv",
    device: torch.device | str | None = None,
    root=None,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[CNNF, dict]:
    """Train a CNN-F with ``recipe`` (a profile name or a :class:`FeedbackRecipe`), or load it from the cache.

    Cached under ``<cache>/models/cnnf-<key>.pt`` by the full config (recipe, first layer, seed, data
    source), like :func:`pushpull_lite.train.train_model`. Returns (model in eval mode, info) with info
    keys ``config``, ``history``, ``train_seconds`` (of the run that trained it), ``from_cache``, ``path``.
    """
    r = get_recipe(recipe)
    dev = config.device(device)
    cfg = training_config(r, first_layer, seed, training_data_id(root))
    path = _model_path(r, first_layer, cfg)
    config.seed_everything(seed)
    model = build(r, first_layer)

    def run() -> tuple[list[dict], float]:
        images, labels = load_cifar10("train", limit=r.train_limit, root=root)
        config.seed_everything(seed)
        history = fit_cnnf(model, images, labels, r, seed=seed, device=dev, progress=progress)
        return history, history[-1]["seconds"]

    history, seconds, cached = train.load_or_train(path, model, cfg, run, retrain=retrain)
    info = {"config": cfg, "path": path, "history": history, "train_seconds": seconds, "from_cache": cached}
    return model.to(dev).eval(), info


def train_feedforward(
    recipe: str | FeedbackRecipe = "quick",
    seed: int = 0,
    *,
    first_layer: str = "conv",
    device: torch.device | str | None = None,
    root=None,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[FeedForwardCNN, dict]:
    """The same-size feed-forward CNN trained the same way (``recipe.feedforward()``: 0 cycles, same PGD).

    Returns (:class:`FeedForwardCNN` in eval mode, info as :func:`train_cnnf`).
    """
    model, info = train_cnnf(
        get_recipe(recipe).feedforward(),
        seed,
        first_layer=first_layer,
        device=device,
        root=root,
        retrain=retrain,
        progress=progress,
    )
    return model.feedforward_cnn().eval(), info
