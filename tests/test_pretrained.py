"""The 2020 paper's published checkpoints: finding, checking and loading them, and what they compute."""

from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from pushpull_lite import config, data, measure, pretrained
from pushpull_lite.models import CIFAR10_MEAN, CifarResNet

# Many tests put hand-made checkpoints under the data root: the warning that they are not the published
# files is expected there (test_a_user_copy_that_differs_only_warns checks it).
pytestmark = pytest.mark.filterwarnings("ignore:.*a copy under the data root is yours:UserWarning")

SHARED = config.data_root() / pretrained.FOLDER
HAVE_FILES = all((SHARED / pretrained.checkpoint_filename(n)).is_file() for n in pretrained.NAMES)
needs_files = pytest.mark.skipif(
    not HAVE_FILES,
    reason=f"the published checkpoints are absent from {SHARED} (set PUSHPULL_DATA=../shared/data)",
)


def _source() -> str | None:
    """Which CIFAR-10 copy the data loader reads here, or None when there is none."""
    try:
        return data.cifar10_source()
    except data.DataNotFoundError:
        return None


def _write(path: Path, state: dict, epoch: int = 3, best_prec1: float = 50.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "best_prec1": best_prec1, "state_dict": state}, path)
    return path


# --------------------------------------------------------------------------------------------------
# Names, places, state-dict checks (no files needed)


def test_names_are_the_eight_published_models():
    assert pretrained.NAMES == (
        "resnet20",
        "resnet20-pp",
        "resnet32",
        "resnet32-pp",
        "resnet44",
        "resnet44-pp",
        "resnet56",
        "resnet56-pp",
    )
    assert pretrained.checkpoint_filename("resnet44-pp") == "resnet-44-pp.pth.tar"
    assert pretrained.checkpoint_filename("resnet20") == "resnet-20.pth.tar"


@pytest.mark.parametrize("bad", ["resnet18", "resnet-20", "ResNet20", "resnet20pp", "", 20])
def test_unknown_name_raises(bad):
    with pytest.raises(ValueError, match=r"name must be one of \['resnet20', 'resnet20-pp', .*\], got"):
        pretrained.load_strisciuglio2020(bad)


def test_checkpoint_url_points_at_the_papers_repository():
    url = pretrained.checkpoint_url("resnet32-pp")
    assert url == (
        "https://github.com/nicstrisc/Push-Pull-CNN-layer/raw/HEAD/models/resnet-cifar/resnet-32-pp/model_best.pth.tar"
    )


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_describe_state_dict_reads_depth_and_first_layer(depth):
    state = CifarResNet(depth).state_dict()
    assert pretrained.describe_state_dict(state) == (depth, False)
    state["conv1.push.weight"] = state.pop("conv1.weight")
    assert pretrained.describe_state_dict(state) == (depth, True)


def test_describe_state_dict_rejects_other_models():
    with pytest.raises(pretrained.CheckpointMismatchError, match="not a CIFAR ResNet"):
        pretrained.describe_state_dict(nn.Linear(3, 4).state_dict())
    state = CifarResNet(20).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.2.")}  # 3, 3, 2 blocks
    with pytest.raises(pretrained.CheckpointMismatchError, match="3, 3, 2 blocks"):
        pretrained.describe_state_dict(state)


def test_convert_state_dict_renames_only_the_push_kernel():
    w = torch.randn(16, 3, 3, 3)
    out = pretrained.convert_state_dict({"conv1.push.weight": w, "bn1.weight": torch.ones(16)})
    assert set(out) == {"conv1.weight", "bn1.weight"} and out["conv1.weight"] is w


def test_module_prefix_is_stripped_and_weights_land_in_the_model(tmp_path, cache):
    source = CifarResNet(20).state_dict()
    _write(
        tmp_path / pretrained.FOLDER / "resnet-20.pth.tar",
        {f"module.{k}": v for k, v in source.items()},
        epoch=7,
        best_prec1=12.5,
    )
    model = pretrained.load_strisciuglio2020("resnet20", root=tmp_path, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, source[k]), k
    info = model.checkpoint_info
    assert (info.epoch, info.best_prec1, info.best_error) == (7, 12.5, 87.5)
    assert (info.depth, info.pushpull, info.label()) == (20, False, "ResNet-20")


