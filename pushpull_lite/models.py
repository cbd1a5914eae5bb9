"""Models that take float images in [0, 1] and normalise inside.

- CIFAR ResNet-20/32/44/56 (He et al. 2016) with the projection shortcut (1x1 conv + BatchNorm where the
  shape changes) used by the 2020 Push-Pull paper's published models; attribute names match those
  checkpoints (``conv1``, ``bn1``, ``layer1..3``, ``fc``).
- The multi-scale seed's small CNN (first layer 3->64, conv 128 + max-pool, conv 256 + max-pool,
  FC 512, FC 10).

Both take ``first_layer``: a factory called with ``(in_channels, out_channels)``, or the name of one in
:data:`FIRST_LAYERS`. Use :func:`first_layer` to get one with a name and arguments, so that the model cache
can key trained models by it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .layers import FIRST_LAYERS  # name -> first-layer factory; a new layer registers there

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CifarResNet",
    "FirstLayer",
    "Normalize",
    "SeedCNN",
    "build",
    "check_images",
    "count_parameters",
    "first_layer",
    "resnet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
]

#: The normalisation of the 2020 paper's published models (mean, std of CIFAR-10, per channel).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; x: (N, C, H, W). The statistics are not part of the state dict."""

    def __init__(self, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        mean = ", ".join(f"{m:.4f}" for m in self.mean.flatten().tolist())
        std = ", ".join(f"{s:.4f}" for s in self.std.flatten().tolist())
        return f"mean=({mean}), std=({std})"


def check_images(x: torch.Tensor, channels: int = 3, name: str = "x") -> torch.Tensor:
    """``x`` when it is a float batch ``(N, channels, H, W)``, else a clear error (the range is not checked:
    :func:`checks.image_batch` with ``unit_range=False``). Integer images get a hint to convert them."""
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with images.float() / 255"
        )
    return checks.image_batch(name, x, channels=channels, unit_range=False)


# --------------------------------------------------------------------------------------------------
# First layers


@dataclass(frozen=True)
class FirstLayer:
    """A named first-layer factory: ``FirstLayer("pushpull", (("alpha", 1.0),))(3, 16)`` builds the layer.

    The name and keyword arguments enter the model-cache key, so two models trained with different
    first layers never share a checkpoint.
    """

    name: str
    kwargs: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.name not in FIRST_LAYERS:
            raise ValueError(f"first layer {self.name!r} is unknown; expected one of {sorted(FIRST_LAYERS)}")

    def __call__(self, in_channels: int, out_channels: int) -> nn.Module:
        return FIRST_LAYERS[self.name](in_channels, out_channels, **dict(self.kwargs))

    def key(self) -> dict:
        """A JSON-able description (for cache keys and labels)."""
        return {"name": self.name, "kwargs": {k: _jsonable(v) for k, v in self.kwargs}}

    def label(self) -> str:
        """A short human label, e.g. ``pushpull(alpha=1.0, scale=2.0)``."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs)
        return f"{self.name}({args})" if args else self.name


def _jsonable(v: object) -> object:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    json.dumps(v)  # raises TypeError for values that cannot key a cache
    return v


def first_layer(name: str = "conv", **kwargs) -> FirstLayer:
    """A named first-layer factory; see :data:`FIRST_LAYERS` for the names."""
    return FirstLayer(name, tuple(sorted(kwargs.items())))


def _resolve_first_layer(
    value: FirstLayer | str | Callable[[int, int], nn.Module] | None, default: FirstLayer
) -> Callable[[int, int], nn.Module]:
    """``first_layer`` as a factory: None -> ``default``, a name from :data:`FIRST_LAYERS` ->
    ``first_layer(name)``, a callable as it is; anything else is a TypeError naming the argument."""
    if value is None:
        return default
    if isinstance(value, str):
        return first_layer(value)  # an unknown name raises ValueError listing the known ones
    if isinstance(value, nn.Module) or not callable(value):
        # A module instance is callable but maps a tensor, not (in_channels, out_channels), to a layer.
        raise TypeError(
            f"first_layer must be None, a name from {sorted(FIRST_LAYERS)}, a FirstLayer (see first_layer()) "
            f"or a callable (in_channels, out_channels) -> nn.Module; got {type(value).__name__}"
        )
    return value


def _describe_factory(factory: Callable[[int, int], nn.Module]) -> dict:
    if isinstance(factory, FirstLayer):
        return factory.key()
    return {"name": getattr(factory, "__qualname__", repr(factory)), "kwargs": {}}


# --------------------------------------------------------------------------------------------------
# CIFAR ResNets


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm; projection shortcut (1x1 conv + BN) when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: x (N, 3, H, W) in [0, 1] -> logits (N, num_classes)."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        first_layer: Callable[[int, int], nn.Module] | None = None,
        width: int = 16,
    ):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...), got {depth!r}")
        num_classes = checks.integer("num_classes", num_classes, minimum=1)
        n = (depth - 2) // 6
        factory = _resolve_first_layer(first_layer, FirstLayer("conv"))
        self.depth = depth
        self.first_layer_key = _describe_factory(factory)
        self.normalize = Normalize()
        self.conv1 = factory(3, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(width, width, n, 1)
        self.layer2 = self._stage(width, 2 * width, n, 2)
        self.layer3 = self._stage(2 * width, 4 * width, n, 2)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) in [0, 1] -> pooled features (N, 64)."""
        check_images(x)
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, first_layer={self.first_layer_key['name']}"


