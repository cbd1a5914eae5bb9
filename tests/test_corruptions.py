"""Tests of pushpull_lite.corruptions and pushpull_lite.cifar10c against independent expectations.

Closed forms are checked exactly against PIL, colorsys, scipy and hand-written formulas; random
corruptions by their spread and by structural properties. Frost uses the real textures when they can be
found (PUSHPULL_DATA, or ../shared/data beside the checkout); the network is never used here.

Not here (needs a trained model, to be added by whoever trains one): "a model's error grows with severity".
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import http.server
import io
import math
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from pushpull_lite import cifar10c, config, corruptions
from pushpull_lite.corruptions import CORRUPTIONS, FAMILIES, PARAMETERS, REGISTRY, corrupt

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: the corruptions that draw random numbers (the seed changes them); the others must ignore the seed
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "spatter",
    "elastic_transform",
}


def _no_network(*args, **kwargs):
    raise OSError("no network in tests")


# The real download function, before the autouse fixture below replaces it in every test.
_REAL_DOWNLOAD_FROST = corruptions._download_frost


@pytest.fixture(autouse=True)
def _offline_with_textures(monkeypatch):
    """Never download; point PUSHPULL_DATA at ../shared/data when it is not set and that folder exists."""
    monkeypatch.setattr(corruptions, "_download_frost", _no_network)
    if not (config.data_root() / "frost" / "frost1.png").is_file() and (SHARED_DATA / "frost").is_dir():
        monkeypatch.setenv("PUSHPULL_DATA", str(SHARED_DATA))


def _frost_available() -> bool:
    root = config.data_root()
    if not (root / "frost" / "frost1.png").is_file() and (SHARED_DATA / "frost").is_dir():
        root = SHARED_DATA
    return all((root / "frost" / f).is_file() for f in corruptions.FROST_FILES[:5])


def _skip_frost(name: str) -> None:
    if name == "frost" and not _frost_available():
        pytest.skip("frost textures not found: set PUSHPULL_DATA=../shared/data")


def cifar_like(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Small CIFAR-like uint8 images (n, 3, 32, 32): colour gradients, a disc of another colour, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(n):
        img = np.zeros((3, 32, 32))
        for c in range(3):
            a, b, d = rng.uniform(-1, 1, 3)
            img[c] = 0.5 + 0.3 * (a * xx + b * yy) + 0.1 * d
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 9)
        disc = ((yy * 31 - cy) ** 2 + (xx * 31 - cx) ** 2) < r**2
        img[:, disc] = rng.uniform(0, 1, (3, 1))
        img += rng.normal(0, 0.03, img.shape)
        out.append(img)
    return torch.from_numpy((np.clip(np.stack(out), 0, 1) * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return cifar_like()


# ------------------------------------------------------------------------------------------------
# API and validation


def test_names_and_families():
    reference = (
        "gaussian_noise shot_noise impulse_noise speckle_noise defocus_blur glass_blur motion_blur zoom_blur "
        "gaussian_blur snow frost fog spatter brightness contrast elastic_transform pixelate "
        "jpeg_compression saturate"
    ).split()
    assert list(CORRUPTIONS) == reference
    assert sorted(c for fam in FAMILIES.values() for c in fam) == sorted(reference)  # a partition
    assert set(FAMILIES) == {"noise", "blur", "weather", "digital"}
    assert {
        "speckle_noise": "noise",
        "gaussian_blur": "blur",
        "spatter": "weather",
        "saturate": "digital",
    } == {
        c: fam
        for fam, cs in FAMILIES.items()
        for c in cs
        if c in ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    }
    assert all(len(PARAMETERS[c]) == 5 for c in CORRUPTIONS)
    assert len(corruptions.STANDARD_CORRUPTIONS) == 15


def test_cifar_parameters_not_imagenet():
    # spot checks against the CIFAR-10 script (the ImageNet ones differ: e.g. noise std 0.08 ... 0.38)
    assert PARAMETERS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert PARAMETERS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert PARAMETERS["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert [len(z) for z in PARAMETERS["zoom_blur"]] == [7, 12, 16, 21, 26]
    assert PARAMETERS["zoom_blur"][4][-1] == float(np.arange(1, 1.26, 0.01)[-1])


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, None])
def test_bad_severity_raises(images, severity):
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "gaussian_noise", severity)


def test_unknown_name_raises(images):
    with pytest.raises(ValueError, match="unknown corruption.*did you mean 'gaussian_noise'"):
        corrupt(images, "gausian_noise", 1)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "Gaussian Noise", 1)
    with pytest.raises(TypeError, match="name"):
        corrupt(images, 3, 1)


def test_bad_images_raise(images):
    with pytest.raises(TypeError, match="torch.Tensor"):
        corrupt(images.numpy(), "contrast", 1)
    with pytest.raises(TypeError, match="uint8 or a float"):
        corrupt(images.to(torch.int32), "contrast", 1)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        corrupt(images[:, :1], "contrast", 1)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        corrupt(images[0], "contrast", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(images.float(), "contrast", 1)  # 0..255 floats are a classic mistake
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(torch.full((1, 3, 32, 32), float("nan")), "contrast", 1)
    with pytest.raises(ValueError, match="pixels a side"):
        corrupt(torch.zeros((1, 3, 4, 4), dtype=torch.uint8), "contrast", 1)
    with pytest.raises(ValueError, match="seed"):
        corrupt(images, "contrast", 1, seed=-1)


# ------------------------------------------------------------------------------------------------
# Every registered corruption (parametrised over corruptions.REGISTRY: a new registration is tested here
# as it is): shape, dtype, device, range, determinism; severity order below (MONOTONE, whose completeness
# test asks where a new one belongs)


@pytest.mark.parametrize("name", REGISTRY)
def test_shape_dtype_range(images, name):
    _skip_frost(name)
    x8 = images[:6]
    xf = x8.to(torch.float32) / 255
    for severity in range(1, 6):
        y8 = corrupt(x8, name, severity)
        assert y8.dtype == torch.uint8 and y8.shape == x8.shape and y8.device == x8.device
        assert y8.is_contiguous()
        yf = corrupt(xf, name, severity)
        assert yf.dtype == torch.float32 and yf.shape == xf.shape
        assert float(yf.min()) >= 0.0 and float(yf.max()) <= 1.0 and not torch.isnan(yf).any()
        # the same seed on the same pixels: uint8 and float agree up to 8-bit rounding
        assert (yf * 255 - y8.float()).abs().max() <= 1.0 + 1e-3
    y64 = corrupt(x8.to(torch.float64) / 255, name, 3)
    assert y64.dtype == torch.float64


@pytest.mark.parametrize("name", REGISTRY)
def test_deterministic(images, name):
    _skip_frost(name)
    a = corrupt(images, name, 3, seed=7)
    assert torch.equal(a, corrupt(images, name, 3, seed=7))
    b = corrupt(images, name, 3, seed=8)
    if name in RANDOM:
        assert not torch.equal(a, b), f"{name} is listed in RANDOM but the seed does not change it"
    else:  # no randomness: the seed must not matter
        assert torch.equal(a, b), f"the seed changes {name}: add it to RANDOM if it is meant to be random"


def test_random_list_names_registered_corruptions():
    assert RANDOM <= set(REGISTRY)


def test_empty_batch():
    x = torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
    assert corrupt(x, "gaussian_noise", 1).shape == (0, 3, 32, 32)


# ------------------------------------------------------------------------------------------------
# Closed forms, exactly


@pytest.mark.parametrize("severity", range(1, 6))
def test_jpeg_is_pil_jpeg(images, severity):
    quality = (80, 65, 58, 50, 40)[severity - 1]
    out = corrupt(images, "jpeg_compression", severity)
    for img, got in zip(images, out):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("severity", range(1, 6))
def test_pixelate_is_pil_box_down_then_up(images, severity):
    small = int(32 * (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1])
    out = corrupt(images, "pixelate", severity)
    outf = corrupt(images.double() / 255, "pixelate", severity)
    for img, got, gotf in zip(images, out, outf):
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        expected = np.asarray(pil.resize((small, small), Image.BOX).resize((32, 32), Image.BOX))
        assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)
        for c in range(3):  # float images: PIL's float ("F") mode, same weights without 8-bit rounding
            ch = Image.fromarray(img[c].numpy().astype(np.float32) / 255, mode="F")
            ref = np.asarray(ch.resize((small, small), Image.BOX).resize((32, 32), Image.BOX))
            assert np.abs(gotf[c].numpy() - ref).max() < 1e-6


def _hsv_reference(x: np.ndarray, edit) -> np.ndarray:
    """x: (N, 3, H, W) float in [0, 1]; edit(h, s, v) -> (h, s, v), pixel by pixel with colorsys."""
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j])
                out[n, :, i, j] = colorsys.hsv_to_rgb(*edit(h, s, v))
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("severity", range(1, 6))
def test_brightness_and_saturate_formulas(severity):
    x8 = cifar_like(3, seed=severity)
    x8[0, :, :4, :4] = 0  # black pixels (V = 0) and grey pixels (S = 0) are the corner cases
    x8[1, :, :4, :4] = 128
    x = x8.double().numpy() / 255
    shift = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    a, b = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    cases = {
        "brightness": lambda h, s, v: (h, s, min(max(v + shift, 0.0), 1.0)),
        "saturate": lambda h, s, v: (h, min(max(s * a + b, 0.0), 1.0), v),
    }
    for name, edit in cases.items():
        expected = _hsv_reference(x, edit)
        got = corrupt(torch.from_numpy(x), name, severity).numpy()
        assert np.abs(got - expected).max() < 1e-12
        got8 = corrupt(x8, name, severity).numpy()
        assert np.array_equal(got8, np.floor(expected * 255 + 1e-3).astype(np.uint8))  # the module's floor


@pytest.mark.parametrize("severity", range(1, 6))
def test_contrast_formula(images, severity):
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = images.double().numpy() / 255
    means = x.mean(axis=(2, 3), keepdims=True)  # per image and channel
    expected = np.clip((x - means) * factor + means, 0, 1)
    assert np.abs(corrupt(torch.from_numpy(x), "contrast", severity).numpy() - expected).max() < 1e-12
    assert np.array_equal(corrupt(images, "contrast", severity).numpy(), np.floor(expected * 255 + 1e-3))


@pytest.mark.parametrize("severity", range(1, 6))
def test_gaussian_blur_is_scipy_gaussian(images, severity):
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    x = images.double().numpy() / 255
    expected = ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    assert np.abs(corrupt(torch.from_numpy(x), "gaussian_blur", severity).numpy() - expected).max() < 1e-5


@pytest.mark.parametrize("severity", range(1, 6))
def test_defocus_is_blurred_disk(images, severity):
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    t = np.arange(-2, 3)
    disk = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(float)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias**2))
    g /= g.sum()
    kernel = ndimage.convolve(np.pad(disk, 1), np.outer(g, g), mode="constant")
    x = images.double().numpy() / 255
    expected = ndimage.correlate(x, kernel[None, None], mode="mirror")  # OpenCV's default border
    assert np.abs(corrupt(torch.from_numpy(x), "defocus_blur", severity).numpy() - expected).max() < 1e-5


def _clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    """The definition, on (C, H, W): centre crop ceil(H / z), linear zoom by z, centre trim to H."""
    h = img.shape[1]
    crop = int(np.ceil(h / z))
    top = (h - crop) // 2
    zoomed = ndimage.zoom(img[:, top : top + crop, top : top + crop], (1, z, z), order=1)
    trim = (zoomed.shape[1] - h) // 2
    return zoomed[:, trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_zoom_blur_is_mean_of_zooms(images, severity):
    stop = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    x = images[:3].double().numpy() / 255
    got = corrupt(torch.from_numpy(x), "zoom_blur", severity).numpy()
    for img, out in zip(x, got):
        zooms = np.arange(1, stop, 0.01)
        expected = (img + sum(_clipped_zoom(img, z) for z in zooms)) / (len(zooms) + 1)
        assert np.abs(out - expected).max() < 1e-5


@pytest.mark.parametrize("angle, axis", [(0.0, "cols"), (90.0, "rows"), (180.0, "cols_back")])
def test_motion_blur_kernel_by_hand(angle, axis):
    radius, sigma = 6, 2.0
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = corruptions._motion_blur_batch(x, radius, sigma, torch.full((2,), angle, dtype=torch.float64))
    width = 2 * math.ceil(radius) + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    xn = x.numpy()
    expected = np.zeros_like(xn)
    for i in range(width):  # one-sided: tap i looks i pixels along the angle, edges repeated
        if axis == "cols":
            idx = np.minimum(np.arange(32) + i, 31)
            expected += k[i] * xn[..., :, idx]
        elif axis == "rows":
            idx = np.minimum(np.arange(32) + i, 31)
            expected += k[i] * xn[..., idx, :]
        else:
            idx = np.maximum(np.arange(32) - i, 0)
            expected += k[i] * xn[..., :, idx]
    assert np.abs(got.numpy() - expected).max() < 1e-5


def test_motion_blur_severities_3_and_4_coincide(images):
    # Published parameters (6, 2) and (8, 2): same sigma, longer kernel whose extra taps weigh < 1e-9.
    a = corrupt(images.double() / 255, "motion_blur", 3)
    b = corrupt(images.double() / 255, "motion_blur", 4)
    assert (a - b).abs().max() < 1e-6


def test_glass_blur_copies_from_up_left_neighbours(images):
    # Severity 1 blurs with sigma 0.05 (an identity at truncate 4), so only the copying is left: every
    # visited pixel (rows and columns 2..31) takes the pixel itself, its left, upper or upper-left neighbour.
    x = images.numpy().astype(int)
    out = corrupt(images, "glass_blur", 1).numpy().astype(int)
    assert np.array_equal(out[:, :, :2, :], x[:, :, :2, :]) and np.array_equal(
        out[:, :, :, :2], x[:, :, :, :2]
    )
    inner = out[:, :, 2:, 2:]
    options = [x[:, :, 2 + dy : 32 + dy, 2 + dx : 32 + dx] for dy in (0, -1) for dx in (0, -1)]
    matches = np.stack([(inner == o).all(axis=1) for o in options])  # whole RGB vectors move together
    assert matches.any(axis=0).all()
    assert not np.array_equal(out, x)


# ------------------------------------------------------------------------------------------------
# Random corruptions: spread and structure


def _grey(n: int = 16) -> torch.Tensor:
    return torch.full((n, 3, 32, 32), 0.5, dtype=torch.float64)


@pytest.mark.parametrize("severity", range(1, 6))
def test_noise_spread_on_mid_grey(severity):
    x = _grey()
    std = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    d = (corrupt(x, "gaussian_noise", severity) - x).flatten()
    assert abs(float(d.mean())) < 0.02 * std * 10 and abs(float(d.std()) / std - 1) < 0.03
    photons = (500, 250, 100, 75, 50)[severity - 1]
    y = corrupt(x, "shot_noise", severity).flatten()
    assert abs(float((y - 0.5).std()) / math.sqrt(0.5 / photons) - 1) < 0.03  # Poisson: var = mean
    assert torch.allclose(y * photons, torch.round(y * photons), atol=1e-9)  # whole photon counts
    std = (0.06, 0.10, 0.12, 0.16, 0.20)[severity - 1]
    d = (corrupt(x, "speckle_noise", severity) - x).flatten()
    assert abs(float(d.std()) / (0.5 * std) - 1) < 0.03  # multiplicative: std x * c
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    y = corrupt(x, "impulse_noise", severity).flatten()
    changed = y != 0.5
    assert set(torch.unique(y[changed]).tolist()) <= {0.0, 1.0}
    frac, n = float(changed.double().mean()), changed.numel()
    assert abs(frac - amount) < 5 * math.sqrt(amount * (1 - amount) / n)
    salt = float((y[changed] == 1).double().mean())
    assert abs(salt - 0.5) < 5 * math.sqrt(0.25 / int(changed.sum()))


@pytest.mark.parametrize(
    "name", ["motion_blur", "elastic_transform", "zoom_blur", "defocus_blur", "gaussian_blur"]
)
def test_resampling_stays_in_input_range(images, name):
    # convex combinations of input pixels: never outside each image's per-channel range
    x = images.double() / 255
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    for severity in range(1, 6):
        y = corrupt(x, name, severity)
        assert bool((y >= lo - 1e-6).all()) and bool((y <= hi + 1e-6).all())


def test_snow_only_brightens(images):
    for severity in range(1, 6):
        assert bool((corrupt(images, "snow", severity) >= images).all())


def test_fog_adds_a_full_range_plasma(images):
    x = images.double() / 255
    strength = 0.2
    y = corrupt(x, "fog", 1)  # y = (x + s * p) * m / (m + s), never clipped at severity 1
    m = x.amax(dim=(1, 2, 3), keepdim=True)
    plasma = (y * (m + strength) / m - x) / strength
    assert torch.allclose(plasma[:, 0], plasma[:, 1], atol=1e-9)  # one map for all channels
    flat = plasma[:, 0].reshape(len(x), -1)
    assert flat.min(dim=1).values.abs().max() < 1e-9  # the 32x32 map is min-max scaled to [0, 1]
    assert (flat.max(dim=1).values - 1).abs().max() < 1e-9


def test_spatter_colours(images):
    x = images.double() / 255
    water = torch.tensor([175.0, 238.0, 238.0], dtype=torch.float64).view(1, 3, 1, 1) / 255
    mud = torch.tensor([63.0, 42.0, 20.0], dtype=torch.float64).view(1, 3, 1, 1) / 255
    for severity in (1, 2, 3):  # water: x + m * pale turquoise, one m >= 0 for all channels of a pixel
        y = corrupt(x, "spatter", severity)
        m = ((y - x) / water).permute(0, 2, 3, 1)[(y < 1).all(dim=1)]  # unclipped pixels, (P, 3)
        assert torch.allclose(m, m[:, :1].expand_as(m), atol=1e-9) and bool((m >= -1e-12).all())
        assert bool((m > 0).any())
    for severity in (4, 5):  # mud: x * (1 - m) + m * brown, 0 <= m <= 1
        y = corrupt(x, "spatter", severity)
        m = (y - x) / (mud - x)
        mm = m.permute(0, 2, 3, 1)[((mud - x).abs() > 1e-3).all(dim=1)]
        assert torch.allclose(mm, mm[:, :1].expand_as(mm), atol=1e-6)
        assert bool((mm >= -1e-9).all()) and bool((mm <= 1 + 1e-9).all()) and bool((mm > 0).any())


def test_frost_adds_a_crop_of_a_real_texture(images):
    _skip_frost("frost")
    folder = corruptions.frost_dir()
    textures = []
    for name in corruptions.FROST_FILES[:5]:  # the CIFAR script draws randint(5)
        arr = np.asarray(Image.open(folder / name).convert("RGB")).astype(np.float64)
        textures.append(arr[2::5, 2::5])  # cv2.resize by 0.2 = every 5th pixel from offset 2
    x = images[:4].double() / 255
    y = corrupt(x, "frost", 1)  # 1 * x + 0.2 * frost
    for xi, yi in zip(x.numpy(), y.numpy()):
        frost = (yi - xi) / 0.2 * 255  # (3, 32, 32) in grey levels where not clipped at 1
        unclipped = (yi < 1).all(axis=0)
        assert unclipped.mean() > 0.3
        assert np.abs(frost[:, unclipped] - np.round(frost[:, unclipped])).max() < 1e-6
        assert _find_crop(frost, unclipped, textures)


def _find_crop(frost: np.ndarray, mask: np.ndarray, textures: list[np.ndarray]) -> bool:
    """Is ``frost`` (3, 32, 32), where ``mask``, equal to a 32x32 window of one of the textures?"""
    r, c = np.argwhere(mask)[0]
    for tex in textures:
        th, tw = tex.shape[:2]
        for p, q in np.argwhere((np.abs(tex - frost[:, r, c]) < 1e-6).all(axis=-1)):
            a, b = p - r, q - c
            if 0 <= a <= th - 32 and 0 <= b <= tw - 32:
                window = tex[a : a + 32, b : b + 32].transpose(2, 0, 1)
                if np.abs(window[:, mask] - frost[:, mask]).max() < 1e-6:
                    return True
    return False


# Severity monotonicity: mean |corrupted - clean| grows with severity for these. Not for the others,
# because of the published CIFAR parameters themselves:
# - glass_blur: (sigma, sweeps) = (0.05, 1), (0.25, 1), (0.4, 1), (0.25, 2), (0.4, 2): not ordered;
# - motion_blur: severities 3 and 4 coincide (see test above);
# - frost: the image weight falls (1 ... 0.75) as the frost weight rises, which offsets it at 4-5;
# - spatter: severities 1-3 are water, 4-5 mud, different effects;
# - elastic_transform: the random affine jitter shrinks with severity (2.56 ... 0.96 px) and dominates
#   the tiny smooth displacement, so the change *decreases*;
# - saturate: severities 1-2 desaturate (x0.3, x0.1), 3-5 oversaturate (x1.5 ...).
# Measured on real CIFAR-10 test images the same way (see the module docstring of corruptions).
MONOTONE = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "zoom_blur",
    "gaussian_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
]


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_increases_distortion(images, name):
    dist = [float((corrupt(images, name, s).float() - images.float()).abs().mean()) for s in range(1, 6)]
    assert all(b > a for a, b in zip(dist, dist[1:])), dist


def test_monotone_list_is_complete():
    # every registered corruption is either tested for monotonicity or a documented exception
    exceptions = {"glass_blur", "motion_blur", "frost", "spatter", "elastic_transform", "saturate"}
    assert set(MONOTONE) | exceptions == set(REGISTRY) and not set(MONOTONE) & exceptions


# ------------------------------------------------------------------------------------------------
# Frost textures: where they are looked for


def test_frost_missing_textures_error(monkeypatch, tmp_path, images):
    data, cache = tmp_path / "data", tmp_path / "cache"
    monkeypatch.setenv("PUSHPULL_DATA", str(data))
    monkeypatch.setenv("PUSHPULL_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(corruptions, "_download_frost", lambda target: calls.append(target) or _no_network())
    with pytest.raises(FileNotFoundError) as err:
        corrupt(images, "frost", 1)
    msg = str(err.value)
    assert str(data / "frost") in msg and str(cache / "frost") in msg and "PUSHPULL_DATA" in msg
    assert "no network in tests" in msg and calls == [cache / "frost"]
    monkeypatch.setenv("PUSHPULL_OFFLINE", "1")  # offline: no download attempt at all
    calls.clear()
    with pytest.raises(FileNotFoundError, match="PUSHPULL_OFFLINE"):
        corrupt(images, "frost", 1)
    assert calls == []


def test_frost_downloaded_into_cache(monkeypatch, tmp_path, images):
    monkeypatch.setenv("PUSHPULL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)

    def fake_download(target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for name in corruptions.FROST_FILES:
            Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(target / name)

    monkeypatch.setattr(corruptions, "_download_frost", fake_download)
    y = corrupt(images, "frost", 2)
    assert y.shape == images.shape
    assert corruptions.frost_dir() == tmp_path / "cache" / "frost"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_frost_pins_are_the_hashes_of_the_six_textures():
    assert set(corruptions.FROST_SHA256) == set(corruptions.FROST_FILES)
    shared = SHARED_DATA / "frost"
    if all((shared / f).is_file() for f in corruptions.FROST_FILES):
        assert {f: _sha256(shared / f) for f in corruptions.FROST_FILES} == corruptions.FROST_SHA256


def test_frost_download_is_hash_checked_and_never_leaves_a_bad_file(monkeypatch, tmp_path):
    """Served from a file:// URL: the real download code, no network."""
    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(1)
    for name in corruptions.FROST_FILES:
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(served / name)
        monkeypatch.setitem(corruptions.FROST_SHA256, name, _sha256(served / name))
    monkeypatch.setattr(corruptions, "FROST_URL", served.as_uri() + "/")
    monkeypatch.setattr(corruptions, "_download_frost", _REAL_DOWNLOAD_FROST)
    target = tmp_path / "cache" / "frost"
    good3 = (served / "frost3.png").read_bytes()
    (served / "frost3.png").write_bytes(good3[: len(good3) // 2])  # a short download
    with pytest.raises(ValueError, match=r"frost3.png does not have the pinned sha256"):
        corruptions._download_frost(target)
    assert sorted(p.name for p in target.iterdir()) == ["frost1.png", "frost2.png"]  # checked, kept
    (served / "frost3.png").write_bytes(good3)
    corruptions._download_frost(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(corruptions.FROST_FILES)
    assert all((target / f).read_bytes() == (served / f).read_bytes() for f in corruptions.FROST_FILES)
    # a corrupt texture already in the cache is named and downloaded again
    (target / "frost5.jpg").write_bytes(b"junk")
    with pytest.warns(UserWarning, match=r"frost5.jpg has sha256 .* downloading it again"):
        corruptions._download_frost(target)
    assert (target / "frost5.jpg").read_bytes() == (served / "frost5.jpg").read_bytes()


# ------------------------------------------------------------------------------------------------
# pushpull_lite.cifar10c


@pytest.fixture
def empty_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("PUSHPULL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_cifar10c_reads_npy_files(empty_dirs):
    from pushpull_lite.data import stratified_indices

    folder = empty_dirs / "data" / "CIFAR-10-C"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5 * 40, 32, 32, 3), dtype=np.uint8)  # 5 severities x 40 test images
    labels = np.tile(np.arange(40) % 10, 5).astype(np.uint8)
    np.save(folder / "snow.npy", arr)
    np.save(folder / "labels.npy", labels)
    images, lab, source = cifar10c.load_cifar10c("snow", 3)
    assert source.startswith("CIFAR-10-C .npy files")
    assert images.dtype == torch.uint8 and images.shape == (40, 3, 32, 32) and lab.dtype == torch.int64
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), arr[80:120])
    assert np.array_equal(lab.numpy(), labels[80:120])
    sub, sub_lab, _ = cifar10c.load_cifar10c("snow", 3, limit=10)
    idx = stratified_indices(torch.from_numpy(labels[80:120].astype(np.int64)), 10)
    assert torch.equal(sub, images[idx]) and torch.equal(sub_lab, lab[idx])
    assert sorted(sub_lab.tolist()) == list(range(10))


