"""Push-pull layers: the 2020 layer, the ICPR 2024 PushPull-Conv and a multi-scale push-pull layer.

Definitions (``/work/shared/reference.md`` sections 1-3, and the chapter that introduces each layer):

- :class:`PushPull2d` (Strisciuglio et al. 2020): ``ReLU(conv(x, w) + b) - alpha * ReLU(conv(x, -U(w)) - b)``,
  where ``U`` upsamples each push kernel bilinearly (``align_corners=True``) to a larger, odd size.
- :class:`PushPullConv2d` (ICPR 2024): the pull kernel is the intensity-inverted push kernel, and the pull
  response is smoothed by average pooling before the ReLU.
- :class:`MultiScalePushPull2d`: parallel push-pull units at several kernel sizes, summed; the pull kernels
  are either derived from the push kernels (faithful to 2020) or learned separately (as in the seed).

Shapes: inputs ``x: (N, C_in, H, W)``; outputs ``(N, C_out, H_out, W_out)`` with the usual convolution
arithmetic ``H_out = (H + 2 * padding - kernel_size) // stride + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import checks

__all__ = [
    "MultiScalePushPull2d",
    "PushPull2d",
    "PushPullConv2d",
    "pull_kernel_size",
    "push_pull_response",
    "upsample_kernel",
    "upsampling_matrix",
    "CPU_CHUNK_ELEMENTS",
    "Term",
    "FIRST_LAYERS",
    "register_first_layer",
]

#: Largest response map (elements) computed in one piece on the CPU; bigger batches are split into the fewest
#: equal chunks below it. Fresh tensors above glibc's mmap threshold cost page faults on every call: chunks of
#: 8 MB (float32) made the 3->64, 5x5 layer about 1.3x faster forward + backward than whole-batch 32 MB maps
#: (1 thread, ``benchmarks/layer_speed.py``); a ResNet-20 first layer (16 x 32 x 32 x 128) is one chunk.
CPU_CHUNK_ELEMENTS = 1 << 21


# ----------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------


def _check_input(name: str, x: object, *, layer: nn.Module, in_channels: int) -> Tensor:
    """``x: (N, in_channels, H, W)`` float (any range), or the error of :func:`checks.image_batch`
    prefixed with the layer's class, e.g. ``PushPull2d: x must have shape (N, 3, H, W), got (3, 8, 8)``."""
    try:
        return checks.image_batch(name, x, channels=in_channels, unit_range=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{type(layer).__name__}: {exc}") from None


# ----------------------------------------------------------------------------------------------------------
# the pull kernel of the 2020 layer
# ----------------------------------------------------------------------------------------------------------


def pull_kernel_size(kernel_size: int, scale: float) -> int:
    """Side of the pull kernel: ``floor(kernel_size * scale)``, +1 when even (3, 2.0 -> 7; 5, 2.0 -> 11)."""
    checks.odd_size("kernel_size", kernel_size)
    scale = checks.real("scale", scale, minimum=1.0)
    size = math.floor(kernel_size * scale)
    return size + 1 if size % 2 == 0 else size


def upsampling_matrix(
    in_size: int, out_size: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Matrix ``A: (out_size, in_size)`` of 1-D linear interpolation with ``align_corners=True``.

    Bilinear upsampling is separable, so for a kernel ``w: (k, k)`` the upsampled kernel is ``A @ w @ A.T``,
    equal to ``F.interpolate(w, size=(K, K), mode="bilinear", align_corners=True)`` (:func:`upsample_kernel`).
    """
    checks.integer("in_size", in_size, minimum=1)
    checks.integer("out_size", out_size, minimum=1)
    if in_size == 1:
        return torch.ones(out_size, 1, dtype=dtype, device=device)
    if out_size < 2:
        raise ValueError(f"out_size must be >= 2 to upsample {in_size} samples, got {out_size}")
    # align_corners=True: output sample u sits at input coordinate u * (in - 1) / (out - 1)
    pos = torch.arange(out_size, dtype=torch.float64) * ((in_size - 1) / (out_size - 1))
    dist = (pos[:, None] - torch.arange(in_size, dtype=torch.float64)[None, :]).abs()
    return (1.0 - dist).clamp_min(0.0).to(dtype=dtype or torch.get_default_dtype(), device=device)


def upsample_kernel(weight: Tensor, size: int) -> Tensor:
    """``U(w)``: each slice of ``weight: (out, in, k, k)`` upsampled bilinearly, ``(out, in, size, size)``."""
    # F.interpolate, the definition itself: A @ w @ A.T was not faster (about 13 vs 15 us for a 16 x 3 x 3 x 3
    # kernel, benchmarks/layer_speed.py), so nothing is cached either
    return F.interpolate(weight, size=(size, size), mode="bilinear", align_corners=True)


# ----------------------------------------------------------------------------------------------------------
# fused response: sum_i ReLU(conv(x, push_i)) - ReLU(conv(x, pull_i))
# ----------------------------------------------------------------------------------------------------------

# A term is (push_weight, push_bias, push_padding, pull_weight, pull_bias, pull_padding).
Term = tuple[Tensor, "Tensor | None", int, Tensor, "Tensor | None", int]


def _chunk_size(x: Tensor, out_channels: int, kernel_size: int, stride: int, padding: int) -> int:
    n = max(x.shape[0], 1)
    if x.device.type != "cpu":
        return n
    h_out = (x.shape[2] + 2 * padding - kernel_size) // stride + 1
    w_out = (x.shape[3] + 2 * padding - kernel_size) // stride + 1
    per_image = max(out_channels * h_out * w_out, 1)
    pieces = math.ceil(n * per_image / CPU_CHUNK_ELEMENTS)
    return math.ceil(n / pieces)


def _empty_like_batch(t: Tensor, n: int) -> Tensor:
    # a full-batch buffer for chunk results, in the chunk's memory format (channels_last stays channels_last)
    channels_last = (
        t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((n,) + t.shape[1:], dtype=t.dtype, device=t.device, memory_format=fmt)


def _forward_chunks(
    x: Tensor, terms: Sequence[Term], stride: int, chunk: int, keep: bool
) -> tuple[Tensor, list[list[Tensor]]]:
    """The response and, if ``keep``, per chunk the rectified push and pull maps of every term."""
    n = x.shape[0]
    out: Tensor | None = None
    kept: list[list[Tensor]] = []
    for start in range(0, max(n, 1), chunk):
        xc = x[start : start + chunk]
        maps: list[Tensor] = []
        for w1, b1, pad1, w2, b2, pad2 in terms:
            # in place: both are fresh temporaries
            maps.append(F.conv2d(xc, w1, b1, stride, pad1).clamp_min_(0))
            maps.append(F.conv2d(xc, w2, b2, stride, pad2).clamp_min_(0))
        if chunk >= n:  # one piece: no output buffer to fill
            acc = torch.sub(maps[0], maps[1])
            out = acc
        else:
            if out is None:
                out = _empty_like_batch(maps[0], n)
            acc = torch.sub(maps[0], maps[1], out=out[start : start + chunk])
        for i in range(2, len(maps), 2):
            acc.add_(maps[i]).sub_(maps[i + 1])
        if keep:
            kept.append(maps)
    assert out is not None
    return out, kept


class _PushPullResponse(torch.autograd.Function):
    """Autograd wrapper of :func:`_forward_chunks`: ReLU masks come from the kept rectified maps."""

    @staticmethod
    def forward(ctx, x: Tensor, stride: int, paddings: tuple, chunk: int, *tensors: Tensor | None) -> Tensor:
        terms = [
            (*tensors[4 * i : 4 * i + 2], p1, *tensors[4 * i + 2 : 4 * i + 4], p2)
            for i, (p1, p2) in enumerate(paddings)
        ]
        out, kept = _forward_chunks(x, terms, stride, chunk, keep=True)
        ctx.stride, ctx.paddings, ctx.chunk, ctx.n_tensors = stride, paddings, chunk, len(tensors)
        ctx.has_tensor = [t is not None for t in tensors]
        ctx.n_chunks = len(kept)
        flat_maps = [m for maps in kept for m in maps]
        ctx.save_for_backward(x, *[t if t is not None else x.new_empty(0) for t in tensors], *flat_maps)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        saved = ctx.saved_tensors
        x, tensors, flat_maps = saved[0], saved[1 : 1 + ctx.n_tensors], saved[1 + ctx.n_tensors :]
        per_chunk = len(flat_maps) // ctx.n_chunks
        need_x, need = ctx.needs_input_grad[0], ctx.needs_input_grad[4:]
        chunk, stride = ctx.chunk, ctx.stride
        grads: list[Tensor | None] = [None] * len(tensors)
        grad_x = torch.empty_like(x) if need_x and ctx.n_chunks > 1 else None
        for c in range(ctx.n_chunks):
            sl = slice(c * chunk, (c + 1) * chunk)
            gc, xc = grad[sl], x[sl]
            maps = flat_maps[c * per_chunk : (c + 1) * per_chunk]
            gx_chunk: Tensor | None = None
            for j, rectified in enumerate(maps):  # j even: push conv of term j // 2, odd: its pull conv
                w_idx, b_idx = 2 * j, 2 * j + 1
                has_bias = ctx.has_tensor[b_idx]
                if not (need_x or need[w_idx] or need[b_idx]):
                    continue
                # ReLU backward; the pull's minus sign is applied to the (small) results below
                g = torch.ops.aten.threshold_backward(gc, rectified, 0)
                weight = tensors[w_idx]
                gx, gw, gb = torch.ops.aten.convolution_backward(
                    g,
                    xc,
                    weight,
                    [weight.shape[0]] if has_bias else None,
                    [stride] * 2,
                    [ctx.paddings[j // 2][j % 2]] * 2,
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [need_x, need[w_idx], need[b_idx] and has_bias],
                )
                sign = 1.0 if j % 2 == 0 else -1.0
                for idx, part in ((w_idx, gw), (b_idx, gb)):
                    if need[idx] and part is not None:
                        part = part if sign > 0 else part.neg()
                        grads[idx] = part if grads[idx] is None else grads[idx].add_(part)
                if need_x:
                    if gx_chunk is None:
                        gx_chunk = gx if sign > 0 else gx.neg_()
                    else:
                        gx_chunk.add_(gx, alpha=sign)
            if need_x and gx_chunk is not None:
                if grad_x is None:
                    grad_x = gx_chunk
                else:
                    grad_x[sl] = gx_chunk
        return (grad_x, None, None, None, *grads)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype convolutions run in under an active autocast on ``device_type``, else None."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


def push_pull_response(x: Tensor, terms: Sequence[Term], stride: int = 1) -> Tensor:
    """``sum_i ReLU(conv(x, push_i) + b_i) - ReLU(conv(x, pull_i) + c_i)`` for ``x: (N, C, H, W)``.

    Each term is ``(push_weight, push_bias, push_padding, pull_weight, pull_bias, pull_padding)``; biases
    may be None; all convolutions share ``stride`` and must give maps of the same size. Inhibition
    strengths are folded into the pull weights by the callers (``a * ReLU(z) = ReLU(a * z)`` for ``a >= 0``).

    Same numbers as the plain formula with fewer full-size temporaries: ReLUs in place, one subtraction,
    and a hand-written backward (two ReLU masks, two convolution backwards). On the CPU, maps above
    :data:`CPU_CHUNK_ELEMENTS` are computed in batch chunks. Only first derivatives.
    """
    if not terms:
        raise ValueError("terms must hold at least one (push, pull) pair")
    flat: list[Tensor | None] = []
    for w1, b1, _, w2, b2, _ in terms:
        flat += [w1, b1, w2, b2]
    dtype = _autocast_dtype(x.device.type)
    if dtype is not None:
        # autocast would cast inside the Function's forward only; cast here, where autograd sees the casts
        x = x.to(dtype)
        flat = [None if t is None else t.to(dtype) for t in flat]
        terms = [
            (flat[4 * i], flat[4 * i + 1], t[2], flat[4 * i + 2], flat[4 * i + 3], t[5])
            for i, t in enumerate(terms)
        ]
        with torch.autocast(x.device.type, enabled=False):
            return push_pull_response(x, terms, stride)
    first = terms[0]
    chunk = _chunk_size(x, first[0].shape[0], first[0].shape[-1], stride, first[2])
    paddings = tuple((t[2], t[5]) for t in terms)
    if torch.is_grad_enabled() and (x.requires_grad or any(t is not None and t.requires_grad for t in flat)):
        return _PushPullResponse.apply(x, stride, paddings, chunk, *flat)
    return _forward_chunks(x, list(terms), stride, chunk, keep=False)[0]


# ----------------------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------------------


def _init_conv_(weight: Tensor, bias: Tensor | None) -> None:
    # the same initialisation as nn.Conv2d, so swapping a conv for a push-pull layer keeps the scale
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def _set_conv_geometry(
    layer: nn.Module, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
) -> None:
    """Check the shared leading arguments of the single-kernel layers and set them on ``layer``."""
    layer.in_channels = checks.integer("in_channels", in_channels, minimum=1)
    layer.out_channels = checks.integer("out_channels", out_channels, minimum=1)
    layer.kernel_size = checks.odd_size("kernel_size", kernel_size)
    layer.stride = checks.integer("stride", stride, minimum=1)
    layer.padding = checks.integer("padding", padding, minimum=0)


class PushPull2d(nn.Module):
    """Push-pull layer of Strisciuglio, Lopez-Antequera & Petkov (2020).

    ``y = ReLU(conv(x, w) + b) - alpha * ReLU(conv(x, -U(w)) - b)`` for ``x: (N, in_channels, H, W)``.
    ``weight: (out, in, k, k)`` is the learned push kernel; the pull kernel ``-U(w)`` (:meth:`pull_weight`)
    is re-derived from it on every call, of side :func:`pull_kernel_size` ``(k, scale)``, and its padding
    ``pull_size // 2 - k // 2 + padding`` aligns both maps. With ``trainable_alpha`` the inhibition is one
    learned value per output channel, initialised in ``0.5 +- 1 / sqrt(in * out)`` and used through a ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        alpha: float = 1.0,
        scale: float = 2.0,
        bias: bool = False,
        trainable_alpha: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _set_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding)
        self.scale = checks.real("scale", scale, minimum=1.0)
        alpha = checks.real("alpha", alpha, minimum=0.0)
        self.pull_size = pull_kernel_size(kernel_size, self.scale)
        self.pull_padding = self.pull_size // 2 - kernel_size // 2 + padding
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.trainable_alpha = bool(trainable_alpha)
        if self.trainable_alpha:
            self.alpha: Tensor | float = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.alpha = alpha
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_conv_(self.weight, self.bias)
        if isinstance(self.alpha, nn.Parameter):
            spread = 1.0 / math.sqrt(self.in_channels * self.out_channels)
            nn.init.uniform_(self.alpha, 0.5 - spread, 0.5 + spread)

    def inhibition(self) -> Tensor:
        """The inhibition strength actually used, ``(out_channels,)``, >= 0."""
        if isinstance(self.alpha, Tensor):
            return F.relu(self.alpha)
        return self.weight.new_full((self.out_channels,), self.alpha)

    def pull_weight(self) -> Tensor:
        """The effective pull kernel ``-U(w)``: ``(out, in, pull_size, pull_size)`` (without alpha)."""
        return -upsample_kernel(self.weight, self.pull_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H_out, W_out)``."""
        _check_input("x", x, layer=self, in_channels=self.in_channels)
        # fold alpha >= 0 into the pull conv: alpha * ReLU(z) = ReLU(alpha * z)
        if isinstance(self.alpha, Tensor):
            a = F.relu(self.alpha)
            pull_w = upsample_kernel(self.weight, self.pull_size) * (-a).view(-1, 1, 1, 1)
            pull_b = None if self.bias is None else -(a * self.bias)
        else:
            pull_w = upsample_kernel(self.weight, self.pull_size) * (-self.alpha)
            pull_b = None if self.bias is None else self.bias * (-self.alpha)
        term = (self.weight, self.bias, self.padding, pull_w, pull_b, self.pull_padding)
        return push_pull_response(x, [term], self.stride)

    def extra_repr(self) -> str:
        alpha = "trainable" if self.trainable_alpha else f"{self.alpha:g}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, pull_size={self.pull_size}, scale={self.scale:g}, alpha={alpha}, "
            f"bias={self.bias is not None}"
        )


def _average_same(y: Tensor, size: int) -> Tensor:
    """``AvgPool2d(size, stride=1, padding=(size - 1) // 2, count_include_pad=False)`` of ``y: (N, C, H, W)``.

    Window sums by a depthwise convolution with ones, divided by the number of pixels inside the image:
    the same numbers, and about twice as fast forward + backward as ``F.avg_pool2d`` on the CPU.
    """
    pad = (size - 1) // 2
    channels = y.shape[1]
    ones = y.new_ones(channels, 1, size, size)
    count = F.conv2d(y.new_ones(1, 1, *y.shape[2:]), ones[:1], None, 1, pad)
    return F.conv2d(y, ones, None, 1, pad, 1, channels) / count


class PushPullConv2d(nn.Module):
    """PushPull-Conv of the ICPR 2024 paper.

    ``y = ReLU(conv(x, w)) - alpha * ReLU(avg(conv(x, p))) + bias`` for ``x: (N, in_channels, H, W)``, with
    the intensity-inverted pull kernel ``p = -w + (max(w) + min(w))`` (max and min per output filter) of the
    same size, and ``avg`` = ``AvgPool2d(avg_kernel_size, stride=1, padding=(avg_kernel_size - 1) // 2,
    count_include_pad=False)`` (``avg_kernel_size=0``: no averaging). With ``trainable_alpha`` the inhibition
    is one learned scalar initialised at ``alpha`` (as in the authors' code), used through a ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        avg_kernel_size: int = 3,
        alpha: float = 1.0,
        bias: bool = True,
        trainable_alpha: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _set_conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding)
        self.avg_kernel_size = checks.integer("avg_kernel_size", avg_kernel_size, minimum=0)
        if self.avg_kernel_size % 2 == 0 and self.avg_kernel_size != 0:
            raise ValueError(
                f"avg_kernel_size must be 0 or a positive odd int (0: no averaging), got {avg_kernel_size}"
            )
        alpha = checks.real("alpha", alpha, minimum=0.0)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.trainable_alpha = bool(trainable_alpha)
        if self.trainable_alpha:
            self.alpha: Tensor | float = nn.Parameter(torch.tensor(alpha, **factory))
        else:
            self.alpha = alpha
        _init_conv_(self.weight, self.bias)

    def inhibition(self) -> Tensor:
        """The inhibition strength actually used, a 0-d tensor >= 0."""
        if isinstance(self.alpha, Tensor):
            return F.relu(self.alpha)
        return self.weight.new_tensor(self.alpha)

    def pull_weight(self) -> Tensor:
        """The pull kernel ``-w + (max(w) + min(w))`` per output filter: ``(out, in, k, k)``."""
        w = self.weight
        return (w.amax(dim=(1, 2, 3), keepdim=True) + w.amin(dim=(1, 2, 3), keepdim=True)) - w

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H_out, W_out)``."""
        _check_input("x", x, layer=self, in_channels=self.in_channels)
        w = self.weight
        push = F.conv2d(x, w, None, self.stride, self.padding)
        # conv is linear, so conv(x, c - w) = c * conv(x, 1) - conv(x, w): a one-channel box sum replaces
        # the second full convolution
        shift = w.amax(dim=(1, 2, 3)) + w.amin(dim=(1, 2, 3))
        box = F.conv2d(x, w.new_ones(1, *w.shape[1:]), None, self.stride, self.padding)
        pull = torch.addcmul(push, box, shift.view(1, -1, 1, 1), value=-1.0).neg_()
        if self.avg_kernel_size:
            pull = _average_same(pull, self.avg_kernel_size)
        alpha = F.relu(self.alpha) if isinstance(self.alpha, Tensor) else self.alpha
        # in place is safe: no backward below needs these activations
        out = F.relu(push, inplace=True) - F.relu(pull, inplace=True) * alpha
        if self.bias is not None:  # in out's dtype, as a conv's bias (bfloat16 stays bfloat16 under autocast)
            out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        alpha = "trainable" if self.trainable_alpha else f"{self.alpha:g}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, avg_kernel_size={self.avg_kernel_size}, alpha={alpha}, "
            f"bias={self.bias is not None}"
        )


class MultiScalePushPull2d(nn.Module):
    """Parallel push-pull units, one per kernel size, with "same" padding (``k // 2``), responses summed.

    ``y = sum_s ReLU(conv(x, w_s)) - a_s * ReLU(pull_s(x))`` for ``x: (N, in_channels, H, W)``, with one
    learned inhibition ``a_s`` per scale (initialised to ``alphas``, used through a ReLU, see
    :meth:`inhibition`).

    - ``derived_pull=True``: ``pull_s(x) = conv(x, -U(w_s))``, the pull kernel derived from the push kernel
      as in :class:`PushPull2d` (size ``pull_kernel_size(k, scale)``): the faithful generalisation.
    - ``derived_pull=False``: the seed's variant, ``pull_s(x) = -conv(x, v_s)`` with a separately learned
      kernel ``v_s`` of the same size as ``w_s`` (``scale`` is then unused).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        stride: int = 1,
        *,
        alphas: Sequence[float] = (0.5, 0.3, 0.2),
        scale: float = 2.0,
        derived_pull: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, minimum=1)
        self.out_channels = checks.integer("out_channels", out_channels, minimum=1)
        self.stride = checks.integer("stride", stride, minimum=1)
        self.scale = checks.real("scale", scale, minimum=1.0)
        if (
            isinstance(kernel_sizes, (str, bytes))
            or not isinstance(kernel_sizes, Sequence)
            or not kernel_sizes
        ):
            raise TypeError(f"kernel_sizes must be a non-empty sequence of ints, got {kernel_sizes!r}")
        if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence):
            raise TypeError(f"alphas must be a sequence of numbers, got {alphas!r}")
        if len(alphas) != len(kernel_sizes):
            raise ValueError(
                f"alphas must have one value per kernel size: got {len(alphas)} alphas for "
                f"{len(kernel_sizes)} kernel_sizes"
            )
        self.kernel_sizes = tuple(
            checks.odd_size(f"kernel_sizes[{i}]", k) for i, k in enumerate(kernel_sizes)
        )
        initial = [checks.real(f"alphas[{i}]", a, minimum=0.0) for i, a in enumerate(alphas)]
        self.derived_pull = bool(derived_pull)
        self.pull_sizes = tuple(
            pull_kernel_size(k, self.scale) if self.derived_pull else k for k in self.kernel_sizes
        )
        factory = {"device": device, "dtype": dtype}
        self.push_weights = nn.ParameterList(
            nn.Parameter(torch.empty(out_channels, in_channels, k, k, **factory)) for k in self.kernel_sizes
        )
        self.pull_weights = nn.ParameterList(
            nn.Parameter(torch.empty(out_channels, in_channels, k, k, **factory))
            for k in (() if self.derived_pull else self.kernel_sizes)
        )
        self.alphas = nn.Parameter(torch.tensor(initial, **factory))
        for w in [*self.push_weights, *self.pull_weights]:
            _init_conv_(w, None)

    def inhibition(self) -> Tensor:
        """The per-scale inhibition strengths actually used, ``(len(kernel_sizes),)``, >= 0."""
        return F.relu(self.alphas)

    def pull_weight(self, index: int) -> Tensor:
        """Effective pull kernel of scale ``index`` (without its alpha), ``(out, in, size, size)``."""
        if self.derived_pull:
            return -upsample_kernel(self.push_weights[index], self.pull_sizes[index])
        return -self.pull_weights[index]

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, in_channels, H, W)`` -> ``(N, out_channels, H_out, W_out)``."""
        _check_input("x", x, layer=self, in_channels=self.in_channels)
        alphas = F.relu(self.alphas)
        terms = []
        for i, (k, size) in enumerate(zip(self.kernel_sizes, self.pull_sizes)):
            pull = self.pull_weight(i) * alphas[i]
            terms.append((self.push_weights[i], None, k // 2, pull, None, size // 2))
        return push_pull_response(x, terms, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, "
            f"stride={self.stride}, pull_sizes={self.pull_sizes}, derived_pull={self.derived_pull}"
        )


# --------------------------------------------------------------------------------------------------
# First layers by name: the one place a layer is registered for the book's models


#: name -> ``factory(in_channels, out_channels, **kwargs)``: the layer as a model's first layer, keeping the
#: spatial size (3x3 support, "same" padding). :func:`pushpull_lite.models.first_layer` builds from it.
FIRST_LAYERS: dict[str, Callable[..., nn.Module]] = {}


def register_first_layer(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory(in_channels, out_channels, **kwargs)`` under ``name`` in
    :data:`FIRST_LAYERS` (a name is registered once)."""

    def register(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in FIRST_LAYERS:
            raise ValueError(f"first layer {name!r} is already registered")
        FIRST_LAYERS[name] = factory
        return factory

    return register


@register_first_layer("conv")
def _conv(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=kwargs.pop("bias", False), **kwargs)


@register_first_layer("pushpull")
def _pushpull(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    return PushPull2d(in_channels, out_channels, 3, padding=1, **kwargs)


@register_first_layer("pushpull-conv")
def _pushpull_conv(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    return PushPullConv2d(in_channels, out_channels, 3, padding=1, **kwargs)


@register_first_layer("multiscale")
def _multiscale(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    return MultiScalePushPull2d(in_channels, out_channels, **kwargs)
