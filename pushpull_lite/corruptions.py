"""The 19 CIFAR-10-C corruptions (Hendrycks & Dietterich, ICLR 2019) at severities 1-5, on whole batches.

``corrupt(images, name, severity, seed=0)`` takes ``images: (N, 3, H, W)``, uint8 or float in [0, 1], and
returns the same dtype, device and shape. The parameters are the **CIFAR-10 (32x32) ones** of
``make_cifar_c.py`` in the ``hendrycks/robustness`` repository (not the ImageNet-C ones); they are listed in
:data:`PARAMETERS`. Images of 8-64 pixels a side are accepted, with the same parameters in pixel units
(only 32x32 is the published benchmark).

Each corruption is declared once, by the ``@_register(name, family=..., parameters=..., severities=...)``
line above its function: :data:`REGISTRY` holds those declarations, and :data:`CORRUPTIONS`,
:data:`FAMILIES`, :data:`STANDARD_CORRUPTIONS` and :data:`PARAMETERS` are derived from it.

Families (:data:`FAMILIES`), following the ImageNet-C paper. The 15 standard corruptions are noise
(gaussian, shot, impulse), blur (defocus, glass, motion, zoom), weather (snow, frost, fog, brightness) and
digital (contrast, elastic, pixelate, JPEG). The 4 extra ones, held out in the paper as a validation set,
go one per family: ``speckle_noise`` -> noise, ``gaussian_blur`` -> blur, ``spatter`` -> weather,
``saturate`` -> digital.

How this differs from the published script (which works one PIL image at a time):

- Everything is vectorised over the batch. Fixed linear filters (Gaussian, defocus, box, zoom) are matrix
  products over the whole batch, with exactly the boundary rules of the original calls (scipy/skimage
  ``nearest`` and ``reflect``, OpenCV's default ``BORDER_REFLECT_101``).
- ``glass_blur``: the script's pixel "swap" acts on NumPy views and so copies ``x[h, w] <- x[h', w']``
  instead of swapping; the released arrays were made that way and so is this. Its sweep looks sequential,
  but with the CIFAR ``max_delta = 1`` every source pixel is one the sweep has not visited yet, so each
  sweep is exactly one parallel gather over the batch.
- ``motion_blur`` and ``snow`` used ImageMagick's ``MotionBlurImage``; we implement that operation directly
  (one-sided Gaussian kernel of width ``2*ceil(radius)+1`` along the angle, integer offsets rounded as
  ImageMagick does, edge pixels repeated) instead of round-tripping through PNG and ImageMagick.
  Checked against ImageMagick 6.9 (Q16): the same 8-bit output up to one grey level on 0.1% of pixels.
- ``spatter`` used OpenCV's Canny, 5x5 chamfer distance transform, ``equalizeHist`` and box filters; we
  implement them (Canny: Sobel 3x3, L1 magnitude, 4-direction non-maximum suppression with OpenCV's
  tie-breaking, hysteresis 50/150 with 8-connectivity), except that the uint8 wrap-around of
  ``(liquid * 255).astype(uint8)`` for values above 1 is a clip here.
- ``elastic_transform``: OpenCV's ``warpAffine`` rounds sampling positions to 1/32 pixel; we do not.
- ``frost``: the script draws ``randint(5)``, so ``frost6.jpg`` is never used; we keep that. The textures
  are downscaled by 0.2 as in the CIFAR script (OpenCV's bilinear resize by 0.2 is sampling every 5th pixel
  from offset 2, which is what we do).
- Random numbers come from a seeded ``torch.Generator``, so the noise differs from the released arrays
  (which were made with NumPy's global generator) but has the same distribution.
- The random draws depend on the whole batch: ``corrupt(x[:8])`` is not ``corrupt(x)[:8]``.

Output quantisation: uint8 output is ``floor(255 * y)`` like the script's final ``np.uint8(...)`` cast
(with a 1/1000 grey-level tolerance, so float rounding in a blur never darkens a flat region by one level);
``jpeg_compression`` and ``pixelate`` on uint8 input return PIL's own uint8 pixels. Float output is not
quantised except where the definition itself goes through 8 bits (JPEG, the middle step of glass blur,
the snow layer, spatter's 8-bit maps).

Computation runs on the CPU in float32/float64 (results do not depend on the input's device) and the
result is moved back to the input's device. It runs with :data:`THREADS` torch threads (default 1;
torch's setting is restored afterwards): its many mid-sized steps gain little from intra-op threads, and
on a busy 2-core machine two threads made it 3.5x slower (``benchmarks/corruption_speed.py --threads 1 2``).
"""

from __future__ import annotations

import io
import math
import os
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import cachefiles, config

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "FAMILY_NAMES",
    "FROST_FILES",
    "FROST_SHA256",
    "FROST_URL",
    "PARAMETERS",
    "REGISTRY",
    "SEVERITIES",
    "STANDARD_CORRUPTIONS",
    "THREADS",
    "Corruption",
    "corrupt",
    "frost_dir",
    "check_name",
    "check_severity",
]

#: The 5 severities of the benchmark, mildest first; severity s uses ``Corruption.severities[s - 1]``.
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: The four families of the ImageNet-C paper, in the order :data:`CORRUPTIONS` lists them.
FAMILY_NAMES: tuple[str, ...] = ("noise", "blur", "weather", "digital")


@dataclass(frozen=True)
class Corruption:
    """One corruption, declared once (the ``@_register(...)`` line above its function).

    name: as in CIFAR-10-C's file names; family: one of :data:`FAMILY_NAMES`; severities: the 5 parameter
    sets of the CIFAR-10 ``make_cifar_c.py`` (severity s is ``severities[s - 1]``), in the units that
    ``parameters`` describes; extra: one of the 4 held-out corruptions, not among the 15 standard ones;
    function: ``(x float64 (N, 3, H, W) in [0, 1], params, generator, is_uint8) -> (N, 3, H, W)``,
    clipped to [0, 1] and quantised by :func:`corrupt`.
    """

    name: str
    family: str
    severities: tuple
    parameters: str
    extra: bool
    function: Callable


