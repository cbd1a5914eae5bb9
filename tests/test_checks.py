"""The shared argument checks of ``pushpull_lite.checks`` against hand-written cases.

Every check takes ``(name, value, ...)``, returns the value in a canonical type and names the argument
(here a name no message would contain by chance, ``my_arg``) in every error it raises.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pushpull_lite import checks, config

NAME = "my_arg"
NON_FINITE = [float("nan"), float("inf"), float("-inf"), np.float64("nan")]


# --------------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize("value, expected", [(3, 3.0), (0, 0.0), (-2.5, -2.5), (np.float32(0.5), 0.5)])
def test_real_accepts_numbers_and_returns_a_float(value, expected):
    out = checks.real(NAME, value)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value", [True, False, "1.0", None, [1.0], torch.tensor(1.0)])
def test_real_refuses_non_numbers_and_bools(value):
    with pytest.raises(TypeError, match=f"^{NAME} must be a real number, got {type(value).__name__}"):
        checks.real(NAME, value)


@pytest.mark.parametrize("value", NON_FINITE)
def test_real_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match=f"^{NAME} must be a finite number"):
        checks.real(NAME, value)


def test_real_bounds():
    assert checks.real(NAME, 1e-9, positive=True) == 1e-9
    for bad in (0, 0.0, -1):
        with pytest.raises(ValueError, match=f"^{NAME} must be a finite number > 0, got"):
            checks.real(NAME, bad, positive=True)
    # the bounds themselves are inside
    assert checks.real(NAME, 1, minimum=1, maximum=2) == 1.0
    assert checks.real(NAME, 2, minimum=1, maximum=2) == 2.0
    with pytest.raises(ValueError, match=f"^{NAME} must be a finite number >= 1, got 0.5"):
        checks.real(NAME, 0.5, minimum=1)
    with pytest.raises(ValueError, match=f"^{NAME} must be a finite number <= 2, got 2.5"):
        checks.real(NAME, 2.5, maximum=2)
    with pytest.raises(ValueError, match=f"^{NAME} must be a finite number >= -1, got -1.5"):
        checks.real(NAME, -1.5, minimum=-1.0, maximum=1.0)


def test_real_pixel_units_refuses_grey_levels_and_suggests_the_fraction():
    assert checks.real("eps", 8 / 255, pixel_units=True) == 8 / 255
    assert checks.real("eps", 0, pixel_units=True) == 0.0
    assert checks.real("eps", 1, pixel_units=True) == 1.0
    with pytest.raises(ValueError, match=r"^eps=8 is larger than 1: eps is in \[0, 1\] pixel units") as info:
        checks.real("eps", 8, pixel_units=True)
    assert "8/255" in str(info.value)
    with pytest.raises(ValueError, match="2/255"):
        checks.real("step_size", 2, positive=True, pixel_units=True)
    # pixel units are >= 0 unless a minimum says otherwise
    with pytest.raises(ValueError, match=f"^{NAME} must be a finite number >= 0, got -0.1"):
        checks.real(NAME, -0.1, pixel_units=True)


@pytest.mark.parametrize("value", [0.5, 1e-6, 1 - 1e-9, np.float64(0.01)])
def test_probability_accepts_the_open_unit_interval(value):
    out = checks.probability(NAME, value)
    assert out == pytest.approx(float(value)) and type(out) is float


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, -0.5, 1.5, *NON_FINITE])
def test_probability_refuses_the_ends_and_outside(value):
    with pytest.raises(ValueError, match=f"^{NAME} must"):
        checks.probability(NAME, value)


@pytest.mark.parametrize("value", [True, "0.5", None])
def test_probability_refuses_non_numbers(value):
    with pytest.raises(TypeError, match=NAME):
        checks.probability(NAME, value)


def test_probability_says_which_interval():
    with pytest.raises(ValueError, match=rf"^{NAME} must lie in \(0, 1\), got 1.0"):
        checks.probability(NAME, 1.0)


@pytest.mark.parametrize("value", [1, 7, np.int64(4), np.uint8(2), np.int16(9)])
def test_integer_accepts_ints_and_returns_an_int(value):
    out = checks.integer(NAME, value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, False, 3.0, np.float64(2.0), "3", None, torch.tensor(3)])
def test_integer_refuses_non_ints_and_bools(value):
    with pytest.raises(TypeError, match=f"^{NAME} must be an int, got {type(value).__name__}"):
        checks.integer(NAME, value)


def test_integer_bounds_and_oddness():
    with pytest.raises(ValueError, match=f"^{NAME} must be an int >= 1, got 0"):
        checks.integer(NAME, 0)  # the default minimum is 1: a count
    assert checks.integer(NAME, 0, minimum=0) == 0
    with pytest.raises(ValueError, match=f"^{NAME} must be an int >= 0, got -1"):
        checks.integer(NAME, -1, minimum=0)
    assert checks.integer(NAME, -5, minimum=None) == -5
    assert checks.integer(NAME, 5, odd=True) == 5
    with pytest.raises(ValueError, match=f"^{NAME} must be an odd int >= 1, got 4"):
        checks.integer(NAME, 4, odd=True)
    with pytest.raises(ValueError, match=f"^{NAME} must be an odd int, got 4"):
        checks.integer(NAME, 4, minimum=None, odd=True)


def test_odd_size():
    assert [checks.odd_size(NAME, k) for k in (1, 3, 51)] == [1, 3, 51]
    assert type(checks.odd_size(NAME, np.int32(5))) is int
    for bad in (0, -1, -3, 2, 10):
        with pytest.raises(ValueError, match=f"^{NAME} must be an odd int >= 1, got {bad}"):
            checks.odd_size(NAME, bad)
    for bad in (3.0, True, "3"):
        with pytest.raises(TypeError, match=f"^{NAME} must be an int"):
            checks.odd_size(NAME, bad)


def test_one_of():
    assert checks.one_of(NAME, "pgd", ("fgsm", "pgd")) == "pgd"
    assert checks.one_of(NAME, 2, {1, 2}) == 2
    with pytest.raises(ValueError, match=rf"^{NAME} must be one of \['fgsm', 'pgd'\], got 'PGD'"):
        checks.one_of(NAME, "PGD", ("fgsm", "pgd"))
    with pytest.raises(ValueError, match=NAME):
        checks.one_of(NAME, ["pgd"], ("fgsm", "pgd"))  # unhashable values get the same error


# --------------------------------------------------------------------------------------------------
# Tensors and models


def test_as_tensor():
    t = torch.arange(3)
    assert checks.as_tensor(NAME, t) is t
    a = np.arange(4, dtype=np.float32)
    out = checks.as_tensor(NAME, a)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    out[0] = 7  # no copy: the array sees the write
    assert a[0] == 7
    for bad in ([1, 2], 3.0, None):
        with pytest.raises(TypeError, match=f"^{NAME} must be a torch.Tensor or numpy array, got"):
            checks.as_tensor(NAME, bad)


def test_model():
    net = nn.Linear(2, 3)
    assert checks.model(NAME, net) is net
    for bad in (lambda x: x, None, "resnet20"):
        with pytest.raises(TypeError, match=f"^{NAME} must be a torch.nn.Module, got"):
            checks.model(NAME, bad)


class _IntBufferOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(3, dtype=torch.int64))


def test_model_device_dtype():
    assert checks.model_device_dtype(nn.Linear(2, 3)) == (torch.device("cpu"), torch.float32)
    assert checks.model_device_dtype(nn.Linear(2, 3).double()) == (torch.device("cpu"), torch.float64)
    # no weights at all: the configured device and float32
    assert checks.model_device_dtype(nn.ReLU()) == (config.device(), torch.float32)
    # only an integer buffer: its device, and float32 as there is no floating tensor to follow
    assert checks.model_device_dtype(_IntBufferOnly()) == (torch.device("cpu"), torch.float32)
    # the floating weights give the dtype, not the integer buffer
    mixed = nn.Sequential(_IntBufferOnly(), nn.Linear(2, 2).half())
    assert checks.model_device_dtype(mixed)[1] == torch.float16


def test_image_batch_accepts_and_returns_the_batch():
    x = torch.rand(2, 3, 4, 4)
    assert checks.image_batch(NAME, x) is x
    assert checks.image_batch(NAME, x, channels=3) is x
    assert checks.image_batch(NAME, torch.rand(0, 1, 4, 4)).shape == (0, 1, 4, 4)  # an empty batch
    assert checks.image_batch(NAME, torch.full((1, 3, 2, 2), 1.0, dtype=torch.float64)).dtype == torch.float64
    big = torch.full((1, 3, 2, 2), 255.0)
    assert checks.image_batch(NAME, big, unit_range=False) is big


@pytest.mark.parametrize(
    "x, kwargs, error, match",
    [
        (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), {}, TypeError, "must be a floating-point torch.Tensor"),
        (np.zeros((1, 3, 2, 2), dtype=np.float32), {}, TypeError, "must be a floating-point torch.Tensor"),
        ([[0.5]], {}, TypeError, "must be a floating-point torch.Tensor"),
        (torch.rand(3, 4, 4), {}, ValueError, r"must have shape \(N, C, H, W\), got \(3, 4, 4\)"),
        (
            torch.rand(2, 1, 4, 4),
            {"channels": 3},
            ValueError,
            r"must have shape \(N, 3, H, W\), got \(2, 1, 4, 4\)",
        ),
        (torch.full((1, 3, 2, 2), 2.0), {}, ValueError, r"must lie in \[0, 1\] \(found min 2, max 2\)"),
        (torch.full((1, 3, 2, 2), -0.5), {}, ValueError, r"must lie in \[0, 1\]"),
        (torch.full((1, 3, 2, 2), float("nan")), {}, ValueError, r"must lie in \[0, 1\]"),
    ],
)
def test_image_batch_refuses(x, kwargs, error, match):
    with pytest.raises(error, match=f"^{NAME} {match}"):
        checks.image_batch(NAME, x, **kwargs)


def test_pixels():
    u8 = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert checks.pixels(NAME, u8) is u8
    f = torch.rand(2, 3, 4, 4)
    assert checks.pixels(NAME, f) is f
    assert checks.pixels(NAME, torch.zeros(0, 3, 4, 4)).shape[0] == 0
    with pytest.raises(ValueError, match=rf"^{NAME} must be float pixels in \[0, 1\].*divide by 255"):
        checks.pixels(NAME, f * 255)  # float grey levels: the 79 % -> 10 % accident
    with pytest.raises(ValueError, match=rf"^{NAME} must be float pixels in \[0, 1\]") as info:
        checks.pixels(NAME, f - 1)
    assert "divide by 255" not in str(info.value)
    with pytest.raises(ValueError, match=f"^{NAME} must be float pixels"):
        checks.pixels(NAME, torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=f"^{NAME} must be uint8 or float in \\[0, 1\\], got torch.int32"):
        checks.pixels(NAME, torch.zeros(1, 3, 2, 2, dtype=torch.int32))
    with pytest.raises(
        ValueError, match=rf"^{NAME} must be a tensor of shape \(N, C, H, W\), got \(3, 4, 4\)"
    ):
        checks.pixels(NAME, torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match=rf"^{NAME} must be a tensor of shape \(N, C, H, W\), got ndarray"):
        checks.pixels(NAME, np.zeros((1, 3, 2, 2)))


def test_labels():
    y = torch.tensor([0, 9, 3])
    assert checks.labels(NAME, y, 3) is y
    for dtype in checks.INT_DTYPES:
        assert checks.labels(NAME, torch.zeros(2, dtype=dtype), 2).dtype == dtype
    from_numpy = checks.labels(NAME, np.array([1, 2]), 2)
    assert isinstance(from_numpy, torch.Tensor) and from_numpy.tolist() == [1, 2]
    for bad in (torch.tensor([0.0, 1.0]), torch.tensor([True, False])):
        with pytest.raises(TypeError, match=f"^{NAME} must be an integer torch.Tensor of class indices"):
            checks.labels(NAME, bad, 2)
    with pytest.raises(
        ValueError, match=rf"^{NAME} must have shape \(N,\) = \(3,\) to match the images, got \(2,\)"
    ):
        checks.labels(NAME, torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=NAME):
        checks.labels(NAME, torch.zeros(3, 1, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match=NAME):
        checks.labels(NAME, [0, 1], 2)


def test_images_labels():
    images = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    x, y = checks.images_labels(images, np.array([0, 1]))
    assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and y.tolist() == [0, 1]
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    assert checks.images_labels(x, torch.tensor([1, 1]))[0] is x
    with pytest.raises(ValueError, match=r"^images must have shape \(N, C, H, W\), got \(3, 4, 4\)"):
        checks.images_labels(torch.rand(3, 4, 4), torch.tensor([0, 0, 0]))
    with pytest.raises(TypeError, match="^images must be uint8 or floating point, got torch.int64"):
        checks.images_labels(torch.zeros(1, 3, 2, 2, dtype=torch.int64), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^labels must have shape \(N,\) = \(2,\), got \(3,\)"):
        checks.images_labels(torch.rand(2, 3, 2, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="^images is empty: robust accuracy of no examples is undefined"):
        checks.images_labels(
            torch.rand(0, 3, 2, 2), torch.zeros(0, dtype=torch.int64), what="robust accuracy"
        )
    with pytest.raises(TypeError, match="^labels must be a torch.Tensor or numpy array"):
        checks.images_labels(torch.rand(1, 3, 2, 2), [0])


def test_logits():
    y = torch.tensor([0, 2])
    out = torch.zeros(2, 3)
    assert checks.logits(out, y) is out
    assert checks.logits(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)).shape == (0, 3)
    with pytest.raises(
        ValueError, match=r"^model must return logits of shape \(N, K\) = \(2, K\), got \(2,\)"
    ):
        checks.logits(torch.zeros(2), y)
    with pytest.raises(
        ValueError, match=r"^model must return logits of shape \(N, K\) = \(2, K\), got \(3, 3\)"
    ):
        checks.logits(torch.zeros(3, 3), y)
    with pytest.raises(ValueError, match="got tuple"):
        checks.logits((out,), y)
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 1\] for this model"):
        checks.logits(torch.zeros(2, 2), y)
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 2\]"):
        checks.logits(out, torch.tensor([0, -1]))


def test_every_public_check_is_tested_here():
    tested = {
        "INT_DTYPES", "as_tensor", "image_batch", "images_labels", "integer", "labels", "logits", "model",
        "model_device_dtype", "odd_size", "one_of", "pixels", "probability", "real",
    }  # fmt: skip
    assert set(checks.__all__) == tested
