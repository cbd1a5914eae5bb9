"""Cache files that cannot lie: one lock per entry, atomic writes under unique names, corrupt entries named.

Every cache of the package (data tensors, unpacked archives, trained models) goes through these helpers:

- :func:`entry_lock`: an inter-process lock per entry (``filelock``, which torch already depends on). A
  second process that wants the same entry waits, then finds it made and loads it: two identical
  trainings started together train once.
- :func:`atomic_path` / :func:`save_torch`: write to a unique temporary name beside the target, rename
  into place only when complete; a crash never leaves half a file under the final name.
- :func:`load_torch`: ``torch.load(..., weights_only=True)``; a truncated or corrupt file raises
  :class:`CorruptCacheError` naming it (never the raw unpickling error, whose text suggests
  ``weights_only=False``).
- :func:`download_verified`: a download (``torch.hub.download_url_to_file``) that lands under its name only
  when its sha256 is the pinned one.
- :func:`require_extraction_filter`: archives are unpacked only with ``tarfile``'s ``filter="data"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from filelock import FileLock

__all__ = [
    "NO_EXTRACTION_FILTER",
    "CorruptCacheError",
    "atomic_path",
    "download_verified",
    "entry_lock",
    "load_torch",
    "remove_stale",
    "require_extraction_filter",
    "save_torch",
    "sha256_file",
    "socket_timeout",
]


#: The error raised where ``tarfile`` lacks the extraction filters (Python < 3.10.12 / 3.11.4).
NO_EXTRACTION_FILTER = (
    "this Python lacks tarfile's extraction filters (tarfile.data_filter), needed to unpack a "
    "downloaded archive safely; use Python >= 3.10.12 (3.11.4+, 3.12+)"
)


class CorruptCacheError(ValueError):
    """A cache entry exists but cannot be read (truncated, corrupt, or not written by this package)."""


def entry_lock(path: str | os.PathLike) -> FileLock:
    """The inter-process lock of the cache entry ``path`` (a hidden ``.<name>.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A unique temporary path beside ``path``; renamed to ``path`` when the block ends without error,
    removed otherwise. Two processes never share a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows when both are on one file system
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_torch(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` onto the CPU; :class:`CorruptCacheError` names a file that
    cannot be read as one (truncated, corrupt, or holding more than tensors and plain types)."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise CorruptCacheError(
            f"the cache entry {path} cannot be read ({type(exc).__name__}): it is truncated or corrupt"
        ) from exc
    if not isinstance(blob, dict):
        raise CorruptCacheError(f"the cache entry {path} holds a {type(blob).__name__}, not a dict")
    return blob


def remove_stale(folder: str | os.PathLike, pattern: str) -> list[Path]:
    """Delete what an interrupted run left in ``folder`` matching ``pattern`` (e.g. ``unpack-*``); call it
    while holding the lock that guards the work which makes such leftovers. Returns what was removed."""
    removed = []
    for leftover in Path(folder).glob(pattern):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def require_extraction_filter() -> None:
    """Raise RuntimeError (:data:`NO_EXTRACTION_FILTER`) when ``tarfile`` cannot filter what an archive
    writes: every archive of the cache is unpacked with ``extractall(..., filter="data")``."""
    if not hasattr(tarfile, "data_filter"):
        raise RuntimeError(NO_EXTRACTION_FILTER)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of the file ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Give every socket opened in the block a ``seconds`` timeout, then restore the old default.

    The download helpers of torch and torchvision take no timeout; without one a machine with a silent
    network would hang instead of failing fast (the default is process-wide, hence the restore).
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download_verified(url: str, dst: Path, sha256: str, timeout: float) -> None:
    """Download ``url`` to ``dst`` with ``torch.hub.download_url_to_file``, which writes a unique
    temporary name beside ``dst`` and moves it into place only when its sha256 equals ``sha256``: a
    short or corrupt download never lands under the final name. ``timeout`` in seconds.

    Raises ValueError naming ``url`` and ``dst`` when the hash differs (and the network's own errors).
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with socket_timeout(timeout):
            torch.hub.download_url_to_file(url, str(dst), hash_prefix=sha256, progress=False)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise ValueError(
            f"the download of {url} does not have the pinned sha256 {sha256} ({exc}); "
            f"it was discarded, {dst} was not written"
        ) from exc