_REGISTRY: dict[str, Corruption] = {}
#: Every corruption by name, in registration order (read-only). :data:`CORRUPTIONS`, :data:`FAMILIES`,
#: :data:`STANDARD_CORRUPTIONS` and :data:`PARAMETERS` (at the end of the module) are derived from it.
REGISTRY: Mapping[str, Corruption] = MappingProxyType(_REGISTRY)


def _register(
    name: str, *, family: str, parameters: str, severities: tuple, extra: bool = False
) -> Callable[[Callable], Callable]:
    """Decorator: add the decorated function to :data:`REGISTRY` as corruption ``name``.

    The only place a corruption is declared: adding one is one decorated function (then its AlexNet error
    in :data:`pushpull_lite.metrics.ALEXNET_ERRORS`, when one is published).
    """

    def add(function: Callable) -> Callable:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower() or name in _REGISTRY:
            raise ValueError(f"corruption name must be a new lower_case identifier, got {name!r}")
        if family not in FAMILY_NAMES:
            raise ValueError(f"{name}: family must be one of {FAMILY_NAMES}, got {family!r}")
        if not isinstance(severities, tuple) or len(severities) != len(SEVERITIES):
            raise ValueError(f"{name}: severities must be a tuple of {len(SEVERITIES)} parameter sets")
        _REGISTRY[name] = Corruption(name, family, severities, parameters, extra, function)
        return function

    return add


# The script's np.arange(1, stop, 0.01): numpy steps by (1.01 - 1), so 1.06 is included at severity 1 and
# the last factor of severity 5 is 1.2500000000000002, which changes scipy's zoomed size. Keep them bit-exact.
_ZOOM_FACTORS = tuple(
    tuple(float(z) for z in np.arange(1, stop, 0.01)) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)
)

FROST_FILES: tuple[str, ...] = (
    "frost1.png",
    "frost2.png",
    "frost3.png",
    "frost4.jpg",
    "frost5.jpg",
    "frost6.jpg",
)
_FROST_USED = FROST_FILES[:5]  # the CIFAR script draws np.random.randint(5)
FROST_URL = "https://raw.githubusercontent.com/hendrycks/robustness/master/ImageNet-C/create_c/"
#: sha256 of each texture at ``FROST_URL``: a downloaded file must match it or is not kept.
FROST_SHA256: dict[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}

_MIN_SIDE, _MAX_SIDE = 8, 64
_EPS_LEVEL = 1e-3  # grey levels: tolerance of the final floor (see module docstring)
_CHUNK = 1000  # images per internal chunk

#: torch intra-op threads used inside :func:`corrupt` (None: leave torch's setting as it is).
THREADS: int | None = 1


