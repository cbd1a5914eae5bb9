"""Gabor receptive fields and a biological push-pull model of a V1 simple cell.

Conventions (all functions of this module share them):

- Images are float tensors ``(H, W)`` or ``(C, H, W)``, luminance in [0, 1] (grey = 0.5). Row 0 is the
  top of the image, as ``matplotlib.pyplot.imshow`` draws it.
- Coordinates: ``x`` points right and ``y`` points *up* on the screen, origin at the kernel's centre.
- ``theta`` (radians) is the orientation of the preferred bar, line or grating stripes, counterclockwise
  from horizontal as seen on the screen: ``theta = 0`` prefers horizontal stripes, ``pi / 2`` vertical
  ones. The carrier of the Gabor function varies along the normal to the stripes (``theta + pi / 2``).
- A receptive field's response is the cross-correlation ``sum(kernel * patch)`` (what ``conv2d`` computes),
  so a kernel is its own preferred stimulus.

The push-pull model follows the CNN layer of Strisciuglio, Lopez-Antequera & Petkov (2020): the pull
(inhibitory) kernel is the push kernel with its sign flipped and bilinearly upsampled by ``pull_scale``
(see :func:`pull_kernel`), and the response is ``ReLU(push) - alpha * ReLU(pull)``. It is written here
independently of :mod:`pushpull_lite.layers`, for single images and fixed kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import checks

__all__ = [
    "FFT_ABOVE",
    "MODELS",
    "PADDING_MODES",
    "SIGMA_OVER_WAVELENGTH",
    "SignalNoiseCurve",
    "add_gaussian_noise",
    "correlate",
    "gabor_bank",
    "gabor_kernel",
    "gabor_size",
    "grating",
    "line_image",
    "line_profile",
    "orientation_tuning",
    "pull_kernel",
    "pull_size",
    "pushpull_parts",
    "pushpull_response",
    "signal_noise_curve",
    "simple_cell_response",
    "tuning_width",
]

#: sigma / wavelength giving a half-response spatial-frequency bandwidth of about one octave, typical of
#: V1 simple cells; used when ``wavelength`` is not given.
SIGMA_OVER_WAVELENGTH = 0.56

PADDING_MODES = ("reflect", "replicate", "zeros")

#: kernels with a side above this are applied through the FFT: the same result up to float rounding,
#: several times faster for the large pull fields (51 x 51 and up) on CPU
FFT_ABOVE = 15


# ----------------------------------------------------------------------------------------- validation


def _check_image(name: str, image: object) -> torch.Tensor:
    """A float luminance image ``(H, W)`` or ``(C, H, W)`` (the range is not checked)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (C, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (luminance in [0, 1]), got dtype {image.dtype}")
    return image


def _check_kernel(name: str, kernel: object) -> torch.Tensor:
    """A float kernel ``(k, k)`` or a bank ``(K, k, k)`` with an odd side (it needs a centre pixel)."""
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(kernel).__name__}")
    if kernel.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape (k, k) or (K, k, k), got {tuple(kernel.shape)}")
    k = kernel.shape[-1]
    if kernel.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"{name} must be square with an odd side, got {tuple(kernel.shape)}")
    if not kernel.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {kernel.dtype}")
    return kernel


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of each pixel of a size x size array, float64, origin at the centre, y pointing up."""
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64)
    rows, cols = torch.meshgrid(idx, idx, indexing="ij")
    return cols - c, c - rows


def _normal_and_along(size: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates across (normal to) and along stripes of orientation ``theta``; each (size, size)."""
    x, y = _grid(size)
    across = -x * math.sin(theta) + y * math.cos(theta)
    along = x * math.cos(theta) + y * math.sin(theta)
    return across, along


# ------------------------------------------------------------------------------------------ kernels


