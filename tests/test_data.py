"""Data loading: every on-disk format, stratification, the tensor cache, the offline error, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_images, write_batches, write_tarball, write_tree
from pushpull_lite import data


def test_batches_format_reads_pixels_and_labels_exactly(tmp_path, cache, monkeypatch):
    root = tmp_path / "root"
    write_batches(root, per_batch=20, test=30)
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    x, y = data.load_cifar10("train")
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.shape == (100,)
    expected, labels = make_images(20, seed=1)
    assert torch.equal(x[:20], torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert y[:20].tolist() == labels.tolist()
    xt, _ = data.load_cifar10("test")
    assert xt.shape == (30, 3, 32, 32)
    assert data.cifar10_source() == "CIFAR-10 (original release)"


def test_image_folder_tree(tree_root):
    x, y = data.load_cifar10("train")
    assert x.shape == (80, 3, 32, 32)
    assert torch.bincount(y).tolist() == [8] * 10
    # PNG is lossless: the first image of class 0 is make_images' first image
    expected, _ = make_images(80, seed=len("train"))
    assert torch.equal(x[0], torch.from_numpy(expected[0]).permute(2, 0, 1))
    assert data.cifar10_source() == "image-folder copy of CIFAR-10"


def test_tarball_is_unpacked_once_into_the_cache(tmp_path, cache, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    write_tarball(root / "cifar10-jpeg.tar.gz", {"train": 4, "test": 2})
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    x, y = data.load_cifar10("test")
    assert x.shape == (20, 3, 32, 32) and torch.bincount(y).tolist() == [2] * 10
    unpacked = [p for p in cache.iterdir() if p.name.startswith("cifar10-tree-")]
    assert len(unpacked) == 1 and (unpacked[0] / "train" / "airplane").is_dir()
    assert "JPEG copy of CIFAR-10" in data.cifar10_source()
    assert not any((root).glob("cifar10-tree-*")), "nothing may be written into the read-only data root"


def test_second_load_comes_from_the_tensor_cache(tree_root, cache, monkeypatch):
    first = data.load_cifar10("train")
    files = list((cache / "tensors").glob("cifar10-train-*.pt"))
    assert len(files) == 1
    # the cache file alone must be enough: make reading the tree fail
    monkeypatch.setattr(data, "_read_tree", lambda *a: pytest.fail("the tree was read again"))
    second = data.load_cifar10("train")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_limit_is_stratified_and_stable(tree_root):
    x, y = data.load_cifar10("train", limit=23)
    counts = torch.bincount(y, minlength=10).tolist()
    assert sum(counts) == 23 and max(counts) - min(counts) <= 1
    x2, y2 = data.load_cifar10("train", limit=23)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_stratified_indices_properties():
    labels = torch.arange(1000) % 10
    idx = data.stratified_indices(labels, 105)
    assert len(idx) == 105 and len(set(idx.tolist())) == 105
    assert torch.all(idx[1:] > idx[:-1])
    assert torch.bincount(labels[idx]).tolist() == [11] * 5 + [10] * 5
    assert not torch.equal(idx, data.stratified_indices(labels, 105, seed=1))


@pytest.mark.parametrize("limit", [0, -3, 1001])
def test_bad_limits_raise(limit):
    with pytest.raises(ValueError, match="limit"):
        data.stratified_indices(torch.arange(1000) % 10, limit)


def test_bad_split_raises(tree_root):
    with pytest.raises(ValueError, match="split"):
        data.load_cifar10("validation")


def test_missing_data_offline_says_where_it_looked_and_how_to_fix(tmp_path, cache, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PUSHPULL_DATA", str(empty))

    def no_network(_cache):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_cifar10("train")
    message = str(info.value)
    assert str(empty / "cifar-10-batches-py") in message
    assert "cifar10-jpeg.tar.gz" in message
    assert "PUSHPULL_DATA" in message and "internet" in message
    assert "name resolution" in message


def test_offline_switch_skips_the_download(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("PUSHPULL_DATA", str(tmp_path))
    monkeypatch.setenv("PUSHPULL_OFFLINE", "1")
    monkeypatch.setattr(data, "_download", lambda c: pytest.fail("tried to download"))
    with pytest.raises(data.DataNotFoundError, match="PUSHPULL_OFFLINE"):
        data.load_cifar10("test")


def test_tree_with_wrong_image_size_is_a_clear_error(tmp_path, cache, monkeypatch):
    from PIL import Image

    root = tmp_path / "root"
    write_tree(root / "cifar10", {"train": 1, "test": 1})
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "cifar10" / "test" / "cat" / "9999.png")
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    with pytest.raises(ValueError, match="expected a 32x32"):
        data.load_cifar10("test")


def test_random_crop_flip_is_a_shifted_or_mirrored_window():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    gen = torch.Generator().manual_seed(0)
    out = data.random_crop_flip(x, padding=2, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        candidates = windows + [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in candidates)


def test_batches_cover_the_data_once_per_epoch_and_are_seeded():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50)
    batches = data.Batches(images, labels, 16, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(50)) and len(batches) == 4
    x, _ = next(iter(data.Batches(images, labels, 16)))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.allclose(x, images[:16].float() / 255)
    a = [y for _, y in data.Batches(images, labels, 16, shuffle=True, augment=True, seed=5)]
    b = [y for _, y in data.Batches(images, labels, 16, shuffle=True, augment=True, seed=5)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_batches_reject_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        data.Batches(torch.zeros(4, 3, 8, 8), torch.zeros(4), 0)
    with pytest.raises(ValueError, match="labels"):
        data.Batches(torch.zeros(4, 3, 8, 8), torch.zeros(5), 2)
