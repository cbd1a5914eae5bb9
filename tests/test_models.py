"""Models: shapes, parameter counts, first-layer swap, normalisation inside, checkpoint-compatible names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pushpull_lite import models
from pushpull_lite.layers import PushPull2d


def resnet_parameter_count(n: int, width: int = 16, classes: int = 10) -> int:
    """Parameters of a CIFAR ResNet-(6n+2) with projection shortcuts, counted by hand."""

    def conv(i, o, k):
        return i * o * k * k

    def bn(c):
        return 2 * c

    total = conv(3, width, 3) + bn(width)
    planes_in = width
    for stage, planes in enumerate((width, 2 * width, 4 * width)):
        for block in range(n):
            total += conv(planes_in, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            if block == 0 and stage > 0:
                total += conv(planes_in, planes, 1) + bn(planes)
            planes_in = planes
    return total + 4 * width * classes + classes


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_resnet_shapes_and_parameter_count(depth):
    model = models.resnet(depth)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert models.count_parameters(model) == resnet_parameter_count((depth - 2) // 6)


def test_resnet20_has_the_published_size():
    # He et al. report 0.27M parameters for ResNet-20; projection shortcuts add about 2.8k
    assert 0.27e6 < models.count_parameters(models.resnet20()) < 0.28e6


def test_state_dict_names_match_the_2020_checkpoints():
    keys = set(models.resnet20().state_dict())
    for key in [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer3.2.bn2.weight",
        "fc.weight",
        "fc.bias",
    ]:
        assert key in keys
    assert not any(k.startswith("normalize") for k in keys), "normalisation constants are not weights"
    assert "layer1.0.downsample.0.weight" not in keys


def test_normalisation_happens_inside_the_model():
    model = models.resnet20().eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1) / 255
    std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1) / 255
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    # the same weights without the normalisation step, fed normalised input, give the same logits
    bare = models.resnet20().eval()
    bare.load_state_dict(model.state_dict())
    bare.normalize = nn.Identity()
    assert torch.allclose(model(x), bare((x - mean) / std), atol=1e-5)


def test_first_layer_swap_and_its_name():
    calls = []

    def factory(i, o):
        calls.append((i, o))
        return nn.Conv2d(i, o, 5, padding=2)

    model = models.resnet20(first_layer=factory)
    assert calls == [(3, 16)] and model.conv1.kernel_size == (5, 5)
    named = models.first_layer("conv", bias=True)
    assert models.resnet20(first_layer=named).first_layer_key == {"name": "conv", "kwargs": {"bias": True}}
    assert named.label() == "conv(bias=True)"
    assert models.SeedCNN(first_layer=factory).pp.out_channels == 64


def test_unknown_first_layer_and_architecture_raise():
    with pytest.raises(ValueError, match="first layer 'gabor' is unknown"):
        models.first_layer("gabor")
    with pytest.raises(ValueError, match="arch 'vgg' is unknown"):
        models.build("vgg")
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        models.resnet(21)


def test_build_accepts_a_first_layer_name_and_refuses_other_types():
    model = models.build("resnet20", "pushpull")  # was "'str' object is not callable"
    assert model.first_layer_key == models.first_layer("pushpull").key()
    assert isinstance(model.conv1, PushPull2d)
    assert models.build("seed_cnn", "conv").first_layer_key == {"name": "conv", "kwargs": {}}
    assert models.resnet20(first_layer="pushpull").first_layer_key["name"] == "pushpull"
    with pytest.raises(ValueError, match="first layer 'gabor' is unknown"):
        models.build("resnet20", "gabor")
    for bad in (3, 1.5, ["pushpull"], nn.Conv2d(3, 16, 3)):
        with pytest.raises(TypeError, match=r"first_layer must be None, a name from .*got"):
            models.build("resnet20", bad)
        with pytest.raises(TypeError, match="first_layer must be"):
            models.SeedCNN(first_layer=bad)


def test_models_reject_bad_input_with_clear_errors():
    model = models.resnet20()
    with pytest.raises(TypeError, match="float tensor in \\[0, 1\\]"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape \\(N, 3, H, W\\)"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="shape \\(N, 3, H, W\\)"):
        models.SeedCNN()(torch.zeros(1, 1, 32, 32))


def test_seed_cnn_shapes_and_layout():
    model = models.SeedCNN()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model.fc1.in_features == 256 * 8 * 8 and model.fc2.in_features == 512
    assert "first_layer=conv" in repr(model)


def test_models_run_in_bfloat16():
    model = models.resnet20().to(torch.bfloat16).eval()
    assert model(torch.rand(2, 3, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16