def test_missing_unexpected_and_wrong_shape_keys_are_listed(tmp_path, cache):
    state = CifarResNet(20).state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["layer1.0.bn1.weight"] = torch.ones(17)
    _write(tmp_path / pretrained.FOLDER / "resnet-20.pth.tar", state)
    with pytest.raises(pretrained.CheckpointMismatchError) as err:
        pretrained.load_strisciuglio2020("resnet20", root=tmp_path, device="cpu")
    msg = str(err.value)
    assert "missing keys: ['fc.bias']" in msg and "unexpected keys: ['extra.weight']" in msg
    assert "layer1.0.bn1.weight: file (17,), model (16,)" in msg


def test_a_file_without_the_checkpoint_entries_is_rejected(tmp_path, cache):
    target = tmp_path / pretrained.FOLDER / "resnet-20.pth.tar"
    target.parent.mkdir(parents=True)
    torch.save(CifarResNet(20).state_dict(), target)  # a bare state dict, no epoch / best_prec1
    with pytest.raises(pretrained.CheckpointMismatchError, match="should be a dict with entries"):
        pretrained.load_strisciuglio2020("resnet20", root=tmp_path, device="cpu")
    target.write_text("<html>not found</html>")
    with pytest.raises(pretrained.CheckpointMismatchError, match="not a readable PyTorch checkpoint"):
        pretrained.load_strisciuglio2020("resnet20", root=tmp_path, device="cpu")