# --------------------------------------------------------------------------------------------------
# Public entry point


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` (1-5) of a batch.

    images: (N, 3, H, W), uint8 or float in [0, 1], 8 <= H, W <= 64 -> same dtype, device and shape.
    Deterministic for a given ``seed`` (and batch); the corruption's name is mixed into the seed.
    """
    check_name(name)
    check_severity(severity)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    is_uint8 = _check_images(images)
    if images.shape[0] == 0:
        return images.clone()
    gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**62)
    entry = _REGISTRY[name]
    params = entry.severities[severity - 1]
    source = images.detach().to("cpu")
    out = torch.empty(images.shape, dtype=images.dtype)
    with torch.no_grad(), _torch_threads(THREADS):
        # Fixed-size chunks, drawn from one generator in order: the result depends only on the batch and
        # seed, and small buffers are reused instead of page-faulting fresh 100 MB arrays for every step.
        for start in range(0, len(source), _CHUNK):
            x = source[start : start + _CHUNK].to(torch.float64)
            if is_uint8:
                x.div_(255.0)
            y = entry.function(x, params, gen, is_uint8).to(torch.float64).clamp_(0.0, 1.0)
            if is_uint8:
                y = y.mul_(255.0).add_(_EPS_LEVEL).floor_()
            out[start : start + _CHUNK] = y
    return out.to(images.device)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads inside the block, then restore the previous count."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_name(name: str) -> None:
    """Raise a clear error unless ``name`` is a registered corruption (with a did-you-mean hint)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(CORRUPTIONS)}; got {type(name).__name__}")
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, CORRUPTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown corruption name={name!r}{hint}; expected one of {', '.join(CORRUPTIONS)}")


def check_severity(severity: int) -> None:
    """Raise a clear error unless ``severity`` is an int in 1..5."""
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or severity not in SEVERITIES
    ):
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")


def _check_images(images: torch.Tensor) -> bool:
    """Validate ``images``; return True for uint8, False for float."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if not (_MIN_SIDE <= h <= _MAX_SIDE and _MIN_SIDE <= w <= _MAX_SIDE):
        raise ValueError(
            f"images must be between {_MIN_SIDE} and {_MAX_SIDE} pixels a side (CIFAR-10-C parameters are "
            f"for 32x32), got {h}x{w}"
        )
    if images.dtype == torch.uint8:
        return True
    if not images.dtype.is_floating_point:
        raise TypeError(f"images must be uint8 or a float tensor in [0, 1], got dtype {images.dtype}")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(f"float images must lie in [0, 1], got values in [{lo}, {hi}]")
    return False


# --------------------------------------------------------------------------------------------------
# Random numbers (all from one seeded generator, drawn in a fixed order)


def _normal(gen: torch.Generator, shape, mean: float, std: float) -> torch.Tensor:
    # drawn in float32 (4x faster; plenty for noise), returned as float64
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(torch.float64).mul_(std).add_(mean)


def _uniform(gen: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float64).mul_(hi - lo).add_(lo)


def _randint(gen: torch.Generator, lo: int, hi: int, shape) -> torch.Tensor:
    """Integers in [lo, hi) like ``np.random.randint``."""
    return torch.randint(lo, hi, shape, generator=gen)


# --------------------------------------------------------------------------------------------------
# Linear spatial filters with the boundary rules of the original calls. A separable filter is two skinny
# matrix products (rows, then columns) over the whole batch; a small 2-D kernel is split by SVD into a
# few separable terms; zoom blur's sum of zooms is one dense (H*W, H*W) matrix. All are fast on CPUs.


def _extend_index(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer positions outside [0, n) into it by a boundary rule (scipy names)."""
    if mode == "nearest":  # skimage/scipy default for gaussian
        return np.clip(i, 0, n - 1)
    if mode == "reflect":  # half-sample symmetric: d c b a | a b c d | d c b a
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    if mode == "mirror":  # whole-sample symmetric = OpenCV BORDER_REFLECT_101: d c b | a b c d | c b a
        if n == 1:
            return np.zeros_like(i)
        i = np.mod(i, 2 * n - 2)
        return np.where(i >= n, 2 * n - 2 - i, i)
    raise ValueError(f"unknown boundary mode {mode!r}")


def _filter_matrix_1d(kernel: np.ndarray, n: int, mode: str) -> np.ndarray:
    """(n, n) matrix of a centred 1-D correlation with ``kernel`` (odd length) under boundary ``mode``."""
    r = len(kernel) // 2
    mat = np.zeros((n, n))
    rows = np.repeat(np.arange(n), len(kernel))
    cols = _extend_index((np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :]).ravel(), n, mode)
    np.add.at(mat, (rows, cols), np.tile(kernel, n))
    return mat


def _apply_separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W); rows: (H', H); cols: (W', W) -> float32 (N, C, H', W') = rows @ x @ cols.T."""
    y = torch.matmul(x.to(torch.float32), cols.T)
    return torch.matmul(y.transpose(-1, -2), rows.T).transpose(-1, -2).contiguous()


@lru_cache(maxsize=64)
def _kernel_terms(kernel: tuple[tuple[float, ...], ...], h: int, w: int, mode: str):
    """A 2-D correlation kernel (odd sides) as [(rows (H, H), cols (W, W)), ...] separable terms (SVD)."""
    k = np.array(kernel, dtype=np.float64)
    u, sv, vt = np.linalg.svd(k)
    terms = []
    for i in range(len(sv)):
        if sv[i] > 1e-12 * sv[0]:
            rows = _filter_matrix_1d(u[:, i] * sv[i], h, mode)
            cols = _filter_matrix_1d(vt[i], w, mode)
            terms.append((torch.from_numpy(rows).float(), torch.from_numpy(cols).float()))
    return tuple(terms)


def _correlate2d(x: torch.Tensor, kernel: np.ndarray, mode: str) -> torch.Tensor:
    """Centred 2-D correlation of each channel of x (N, C, H, W) with ``kernel`` -> float32."""
    h, w = x.shape[-2:]
    key = tuple(tuple(float(v) for v in row) for row in kernel)
    terms = _kernel_terms(key, h, w, mode)
    out = _apply_separable(x, *terms[0])
    for rows, cols in terms[1:]:
        out += _apply_separable(x, rows, cols)
    return out


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's Gaussian (radius ``int(truncate * sigma + 0.5)``), normalised to sum 1."""
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * t**2 / sigma**2)
    return k / k.sum()


@lru_cache(maxsize=64)
def _gaussian_matrices(sigma: float, h: int, w: int, mode: str, truncate: float):
    k = _gaussian_kernel(sigma, truncate)
    return (
        torch.from_numpy(_filter_matrix_1d(k, h, mode)).float(),
        torch.from_numpy(_filter_matrix_1d(k, w, mode)).float(),
    )


def _gaussian_blur_batch(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """skimage.filters.gaussian / scipy gaussian_filter on each channel of x (N, C, H, W)."""
    if sigma <= 1e-15:  # scipy skips such axes
        return x.clone()
    h, w = x.shape[-2:]
    return _apply_separable(x, *_gaussian_matrices(float(sigma), h, w, mode, float(truncate)))


def _box3(x: torch.Tensor) -> torch.Tensor:
    """OpenCV ``cv2.blur(x, (3, 3))``: 3x3 mean with BORDER_REFLECT_101. x: (N, C, H, W) -> float32."""
    h, w = x.shape[-2:]
    return _apply_separable(x, *_box3_matrices(h, w))


@lru_cache(maxsize=8)
def _box3_matrices(h: int, w: int):
    k = np.full(3, 1 / 3)
    return (
        torch.from_numpy(_filter_matrix_1d(k, h, "mirror")).float(),
        torch.from_numpy(_filter_matrix_1d(k, w, "mirror")).float(),
    )


def _zoom_matrix_1d(n: int, z: float) -> np.ndarray:
    """(n, n) matrix of the script's ``clipped_zoom`` along one axis.

    Centre crop of ``ceil(n / z)`` pixels, ``scipy.ndimage.zoom(order=1)`` (corner-aligned linear
    interpolation to ``round(crop * z)`` pixels), then a centre trim back to ``n``.
    """
    crop = int(math.ceil(n / z))
    top = (n - crop) // 2
    out_len = int(round(crop * z))
    scale = (crop - 1) / (out_len - 1) if out_len > 1 else 0.0
    trim = (out_len - n) // 2
    mat = np.zeros((n, n))
    for o in range(n):
        pos = (o + trim) * scale
        i0 = min(int(math.floor(pos)), crop - 1)
        frac = pos - i0
        mat[o, top + i0] += 1.0 - frac
        if frac > 0:
            mat[o, top + min(i0 + 1, crop - 1)] += frac
    return mat


@lru_cache(maxsize=16)
def _zoom_blur_operator(zooms: tuple[float, ...], h: int, w: int) -> torch.Tensor:
    """(H*W, H*W): mean of the image and its ``clipped_zoom`` by each factor in ``zooms``."""
    mat = np.eye(h * w)
    for z in zooms:
        mat += np.kron(_zoom_matrix_1d(h, z), _zoom_matrix_1d(w, z))
    mat /= len(zooms) + 1
    return torch.from_numpy(mat).to(torch.float32)


# --------------------------------------------------------------------------------------------------
# Noise


@_register(
    "gaussian_noise",
    family="noise",
    parameters="std, images in [0, 1]",
    severities=(0.04, 0.06, 0.08, 0.09, 0.10),
)
def _gaussian_noise(x, std, gen, _u8):
    return x + _normal(gen, x.shape, 0.0, std)


@_register(
    "shot_noise",
    family="noise",
    parameters="photons at intensity 1",
    severities=(500, 250, 100, 75, 50),
)
def _shot_noise(x, photons, gen, _u8):
    return torch.poisson(x * photons, generator=gen) / photons


@_register(
    "impulse_noise",
    family="noise",
    parameters="fraction of values set to 0 or 1",
    severities=(0.01, 0.02, 0.03, 0.05, 0.07),
)
def _impulse_noise(x, amount, gen, _u8):
    # skimage.util.random_noise(mode="s&p"): each value independently, half salt (1) and half pepper (0)
    flipped = torch.rand(x.shape, generator=gen, dtype=torch.float64) < amount
    salt = torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.5
    return torch.where(flipped, salt.to(x.dtype), x)


@_register(
    "speckle_noise",
    family="noise",
    parameters="std of the multiplicative noise",
    severities=(0.06, 0.10, 0.12, 0.16, 0.20),
    extra=True,
)
def _speckle_noise(x, std, gen, _u8):
    return x + x * _normal(gen, x.shape, 0.0, std)


# --------------------------------------------------------------------------------------------------
# Blur


def _defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The script's ``disk()``: an aliased disk on a 17x17 grid, normalised, then cv2.GaussianBlur 3x3."""
    t = np.arange(-8, 9)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    padded = np.pad(disk, 1, mode="reflect")  # BORDER_REFLECT_101; the disk is far from the border anyway
    kernel = sum(g[a] * g[b] * padded[a : a + 17, b : b + 17] for a in range(3) for b in range(3))
    nz = np.nonzero(kernel)
    r = int(max(np.abs(nz[0] - 8).max(), np.abs(nz[1] - 8).max()))
    return kernel[8 - r : 9 + r, 8 - r : 9 + r]  # only zeros are dropped


@_register(
    "defocus_blur",
    family="blur",
    parameters="disk radius, alias sigma (px)",
    severities=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
)
def _defocus_blur(x, params, _gen, _u8):
    radius, alias_blur = params
    # symmetric kernel, so correlation (cv2.filter2D) = convolution; cv2's default border
    return _correlate2d(x, _defocus_kernel(float(radius), float(alias_blur)), "mirror")


@_register(
    "glass_blur",
    family="blur",
    parameters="sigma (px), delta (px), sweeps",
    severities=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
)
def _glass_blur(x, params, gen, _u8):
    sigma, delta, sweeps = params
    n, c, h, w = x.shape
    if delta != 1:  # the CIFAR parameters all have delta = 1; the gather below is exact only then
        raise ValueError(f"glass_blur is implemented for max_delta = 1 (CIFAR), got {delta}")
    blurred = _gaussian_blur_batch(x, sigma).to(torch.float64).clamp(0, 1)
    # The script stores the first blur as uint8 (truncating) before shuffling.
    pix = torch.floor(blurred * 255.0 + _EPS_LEVEL).reshape(n, c, h * w)
    # Its "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on NumPy views, so it is a copy
    # x[h, w] <- x[h', w'] (the released arrays were made so). The sweep visits (h, w) from the bottom-right
    # and (h', w') = (h + dy, w + dx) with dx, dy in {-1, 0} is never visited before (h, w): each sweep
    # equals one parallel gather, for the whole batch at once.
    rows = torch.arange(h - delta, delta, -1)
    cols = torch.arange(w - delta, delta, -1)
    tr, tc = torch.meshgrid(rows, cols, indexing="ij")
    targets = (tr * w + tc).reshape(-1)  # the script's visiting order
    for _ in range(sweeps):
        # one (dx, dy) per position and image, in {-delta, ..., delta - 1} as np.random.randint(-d, d)
        shifts = _randint(gen, -delta, delta, (len(targets), 2, n))
        dx, dy = shifts[:, 0].T, shifts[:, 1].T  # (n, positions)
        index = torch.arange(h * w).repeat(n, 1)
        index[:, targets] = targets[None, :] + dy * w + dx
        pix = torch.gather(pix, 2, index[:, None, :].expand(n, c, h * w))
    return _gaussian_blur_batch(pix.reshape(n, c, h, w) / 255.0, sigma)


def _motion_offsets(width: int, angles_deg: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """ImageMagick MotionBlurImage's integer offsets (dx, dy), each (N, width)."""
    rad = np.pi * angles_deg.numpy().astype(np.float64)[:, None] / 180.0
    px, py = width * np.sin(rad), width * np.cos(rad)
    norm = np.hypot(px, py)
    i = np.arange(width, dtype=np.float64)[None, :]
    dx = np.ceil(i * py / norm - 0.5).astype(np.int64)
    dy = np.ceil(i * px / norm - 0.5).astype(np.int64)
    return dx, dy


def _motion_blur_batch(
    x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor
) -> torch.Tensor:
    """ImageMagick's motion blur with a per-image angle. x: (N, C, H, W) -> float32 (N, C, H, W).

    Output pixel = sum_i k_i * x[y + dy_i, x + dx_i] with k_i ~ exp(-i^2 / (2 sigma^2)), i = 0..width-1,
    positions outside the image replaced by the nearest edge pixel. One gather per kernel tap.
    """
    n, c, h, w = x.shape
    width = int(2 * math.ceil(radius) + 1)
    k = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma**2))
    k /= k.sum()
    dx, dy = _motion_offsets(width, angles_deg)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    src = x.to(torch.float32).reshape(n, c, h * w)
    out = torch.zeros((n, c, h * w), dtype=torch.float32)
    for t in range(width):
        r = (rows + torch.from_numpy(dy[:, t]).view(n, 1, 1)).clamp_(0, h - 1)
        q = (cols + torch.from_numpy(dx[:, t]).view(n, 1, 1)).clamp_(0, w - 1)
        index = (r * w + q).reshape(n, 1, h * w).expand(n, c, h * w)
        out.add_(torch.gather(src, 2, index), alpha=float(k[t]))
    return out.reshape(n, c, h, w)


@_register(
    "motion_blur",
    family="blur",
    parameters="radius, sigma (px); angle U(-45, 45) degrees",
    severities=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
)
def _motion_blur(x, params, gen, _u8):
    radius, sigma = params
    angles = _uniform(gen, (x.shape[0],), -45.0, 45.0)
    return _motion_blur_batch(x, radius, sigma, angles)


@_register(
    "zoom_blur",
    family="blur",
    parameters="zoom factors averaged (7, 12, 16, 21, 26 of them)",
    severities=_ZOOM_FACTORS,
)
def _zoom_blur(x, zooms, _gen, _u8):
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).to(torch.float32)
    return (flat @ _zoom_blur_operator(tuple(zooms), h, w).T).reshape(n, c, h, w)


@_register(
    "gaussian_blur",
    family="blur",
    parameters="sigma (px)",
    severities=(0.4, 0.6, 0.7, 0.8, 1.0),
    extra=True,
)
def _gaussian_blur(x, sigma, _gen, _u8):
    return _gaussian_blur_batch(x, sigma)


# --------------------------------------------------------------------------------------------------
# Weather


@_register(
    "snow",
    family="weather",
    parameters="mean, std, zoom, threshold, blur radius (px), blur sigma (px), blend",
    severities=(
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
)
def _snow(x, params, gen, _u8):
    mean, std, zoom, threshold, mb_radius, mb_sigma, blend = params
    n, _, h, w = x.shape
    layer = _normal(gen, (n, 1, h, w), mean, std)
    if zoom != 1:
        rows = torch.from_numpy(_zoom_matrix_1d(h, float(zoom))).float()
        cols = torch.from_numpy(_zoom_matrix_1d(w, float(zoom))).float()
        layer = _apply_separable(layer, rows, cols).to(torch.float64)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255.0) / 255.0  # saved as an 8-bit greyscale PNG
    angles = _uniform(gen, (n,), -135.0, -45.0)
    layer = _motion_blur_batch(layer, mb_radius, mb_sigma, angles).to(torch.float64)
    layer = torch.floor(layer * 255.0 + _EPS_LEVEL) / 255.0  # ImageMagick's 8-bit PNG (it truncates)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # cv2 RGB2GRAY
    x = blend * x + (1 - blend) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


@_register(
    "frost",
    family="weather",
    parameters="image weight, frost weight",
    severities=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
)
def _frost(x, params, gen, _u8):
    img_weight, frost_weight = params
    n, _, h, w = x.shape
    textures = _frost_textures(str(frost_dir()))
    which = _randint(gen, 0, len(_FROST_USED), (n,))
    out = torch.empty_like(x)
    for t, tex in enumerate(textures):
        sel = torch.nonzero(which == t).flatten()
        if len(sel) == 0:
            continue
        th, tw = tex.shape[-2:]
        if th <= h or tw <= w:
            raise ValueError(
                f"frost texture {_FROST_USED[t]} ({tw}x{th} after scaling) is too small for {w}x{h}"
            )
        r0 = _randint(gen, 0, th - h, (len(sel),))
        c0 = _randint(gen, 0, tw - w, (len(sel),))
        rows = (r0[:, None] + torch.arange(h))[:, :, None]  # (m, H, 1)
        cols = (c0[:, None] + torch.arange(w))[:, None, :]  # (m, 1, W)
        crops = tex[:, rows, cols].permute(1, 0, 2, 3)  # (m, 3, H, W)
        out[sel] = img_weight * x[sel] + frost_weight * crops
    return out


def _plasma_fractal(gen: torch.Generator, n: int, size: int, decay: float) -> torch.Tensor:
    """Diamond-square height maps on a torus, (n, size, size) in [0, 1]; ``size`` a power of two.

    Each new point is the mean of its 4 parents plus uniform noise of half-width ``wibble**2``
    (``wibble`` starts at 100 and is divided by ``decay`` each level), as in the script.
    """
    hmap = torch.zeros((n, size, size), dtype=torch.float64)
    step, wibble = size, 100.0

    def noisy_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * _uniform(gen, total.shape, -wibble, wibble)

    while step >= 2:
        half = step // 2
        corners = hmap[:, 0:size:step, 0:size:step]
        # squares: centre of each square of corners
        total = corners + torch.roll(corners, -1, dims=1)
        total = total + torch.roll(total, -1, dims=2)
        hmap[:, half:size:step, half:size:step] = noisy_mean(total)
        # diamonds: edge midpoints, from 2 corners and 2 square centres
        centres = hmap[:, half:size:step, half:size:step]
        corners = hmap[:, 0:size:step, 0:size:step]
        top = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, dims=2)
        hmap[:, 0:size:step, half:size:step] = noisy_mean(top)
        left = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, dims=1)
        hmap[:, half:size:step, 0:size:step] = noisy_mean(left)
        step //= 2
        wibble /= decay
    flat = hmap.reshape(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values
    return flat.reshape(n, size, size)


@_register(
    "fog",
    family="weather",
    parameters="fog strength, plasma decay",
    severities=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
)
def _fog(x, params, gen, _u8):
    strength, decay = params
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()  # the script's map is a power of two (32)
    plasma = _plasma_fractal(gen, n, size, decay)[:, None, :h, :w]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * plasma) * max_val / (max_val + strength)


@_register(
    "spatter",
    family="weather",
    parameters="mean, std, sigma (px), threshold, intensity (water) or mud sigma (px), mud?",
    severities=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    extra=True,
)
def _spatter(x, params, gen, _u8):
    mean, std, sigma, threshold, intensity, mud = params
    n, _, h, w = x.shape
    liquid = _normal(gen, (n, 1, h, w), mean, std)
    liquid = _gaussian_blur_batch(liquid, sigma).to(torch.float64)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        level = torch.floor(liquid.clamp(0, 1) * 255.0)  # the script's uint8 liquid map
        edges = _canny(level[:, 0].numpy(), 50, 150)
        dist = _distance_to_edges(edges)
        dist = np.minimum(dist, 20.0)  # cv2.threshold(..., 20, 20, THRESH_TRUNC)
        dist = torch.floor(_box3(torch.from_numpy(dist)[:, None].float()).to(torch.float64) + 1e-4)
        dist = _equalize_hist(dist[:, 0].numpy().astype(np.int64))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = torch.from_numpy(dist.astype(np.float32))[:, None]
        dist = torch.round(_correlate2d(dist, emboss, "mirror")).clamp_(0, 255)  # CV_8U saturates
        dist = torch.floor(_box3(dist).to(torch.float64) + 0.5)  # cv2.blur on uint8 rounds
        m = level * dist
        peak = m.amax(dim=(2, 3), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m)) * intensity
        water = torch.tensor([175.0, 238.0, 238.0], dtype=torch.float64).view(1, 3, 1, 1) / 255.0
        return x + m * water
    m = _gaussian_blur_batch((liquid > threshold).to(torch.float64), intensity).to(torch.float64)
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    mud_colour = torch.tensor([63.0, 42.0, 20.0], dtype=torch.float64).view(1, 3, 1, 1) / 255.0
    return x * (1 - m) + m * mud_colour


def _canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """OpenCV-style Canny on a batch of 8-bit maps (N, H, W) -> bool edges (N, H, W).

    Sobel 3x3 (replicated border), L1 magnitude, non-maximum suppression in 4 directions (OpenCV's
    tie-breaking), hysteresis: weak pixels (> low) kept when 8-connected to a strong one (> high).
    """
    from scipy import ndimage

    n, h, w = img.shape
    p = np.pad(img.astype(np.int64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (
        p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2]
    )
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (
        p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:]
    )
    mag = np.abs(gx) + np.abs(gy)
    mp = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # zero magnitude outside, as OpenCV's buffer

    def at(dr, dc):
        return mp[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    shift = 15
    ax, ay = np.abs(gx), np.abs(gy) << shift
    tg22 = ax * int(0.4142135623730950488016887242097 * (1 << shift) + 0.5)
    tg67 = tg22 + (ax << (shift + 1))
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg67)
    diagonal = ~horizontal & ~vertical
    same_sign = (gx ^ gy) >= 0
    keep = (
        (horizontal & (mag > at(0, -1)) & (mag >= at(0, 1)))
        | (vertical & (mag > at(-1, 0)) & (mag >= at(1, 0)))
        | (diagonal & same_sign & (mag > at(-1, -1)) & (mag > at(1, 1)))
        | (diagonal & ~same_sign & (mag > at(-1, 1)) & (mag > at(1, -1)))
    )
    weak = keep & (mag > int(math.floor(low)))
    strong = weak & (mag > int(math.floor(high)))
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside each image, none across the batch
    labels, count = ndimage.label(weak, structure=structure)
    has_strong = np.zeros(count + 1, dtype=bool)
    has_strong[labels[strong]] = True
    has_strong[0] = False
    return has_strong[labels]


_DIST_SHIFT = 16
_CHAMFER = tuple(int(round(float(np.float32(m)) * (1 << _DIST_SHIFT))) for m in (1.0, 1.4, 2.1969))
_DIST_MAX = (2**31 - 1) >> 2


def _distance_to_edges(edges: np.ndarray) -> np.ndarray:
    """OpenCV ``distanceTransform(DIST_L2, 5)`` to the nearest edge, per image: (N, H, W) bool -> float32.

    Its two-pass 5x5 chamfer (steps 1, 1.4, 2.1969 in 16.16 fixed point), vectorised over the batch and
    along each row (the in-row dependency is a running minimum). Images without edges get ~8192.
    """
    hv, diag, knight = _CHAMFER
    n, h, w = edges.shape
    big = np.int64(1) << 40
    tmp = np.full((n, h + 4, w + 4), big, dtype=np.int64)  # 2-pixel border of "infinity"
    cols = np.arange(w, dtype=np.int64)
    forward = (
        (-2, -1, knight),
        (-2, 1, knight),
        (-1, -2, knight),
        (-1, -1, diag),
        (-1, 0, hv),
        (-1, 1, diag),
    )
    forward += ((-1, 2, knight),)
    for i in range(h):
        r = i + 2
        cand = np.full((n, w), big, dtype=np.int64)
        for dr, dc, cost in forward:
            np.minimum(cand, tmp[:, r + dr, 2 + dc : 2 + dc + w] + cost, out=cand)
        cand[edges[:, i]] = 0
        # tmp[j] = min(cand[j], tmp[j - 1] + hv), left to right
        tmp[:, r, 2 : 2 + w] = np.minimum.accumulate(cand - cols * hv, axis=1) + cols * hv
    for i in range(h - 1, -1, -1):
        r = i + 2
        cand = tmp[:, r, 2 : 2 + w].copy()
        for dr, dc, cost in forward:
            np.minimum(cand, tmp[:, r - dr, 2 - dc : 2 - dc + w] + cost, out=cand)
        # tmp[j] = min(cand[j], tmp[j + 1] + hv), right to left
        rev = (cand + cols * hv)[:, ::-1]
        tmp[:, r, 2 : 2 + w] = np.minimum.accumulate(rev, axis=1)[:, ::-1] - cols * hv
    out = np.minimum(tmp[:, 2 : 2 + h, 2 : 2 + w], _DIST_MAX)
    return out.astype(np.float32) * np.float32(1.0 / (1 << _DIST_SHIFT))


def _equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` per image on integer maps (N, H, W) in 0..255."""
    n = img.shape[0]
    flat = img.reshape(n, -1)
    total = flat.shape[1]
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    first = np.argmax(hist > 0, axis=1)
    first_count = hist[np.arange(n), first]
    cum = np.cumsum(hist, axis=1)
    denom = np.maximum(total - first_count, 1)
    scale = (np.float32(255.0) / denom.astype(np.float32))[:, None]  # OpenCV computes in float32
    lut = np.rint((cum - cum[np.arange(n), first][:, None]).astype(np.float32) * scale)
    lut = np.clip(lut, 0, 255)
    lut[np.arange(256)[None, :] <= first[:, None]] = 0
    out = np.take_along_axis(lut, flat, axis=1).reshape(img.shape)
    flat_images = first_count == total  # one grey level: OpenCV fills with that level
    out[flat_images] = first[flat_images][:, None, None]
    return out


@_register(
    "brightness",
    family="weather",
    parameters="added to HSV value",
    severities=(0.05, 0.1, 0.15, 0.2, 0.3),
)
def _brightness(x, shift, _gen, _u8):
    return _hsv_adjust(x, lambda s: s, lambda v: (v + shift).clamp(0, 1))


def _hsv_adjust(x: torch.Tensor, new_s: Callable, new_v: Callable) -> torch.Tensor:
    """Change HSV saturation and value, keep hue, as skimage rgb2hsv -> edit -> hsv2rgb, in closed form.

    In HSV each channel is ``V * (1 - S * f_k(H))``; for a pixel with max V and spread D = V - min,
    ``S * f_k = (V - x_k) / V``, so with new S', V' the channel is ``V' * (1 - S' * (V - x_k) / D)``.
    Grey pixels (D = 0) have hue 0 (red): f = (0, 1, 1).
    """
    v = x.amax(dim=1, keepdim=True)
    spread = v - x.amin(dim=1, keepdim=True)
    s = torch.where(v > 0, spread / v.clamp_min(1e-300), torch.zeros_like(v))
    s = torch.where(spread > 0, s, torch.zeros_like(s))
    f = torch.where(spread > 0, (v - x) / spread.clamp_min(1e-300), _RED_HUE.to(x.dtype).expand_as(x))
    return new_v(v) * (1 - new_s(s) * f)


_RED_HUE = torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------------------------------
# Digital


@_register(
    "contrast",
    family="digital",
    parameters="factor on the deviation from the channel mean",
    severities=(0.75, 0.5, 0.4, 0.3, 0.15),
)
def _contrast(x, factor, _gen, _u8):
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


@_register(
    "elastic_transform",
    family="digital",
    parameters="displacement scale (px), its smoothing sigma (px), affine jitter (px)",
    severities=(
        (32 * 0.0, 32 * 0.0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ),
)
def _elastic_transform(x, params, gen, _u8):
    alpha, sigma, affine = params
    n, c, h, w = x.shape
    # Random affine: three points (x, y) around the centre, each moved by U(-affine, affine).
    cx, cy, half = w // 2, h // 2, min(h, w) // 3
    src = np.array([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], dtype=np.float64)
    dst = src[None] + _uniform(gen, (n, 3, 2), -affine, affine).numpy().astype(np.float32).astype(np.float64)
    # The affine map M with M(src) = dst; warpAffine samples the source at M^-1(output pixel).
    a = np.concatenate([src, np.ones((3, 1))], axis=1)  # (3, 3)
    m = np.linalg.solve(a[None].repeat(n, 0), dst)  # (n, 3, 2): [x, y, 1] @ m = dst
    m_full = np.zeros((n, 3, 3))
    m_full[:, :, :2] = m
    m_full[:, 2, 2] = 1.0
    inv = np.linalg.inv(np.transpose(m_full, (0, 2, 1)))  # column form [x', y', 1]^T = M [x, y, 1]^T
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    src_x = inv[:, 0, 0, None, None] * xx + inv[:, 0, 1, None, None] * yy + inv[:, 0, 2, None, None]
    src_y = inv[:, 1, 0, None, None] * xx + inv[:, 1, 1, None, None] * yy + inv[:, 1, 2, None, None]
    warped = _sample_bilinear(x, src_x, src_y, align_corners=True)  # cv2 BORDER_REFLECT_101
    # Smooth random displacement field, scipy map_coordinates(order=1, mode="reflect").
    noise_x = _uniform(gen, (n, 1, h, w), -1.0, 1.0)
    noise_y = _uniform(gen, (n, 1, h, w), -1.0, 1.0)
    dx = _gaussian_blur_batch(noise_x, sigma, mode="reflect", truncate=3.0).to(torch.float64) * alpha
    dy = _gaussian_blur_batch(noise_y, sigma, mode="reflect", truncate=3.0).to(torch.float64) * alpha
    return _sample_bilinear(warped, xx + dx[:, 0].numpy(), yy + dy[:, 0].numpy(), align_corners=False)


def _sample_bilinear(x: torch.Tensor, cols, rows, align_corners: bool) -> torch.Tensor:
    """Bilinear sampling of x (N, C, H, W) at pixel coordinates (N, H, W), reflected at the border.

    align_corners=True reflects about the first/last pixel centres (OpenCV BORDER_REFLECT_101);
    False reflects about the image edges (scipy ``mode="reflect"``).
    """
    h, w = x.shape[-2:]
    cols = torch.as_tensor(cols, dtype=torch.float64)
    rows = torch.as_tensor(rows, dtype=torch.float64)
    if align_corners:
        gx, gy = 2 * cols / (w - 1) - 1, 2 * rows / (h - 1) - 1
    else:
        gx, gy = (2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1).to(torch.float32)
    return F.grid_sample(
        x.to(torch.float32), grid, mode="bilinear", padding_mode="reflection", align_corners=align_corners
    )


@_register(
    "pixelate",
    family="digital",
    parameters="downscale factor (then BOX back up)",
    severities=(0.95, 0.9, 0.85, 0.75, 0.65),
)
def _pixelate(x, factor, _gen, is_uint8):
    h, w = x.shape[-2:]
    small_h, small_w = int(h * factor), int(w * factor)
    down_r, down_c = _pil_box_matrix(h, small_h), _pil_box_matrix(w, small_w)
    up_r, up_c = _pil_box_matrix(small_h, h), _pil_box_matrix(small_w, w)
    if is_uint8:
        pix = torch.round(x * 255.0)
        pix = _pil_resample_8bit(pix, down_r, down_c)
        return _pil_resample_8bit(pix, up_r, up_c) / 255.0
    # Float images: PIL's "F" mode arithmetic, the same weights without 8-bit rounding.
    small = _apply_separable(x, torch.from_numpy(down_r).float(), torch.from_numpy(down_c).float())
    return _apply_separable(small, torch.from_numpy(up_r).float(), torch.from_numpy(up_c).float())


def _pil_box_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of Pillow's BOX resampling along one axis (its precompute_coeffs)."""
    scale = size_in / size_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    mat = np.zeros((size_out, size_in))
    for o in range(size_out):
        centre = (o + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), size_in)
        for i in range(lo, hi):
            t = ((i - centre) + 0.5) * (1.0 / filterscale)  # Pillow's operation order, for exact ties
            mat[o, i] = 1.0 if -0.5 < t <= 0.5 else 0.0
        total = mat[o].sum()
        if total:
            mat[o] /= total
    return mat


