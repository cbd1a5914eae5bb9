"""CIFAR-10 as in-memory uint8 tensors, from whatever copy this machine has, and a fast batch iterator.

Where :func:`load_cifar10` looks, in order (``root`` is ``PUSHPULL_DATA`` unless given):

1. ``<root>/cifar-10-batches-py/`` and ``<cache>/cifar-10-batches-py/``: torchvision's format (the original);
2. ``<root>/cifar10/{train,test}/<class>/*``: an image-folder tree;
3. ``<root>/cifar10-jpeg.tar.gz``: that tree, packed (unpacked once into the cache);
4. a torchvision download of the original into ``<cache>`` (needs internet).

A loaded split is saved in the cache as one tensor file, so the next load takes well under a second.
CIFAR-10-C is :mod:`pushpull_lite.cifar10c` (which imports this module, never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from . import cachefiles, config

__all__ = [
    "CIFAR10_CLASSES",
    "SPLITS",
    "Batches",
    "DataNotFoundError",
    "cifar10_source",
    "describe_source",
    "load_cifar10",
    "random_crop_flip",
    "smoke_indices",
    "stratified_indices",
    "to_float",
    "training_data_id",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SPLITS = ("train", "test")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_FORMAT_VERSION = 2  # bump when the tensor-cache layout changes


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set was found locally and it could not be downloaded."""


# --------------------------------------------------------------------------------------------------
# Finding a copy

_BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_TREE_MARKER = ".complete"  # written last into a tree this package unpacked: its counts per split


def _batches_dir(path: Path) -> Path | None:
    d = path / "cifar-10-batches-py"
    return d if all((d / name).is_file() for name in _BATCH_FILES) else None


def _downloaded_batches_dir(cache: Path) -> Path | None:
    """The cache's torchvision download, only when every batch file is there with its published md5 (an
    interrupted download leaves some; torchvision lists the checksums)."""
    found = _batches_dir(cache)
    if found is None:
        return None
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    key = ("md5", str(found), tuple((found / n).stat().st_size for n in _BATCH_FILES))
    if key not in _MEMO:
        _MEMO[key] = all(
            check_integrity(str(found / n), md5) for n, md5 in CIFAR10.train_list + CIFAR10.test_list
        )
    return found if _MEMO[key] else None


def _tree_dir(path: Path) -> Path | None:
    return path if all((path / s).is_dir() for s in SPLITS) else None


def _find_local(root: Path) -> tuple[str, Path] | None:
    """(format, path) of the first local copy, or None. format: 'batches', 'tree' or 'tarball'.

    The data root comes first, whatever it holds; the cache's own download only after it.
    """
    found = _batches_dir(root)
    if found:
        return "batches", found
    found = _tree_dir(root / "cifar10")
    if found:
        return "tree", found
    tarball = root / "cifar10-jpeg.tar.gz"
    if tarball.is_file():
        return "tarball", tarball
    found = _downloaded_batches_dir(config.cache_dir())
    return ("batches", found) if found else None


def _looked_in(root: Path) -> list[str]:
    cache = config.cache_dir()
    return [
        str(root / "cifar-10-batches-py"),
        str(root / "cifar10" / "{train,test}"),
        str(root / "cifar10-jpeg.tar.gz"),
        str(cache / "cifar-10-batches-py") + " (a complete download: every batch file with its md5)",
    ]


def _download(cache: Path) -> Path:
    """Download the original CIFAR-10 through torchvision into the cache (it checks the archive's md5);
    raise DataNotFoundError offline."""
    import socket

    from torchvision.datasets import CIFAR10

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # fail fast on a machine without internet
    try:
        with cachefiles.entry_lock(cache / "cifar-10-batches-py"):
            CIFAR10(str(cache), train=True, download=True)
    finally:
        socket.setdefaulttimeout(old_timeout)
    found = _downloaded_batches_dir(cache)
    if found is None:
        raise DataNotFoundError(
            f"torchvision's download did not leave a complete cifar-10-batches-py in {cache}"
        )
    return found


