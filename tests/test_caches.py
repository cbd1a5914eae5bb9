"""Caches that cannot lie: each defect of the cache-integrity review, reproduced, and its fix.

A cached model is reused only for the very images it was trained on; two processes asking for the same
entry train once; data is never code; stale, partial or corrupt entries are detected, named and rebuilt.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_batches, write_tarball, write_tree
from pushpull_lite import cachefiles, config, data, measure, models, train

ROOT = Path(__file__).resolve().parent.parent
TINY = train.Recipe("tiny", epochs=1, batch_size=16, lr=0.05, channels_last=False)


@pytest.fixture(autouse=True)
def _fresh_memo():
    data._MEMO.clear()  # each test sees the disk as a new process would
    data._VERIFIED.clear()
    yield
    data._MEMO.clear()
    data._VERIFIED.clear()


# 1. the data itself, not its label, keys a trained model -------------------------------------------


def _other_pixels(root: Path) -> None:
    """Rewrite every image of ``root``'s tree with other pixels, same names, same layout."""
    for file in root.rglob("*.png"):
        arr = np.asarray(Image.open(file)).copy()
        Image.fromarray(255 - arr).save(file)


def test_a_data_root_with_other_pixels_never_hits_another_roots_model(tmp_path, cache, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    write_tree(a / "cifar10", {"train": 3, "test": 1})
    write_tree(b / "cifar10", {"train": 3, "test": 1})
    _other_pixels(b / "cifar10")
    monkeypatch.setenv("PUSHPULL_DATA", str(a))
    first = train.train_model("resnet20", None, TINY, seed=0, progress=False)
    again = train.train_model("resnet20", None, TINY, seed=0, progress=False)
    monkeypatch.setenv("PUSHPULL_DATA", str(b))
    other = train.train_model("resnet20", None, TINY, seed=0, progress=False)
    assert not first.from_cache and again.from_cache  # same images: loaded
    assert not other.from_cache and other.path != first.path  # same label, other pixels: trained anew
    assert data.cifar10_source(a) == data.cifar10_source(b)  # the label alone could not tell them apart
    assert data.training_data_id(a) != data.training_data_id(b)


def test_a_limit_larger_than_the_split_is_an_error(tree_root):
    with pytest.raises(
        ValueError, match=r"limit=5000 is larger than the CIFAR-10 train split here \(80 images\)"
    ):
        data.load_cifar10("train", limit=5000)
    for bad in ("20", True, 2.5):
        with pytest.raises(ValueError, match="limit must be a positive int or None"):
            data.load_cifar10("train", limit=bad)


# 2. float images in [0, 255] ------------------------------------------------------------------------


def test_float_pixels_outside_0_1_are_rejected_not_misclassified():
    model = models.resnet20().eval()
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    measure.predict(model, x)  # uint8 is fine
    measure.predict(model, x.float() / 255)  # so is float in [0, 1]
    with pytest.raises(ValueError, match=r"images must be float pixels in \[0, 1\].*divide by 255"):
        measure.accuracy(model, x.float(), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="images must be float pixels"):
        measure.predict(model, torch.full((1, 3, 32, 32), float("nan")))


# 3. two processes, one entry ------------------------------------------------------------------------

_TRAIN_ONCE = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {root!r})
    from pushpull_lite import train
    start = time.time()
    tm = train.train_model("resnet20", None, train.Recipe("tiny", epochs=2, batch_size=16, lr=0.05,
                           channels_last=False), seed=0, progress=False)
    total = sum(float(v.double().sum()) for v in tm.model.state_dict().values() if v.is_floating_point())
    print(json.dumps({{"from_cache": tm.from_cache, "weights": total, "path": str(tm.path)}}))
    """
)


@pytest.mark.slow
def test_two_identical_trainings_started_together_train_once(tree_root, cache):
    script = _TRAIN_ONCE.format(root=str(ROOT))
    env = dict(os.environ, PUSHPULL_DATA=str(tree_root), PUSHPULL_CACHE=str(cache), OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["from_cache"] for o in outs) == [False, True]  # one trained, the other waited and loaded
    assert outs[0]["weights"] == outs[1]["weights"] and outs[0]["path"] == outs[1]["path"]
    leftovers = [p.name for p in Path(outs[0]["path"]).parent.iterdir() if p.suffix == ".tmp"]
    assert not leftovers


def test_atomic_writes_use_unique_temporary_names(tmp_path):
    target = tmp_path / "entry.pt"
    names = []
    with cachefiles.atomic_path(target) as a, cachefiles.atomic_path(target) as b:
        names += [a, b]
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert names[0] != names[1] and target.read_bytes() in (b"a", b"b")
    with pytest.raises(RuntimeError), cachefiles.atomic_path(target) as c:
        c.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() in (b"a", b"b") and not list(tmp_path.glob("*.tmp"))


# 4. data is never code ------------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_payload_in_a_cifar_batch_does_not_run(tmp_path, cache, monkeypatch):
    root = tmp_path / "root"
    folder = write_batches(root)
    _Payload.marker = str(tmp_path / "payload-ran")
    entry = pickle.loads((folder / "test_batch").read_bytes())
    entry["labels"] = _Payload()
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    with pytest.raises(
        data.DataNotFoundError,
        match=r"test_batch is not a readable CIFAR-10 batch file.*posix\.system|system",
    ):
        data.load_cifar10("test")
    assert not Path(_Payload.marker).exists()
    data.load_cifar10("train")  # the untouched batches still read


# 5. stale and partial caches --------------------------------------------------------------------------


def test_an_image_changed_inside_a_class_folder_is_noticed(tree_root):
    before, _ = data.load_cifar10("test")
    file = sorted((tree_root / "cifar10" / "test" / "airplane").iterdir())[0]
    folder_mtime = file.parent.stat().st_mtime_ns
    arr = np.asarray(Image.open(file)).copy()
    Image.fromarray(255 - arr).save(file)
    os.utime(file.parent, ns=(folder_mtime, folder_mtime))  # the folder looks untouched
    data._MEMO.clear()  # a new process
    after, _ = data.load_cifar10("test")
    assert not torch.equal(before, after)


def test_a_half_unpacked_tree_is_detected_and_unpacked_again(tmp_path, cache, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    tarball = write_tarball(root / "cifar10-jpeg.tar.gz", {"train": 4, "test": 2})
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    stamp = data._sha256_file(tarball)
    half = cache / f"cifar10-tree-{stamp[:16]}"
    for split in ("train", "test"):
        (half / split / "airplane").mkdir(parents=True)  # what a killed unpacking of older code left
    (cache / "unpack-killed").mkdir()
    with pytest.warns(UserWarning, match="incomplete unpacking"):
        x, y = data.load_cifar10("test")
    assert len(y) == 20 and (half / ".complete").is_file()
    assert not (cache / "unpack-killed").exists()


def test_a_partial_download_in_the_cache_does_not_hide_the_data_root(tmp_path, cache, tree_root):
    partial = cache / "cifar-10-batches-py"
    partial.mkdir(parents=True)
    (partial / "data_batch_1").write_bytes(b"half a download")
    (partial / "test_batch").write_bytes(b"")
    assert data.cifar10_source() == "image-folder copy of CIFAR-10"
    assert len(data.load_cifar10("test")[1]) == 30


# 6. corrupt entries are named and rebuilt --------------------------------------------------------------


def test_a_truncated_model_cache_entry_is_named_and_trained_again(tree_root, cache):
    tm = train.train_model("resnet20", None, TINY, seed=0, progress=False)
    tm.path.write_bytes(tm.path.read_bytes()[:1000])
    with pytest.warns(
        UserWarning, match=rf"{tm.path.name} cannot be read .*truncated or corrupt; training the model again"
    ):
        again = train.train_model("resnet20", None, TINY, seed=0, progress=False)
    assert not again.from_cache
    assert train.train_model("resnet20", None, TINY, seed=0, progress=False).from_cache
    with pytest.raises(cachefiles.CorruptCacheError, match=r"cannot be read") as info:
        cachefiles.load_torch(_truncated(tmp := tm.path.with_name("x.pt"), tm.path))
    assert "weights_only=False" not in str(info.value) and str(tmp) in str(info.value)


def _truncated(target: Path, source: Path) -> Path:
    target.write_bytes(source.read_bytes()[:500])
    return target


def test_a_truncated_tarball_is_named(tmp_path, cache, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    tarball = write_tarball(root / "cifar10-jpeg.tar.gz", {"train": 4, "test": 2})
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    with pytest.raises(data.DataNotFoundError, match=rf"{tarball}.* truncated or corrupt"):
        data.load_cifar10("test")
    assert not list(cache.glob("unpack-*")) and not list(cache.glob("cifar10-tree-*"))


def test_a_corrupt_tensor_cache_is_named_and_rebuilt(tree_root, cache):
    x, _ = data.load_cifar10("test")
    (entry,) = (cache / "tensors").glob("cifar10-test-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    data._MEMO.clear()
    with pytest.warns(UserWarning, match=rf"{entry.name} cannot be read.*reading the data again"):
        again, _ = data.load_cifar10("test")
    assert torch.equal(x, again)


# 7. diverging training and bad recipes ------------------------------------------------------------------


class _NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan")) * self.w


def test_a_non_finite_loss_stops_training_and_caches_nothing(tree_root, cache, monkeypatch):
    with pytest.raises(
        train.NonFiniteLossError, match=r"loss became nan at epoch 1, step 1.*lower the learning rate"
    ):
        train.fit(_NaNModel(), *data.load_cifar10("train"), TINY, progress=False)
    monkeypatch.setattr(train, "build", lambda arch, fl: _NaNModel())
    with pytest.raises(train.NonFiniteLossError):
        train.train_model("resnet20", None, TINY, seed=0, progress=False)
    assert not [p for p in config.model_cache_dir().glob("*.pt")]


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", float("nan")),
        ("lr", -0.1),
        ("momentum", 2.0),
        ("weight_decay", -1.0),
        ("warmup_fraction", 5.0),
        ("label_smoothing", 1.0),
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", True),
        ("milestones", (5, 3)),
        ("amp", "yes"),
    ],
)
def test_every_recipe_field_is_checked(field, value):
    with pytest.raises(ValueError, match=field):
        train.Recipe("r", **{"epochs": 10, field: value} if field != "epochs" else {field: value})


def test_the_recipes_of_the_book_are_valid():
    for recipe in train.RECIPES.values():
        assert math.isfinite(recipe.lr) and 0 <= recipe.momentum < 1


def test_tarfile_filters_are_required(monkeypatch, tmp_path, cache):
    root = tmp_path / "root"
    root.mkdir()
    write_tarball(root / "cifar10-jpeg.tar.gz", {"train": 4, "test": 2})
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(RuntimeError, match="extraction filters"), warnings.catch_warnings():
        data.load_cifar10("test")
