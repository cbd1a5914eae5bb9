"""Tests for pushpull_lite.filters: Gabor fields, the push-pull simple cell, stimuli and measurements.

Expected values are hand-computed from the Gabor formula or follow from symmetry and homogeneity
(``ReLU(c x) = c ReLU(x)`` for c > 0); the noise test measures a property on seeded images.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pushpull_lite import filters as f

LAM = 4.0
SIGMA = 0.56 * LAM
SIZE = 23


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: a second intra-op thread only adds start-up and sync cost (several times
    slower on a busy 2-core machine). Restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def centre(n: int) -> int:
    return n // 2


# ------------------------------------------------------------------------------------------ Gabor


@pytest.mark.parametrize("psi", [0.0, 0.3, math.pi / 2, math.pi])
def test_centre_value_is_cos_psi_without_zero_mean(psi):
    k = f.gabor_kernel(9, 2.0, 0.7, 6.0, 0.5, psi, zero_mean=False, dtype=torch.float64)
    assert k[4, 4].item() == pytest.approx(math.cos(psi), abs=1e-12)


def test_hand_computed_values_and_axis_convention():
    c = 4
    # theta = 0: stripes horizontal, carrier along y (up). Pixel one row up, two columns right: x=2, y=1.
    k = f.gabor_kernel(9, 2.0, 0.0, 8.0, 0.5, 0.0, zero_mean=False, dtype=torch.float64)
    expected = math.exp(-(1 + 0.25 * 4) / 8) * math.cos(2 * math.pi / 8)  # 0.5507
    assert k[c - 1, c + 2].item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.55070, abs=1e-5)
    # theta = pi/2, odd phase: across-coordinate u = -x, so the positive lobe lies left of centre
    k = f.gabor_kernel(9, 2.0, math.pi / 2, 8.0, 0.5, math.pi / 2, zero_mean=False, dtype=torch.float64)
    value = math.exp(-1 / 8) * math.cos(-2 * math.pi / 8 + math.pi / 2)  # u = -1 at x = +1
    assert k[c, c + 1].item() == pytest.approx(value, abs=1e-12)
    assert k[c, c - 1].item() == pytest.approx(-value, abs=1e-12)
    # theta = 0 prefers horizontal stripes: the whole centre row lies on the ON stripe
    k0 = f.gabor_kernel(9, 2.0, 0.0, 8.0, 1.0, 0.0, zero_mean=False, dtype=torch.float64)
    assert k0[c, :].min() > 0


def test_even_kernel_symmetric_and_odd_antisymmetric_under_180_rotation():
    for theta in (0.0, 0.4, 1.9):
        even = f.gabor_kernel(SIZE, SIGMA, theta, LAM, 0.5, 0.0, dtype=torch.float64)
        odd = f.gabor_kernel(SIZE, SIGMA, theta, LAM, 0.5, math.pi / 2, dtype=torch.float64)
        torch.testing.assert_close(even, torch.rot90(even, 2), atol=1e-12, rtol=0)
        torch.testing.assert_close(odd, -torch.rot90(odd, 2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("psi", [0.0, 1.0, math.pi / 2])
def test_theta_plus_90_degrees_is_transpose_at_zero_and_rot90_in_general(psi):
    g0 = f.gabor_kernel(15, 3.0, 0.0, 6.0, 1.0, psi, dtype=torch.float64)
    g90 = f.gabor_kernel(15, 3.0, math.pi / 2, 6.0, 1.0, psi, dtype=torch.float64)
    torch.testing.assert_close(g90, g0.T, atol=1e-12, rtol=0)
    # y points up, so a counterclockwise turn of theta turns the array counterclockwise too (any gamma)
    for theta in (0.3, 1.2):
        a = f.gabor_kernel(15, 3.0, theta, 6.0, 0.5, psi, dtype=torch.float64)
        b = f.gabor_kernel(15, 3.0, theta + math.pi / 2, 6.0, 0.5, psi, dtype=torch.float64)
        torch.testing.assert_close(b, torch.rot90(a, 1), atol=1e-12, rtol=0)


def test_zero_mean_option_hand_computed():
    size, sigma, lam, gamma = 11, 2.5, 6.0, 0.5
    k = f.gabor_kernel(size, sigma, 0.0, lam, gamma, 0.0, zero_mean=True, dtype=torch.float64)
    # independent loop: kappa = sum(env * cos) / sum(env); centre value = 1 - kappa
    num = den = 0.0
    for r in range(size):
        for c in range(size):
            x, y = c - 5, 5 - r
            env = math.exp(-(y**2 + gamma**2 * x**2) / (2 * sigma**2))
            num += env * math.cos(2 * math.pi * y / lam)
            den += env
    assert k[5, 5].item() == pytest.approx(1 - num / den, abs=1e-12)
    assert abs(k.sum().item()) < 1e-12
    uniform = torch.full((31, 31), 0.5, dtype=torch.float64)
    assert f.correlate(uniform, k).abs().max().item() < 1e-12
    raw = f.gabor_kernel(size, sigma, 0.0, lam, gamma, 0.0, zero_mean=False, dtype=torch.float64)
    assert raw.sum().item() > 0.1  # the plain even Gabor does respond to a uniform field
    odd = f.gabor_kernel(size, sigma, 0.3, lam, gamma, math.pi / 2, zero_mean=False, dtype=torch.float64)
    assert abs(odd.sum().item()) < 1e-12  # odd fields are zero-mean already


def test_default_wavelength_and_dtype_device():
    k = f.gabor_kernel(9, 2.8)
    assert k.dtype == torch.float32 and k.shape == (9, 9)
    torch.testing.assert_close(k, f.gabor_kernel(9, 2.8, 0.0, 2.8 / 0.56))


def test_gabor_size():
    assert f.gabor_size(2.24, 0.5) == 25  # 2 * ceil(2.5 * 4.48) + 1
    assert f.gabor_size(2.0, 1.0, extent=3.0) == 13
    assert f.gabor_size(2.0, 2.0) == 11  # gamma > 1 shortens the field along the stripes: sigma rules
    with pytest.raises(ValueError, match="gamma"):
        f.gabor_size(2.0, 0.0)


def test_gabor_bank_order_and_values():
    bank, params = f.gabor_bank(11, 2.0, 5.0, n_orientations=4, psis=(0.0, math.pi / 2))
    assert bank.shape == (8, 11, 11)
    assert params[:3] == [(0.0, 0.0), (0.0, math.pi / 2), (math.pi / 4, 0.0)]
    for kernel, (theta, psi) in zip(bank, params):
        torch.testing.assert_close(kernel, f.gabor_kernel(11, 2.0, theta, 5.0, 0.5, psi))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"size": 8}, ValueError),
        ({"size": 0}, ValueError),
        ({"size": -3}, ValueError),
        ({"size": 9.0}, TypeError),
        ({"size": True}, TypeError),
        ({"sigma": 0.0}, ValueError),
        ({"sigma": -1.0}, ValueError),
        ({"wavelength": 0.0}, ValueError),
        ({"gamma": 0.0}, ValueError),
        ({"theta": float("nan")}, ValueError),
        ({"psi": "0"}, TypeError),
    ],
)
def test_gabor_argument_errors(kwargs, error):
    args = {"size": 9, "sigma": 2.0, "theta": 0.0, "wavelength": 6.0, "gamma": 0.5, "psi": 0.0} | kwargs
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        f.gabor_kernel(**args)


# ------------------------------------------------------------------------------------------- pull


@pytest.mark.parametrize(
    "k, h, n",
    [(3, 2.0, 7), (5, 2.0, 11), (3, 1.0, 3), (5, 1.5, 7), (7, 1.3, 9), (11, 2.0, 23), (23, 2.0, 47)],
)
def test_pull_size_rule(k, h, n):
    assert f.pull_size(k, h) == n
    assert f.pull_kernel(torch.zeros(k, k), h).shape == (n, n)


def test_pull_kernel_is_negated_bilinear_upsampling_hand_computed():
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1.0
    pull = f.pull_kernel(delta, 2.0)  # 7x7; output index i samples the input at i * 2/6
    assert pull.shape == (7, 7)
    assert pull[3, 3].item() == pytest.approx(-1.0)
    assert pull[3, 2].item() == pytest.approx(-2 / 3)
    assert pull[2, 2].item() == pytest.approx(-4 / 9)
    assert pull[0, :].abs().max().item() == 0.0
    push = f.gabor_kernel(SIZE, SIGMA, 0.5, LAM, 0.5, 0.0)
    torch.testing.assert_close(f.pull_kernel(push, 1.0), -push)
    pull = f.pull_kernel(push, 2.0)
    c = centre(pull.shape[-1])
    assert pull[c, c].item() == pytest.approx(-push[centre(SIZE), centre(SIZE)].item(), abs=1e-6)
    assert pull[0, 0].item() == pytest.approx(-push[0, 0].item(), abs=1e-7)
    assert pull.abs().max().item() == pytest.approx(push.abs().max().item(), rel=1e-5)  # not renormalised


def test_pull_kernel_zero_mean_and_stacks():
    push = f.gabor_kernel(SIZE, SIGMA, 0.0, LAM, 0.5, 0.0, dtype=torch.float64)
    raw = f.pull_kernel(push, 2.0)
    fixed = f.pull_kernel(push, 2.0, zero_mean=True)
    assert abs(raw.sum().item()) > 1e-3  # interpolation leaks a DC part
    assert abs(fixed.sum().item()) < 1e-9
    assert (fixed - raw).abs().max().item() < 0.01 * raw.abs().max().item()
    bank, _ = f.gabor_bank(9, 2.0, 5.0, n_orientations=3)
    pulls = f.pull_kernel(bank, 2.0)
    assert pulls.shape == (6, 19, 19)
    torch.testing.assert_close(pulls[4], f.pull_kernel(bank[4], 2.0))


def test_pull_errors():
    with pytest.raises(ValueError, match="pull_scale"):
        f.pull_kernel(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="kernel"):
        f.pull_kernel(torch.zeros(4, 4), 2.0)
    with pytest.raises(ValueError, match="push_size"):
        f.pull_size(4, 2.0)


# -------------------------------------------------------------------------------------- responses


def test_correlate_is_cross_correlation_and_shapes():
    odd = f.gabor_kernel(9, 2.0, 0.6, 6.0, 0.5, math.pi / 2, dtype=torch.float64)
    delta = torch.zeros(31, 31, dtype=torch.float64)
    delta[15, 15] = 1.0
    out = f.correlate(delta, odd, padding_mode="zeros")
    torch.testing.assert_close(out[11:20, 11:20], torch.rot90(odd, 2))  # a point gives the flipped field
    # a kernel is its own preferred stimulus: response at the centre = 0.1 * sum(k**2)
    img = torch.full((31, 31), 0.5, dtype=torch.float64)
    img[11:20, 11:20] += 0.1 * odd
    assert f.correlate(img, odd)[15, 15].item() == pytest.approx(0.1 * (odd**2).sum().item())
    bank = torch.stack([odd, -odd, odd.T])
    assert f.correlate(torch.rand(31, 33), odd).shape == (31, 33)
    assert f.correlate(torch.rand(3, 31, 33), odd).shape == (3, 31, 33)
    assert f.correlate(torch.rand(31, 33), bank).shape == (3, 31, 33)
    assert f.correlate(torch.rand(2, 31, 33), bank.float()).shape == (2, 3, 31, 33)


def test_simple_cell_is_rectified_and_thresholded():
    torch.manual_seed(0)
    img = torch.rand(40, 40, dtype=torch.float64)
    k = f.gabor_kernel(9, 2.0, 0.0, 6.0, dtype=torch.float64)
    lin = f.correlate(img, k)
    torch.testing.assert_close(f.simple_cell_response(img, k), lin.clamp_min(0))
    torch.testing.assert_close(f.simple_cell_response(img, k, threshold=0.3), (lin - 0.3).clamp_min(0))


def test_pushpull_special_cases():
    torch.manual_seed(1)
    img = 0.5 + 0.2 * torch.randn(64, 64, dtype=torch.float64)
    k = f.gabor_kernel(SIZE, SIGMA, 0.3, LAM, 0.5, 0.0, dtype=torch.float64)
    plain = f.simple_cell_response(img, k)
    torch.testing.assert_close(f.pushpull_response(img, k, alpha=0.0), plain)
    # h = 1: the pull is -push, which is silent wherever push > 0, so the rectified cell is the plain one
    torch.testing.assert_close(f.pushpull_response(img, k, alpha=3.0, pull_scale=1.0), plain)
    assert (f.pushpull_response(img, k) <= plain + 1e-12).all()


@pytest.mark.parametrize("k, n", [(5, 11), (9, 19)])  # the pull of the second goes through the FFT
def test_pushpull_matches_the_cnn_layer_formula(k, n):
    """rectify=False, no DC fix, zero padding: ReLU(conv(x, w)) - alpha ReLU(conv(x, -U_h(w))), with the
    layer's pull padding pull_size//2 - k//2 + padding written out independently."""
    torch.manual_seed(2)
    img = torch.rand(30, 30, dtype=torch.float64)
    w = torch.randn(k, k, dtype=torch.float64)
    alpha, h, pad = 0.7, 2.0, k // 2
    up = F.interpolate(w[None, None], size=(n, n), mode="bilinear", align_corners=True)
    push = F.conv2d(img[None, None], w[None, None], padding=pad)
    pull = F.conv2d(img[None, None], -up, padding=n // 2 - k // 2 + pad)
    layer = (torch.relu(push) - alpha * torch.relu(pull))[0, 0]
    ours = f.pushpull_response(img, w, alpha, h, rectify=False, pull_zero_mean=False, padding_mode="zeros")
    torch.testing.assert_close(ours, layer)


def test_pushpull_agrees_with_the_cnn_layer_module():
    """The biological model and pushpull_lite.layers.PushPull2d compute the same thing when set up alike."""
    layers = pytest.importorskip("pushpull_lite.layers")
    torch.manual_seed(5)
    img = torch.rand(40, 40, dtype=torch.float64)
    k = f.gabor_kernel(9, 2.0, 0.4, 5.0, 0.5, 0.0, dtype=torch.float64)
    layer = layers.PushPull2d(1, 1, 9, padding=4, alpha=0.8, scale=2.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(k[None, None])
        out = layer(img[None, None])[0, 0]
    ours = f.pushpull_response(img, k, 0.8, 2.0, rectify=False, pull_zero_mean=False, padding_mode="zeros")
    torch.testing.assert_close(ours, out)


@pytest.mark.parametrize("mode", f.PADDING_MODES)
def test_fft_path_equals_direct_convolution(mode):
    torch.manual_seed(4)
    img = torch.rand(2, 40, 37, dtype=torch.float64)
    bank = torch.randn(3, 31, 31, dtype=torch.float64)
    assert bank.shape[-1] > f.FFT_ABOVE
    padded = F.pad(img[:, None], (15,) * 4, mode="constant" if mode == "zeros" else mode)
    direct = F.conv2d(padded, bank[:, None])
    torch.testing.assert_close(f.correlate(img, bank, padding_mode=mode), direct, atol=1e-10, rtol=1e-10)


def test_uniform_field_and_contrast_homogeneity():
    k = f.gabor_kernel(SIZE, SIGMA, 0.0, LAM, 0.5, 0.0, dtype=torch.float64)
    grey = torch.full((64, 64), 0.5, dtype=torch.float64)
    assert f.pushpull_response(grey, k).abs().max().item() < 1e-9
    # without the DC fix the pull field sees the mean luminance (a constant, here about -0.5 * 0.07 * |U|)
    raw_pull = f.correlate(grey, f.pull_kernel(k, 2.0, zero_mean=False))
    assert raw_pull.abs().min().item() > 1e-3
    assert raw_pull.max().item() - raw_pull.min().item() < 1e-9
    torch.manual_seed(3)
    pattern = 0.3 * torch.randn(64, 64, dtype=torch.float64)
    for c in (0.25, 3.0):
        torch.testing.assert_close(
            f.pushpull_response(0.5 + c * pattern, k), c * f.pushpull_response(0.5 + pattern, k)
        )


def test_pushpull_suppresses_noise_and_keeps_the_line():
    """Measured on seeded images: the pull drowns the response to noise, not the one to the line."""
    k = f.gabor_kernel(SIZE, SIGMA, 0.0, LAM, 0.5, 0.0)
    curve = f.signal_noise_curve(k, [0.1, 0.3], line_width=LAM / 2, size=79, n_trials=2, seed=0)
    noise_ratio = curve.noise["pushpull"] / curve.noise["gabor"]
    line_ratio = curve.line["pushpull"] / curve.line["gabor"]
    assert (noise_ratio < 0.85).all(), noise_ratio
    assert (line_ratio > 0.95).all(), line_ratio
    assert (curve.snr("pushpull") > 1.15 * curve.snr("gabor")).all()
    # a line the cell does not prefer (orthogonal) gives a much weaker response than the preferred one
    ortho = f.signal_noise_curve(k, [0.1], theta=math.pi / 2, line_width=LAM / 2, size=79, n_trials=1)
    assert ortho.line["gabor"].item() < 0.2 * curve.line["gabor"][0].item()


def test_response_errors():
    k = f.gabor_kernel(9, 2.0)
    img = torch.rand(20, 20)
    with pytest.raises(TypeError, match="image"):
        f.correlate(torch.zeros(20, 20, dtype=torch.uint8), k)
    with pytest.raises(ValueError, match="image"):
        f.correlate(torch.rand(1, 1, 20, 20), k)
    with pytest.raises(TypeError, match="image"):
        f.correlate(img.numpy(), k)
    with pytest.raises(ValueError, match="kernel"):
        f.correlate(img, torch.rand(4, 4))
    with pytest.raises(ValueError, match="padding_mode"):
        f.correlate(img, k, padding_mode="circular")
    with pytest.raises(ValueError, match="too small"):
        f.correlate(torch.rand(4, 4), k)
    with pytest.raises(ValueError, match="alpha"):
        f.pushpull_response(img, k, alpha=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        f.simple_cell_response(img, k, threshold=-0.1)


# ---------------------------------------------------------------------------------------- stimuli


def test_line_image_geometry_and_values():
    img = f.line_image(9, 0.0, contrast=1.0, width=1.0)
    assert torch.all(img[4] == 1.0) and torch.all(img[3] == 0.5)  # horizontal line on grey
    diag = f.line_image(9, math.pi / 4, contrast=-0.5, width=1.0)
    assert diag[2, 6].item() == pytest.approx(0.25)  # x = 2, y = 2: on the 45-degree line, dark
    assert diag[6, 6].item() == pytest.approx(0.5)  # x = 2, y = -2: off the line
    with pytest.raises(ValueError, match="contrast"):
        f.line_image(9, 0.0, contrast=1.5)


def test_grating_values_and_match_with_gabor():
    g = f.grating(21, 0.0, 8.0, 0.0, contrast=0.6)
    assert g.max().item() == pytest.approx(0.8, abs=1e-6) and g[10, 0].item() == pytest.approx(0.8)
    k = f.gabor_kernel(21, 4.0, 0.0, 8.0, 0.5, 0.0)
    responses = [f.correlate(f.grating(41, 0.0, 8.0, p, 0.5), k)[20, 20].item() for p in (0, 1.5, 3.1)]
    assert responses[0] > responses[1] > 0 > responses[2]
    with pytest.raises(ValueError, match="contrast"):
        f.grating(21, contrast=-0.1)


def test_add_gaussian_noise():
    img = torch.full((200, 200), 0.5)
    a = f.add_gaussian_noise(img, 0.1, seed=7)
    torch.testing.assert_close(a, f.add_gaussian_noise(img, 0.1, seed=7))
    assert not torch.equal(a, f.add_gaussian_noise(img, 0.1, seed=8))
    assert (a - img).std().item() == pytest.approx(0.1, rel=0.03)
    torch.testing.assert_close(f.add_gaussian_noise(img, 0.0, seed=1), img)
    clipped = f.add_gaussian_noise(img, 1.0, seed=1, clip=True)
    assert clipped.min().item() == 0.0 and clipped.max().item() == 1.0
    with pytest.raises(ValueError, match="std"):
        f.add_gaussian_noise(img, -0.1)
    with pytest.raises(ValueError, match="seed"):
        f.add_gaussian_noise(img, 0.1, seed=-1)


# ----------------------------------------------------------------------------------- measurements


def test_tuning_width_hand_computed():
    thetas = torch.arange(18) * math.pi / 18  # 10-degree steps
    deg = torch.minimum(thetas, math.pi - thetas) * 180 / math.pi
    triangle = (1 - deg / 40).clamp_min(0)  # half height at 20 degrees, peak at index 0 (wraps around)
    assert f.tuning_width(triangle, thetas).item() == pytest.approx(20.0)
    shifted = torch.roll(triangle, 5)
    both = f.tuning_width(torch.stack([shifted, 2 * shifted]), thetas)
    torch.testing.assert_close(both, torch.tensor([20.0, 20.0], dtype=torch.float64), atol=1e-4, rtol=0)
    assert f.tuning_width(torch.ones(18), thetas).item() == 90.0
    assert math.isnan(f.tuning_width(torch.zeros(18), thetas).item())
    with pytest.raises(ValueError, match="evenly"):
        f.tuning_width(triangle, thetas**2)


def test_orientation_tuning_contrast_invariance_and_iceberg():
    k = f.gabor_kernel(15, 0.56 * 4, 0.0, 4.0, 0.5, 0.0)
    thetas = torch.arange(12) * math.pi / 12
    clean = f.orientation_tuning(k, thetas, [0.2, 0.8], 4.0, size=47)
    for m in f.MODELS:
        assert clean[m].argmax(dim=1).tolist() == [0, 0]  # peak at the kernel's orientation
        # homogeneous models: the curve at contrast 0.8 is 4x the one at 0.2, so the widths agree
        torch.testing.assert_close(clean[m][1], 4 * clean[m][0], rtol=1e-4, atol=1e-5)
    thresholded = f.orientation_tuning(k, thetas, [0.2, 0.8], 4.0, threshold=0.3, size=47)
    widths = f.tuning_width(thresholded["gabor"], thetas)
    assert widths[0] < widths[1]  # a spike threshold narrows the tuning at low contrast