def test_cifar10c_generates_when_no_npy(empty_dirs, monkeypatch):
    from pushpull_lite import data

    clean = cifar_like(10, seed=3)
    labels = torch.arange(10, dtype=torch.int64)
    seen = {}

    def fake_load(split, limit=None, root=None):
        seen.update(split=split, limit=limit)
        return clean, labels

    monkeypatch.setattr(data, "load_cifar10", fake_load)
    monkeypatch.setattr(data, "cifar10_source", lambda root=None: "a test stand-in")
    images, lab, source = cifar10c.load_cifar10c("contrast", 2, limit=10)
    assert seen == {"split": "test", "limit": 10}
    assert source == "generated by pushpull_lite.corruptions from a test stand-in"
    assert torch.equal(images, corrupt(clean, "contrast", 2, seed=2)) and torch.equal(lab, labels)
    monkeypatch.setattr(cifar10c, "download_cifar10c", _no_network)
    with pytest.warns(UserWarning, match="download failed"):
        _, _, source = cifar10c.load_cifar10c("snow", 1, download=True)
    assert source.startswith("generated")


def test_cifar10c_bad_arguments(empty_dirs):
    with pytest.raises(ValueError, match="unknown corruption"):
        cifar10c.load_cifar10c("fogg", 1)
    with pytest.raises(ValueError, match="severity"):
        cifar10c.load_cifar10c("fog", 0)
    with pytest.raises(ValueError, match="limit"):
        cifar10c.load_cifar10c("fog", 1, limit=0)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.tile(np.arange(10.0), 5), "float64 .* expected integer class indices"),
        (np.tile(np.arange(10) + 1, 5), "labels from 1 to 10, expected CIFAR-10 classes 0..9"),
        (np.tile(np.arange(10) - 1, 5), "labels from -1 to 8"),
        (np.ones((50, 1), dtype=np.int64), r"\(50, 1\), expected integer class indices of shape \(N,\)"),
    ],
)
def test_cifar10c_labels_must_be_class_indices(empty_dirs, labels, message):
    folder = empty_dirs / "data" / "CIFAR-10-C"
    folder.mkdir(parents=True)
    np.save(folder / "fog.npy", np.zeros((50, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "labels.npy", labels)
    with pytest.raises(ValueError, match=message) as err:
        cifar10c.load_cifar10c("fog", 1)
    assert str(folder / "labels.npy") in str(err.value)


def _cifar10c_tar(path: Path) -> Path:
    """A miniature CIFAR-10-C.tar: 5 severities x 10 images per corruption, and labels.npy."""
    src = path.parent.parent / "tar-src" / "CIFAR-10-C"
    src.mkdir(parents=True)
    for name in CORRUPTIONS:
        np.save(src / f"{name}.npy", np.full((50, 32, 32, 3), len(name), dtype=np.uint8))
    np.save(src / "labels.npy", np.tile(np.arange(10, dtype=np.uint8), 5))
    with tarfile.open(path, "w") as tar:
        tar.add(src, arcname="CIFAR-10-C")
    return path


@pytest.fixture
def local_http(tmp_path, monkeypatch) -> Iterator[tuple[Path, str]]:
    """(folder, its http:// URL) served from 127.0.0.1 (torchvision's downloader cannot read file:// URLs)."""
    folder = tmp_path / "served"
    folder.mkdir()
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def test_cifar10c_download_is_md5_checked_before_it_gets_its_name(empty_dirs, local_http, monkeypatch):
    monkeypatch.delenv("PUSHPULL_OFFLINE", raising=False)
    folder, url = local_http
    served = _cifar10c_tar(folder / "CIFAR-10-C.tar")
    monkeypatch.setattr(cifar10c, "CIFAR10C_URL", url + "CIFAR-10-C.tar")
    cache = empty_dirs / "cache"
    monkeypatch.setattr(cifar10c, "CIFAR10C_MD5", "0" * 32)  # what a corrupt download looks like
    with pytest.raises(RuntimeError, match=r"truncated or corrupt: its md5 is not 0{32}"):
        cifar10c.download_cifar10c()
    assert not list(cache.iterdir())  # no tarball, no temporary folder
    monkeypatch.setattr(cifar10c, "CIFAR10C_MD5", hashlib.md5(served.read_bytes()).hexdigest())
    folder = cifar10c.download_cifar10c()
    assert folder == cache / "CIFAR-10-C" and (cache / "CIFAR-10-C.tar").read_bytes() == served.read_bytes()
    images, labels, source = cifar10c.load_cifar10c("fog", 2)
    assert images.shape == (10, 3, 32, 32) and source.startswith(cifar10c.NPY_SOURCE)
    # a cached tarball is checked again before use: a truncated one is named and replaced
    (cache / "CIFAR-10-C.tar").write_bytes(served.read_bytes()[:5000])
    with pytest.warns(UserWarning, match=f"{cache / 'CIFAR-10-C.tar'} fails its md5 check"):
        cifar10c.download_cifar10c()
    assert (cache / "CIFAR-10-C.tar").read_bytes() == served.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["CIFAR-10-C", "CIFAR-10-C.tar"]


def test_cifar10c_download_needs_tarfile_extraction_filters(empty_dirs, monkeypatch):
    monkeypatch.delenv("PUSHPULL_OFFLINE", raising=False)
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.setattr(cifar10c, "_fetch_tarball", lambda *a: pytest.fail("must not download"))
    with pytest.raises(RuntimeError, match=r"lacks tarfile's extraction filters.*Python >= 3.10.12"):
        cifar10c.download_cifar10c()