def _locate(root: str | os.PathLike | None) -> tuple[str, Path]:
    root_path = config.data_root(root)
    found = _find_local(root_path)
    if found:
        return found
    if os.environ.get("PUSHPULL_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        reason = "PUSHPULL_OFFLINE is set"
    else:
        try:
            return "batches", _download(config.cache_dir())
        except Exception as exc:  # urllib and torchvision raise several kinds; all mean "no download"
            reason = f"download failed: {type(exc).__name__}: {exc}"
    looked = "\n  ".join(_looked_in(root_path))
    env = os.environ.get("PUSHPULL_DATA", "").strip()
    setting = f"PUSHPULL_DATA={env!r} (that is {root_path})" if env else f"the data root {root_path}"
    base = config.checkout_root()
    relative = f"the checkout {base}" if base is not None else f"the working directory {Path.cwd()}"
    raise DataNotFoundError(
        f"CIFAR-10 was not found in {setting} and could not be downloaded ({reason}).\n"
        f"Looked in:\n  {looked}\n"
        "Fix it in one of two ways:\n"
        "  1. connect to the internet: torchvision then downloads CIFAR-10 into the cache "
        f"({config.cache_dir()}, set by PUSHPULL_CACHE);\n"
        "  2. set PUSHPULL_DATA to a folder holding cifar-10-batches-py/, cifar10/{train,test}/<class>/ "
        f"or cifar10-jpeg.tar.gz, as an absolute path or relative to {relative}."
    )


# --------------------------------------------------------------------------------------------------
# What a copy holds: content stamps, so a cache entry is reused only for exactly the data it was made from

#: per-process memo of stamps and checks, keyed by what identifies the file(s) on disk
_MEMO: dict[tuple, object] = {}


def _sha256_file(path: Path) -> str:
    """:func:`pushpull_lite.cachefiles.sha256_file`, once per process for an unchanged file."""
    st = path.stat()
    key = ("sha256", str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = cachefiles.sha256_file(path)
    return _MEMO[key]


def _source_stamp(fmt: str, path: Path) -> str:
    """A stamp that changes whenever the copy's content does: the sha256 of the tarball or of the batch
    files; for an image-folder tree, a hash of every image's relative path, size and mtime (an image
    changed inside a class folder changes it, although the folder's own mtime stays)."""
    if fmt == "tarball":
        return "tarball:" + _sha256_file(path)
    if fmt == "batches":
        return (
            "batches:"
            + hashlib.sha256("".join(_sha256_file(path / n) for n in _BATCH_FILES).encode()).hexdigest()
        )
    key = ("tree", str(path.resolve()))
    if key not in _MEMO:
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
            st = file.stat()
            digest.update(f"{file.relative_to(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
        _MEMO[key] = digest.hexdigest()
    return "tree:" + _MEMO[key]


def _unpack_tarball(tarball: Path) -> Path:
    """The tarball's tree in the cache, unpacked once (into a temporary folder renamed into place, under a
    lock); a tree left incomplete by an older run is detected and unpacked again, with a warning."""
    stamp = _sha256_file(tarball)
    cache = config.cache_dir()
    target = cache / f"cifar10-tree-{stamp[:16]}"
    if (target / _TREE_MARKER).is_file():
        return target
    with cachefiles.entry_lock(target):
        if (target / _TREE_MARKER).is_file():  # another process unpacked it while we waited
            return target
        cachefiles.remove_stale(cache, "unpack-*")  # what killed extractions left behind
        if target.exists():
            warnings.warn(
                f"{target} is an incomplete unpacking of {tarball}; unpacking it again", stacklevel=3
            )
            shutil.rmtree(target)
        cachefiles.require_extraction_filter()
        tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=cache))
        try:
            try:
                with tarfile.open(tarball, "r:*") as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise DataNotFoundError(
                    f"{tarball} cannot be unpacked ({type(exc).__name__}: {exc}): it is truncated or "
                    "corrupt; replace it with a complete copy"
                ) from exc
            inner = _tree_dir(tmp) or next((d for d in tmp.iterdir() if _tree_dir(d)), None)
            if inner is None:
                raise DataNotFoundError(f"{tarball} does not hold train/<class>/ and test/<class>/ folders")
            counts = {
                split: sum(1 for p in (inner / split).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
                for split in SPLITS
            }
            (inner / _TREE_MARKER).write_text(json.dumps({"tarball_sha256": stamp, "images": counts}))
            inner.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def describe_source(fmt: str, path: Path) -> str:
    """A label for numbers measured on this copy (says "JPEG copy of CIFAR-10" when it is one)."""
    if fmt == "batches":
        return "CIFAR-10 (original release)"
    tree = path
    sample = next((p for p in (tree / "test").rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES), None)
    if fmt == "tarball" or (sample is not None and sample.suffix.lower() in (".jpg", ".jpeg")):
        return "JPEG copy of CIFAR-10 (quality 75, not bit-identical to the original)"
    return "image-folder copy of CIFAR-10"


def cifar10_source(root: str | os.PathLike | None = None) -> str:
    """Which copy of CIFAR-10 :func:`load_cifar10` uses here, as a label for the numbers measured on it."""
    fmt, path = _locate(root)
    return describe_source(fmt, path)


def training_data_id(root: str | os.PathLike | None = None) -> str:
    """What a trained model's cache key records about its data: the copy's label and the sha256 of the
    decoded training split (images and labels), so a model is reused only for the very images it was
    trained on, whatever folder or format they came from."""
    fmt, path = _locate(root)
    digest = _VERIFIED.get(_file_key(_tensor_cache_file(fmt, path, "train")))
    if digest is None:  # not verified in this process yet: read the split once
        _, _, _, digest = _load_split_with_digest("train", fmt, path)
    return f"{describe_source(fmt, path)}; training split sha256 {digest[:16]}"


# --------------------------------------------------------------------------------------------------
# Reading each format


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch file and nothing else: dicts, lists, strings, numbers and NumPy arrays.
    Any other global (os.system, a class with a payload, ...) is refused: data is never code."""

    _ALLOWED = {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch file")


def _read_batches(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in files:
        try:
            with open(path / name, "rb") as f:
                entry = _BatchUnpickler(f, encoding="latin1").load()  # torchvision's format is a pickle
            data, got = entry["data"], entry["labels"] if "labels" in entry else entry["fine_labels"]
            batch = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataNotFoundError(
                f"{path / name} is not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc})"
            ) from exc
        if len(got) != len(batch):
            raise DataNotFoundError(f"{path / name} holds {len(batch)} images but {len(got)} labels")
        images.append(batch)
        labels.extend(got)
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _read_tree(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    images, labels = [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        folder = path / split / cls
        if not folder.is_dir():
            raise DataNotFoundError(f"class folder {folder} is missing")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        for file in files:
            with Image.open(file) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if arr.shape != (32, 32, 3):
                raise ValueError(f"{file} is {arr.shape[1]}x{arr.shape[0]}, expected a 32x32 CIFAR-10 image")
            images.append(arr)
        labels.extend([label] * len(files))
    if not images:
        raise DataNotFoundError(f"no images under {path / split}")
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return stacked, torch.tensor(labels, dtype=torch.int64)


def _content_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def _tensor_cache_file(fmt: str, path: Path, split: str) -> Path:
    key = f"{_FORMAT_VERSION}:{_source_stamp(fmt, path)}:{split}"
    return (
        config.cache_dir() / "tensors" / f"cifar10-{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    )


#: tensor-cache files whose content checksum this process has verified: (path, size, mtime) -> sha256
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


def _read_cached(cache_file: Path, stamp: str) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """The tensor cache entry, if it exists, is whole and was made from ``stamp``; None otherwise (with a
    warning that names the file when it exists but cannot be used)."""
    if not cache_file.is_file():
        return None
    try:
        blob = cachefiles.load_torch(cache_file)
        if blob.get("stamp") != stamp or blob.get("format") != _FORMAT_VERSION:
            raise cachefiles.CorruptCacheError(f"{cache_file} was made from other data")
        images, labels, digest = blob["images"], blob["labels"], blob["sha256"]
        key = _file_key(cache_file)
        if _VERIFIED.get(key) != digest:  # the content checksum once per process and file
            if len(images) != len(labels) or _content_sha256(images, labels) != digest:
                raise cachefiles.CorruptCacheError(f"{cache_file} does not hold what its checksum says")
            _VERIFIED[key] = digest
    except (cachefiles.CorruptCacheError, KeyError) as exc:
        warnings.warn(f"{exc}; reading the data again", stacklevel=4)
        return None
    return images, labels, digest


def _load_split_with_digest(split: str, fmt: str, path: Path) -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """(images, labels, source label, sha256 of the decoded split), through the tensor cache."""
    stamp = _source_stamp(fmt, path)
    cache_file = _tensor_cache_file(fmt, path, split)
    cached = _read_cached(cache_file, stamp)
    if cached is None:
        with cachefiles.entry_lock(cache_file):
            cached = _read_cached(cache_file, stamp)  # another process may have made it while we waited
            if cached is None:
                tree = _unpack_tarball(path) if fmt == "tarball" else path
                images, labels = _read_batches(tree, split) if fmt == "batches" else _read_tree(tree, split)
                digest = _content_sha256(images, labels)
                blob = {
                    "images": images,
                    "labels": labels,
                    "stamp": stamp,
                    "sha256": digest,
                    "format": _FORMAT_VERSION,
                }
                cachefiles.save_torch(blob, cache_file)
                _VERIFIED[_file_key(cache_file)] = digest
                cached = images, labels, digest
    images, labels, digest = cached
    return images, labels, describe_source(fmt, path), digest


def _load_split(split: str, root: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    fmt, path = _locate(root)
    images, labels, source, _ = _load_split_with_digest(split, fmt, path)
    return images, labels, source


# --------------------------------------------------------------------------------------------------
# Public API


def stratified_indices(labels: torch.Tensor, limit: int, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced subset of size ``limit`` (sorted), the same for the same labels and seed.

    Each class gets ``limit // C`` examples and the first ``limit % C`` classes one more.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if limit > len(labels):
        raise ValueError(f"limit={limit} is larger than the split ({len(labels)} images)")
    classes = torch.unique(labels)
    quota, extra = divmod(limit, len(classes))
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    chosen = []
    for i, c in enumerate(classes.tolist()):
        members = perm[labels[perm] == c]
        want = quota + (1 if i < extra else 0)
        if want > len(members):
            raise ValueError(f"limit={limit} needs {want} images of class {c}, the split has {len(members)}")
        chosen.append(members[:want])
    return torch.sort(torch.cat(chosen)).values


def _check_limit(name: str, limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{name} must be a positive int or None, got {limit!r}")


def smoke_indices(labels: torch.Tensor) -> torch.Tensor | None:
    """In a smoke run (``PUSHPULL_SMOKE``), the class-stratified 1/F of a split that stands in for all of it;
    None otherwise."""
    n = config.smoke_size(len(labels))
    return None if n is None or n >= len(labels) else stratified_indices(labels, n)


def load_cifar10(
    split: str, limit: int | None = None, root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` ("train" or "test") as ``(images, labels)``.

    images: uint8 (N, 3, 32, 32); labels: int64 (N,). With ``limit``, a class-stratified subset
    (the same one every time); a ``limit`` larger than the split is an error. :func:`cifar10_source`
    says which copy was read. In a smoke run the split is its stratified 1/F (:func:`smoke_indices`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _check_limit("limit", limit)
    images, labels, _ = _load_split(split, root)
    smoke = smoke_indices(labels)
    if smoke is not None:
        images, labels = images[smoke], labels[smoke]
    if limit is not None and limit > len(labels):
        raise ValueError(
            f"limit={limit} is larger than the CIFAR-10 {split} split here ({len(labels)} images); "
            "use limit=None for all of it"
        )
    if limit is not None and limit < len(labels):
        idx = stratified_indices(labels, limit)
        images, labels = images[idx], labels[idx]
    return images, labels


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; float images are returned as they are."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def random_crop_flip(
    x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, on a whole batch at once.

    x: (N, C, H, W) any dtype -> same shape and dtype. One gather, no per-image Python work.
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dev = x.device
    off_y = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(dev)
    off_x = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(dev)
    flip = torch.rand(n, generator=generator).to(dev) < 0.5
    rows = off_y[:, None] + torch.arange(h, device=dev)[None, :]  # (N, H)
    cols = torch.arange(w, device=dev)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + off_x[:, None]  # (N, W)
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


class Batches:
    """Mini-batches from in-memory tensors, e.g. ``Batches(images, labels, 128, shuffle=True, augment=True)``.

    images: uint8 (N, 3, H, W) or float in [0, 1]; yields x float32 (B, 3, H, W) in [0, 1] on ``device``
    and y int64 (B,). Shuffling and augmentation (random crop with 4-pixel zero padding and horizontal
    flip, done on tensors) are seeded: epoch e of seed s is the same every run.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ):
        if images.dim() != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if config.smoke_factor():  # a smoke run checks that training runs, not what it learns
            batch_size = min(batch_size, 16)
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last = seed, drop_last
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.epoch = 0
        self.max_batches = 2 if config.smoke_factor() else None

    def __len__(self) -> int:
        n = len(self.labels)
        full = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = random_crop_flip(x, generator=gen)
            yield to_float(x.to(self.device, non_blocking=True)), self.labels[idx].to(self.device)