def test_missing_file_names_the_places_looked_and_the_fix(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("PUSHPULL_OFFLINE", raising=False)
    calls = []

    def no_network(url, target, timeout=0.0):
        calls.append(url)
        raise OSError("no route to host")

    monkeypatch.setattr(pretrained, "_download", no_network)
    with pytest.raises(pretrained.CheckpointNotFoundError) as err:
        pretrained.load_strisciuglio2020("resnet56-pp", root=tmp_path / "empty", device="cpu")
    msg = str(err.value)
    assert calls == [pretrained.checkpoint_url("resnet56-pp")]
    assert str(tmp_path / "empty" / pretrained.FOLDER / "resnet-56-pp.pth.tar") in msg
    assert str(cache / pretrained.FOLDER / "resnet-56-pp.pth.tar") in msg
    assert "no route to host" in msg and "PUSHPULL_DATA" in msg and calls[0] in msg
    assert not (cache / pretrained.FOLDER / "resnet-56-pp.pth.tar").exists()


def test_offline_switch_skips_the_download(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("PUSHPULL_OFFLINE", "1")
    monkeypatch.setattr(pretrained, "_download", lambda *a, **k: pytest.fail("must not download offline"))
    with pytest.raises(pretrained.CheckpointNotFoundError, match="PUSHPULL_OFFLINE is set"):
        pretrained.find_checkpoint("resnet20", root=tmp_path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_file_and_writes_it_into_the_cache(tmp_path, cache, monkeypatch):
    # a file:// URL exercises the real download code without a network
    good = _write(tmp_path / "served" / "model_best.pth.tar", CifarResNet(20).state_dict())
    monkeypatch.setitem(pretrained.CHECKPOINT_SHA256, "resnet-20.pth.tar", _sha256(good))
    bad = tmp_path / "served" / "page.html"
    bad.write_text("<html>rate limited</html>")
    target = cache / pretrained.FOLDER / "resnet-20.pth.tar"
    with pytest.raises(pretrained.CheckpointMismatchError, match="does not have the pinned sha256"):
        pretrained._download(bad.as_uri(), target)
    assert not target.exists() and not [p for p in cache.rglob("*") if p.is_file()]
    pretrained._download(good.as_uri(), target)
    assert target.read_bytes() == good.read_bytes()
    # and find_checkpoint uses the cache copy next time, without downloading again
    monkeypatch.setattr(pretrained, "_download", lambda *a, **k: pytest.fail("already cached"))
    assert pretrained.find_checkpoint("resnet20", root=tmp_path / "empty") == target


def test_checkpoint_hashes_are_pinned_for_every_published_file():
    assert set(pretrained.CHECKPOINT_SHA256) == {pretrained.checkpoint_filename(n) for n in pretrained.NAMES}
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in pretrained.CHECKPOINT_SHA256.values())
    if HAVE_FILES:  # the pins are the hashes of the offline copies
        for filename, digest in pretrained.CHECKPOINT_SHA256.items():
            assert _sha256(SHARED / filename) == digest, filename


def test_a_short_or_different_download_is_never_kept(tmp_path, cache, monkeypatch):
    """The published file cut short, or another valid checkpoint: both fail the pinned sha256."""
    monkeypatch.delenv("PUSHPULL_OFFLINE", raising=False)
    good = _write(tmp_path / "served" / "model_best.pth.tar", CifarResNet(20).state_dict())
    monkeypatch.setitem(pretrained.CHECKPOINT_SHA256, "resnet-20.pth.tar", _sha256(good))
    short = tmp_path / "served" / "short.pth.tar"
    short.write_bytes(good.read_bytes()[:1000])
    other = _write(tmp_path / "served" / "other.pth.tar", CifarResNet(20).state_dict())  # new random weights
    target = cache / pretrained.FOLDER / "resnet-20.pth.tar"
    for served in (short, other):
        monkeypatch.setattr(pretrained, "checkpoint_url", lambda name, served=served: served.as_uri())
        with pytest.raises(pretrained.CheckpointNotFoundError, match="does not have the pinned sha256"):
            pretrained.find_checkpoint("resnet20", root=tmp_path / "empty")
        assert not target.exists() and not [p for p in cache.rglob("*") if p.is_file()]


def test_a_corrupt_cache_copy_is_named_and_downloaded_again(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("PUSHPULL_OFFLINE", raising=False)
    good = _write(tmp_path / "served" / "model_best.pth.tar", CifarResNet(20).state_dict())
    monkeypatch.setitem(pretrained.CHECKPOINT_SHA256, "resnet-20.pth.tar", _sha256(good))
    monkeypatch.setattr(pretrained, "checkpoint_url", lambda name: good.as_uri())
    target = cache / pretrained.FOLDER / "resnet-20.pth.tar"
    target.parent.mkdir(parents=True)
    target.write_bytes(good.read_bytes()[:-10])  # an older, unchecked download cut short
    with pytest.warns(UserWarning, match=f"{target}.*downloading it again"):
        assert pretrained.find_checkpoint("resnet20", root=tmp_path / "empty") == target
    assert target.read_bytes() == good.read_bytes()
    # offline, a corrupt cache copy is not used either, and the error says why
    target.write_bytes(b"junk")
    monkeypatch.setenv("PUSHPULL_OFFLINE", "1")
    with pytest.warns(UserWarning, match="downloading it again"):
        with pytest.raises(
            pretrained.CheckpointNotFoundError, match=r"PUSHPULL_OFFLINE is set; the cache copy"
        ):
            pretrained.find_checkpoint("resnet20", root=tmp_path / "empty")


def test_a_user_copy_that_differs_only_warns(tmp_path, cache, monkeypatch):
    user = _write(tmp_path / pretrained.FOLDER / "resnet-20.pth.tar", CifarResNet(20).state_dict())
    monkeypatch.setattr(pretrained, "_download", lambda *a, **k: pytest.fail("a user copy is never replaced"))
    with pytest.warns(UserWarning, match=f"{user} has sha256 .* used as it is"):
        assert pretrained.find_checkpoint("resnet20", root=tmp_path) == user
    monkeypatch.setitem(pretrained.CHECKPOINT_SHA256, "resnet-20.pth.tar", _sha256(user))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching copy: silent
        assert pretrained.find_checkpoint("resnet20", root=tmp_path) == user


def test_quoted_tables_agree_with_each_other():
    from pushpull_lite import metrics
    from pushpull_lite.corruptions import CORRUPTIONS

    assert set(pretrained.PAPER_TABLE3) == set(pretrained.NAMES)
    for name, row in pretrained.PAPER_TABLE2.items():
        assert set(row) == set(CORRUPTIONS), name
        table3 = pretrained.PAPER_TABLE3[name]
        # Table 3's columns follow from Table 2's row (rounded to integers in the paper)
        assert sum(row.values()) / len(row) == pytest.approx(table3["corruption_error"], abs=0.005)
        assert round(metrics.mce(row)) == table3["mce"]
        assert round(metrics.rce(row, table3["clean_error"])) == table3["rce"]


# --------------------------------------------------------------------------------------------------
# The real files (shared offline copy)


@needs_files
@pytest.mark.parametrize("name", pretrained.NAMES)
def test_every_published_model_loads_offline(name):
    from pushpull_lite.layers import PushPull2d

    model = pretrained.load_strisciuglio2020(name, device="cpu")
    info = model.checkpoint_info
    depth, pp = pretrained.parse_name(name)
    assert (info.name, info.depth, info.pushpull) == (name, depth, pp)
    assert info.path == SHARED / pretrained.checkpoint_filename(name)
    assert 100 <= info.epoch <= 200 and 90.0 < info.best_prec1 < 95.0  # trained 160-200 epochs, ~7 % error
    assert not model.training and not any(m.training for m in model.modules())
    assert isinstance(model.conv1, PushPull2d) == pp and model.depth == depth
    raw = torch.load(info.path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.conv1.weight, raw["conv1.push.weight" if pp else "conv1.weight"])
    assert torch.equal(model.fc.bias, raw["fc.bias"])
    logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@needs_files
@pytest.mark.parametrize("name", pretrained.NAMES)
def test_the_files_are_the_models_behind_table3(name):
    # best_prec1 is the clean accuracy the authors recorded; Table 3 prints 100 - it, rounded (±0.01)
    best_prec1 = pretrained.read_checkpoint(SHARED / pretrained.checkpoint_filename(name))["best_prec1"]
    assert 100 - best_prec1 == pytest.approx(pretrained.PAPER_TABLE3[name]["clean_error"], abs=0.011)


@needs_files
def test_a_file_of_another_depth_is_rejected(tmp_path, cache):
    folder = tmp_path / pretrained.FOLDER
    folder.mkdir()
    (folder / "resnet-20.pth.tar").symlink_to(SHARED / "resnet-32.pth.tar")
    with pytest.raises(pretrained.CheckpointMismatchError, match=r"looks like a ResNet-32 \(plain"):
        pretrained.load_strisciuglio2020("resnet20", root=tmp_path, device="cpu")


@needs_files
def test_a_pushpull_file_asked_as_plain_is_rejected_and_vice_versa(tmp_path, cache):
    folder = tmp_path / pretrained.FOLDER
    folder.mkdir()
    (folder / "resnet-44.pth.tar").symlink_to(SHARED / "resnet-44-pp.pth.tar")
    (folder / "resnet-44-pp.pth.tar").symlink_to(SHARED / "resnet-44.pth.tar")
    with pytest.raises(pretrained.CheckpointMismatchError, match="looks like a ResNet-44 with a push-pull"):
        pretrained.load_strisciuglio2020("resnet44", root=tmp_path, device="cpu")
    with pytest.raises(pretrained.CheckpointMismatchError, match=r"ResNet-44 \(plain first conv"):
        pretrained.load_strisciuglio2020("resnet44-pp", root=tmp_path, device="cpu")


@needs_files
@pytest.mark.parametrize("name", ["resnet20", "resnet20-pp"])
def test_the_model_normalises_inside(name):
    model = pretrained.load_strisciuglio2020(name, device="cpu")
    bare = copy.deepcopy(model)
    bare.normalize = nn.Identity()  # the network as the authors ran it, on already normalised inputs
    mean_image = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model(mean_image), bare(torch.zeros(1, 3, 32, 32)))
        x = torch.rand(4, 3, 32, 32)
        std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1) / 255
        torch.testing.assert_close(model(x), bare((x - mean_image) / std))


@needs_files
def test_batch_norm_uses_running_statistics():
    model = pretrained.load_strisciuglio2020("resnet32-pp", device="cpu")
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


@needs_files
@pytest.mark.parametrize("name", pretrained.NAMES)
def test_clean_accuracy_reproduces_best_prec1_on_the_original_test_set(name):
    source = _source()
    if source is None or not source.startswith("CIFAR-10 (original"):
        pytest.skip(
            "needs the original CIFAR-10 test set (downloaded from the internet into the cache, or "
            f"cifar-10-batches-py/ under the data root); this machine has: {source}"
        )
    model = pretrained.load_strisciuglio2020(name)
    images, labels = data.load_cifar10("test")
    accuracy = 100 * measure.accuracy(model, images, labels)
    assert accuracy == pytest.approx(model.checkpoint_info.best_prec1, abs=0.05)


@needs_files
def test_resnet20_on_the_jpeg_copy_is_far_above_chance_but_below_best_prec1():
    source = _source()
    if source is None or not source.startswith("JPEG copy"):
        pytest.skip(f"measures the JPEG copy of CIFAR-10 (no internet needed); this machine has: {source}")
    model = pretrained.load_strisciuglio2020("resnet20", device="cpu")
    images, labels = data.load_cifar10("test", limit=500)
    accuracy = 100 * measure.accuracy(model, images, labels)
    # chance is 10 %; the README measured an 8-12 point loss from JPEG quality 75 (±2 points at n = 500)
    assert 70.0 < accuracy < model.checkpoint_info.best_prec1 - 2.0