_PIL_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images (32 - 8 - 2)


def _pil_resample_8bit(pix: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """Pillow's two-pass 8-bit resize (horizontal first, rounded to uint8, then vertical).

    pix: (N, C, H, W) integer-valued float64 -> integer-valued float64 (N, C, H', W'). The fixed-point
    weights and sums are integers below 2**53, so float64 arithmetic is exact.
    """

    def fixed(mat: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.floor(mat * (1 << _PIL_BITS) + 0.5))  # weights are >= 0

    half = float(1 << (_PIL_BITS - 1))
    if cols.shape[0] != cols.shape[1] or not np.array_equal(cols, np.eye(cols.shape[0])):
        pix = torch.floor((pix @ fixed(cols).T + half) / (1 << _PIL_BITS)).clamp_(0, 255)
    if rows.shape[0] != rows.shape[1] or not np.array_equal(rows, np.eye(rows.shape[0])):
        # (pix^T @ rows^T)^T: one large matrix product instead of one small one per image
        mixed = torch.matmul(pix.transpose(-1, -2), fixed(rows).T).transpose(-1, -2)
        pix = torch.floor((mixed + half) / (1 << _PIL_BITS)).clamp_(0, 255)
    return pix


@_register(
    "jpeg_compression",
    family="digital",
    parameters="PIL JPEG quality",
    severities=(80, 65, 58, 50, 40),
)
def _jpeg_compression(x, quality, _gen, _u8):
    from PIL import Image

    pix = torch.round(x * 255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(pix)
    for i, img in enumerate(pix):  # PIL encodes one image at a time: unavoidable
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(torch.float64) / 255.0


@_register(
    "saturate",
    family="digital",
    parameters="HSV saturation * a + b: (a, b)",
    severities=((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    extra=True,
)
def _saturate(x, params, _gen, _u8):
    scale, offset = params
    return _hsv_adjust(x, lambda s: (s * scale + offset).clamp(0, 1), lambda v: v)


# --------------------------------------------------------------------------------------------------
# Frost textures


def frost_dir() -> Path:
    """The folder holding the frost textures, downloading them into the cache when needed.

    Looks in ``config.data_root() / "frost"`` then ``config.cache_dir() / "frost"``; when both lack a
    texture, tries the public copy (``FROST_URL``) with a short timeout, unless ``PUSHPULL_OFFLINE`` is set.
    Raises FileNotFoundError naming every place looked and how to fix it.
    """
    candidates = [config.data_root() / "frost", config.cache_dir() / "frost"]
    for folder in candidates:
        if all((folder / f).is_file() for f in _FROST_USED):
            return folder
    target = candidates[-1]
    if os.environ.get("PUSHPULL_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        reason = "PUSHPULL_OFFLINE is set"
    else:
        try:
            _download_frost(target)
            if all((target / f).is_file() for f in _FROST_USED):
                return target
            reason = "the download left files missing"
        except Exception as exc:  # network errors of several kinds or a hash mismatch: all mean "no file"
            reason = f"download failed: {type(exc).__name__}: {exc}"
    looked = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"the frost textures ({', '.join(FROST_FILES)}) were not found and could not be downloaded "
        f"({reason}).\nLooked in:\n  {looked}\n  {FROST_URL}\n"
        "Fix: set PUSHPULL_DATA to a folder whose frost/ subfolder holds them "
        "(e.g. PUSHPULL_DATA=../shared/data), "
        f"or copy them into {target}."
    )


def _download_frost(target: Path, timeout: float = 10.0) -> None:
    """Fetch the six textures from ``FROST_URL`` into ``target`` (the cache), each checked against
    :data:`FROST_SHA256` before it gets its final name. ``timeout``: seconds per network operation.

    A texture already in ``target`` is kept when its sha256 matches; otherwise it is named in a warning
    and downloaded again.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name in FROST_FILES:
        dest, expected = target / name, FROST_SHA256[name]
        if dest.is_file():
            digest = cachefiles.sha256_file(dest)
            if digest == expected:
                continue
            warnings.warn(
                f"{dest} has sha256 {digest}, not the published texture's {expected}: downloading it again",
                stacklevel=2,
            )
        cachefiles.download_verified(FROST_URL + name, dest, expected, timeout)


@lru_cache(maxsize=4)
def _frost_textures(folder: str) -> tuple[torch.Tensor, ...]:
    """The used textures as float64 (3, h, w) in [0, 1], downscaled by 0.2 like the CIFAR script."""
    from PIL import Image

    out = []
    for name in _FROST_USED:
        with Image.open(Path(folder) / name) as im:
            arr = np.asarray(im.convert("RGB"))  # cv2.imread drops the alpha channel too
        h, w = arr.shape[:2]
        # cv2.resize(fx=fy=0.2, INTER_LINEAR) samples source pixel 5 * i + 2 exactly: a strided slice
        small = arr[2::5, 2::5][: int(round(h * 0.2)), : int(round(w * 0.2))]
        out.append(torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).to(torch.float64) / 255.0)
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# The public tables, derived from the registrations above (never edited by hand)

#: The 19 corruption names, grouped by family (:data:`FAMILY_NAMES` order: noise, blur, weather, digital),
#: each family's in registration order (the 15 standard ones first, then its extra one).
CORRUPTIONS: tuple[str, ...] = tuple(
    c for family in FAMILY_NAMES for c in _REGISTRY if _REGISTRY[c].family == family
)

#: The four families of the ImageNet-C paper; the 4 extra corruptions go one per family (module docstring).
FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(c for c in CORRUPTIONS if _REGISTRY[c].family == family) for family in FAMILY_NAMES
}

#: The 15 corruptions of the standard benchmark (the other 4 are the held-out extras).
STANDARD_CORRUPTIONS: tuple[str, ...] = tuple(c for c in CORRUPTIONS if not _REGISTRY[c].extra)

#: Per corruption, the 5 severity parameters of the CIFAR-10 script (units: ``REGISTRY[name].parameters``).
PARAMETERS: dict[str, tuple] = {c: _REGISTRY[c].severities for c in CORRUPTIONS}