def resnet(depth: int, first_layer: Callable[[int, int], nn.Module] | None = None, **kwargs) -> CifarResNet:
    """A CIFAR ResNet of the given depth (20, 32, 44, 56, ...)."""
    return CifarResNet(depth, first_layer=first_layer, **kwargs)


def resnet20(first_layer: Callable[[int, int], nn.Module] | None = None, **kwargs) -> CifarResNet:
    return CifarResNet(20, first_layer=first_layer, **kwargs)


def resnet32(first_layer: Callable[[int, int], nn.Module] | None = None, **kwargs) -> CifarResNet:
    return CifarResNet(32, first_layer=first_layer, **kwargs)


def resnet44(first_layer: Callable[[int, int], nn.Module] | None = None, **kwargs) -> CifarResNet:
    return CifarResNet(44, first_layer=first_layer, **kwargs)


def resnet56(first_layer: Callable[[int, int], nn.Module] | None = None, **kwargs) -> CifarResNet:
    return CifarResNet(56, first_layer=first_layer, **kwargs)


# --------------------------------------------------------------------------------------------------
# The multi-scale seed's CNN


class SeedCNN(nn.Module):
    """The multi-scale seed's CNN: first layer (3->64) -> ReLU -> conv 128 + ReLU + max-pool ->
    conv 256 + ReLU + max-pool -> FC 512 + ReLU -> FC 10. x (N, 3, 32, 32) in [0, 1] -> logits.

    Unlike the seed, inputs are normalised inside the model (the seed normalised to [-1, 1] outside
    it, then clamped its attacks to [0, 1]: see ``reference.md`` section 3), and the output is raw
    logits (the seed fed ``log_softmax`` to ``CrossEntropyLoss``).
    """

    def __init__(
        self,
        first_layer: Callable[[int, int], nn.Module] | None = None,
        num_classes: int = 10,
        image_size: int = 32,
    ):
        super().__init__()
        if image_size % 4 != 0 or image_size < 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        factory = _resolve_first_layer(first_layer, FirstLayer("conv", (("bias", True),)))
        self.first_layer_key = _describe_factory(factory)
        self.normalize = Normalize()
        self.pp = factory(3, 64)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.fc1 = nn.Linear(256 * (image_size // 4) ** 2, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        out = F.relu(self.pp(self.normalize(x)))
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        out = F.max_pool2d(F.relu(self.conv3(out)), 2)
        out = F.relu(self.fc1(out.flatten(1)))
        return self.fc2(out)

    def extra_repr(self) -> str:
        return f"first_layer={self.first_layer_key['name']}"


#: architecture name -> constructor taking ``first_layer=``; names enter the model-cache key.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "seed_cnn": SeedCNN,
}


def build(arch: str, first_layer: FirstLayer | str | None = None) -> nn.Module:
    """Build architecture ``arch`` (see :data:`ARCHITECTURES`) with the given first layer.

    first_layer: None (the architecture's plain conv), a name from :data:`FIRST_LAYERS` (``"pushpull"``,
    default keyword arguments), or a :class:`FirstLayer` from :func:`first_layer` (names with arguments).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch {arch!r} is unknown; expected one of {sorted(ARCHITECTURES)}")
    if first_layer is not None:
        # Resolved here too so that a wrong type is reported before any layer is built.
        first_layer = _resolve_first_layer(first_layer, FirstLayer("conv"))
    return ARCHITECTURES[arch](first_layer=first_layer)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
