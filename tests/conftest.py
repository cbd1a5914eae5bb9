"""Fixtures for the unit tests: small CIFAR-10 look-alikes written to a temp dir in every on-disk format."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pushpull_lite.data import CIFAR10_CLASSES


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 32, 32, 3) uint8 whose class is readable from the colour (so a model can learn it)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    base = rng.integers(0, 60, size=(n, 32, 32, 3))
    for i, c in enumerate(labels):
        base[i, :, :, c % 3] += 40 + 17 * c
    return base.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty cache for this test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PUSHPULL_CACHE", str(path))
    return path


def write_batches(root: Path, per_batch: int = 20, test: int = 30) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        imgs, labels = make_images(per_batch, seed=i)
        entry = {"data": imgs.transpose(0, 3, 1, 2).reshape(per_batch, -1), "labels": labels.tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(entry))
    imgs, labels = make_images(test, seed=99)
    entry = {"data": imgs.transpose(0, 3, 1, 2).reshape(test, -1), "labels": labels.tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    return folder


def write_tree(root: Path, per_class: dict[str, int], suffix: str = ".png") -> Path:
    for split, count in per_class.items():
        imgs, labels = make_images(10 * count, seed=len(split))
        for i, (img, label) in enumerate(zip(imgs, labels)):
            folder = root / split / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:04d}{suffix}", quality=95)
    return root


def write_tarball(path: Path, per_class: dict[str, int]) -> Path:
    tree = write_tree(path.parent / "tree-src", per_class, suffix=".jpg")
    with tarfile.open(path, "w:gz") as tar:
        for split in per_class:
            tar.add(tree / split, arcname=split)
    return path


@pytest.fixture
def tree_root(tmp_path, cache, monkeypatch) -> Path:
    """A data root with a small PNG image-folder tree: 8 train and 3 test images per class."""
    root = tmp_path / "data"
    write_tree(root / "cifar10", {"train": 8, "test": 3})
    monkeypatch.setenv("PUSHPULL_DATA", str(root))
    return root