def gabor_kernel(
    size: int,
    sigma: float,
    theta: float = 0.0,
    wavelength: float | None = None,
    gamma: float = 0.5,
    psi: float = 0.0,
    *,
    zero_mean: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A 2-D Gabor receptive field, (size, size), peak value about 1.

    ``g = exp(-(u**2 + gamma**2 * v**2) / (2 sigma**2)) * cos(2 pi u / wavelength + psi)`` with ``u`` the
    coordinate across the preferred stripes and ``v`` the one along them (module docstring: ``theta`` is
    the stripes' orientation, counterclockwise from horizontal, y up).

    Args:
        size: odd side in pixels.
        sigma: envelope standard deviation across the stripes, pixels (> 0).
        theta: preferred orientation, radians.
        wavelength: carrier wavelength, pixels (> 0); default ``sigma / 0.56`` (about one octave).
        gamma: spatial aspect ratio (> 0); < 1 elongates the field along the stripes.
        psi: carrier phase, radians: 0 gives an even, ON-centre field (prefers a bright line), pi an
            OFF-centre one, +-pi/2 odd fields (prefer edges).
        zero_mean: subtract the DC part so the kernel sums to 0 and a uniform field gives no response.
            The correction is weighted by the envelope, ``env * (cos(...) - kappa)`` with
            ``kappa = sum(env * cos(...)) / sum(env)``, so the kernel still vanishes at its borders.
            Odd kernels already sum to 0.

    Returns:
        float tensor (size, size) of ``dtype`` on ``device``.
    """
    size = checks.odd_size("size", size)
    sigma = checks.real("sigma", sigma, positive=True)
    theta = checks.real("theta", theta)
    wavelength = sigma / SIGMA_OVER_WAVELENGTH if wavelength is None else wavelength
    wavelength = checks.real("wavelength", wavelength, positive=True)
    gamma = checks.real("gamma", gamma, positive=True)
    psi = checks.real("psi", psi)
    across, along = _normal_and_along(size, theta)
    envelope = torch.exp(-(across**2 + (gamma * along) ** 2) / (2 * sigma**2))
    carrier = torch.cos(2 * math.pi * across / wavelength + psi)
    if zero_mean:
        carrier = carrier - (envelope * carrier).sum() / envelope.sum()
    return (envelope * carrier).to(dtype=dtype, device=device)


def gabor_size(sigma: float, gamma: float = 0.5, extent: float = 2.5) -> int:
    """Odd kernel side covering ``extent`` envelope standard deviations on the longer axis.

    The envelope's standard deviation is ``sigma`` across the stripes and ``sigma / gamma`` along them;
    e.g. ``gabor_size(2.24, 0.5)`` is 25.
    """
    sigma = checks.real("sigma", sigma, positive=True)
    gamma = checks.real("gamma", gamma, positive=True)
    extent = checks.real("extent", extent, positive=True)
    return 2 * math.ceil(extent * sigma / min(gamma, 1.0)) + 1


def gabor_bank(
    size: int,
    sigma: float,
    wavelength: float | None = None,
    n_orientations: int = 8,
    psis: Sequence[float] = (0.0, math.pi / 2),
    gamma: float = 0.5,
    *,
    zero_mean: bool = True,
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Gabor kernels at ``n_orientations`` orientations ``k * pi / n`` and each phase in ``psis``.

    Returns:
        kernels (n_orientations * len(psis), size, size), orientation-major, and the matching
        ``(theta, psi)`` pairs in radians.
    """
    n_orientations = checks.integer("n_orientations", n_orientations, minimum=1)
    psis = [checks.real(f"psis[{i}]", p) for i, p in enumerate(psis)]
    if not psis:
        raise ValueError("psis must hold at least one phase")
    params = [(k * math.pi / n_orientations, p) for k in range(n_orientations) for p in psis]
    kernels = [gabor_kernel(size, sigma, t, wavelength, gamma, p, zero_mean=zero_mean) for t, p in params]
    return torch.stack(kernels), params


def pull_size(push_size: int, pull_scale: float) -> int:
    """Side of the pull kernel: ``floor(push_size * pull_scale)``, plus one when even.

    E.g. (3, 2) -> 7 and (5, 2) -> 11, as in the 2020 CNN layer.
    """
    push_size = checks.odd_size("push_size", push_size)
    pull_scale = checks.real("pull_scale", pull_scale, minimum=1.0)
    n = math.floor(push_size * pull_scale)
    return n + 1 if n % 2 == 0 else n


def pull_kernel(kernel: torch.Tensor, pull_scale: float = 2.0, zero_mean: bool = False) -> torch.Tensor:
    """The pull (inhibitory) field: ``-U_h(kernel)``, opposite polarity and ``pull_scale`` times larger.

    ``U_h`` is bilinear upsampling with ``align_corners=True`` to :func:`pull_size` pixels, as in the CNN
    layer of Strisciuglio et al. (2020). Values are interpolated, not renormalised: the pull field has
    the push field's peak amplitude over a larger area.

    Args:
        kernel: push kernel (k, k) or a stack (K, k, k), odd k.
        pull_scale: h >= 1; h = 1 gives exactly ``-kernel``.
        zero_mean: interpolation leaves a small DC part even when the push kernel sums to 0, so the pull
            field would respond to uniform luminance. True removes it, spread over the pixels in
            proportion to ``|U_h(kernel)|`` (the border stays 0). False (default) is the CNN layer's kernel.

    Returns:
        (n, n) or (K, n, n) with ``n = pull_size(k, pull_scale)``.
    """
    kernel = _check_kernel("kernel", kernel)
    n = pull_size(kernel.shape[-1], pull_scale)
    stack = kernel.reshape(-1, 1, kernel.shape[-2], kernel.shape[-1])
    up = F.interpolate(stack, size=(n, n), mode="bilinear", align_corners=True)
    if zero_mean:
        weight = up.abs()
        total = weight.sum(dim=(-2, -1), keepdim=True)
        up = up - up.sum(dim=(-2, -1), keepdim=True) * weight / total.clamp_min(torch.finfo(up.dtype).tiny)
    return -up.reshape(*kernel.shape[:-2], n, n)


# ---------------------------------------------------------------------------------------- responses


def _fast_len(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (FFTs of prime sizes are slow)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _valid_fft(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight)``, the valid cross-correlation, through the FFT.

    x: (B, 1, H, W) already padded; weight: (K, 1, k, k). Returns (B, K, H - k + 1, W - k + 1).
    """
    hp, wp = x.shape[-2:]
    k = weight.shape[-1]
    shape = (_fast_len(hp), _fast_len(wp))  # zero-padding further changes nothing in the valid part
    spectrum = torch.fft.rfft2(x, s=shape)
    # convolving with the flipped kernel is correlating with the kernel; no wrap-around from index k-1 on
    kernel_spectrum = torch.fft.rfft2(torch.flip(weight, (-2, -1)), s=shape)
    full = torch.fft.irfft2(spectrum * kernel_spectrum[:, 0][None], s=shape)
    return full[..., k - 1 : hp, k - 1 : wp]


def correlate(image: torch.Tensor, kernel: torch.Tensor, padding_mode: str = "reflect") -> torch.Tensor:
    """Linear receptive-field response ``sum(kernel * patch)`` at every pixel, same size as the image.

    Args:
        image: (H, W) or (C, H, W) float; each channel is filtered separately.
        kernel: (k, k) or a bank (K, k, k), odd k.
        padding_mode: ``reflect`` (default: no artificial edge at the border), ``replicate`` or ``zeros``.
            Kernels larger than ``FFT_ABOVE`` pixels go through the FFT (same result up to rounding).

    Returns:
        ``image.shape[:-2] + kernel.shape[:-2] + (H, W)``, e.g. (C, K, H, W) for a bank on a colour image.
    """
    image = _check_image("image", image)
    kernel = _check_kernel("kernel", kernel)
    checks.one_of("padding_mode", padding_mode, PADDING_MODES)
    h, w = image.shape[-2:]
    r = kernel.shape[-1] // 2
    if padding_mode == "reflect" and r >= min(h, w):
        raise ValueError(
            f"image of {h}x{w} pixels is too small for reflect padding of a {kernel.shape[-1]}-pixel kernel; "
            "use a larger image or padding_mode='replicate'"
        )
    x = image.reshape(-1, 1, h, w)
    weight = kernel.to(dtype=image.dtype, device=image.device).reshape(-1, 1, *kernel.shape[-2:])
    x = F.pad(x, (r, r, r, r), mode="constant" if padding_mode == "zeros" else padding_mode)
    out = _valid_fft(x, weight) if kernel.shape[-1] > FFT_ABOVE else F.conv2d(x, weight)
    return out.reshape(*image.shape[:-2], *kernel.shape[:-2], h, w)


def simple_cell_response(
    image: torch.Tensor, kernel: torch.Tensor, threshold: float = 0.0, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Linear-rectified simple cell: ``ReLU(correlate(image, kernel) - threshold)``.

    ``threshold`` (>= 0) models a spike threshold in response units. Shapes as :func:`correlate`.
    """
    threshold = checks.real("threshold", threshold, minimum=0.0)
    return torch.relu(correlate(image, kernel, padding_mode) - threshold)


def pushpull_parts(
    image: torch.Tensor,
    kernel: torch.Tensor,
    pull_scale: float = 2.0,
    pull_zero_mean: bool = True,
    padding_mode: str = "reflect",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified push and pull responses ``(ReLU(push), ReLU(pull))``, both aligned on the same pixels.

    Shapes as :func:`correlate`. Both maps are centred on the pixel, so they align without the padding
    offset the CNN layer needs. ``pull_zero_mean`` is passed to :func:`pull_kernel` as ``zero_mean``.
    """
    push = torch.relu(correlate(image, kernel, padding_mode))
    pull = torch.relu(correlate(image, pull_kernel(kernel, pull_scale, pull_zero_mean), padding_mode))
    return push, pull


def pushpull_response(
    image: torch.Tensor,
    kernel: torch.Tensor,
    alpha: float = 1.0,
    pull_scale: float = 2.0,
    threshold: float = 0.0,
    rectify: bool = True,
    pull_zero_mean: bool = True,
    padding_mode: str = "reflect",
) -> torch.Tensor:
    """Push-pull simple cell: ``ReLU(push) - alpha * ReLU(pull) - threshold``, then ReLU if ``rectify``.

    The pull field is :func:`pull_kernel` (opposite polarity, ``pull_scale`` times larger). With
    ``rectify=False``, ``threshold=0`` and ``pull_zero_mean=False`` this is the formula of the 2020 CNN
    layer. The biological defaults differ on purpose: ``rectify=True`` gives a firing rate, which cannot
    be negative, and ``pull_zero_mean=True`` keeps the pull field blind to uniform luminance, as the push
    field is (``gabor_kernel(zero_mean=True)``). ``alpha=0`` gives :func:`simple_cell_response`.

    Args:
        image: (H, W) or (C, H, W) float.
        kernel: push kernel (k, k) or bank (K, k, k).
        alpha: inhibition strength (>= 0).
        pull_scale: h >= 1.
        threshold: >= 0, in response units.

    Returns:
        same shape as :func:`correlate`.
    """
    alpha = checks.real("alpha", alpha, minimum=0.0)
    threshold = checks.real("threshold", threshold, minimum=0.0)
    push, pull = pushpull_parts(image, kernel, pull_scale, pull_zero_mean, padding_mode)
    out = push - alpha * pull - threshold
    return torch.relu(out) if rectify else out


# ---------------------------------------------------------------------------------------- stimuli


def line_profile(size: int, theta: float, width: float) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] of a ``width``-pixel line through the centre; (size, size) float64."""
    size = checks.odd_size("size", size)
    theta = checks.real("theta", theta)
    width = checks.real("width", width, positive=True)
    across, _ = _normal_and_along(size, theta)
    # one-pixel linear ramp at each edge instead of a hard step, so oblique lines do not alias
    return (width / 2 + 0.5 - across.abs()).clamp(0.0, 1.0)


def line_image(
    size: int, theta: float = 0.0, contrast: float = 1.0, width: float = 2.0, background: float = 0.5
) -> torch.Tensor:
    """A line through the centre at orientation ``theta`` on a uniform background; (size, size) float32.

    Line luminance ``background + 0.5 * contrast`` (contrast in [-1, 1]: negative gives a dark line).
    """
    contrast = checks.real("contrast", contrast, minimum=-1.0, maximum=1.0)
    background = checks.real("background", background)
    profile = line_profile(size, theta, width)
    return (background + 0.5 * contrast * profile).float()


def grating(
    size: int,
    theta: float = 0.0,
    wavelength: float = 8.0,
    phase: float = 0.0,
    contrast: float = 1.0,
    mean: float = 0.5,
) -> torch.Tensor:
    """Sinusoidal grating ``mean * (1 + contrast * cos(2 pi u / wavelength + phase))``; (size, size) float32.

    Stripes run along ``theta`` (``u`` is the coordinate across them, as in :func:`gabor_kernel`), so a
    Gabor kernel with the same theta, wavelength and ``psi = phase`` matches the grating at the centre.
    ``contrast`` in [0, 1] is the Michelson contrast.
    """
    size = checks.odd_size("size", size)
    theta = checks.real("theta", theta)
    wavelength = checks.real("wavelength", wavelength, positive=True)
    phase = checks.real("phase", phase)
    contrast = checks.real("contrast", contrast, minimum=0.0, maximum=1.0)
    mean = checks.real("mean", mean, positive=True)
    across, _ = _normal_and_along(size, theta)
    return (mean * (1 + contrast * torch.cos(2 * math.pi * across / wavelength + phase))).float()


def add_gaussian_noise(
    image: torch.Tensor, std: float, seed: int | None = 0, clip: bool = False
) -> torch.Tensor:
    """``image + N(0, std**2)`` per pixel, from a generator seeded with ``seed`` (None: torch's global RNG).

    ``clip=True`` clamps to [0, 1] like a camera would; the default keeps the noise Gaussian.
    """
    image = _check_image("image", image)
    std = checks.real("std", std, minimum=0.0)
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(checks.integer("seed", seed, minimum=0))
    noise = torch.randn(image.shape, generator=gen, dtype=torch.float64).to(image.device, image.dtype)
    out = image + std * noise
    return out.clamp(0.0, 1.0) if clip else out


# ------------------------------------------------------------------------------------ measurements

MODELS = ("gabor", "pushpull")


def _both_models(
    image: torch.Tensor, kernel: torch.Tensor, alpha: float, pull_scale: float, threshold: float = 0.0
) -> dict[str, torch.Tensor]:
    """:func:`simple_cell_response` and :func:`pushpull_response` (other args default), one push map."""
    alpha = checks.real("alpha", alpha, minimum=0.0)
    threshold = checks.real("threshold", threshold, minimum=0.0)
    push = correlate(image, kernel)
    pull = torch.relu(correlate(image, pull_kernel(kernel, pull_scale, zero_mean=True)))
    return {
        "gabor": torch.relu(push - threshold),
        "pushpull": torch.relu(torch.relu(push) - alpha * pull - threshold),
    }


@dataclass(frozen=True)
class SignalNoiseCurve:
    """Responses to a line in noise and to noise alone, per noise level, for each model.

    ``line[m]``: mean response of model ``m`` on the line's pixels of a line + noise image;
    ``noise[m]``: mean response on a grey + noise image (no line). Each (L,), for ``noise_std`` (L,).
    """

    noise_std: torch.Tensor
    line: dict[str, torch.Tensor]
    noise: dict[str, torch.Tensor]

    def snr(self, model: str) -> torch.Tensor:
        """Line response over noise response, (L,); ``inf`` where the noise response is 0."""
        checks.one_of("model", model, tuple(self.line))
        return self.line[model] / self.noise[model]


def signal_noise_curve(
    kernel: torch.Tensor,
    noise_stds: Sequence[float],
    theta: float = 0.0,
    line_width: float = 2.0,
    contrast: float = 1.0,
    alpha: float = 1.0,
    pull_scale: float = 2.0,
    size: int | None = None,
    n_trials: int = 4,
    seed: int = 0,
) -> SignalNoiseCurve:
    """Measure "the signal keeps, the noise drowns": plain Gabor vs push-pull on a line in Gaussian noise.

    For each noise std, ``n_trials`` line images (line at orientation ``theta`` through the centre) and
    ``n_trials`` pure-noise images get independent noise (seeds derived from ``seed``). Means are taken
    away from the border (a margin of half the pull kernel), over pixels the line covers at least half.

    Args:
        kernel: push kernel (k, k), preferably tuned to the line (same ``theta``, ON-centre for a bright
            line).
        noise_stds: noise standard deviations, luminance units (>= 0).
        size: odd image side in pixels; default: the border margin on both sides plus 49 pixels.
    """
    kernel = _check_kernel("kernel", kernel)
    if kernel.dim() != 2:
        raise ValueError(f"kernel must be a single (k, k) kernel, got {tuple(kernel.shape)}")
    stds = [checks.real(f"noise_stds[{i}]", s, minimum=0.0) for i, s in enumerate(noise_stds)]
    if not stds:
        raise ValueError("noise_stds must hold at least one value")
    n_trials = checks.integer("n_trials", n_trials, minimum=1)
    margin = pull_size(kernel.shape[-1], pull_scale) // 2
    size = 2 * margin + 49 if size is None else checks.odd_size("size", size)
    if size <= 2 * margin + 4:
        raise ValueError(f"size={size} is too small for a pull kernel of radius {margin}")
    line = line_image(size, theta, contrast, line_width)
    grey = torch.full_like(line, 0.5)
    inner = torch.zeros(size, size, dtype=torch.bool)
    inner[margin:-margin, margin:-margin] = True
    on_line = (line_profile(size, theta, line_width) >= 0.5) & inner

    def responses(image: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        both = _both_models(image, kernel, alpha, pull_scale)
        return {m: both[m][mask].mean().item() for m in MODELS}

    line_r = {m: torch.zeros(len(stds), dtype=torch.float64) for m in MODELS}
    noise_r = {m: torch.zeros(len(stds), dtype=torch.float64) for m in MODELS}
    for i, std in enumerate(stds):
        for t in range(n_trials):
            base = seed + 2 * (i * n_trials + t)
            on = responses(add_gaussian_noise(line, std, base), on_line)
            off = responses(add_gaussian_noise(grey, std, base + 1), inner)
            for m in MODELS:
                line_r[m][i] += on[m] / n_trials
                noise_r[m][i] += off[m] / n_trials
    return SignalNoiseCurve(torch.tensor(stds, dtype=torch.float64), line_r, noise_r)


def orientation_tuning(
    kernel: torch.Tensor,
    orientations: Sequence[float] | torch.Tensor,
    contrasts: Sequence[float],
    wavelength: float,
    alpha: float = 1.0,
    pull_scale: float = 2.0,
    noise_std: float = 0.0,
    threshold: float = 0.0,
    size: int = 63,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Orientation tuning curves of the plain Gabor cell and the push-pull cell, one per contrast.

    The stimulus is a grating of the given ``wavelength`` at each orientation and contrast, plus (if
    ``noise_std > 0``) one fixed Gaussian noise image, the same for every stimulus so the curves differ
    only by the grating. The response is the mean over the central half of the image, i.e. the mean rate
    over all spatial phases (the F0 response to a drifting grating).

    Args:
        kernel: push kernel (k, k); its preferred orientation is where the curves peak.
        orientations: stimulus orientations in radians, (T,).
        contrasts: Michelson contrasts in [0, 1], (C,).
        threshold: spike threshold applied by both models (>= 0).

    Returns:
        ``{"gabor": (C, T), "pushpull": (C, T)}`` float64 tensors.
    """
    kernel = _check_kernel("kernel", kernel)
    if kernel.dim() != 2:
        raise ValueError(f"kernel must be a single (k, k) kernel, got {tuple(kernel.shape)}")
    thetas = [float(t) for t in orientations]
    if not thetas or not contrasts:
        raise ValueError("orientations and contrasts must not be empty")
    noise = add_gaussian_noise(torch.zeros(size, size), noise_std, seed)
    q = size // 4
    out = {m: torch.zeros(len(contrasts), len(thetas), dtype=torch.float64) for m in MODELS}
    for i, c in enumerate(contrasts):
        stimuli = torch.stack([grating(size, t, wavelength, 0.0, c) for t in thetas]) + noise
        both = _both_models(stimuli, kernel, alpha, pull_scale, threshold)
        for m in MODELS:
            out[m][i] = both[m][:, q:-q, q:-q].mean(dim=(-2, -1)).double()
    return out


def tuning_width(curves: torch.Tensor, orientations: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Half-width at half-height, in degrees, of orientation tuning curves.

    Args:
        curves: (T,) or (C, T) non-negative responses at ``orientations``, which must be evenly spaced
            over [0, pi) (the curve is periodic with period pi).

    Returns:
        (C,) or scalar tensor: the mean of the left and right half-widths around each curve's peak,
        linearly interpolated; 90 for a curve that never falls below half its peak, NaN for an all-zero
        curve.
    """
    thetas = torch.as_tensor(orientations, dtype=torch.float64).flatten()
    curves = torch.as_tensor(curves, dtype=torch.float64)
    squeeze = curves.dim() == 1
    curves = curves.reshape(-1, curves.shape[-1])
    t = len(thetas)
    if curves.shape[-1] != t or t < 3:
        raise ValueError(
            f"curves must have {t} (>= 3) orientations in the last dim, got {tuple(curves.shape)}"
        )
    step = math.pi / t
    if not torch.allclose(thetas.diff(), torch.full((t - 1,), step, dtype=torch.float64), atol=1e-6):
        raise ValueError("orientations must be evenly spaced over [0, pi): k * pi / T")
    widths = []
    for row in curves:
        peak = int(row.argmax())
        top = float(row[peak])
        if top <= 0:
            widths.append(float("nan"))
            continue
        half = top / 2
        sides = []
        for direction in (1, -1):
            dist = None
            for j in range(1, t // 2 + 1):
                v = float(row[(peak + direction * j) % t])
                if v < half:
                    prev = float(row[(peak + direction * (j - 1)) % t])
                    dist = (j - 1 + (prev - half) / (prev - v)) * step
                    break
            sides.append(math.pi / 2 if dist is None else dist)
        widths.append(math.degrees(min(sum(sides) / 2, math.pi / 2)))
    out = torch.tensor(widths, dtype=torch.float64)
    return out[0] if squeeze else out
