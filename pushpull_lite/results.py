"""Results files: one small JSON per model, written by the chapters, read by the leaderboard.

A chapter that evaluates a model calls :func:`record` with the model's registry key
(:mod:`pushpull_lite.zoo`); the leaderboard chapter calls :func:`load_all` and :func:`merge`, which joins
the files of one model by that key, never by its display name. Files written before they held a key (the
committed reference results) get it from their display name when loaded (:func:`load`).
Every file carries its provenance (profile, data source, seeds, device, code version, time), so a
number on the leaderboard can always be traced to the run that produced it. Nothing here is typed in
by hand: a results file is only ever written by code that measured what it holds.

Where files go: ``PUSHPULL_RESULTS`` if set, else ``<cache>/results/<profile>/``. The committed
reference results (``python -m pushpull_lite.experiments``) are package data,
``pushpull_lite/reference_results/<profile>/`` (:func:`reference_dir`), so an installed package (Colab)
has them too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import __version__, config, zoo

__all__ = [
    "METRIC_KEYS",
    "REFERENCE_ROOT",
    "SCHEMA_VERSION",
    "code_version",
    "load",
    "load_all",
    "load_reference",
    "merge",
    "record",
    "reference_dir",
    "results_dir",
    "slug",
    "source_hash",
]

#: Metrics a results file may hold, all in percent except mCE/rCE (percent of the baseline's error).
METRIC_KEYS = (
    "clean_acc",  # accuracy on clean test images
    "noise_acc",  # accuracy under additive Gaussian noise (the sigma/variance goes in ``extra``)
    "mce",  # CIFAR-10-C mean corruption error, relative to the baseline (Hendrycks & Dietterich)
    "rce",  # relative mCE
    "fgsm_acc",  # accuracy under FGSM at ``attack["eps"]``
    "pgd_acc",  # accuracy under PGD at ``attack``
    "worst_acc",  # worst case of one threat model (``attack``): per image, right clean and under every attack
    "cert_acc_r0.25",  # certified accuracy at L2 radius 0.25 (randomized smoothing)
    "cert_acc_r0.5",  # certified accuracy at L2 radius 0.5
    "detection_rate",  # share of attacked inputs flagged by a detector
    "false_positive_rate",  # share of clean inputs flagged by a detector
)

SCHEMA_VERSION = 1
_PACKAGE_DIR = Path(__file__).resolve().parent


#: The committed reference results, shipped with the package: ``<this folder>/<profile>/*.json``.
REFERENCE_ROOT = _PACKAGE_DIR / "reference_results"


def reference_dir(profile: str) -> Path:
    """The committed reference results of ``profile`` (read-only package data; may not exist yet)."""
    if profile not in config.PROFILE_NAMES:
        raise ValueError(f"profile must be one of {config.PROFILE_NAMES}, got {profile!r}")
    return REFERENCE_ROOT / profile


def load_reference(profile: str = "medium") -> list[dict]:
    """Every committed reference results file of ``profile`` (see :func:`load_all`); [] when none is."""
    return load_all(reference_dir(profile))


def results_dir(profile: str | None = None) -> Path:
    """Where :func:`record` writes and :func:`load_all` reads by default: ``PUSHPULL_RESULTS`` (a relative
    path is taken as :func:`pushpull_lite.config.resolve_path` takes it) or ``<cache>/results/<profile>``."""
    env = os.environ.get("PUSHPULL_RESULTS", "").strip()
    if env:
        return config.resolve_path(env)
    return config.output_dir() / "results" / (profile or config.profile_name())


def slug(name: str) -> str:
    """A file-name-safe version of a leaderboard row name: ``"ResNet-20 (PP)"`` -> ``"resnet-20-pp"``."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not s:
        raise ValueError(f"name must contain letters or digits, got {name!r}")
    return s


def source_hash() -> str:
    """sha256 (12 hex digits) of the package's Python sources: the same code gives the same hash in any
    commit (results files record it, so the runner can resume runs measured by the same code)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """The package version plus the git commit (with ``+dirty src <hash of the sources>`` when the package
    differs from it, so two uncommitted states never pass for the same code), or a hash of the package's
    sources when there is no git checkout (e.g. a pip install on Colab)."""
    try:
        root = _PACKAGE_DIR.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            dirty = subprocess.run(  # the code only: results the runner just wrote do not make it dirty
                ["git", "status", "--porcelain", "--", str(_PACKAGE_DIR), f":(exclude){REFERENCE_ROOT}"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            )
            flag = f"+dirty src {source_hash()}" if dirty.stdout.strip() else ""
            return f"{__version__} git {commit.stdout.strip()}{flag}"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{__version__} src {source_hash()}"


def _check_number(where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}[{key!r}] must be a finite number, got {value!r}")
    return float(value)


def _check_metrics(where: str, metrics: Mapping[str, object]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{where} must be a mapping of metric name to number, got {type(metrics).__name__}")
    unknown = sorted(set(metrics) - set(METRIC_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; expected some of {list(METRIC_KEYS)}")
    out = {}
    for key, value in metrics.items():
        v = _check_number(where, key, value)
        if key not in ("mce", "rce") and not 0 <= v <= 100:
            raise ValueError(f"{where}[{key!r}] is a percentage and must be in [0, 100], got {v}")
        out[key] = v
    return out


def _accuracy_keys(metrics: Mapping[str, float]) -> list[str]:
    """The keys of ``metrics`` that are shares of images in percent: ``*_acc`` and the detector rates."""
    return [k for k in metrics if k.endswith("_acc") or k in ("detection_rate", "false_positive_rate")]


def _check_percent_not_fraction(metrics: Mapping[str, float]) -> None:
    """Refuse accuracies given as fractions (0.85 for 85 %): they would rank the model last, silently.

    A clean accuracy above 0 and at most 1 % is a tenth of chance on CIFAR-10, so it can only be a fraction
    (0 is 0 either way: an untrained or broken model); and a set of accuracies that are all at most 1 (one
    above 0) is one too.
    """
    clean = metrics.get("clean_acc")
    if clean is not None and 0 < clean <= 1.0:
        raise ValueError(
            f"metrics['clean_acc'] = {clean:g} is at most 1: accuracies are percent in [0, 100] (chance "
            f"on CIFAR-10 is 10 %), so this is a fraction passed by mistake; write {100 * clean:g} for it"
        )
    keys = _accuracy_keys(metrics)
    values = [metrics[k] for k in keys]
    if values and all(v <= 1.0 for v in values) and any(v > 0 for v in values):
        key = next(k for k in keys if metrics[k] > 0)
        raise ValueError(
            f"metrics[{key!r}] = {metrics[key]:g} and every other accuracy ({', '.join(keys)}) are at "
            "most 1: accuracies are percent in [0, 100], not fractions; multiply them by 100"
        )


def _existing_name(path: Path) -> str | None:
    """The ``name`` held by the results file ``path``, or None when there is none (missing or unreadable)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    name = payload.get("name") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None


def _key_and_name(key: str | None, name: str | None) -> tuple[str | None, str]:
    """The (registry key, display name) of a row from either: the key names the row; a name alone gets the
    registry key of the model displayed that way (None for a model outside the registry)."""
    if key is None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string (or give key=), got {name!r}")
        return zoo.key_for_name(name), name
    if not isinstance(key, str):
        raise ValueError(f"key must be a registry key (a string, see pushpull_lite.zoo), got {key!r}")
    entry = zoo.get(key)  # an unknown key raises, listing the known ones
    if name is not None and name != entry.name:
        raise ValueError(
            f"name {name!r} is not the display name of {key!r} ({entry.name!r}); leave name out with key="
        )
    return key, entry.name


def record(
    name: str | None = None,
    *,
    key: str | None = None,
    chapter: str,
    metrics: Mapping[str, float],
    seeds: Sequence[int],
    n_test: int,
    n_attack: int | None = None,
    attack: Mapping[str, object] | None = None,
    spread: Mapping[str, float] | None = None,
    train_seconds: float | None = None,
    parameters: int | None = None,
    extra: Mapping[str, object] | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Write one model's results to ``<directory>/<chapter>__<slug(name)>.json`` and return the path.

    One file per (chapter, model): chapters that measure different things about the same model write
    different files, and :func:`merge` joins them into one leaderboard row.

    key: the model's registry key (:func:`pushpull_lite.zoo.get`), stored in the file and used by
    :func:`merge` to join chapters' rows; name: the leaderboard row, unique across the book (default, and
    required to match: the registry's display name of ``key``; without a key, a model outside the
    registry, or a registry model found by its display name); chapter: the notebook that measured it
    (e.g. ``"02_pushpull_layer"``); metrics: percentages keyed by :data:`METRIC_KEYS` (mean over
    ``seeds``); spread: standard deviation across seeds, same keys; n_test / n_attack: number of test
    images behind the clean / attack numbers; attack: what ``fgsm_acc`` and ``pgd_acc`` mean (norm, eps
    in [0, 1] pixel units, steps, restarts); extra: anything else JSON-serialisable (e.g. the noise level).
    """
    key, name = _key_and_name(key, name)
    if not isinstance(chapter, str) or not chapter:
        raise ValueError(f"chapter must be the notebook's name, e.g. '02_pushpull_layer', got {chapter!r}")
    clean = _check_metrics("metrics", metrics)
    if not clean:
        raise ValueError("metrics must hold at least one measured value")
    _check_percent_not_fraction(clean)
    spread_clean = _check_metrics("spread", spread or {})
    if set(spread_clean) - set(clean):
        raise ValueError(f"spread has keys without a metric: {sorted(set(spread_clean) - set(clean))}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must list the seed of every run behind the numbers")
    if int(n_test) <= 0:
        raise ValueError(f"n_test must be a positive number of test images, got {n_test!r}")
    if {"fgsm_acc", "pgd_acc", "worst_acc"} & set(clean) and (attack is None or n_attack is None):
        raise ValueError("attack metrics need attack=(norm, eps, steps) and n_attack=(images attacked)")
    from .data import DataNotFoundError, cifar10_source

    try:
        source = cifar10_source()
    except DataNotFoundError:
        source = "unknown (CIFAR-10 not found)"
    payload = {
        "schema": SCHEMA_VERSION,
        "key": key,
        "name": name,
        "chapter": chapter,
        "metrics": clean,
        "spread": spread_clean,
        "seeds": seeds,
        "n_test": int(n_test),
        "n_attack": None if n_attack is None else int(n_attack),
        "attack": dict(attack) if attack else None,
        "train_seconds": None if train_seconds is None else round(float(train_seconds), 1),
        "parameters": None if parameters is None else int(parameters),
        "extra": dict(extra) if extra else {},
        "provenance": {
            "profile": config.profile_name(),
            "data": source,
            "device": str(config.device()),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "code": code_version(),
            "source": source_hash(),
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    out_dir = Path(directory) if directory is not None else results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{slug(chapter)}__{slug(name)}.json"
    other = _existing_name(path)
    if other is not None and other != name:
        # Two display names with one slug ("ResNet-20 (PP)", "resnet 20 pp") would share a file: refuse.
        raise ValueError(
            f"{path} already holds the results of {other!r}, and name {name!r} maps to the same file "
            f"(slug {slug(name)!r}); give one of them a name that differs in letters or digits"
        )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def load(path: str | os.PathLike) -> dict:
    """Read one results file, checking it is one (schema, keys, metric names, provenance).

    Raises ValueError naming ``path`` for anything that is not a results file (not UTF-8, not JSON, not
    a JSON object, keys missing, provenance not an object, bad metrics). A file without a ``key`` (written
    before results held one, e.g. the committed reference results) gets the registry key of its display
    name (None for a model outside the registry).
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a results file: not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(payload, dict):
        got = f"{type(payload).__name__} {payload!r:.60}"
        raise ValueError(f"{path} is not a results file: expected a JSON object, got {got}")
    missing = {"schema", "name", "chapter", "metrics", "seeds", "n_test", "provenance"} - set(payload)
    if missing:
        raise ValueError(f"{path} is not a results file: missing {sorted(missing)}")
    if payload["schema"] != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema {payload['schema']}, this code reads {SCHEMA_VERSION}")
    if not isinstance(payload["provenance"], dict):
        raise ValueError(
            f"{path} is not a results file: 'provenance' must be a JSON object (profile, data, code, ...), "
            f"got {type(payload['provenance']).__name__}"
        )
    try:
        _check_metrics(f"{path} metrics", payload["metrics"])
    except TypeError as err:  # metrics not an object: still "not a results file", with the path
        raise ValueError(str(err)) from err
    if payload.get("key") is None:
        payload["key"] = zoo.key_for_name(payload["name"])
    elif not isinstance(payload["key"], str):
        raise ValueError(
            f"{path} is not a results file: 'key' must be a registry key, got {payload['key']!r}"
        )
    return payload


def load_all(directory: str | os.PathLike | None = None) -> list[dict]:
    """Every results file in ``directory`` (default :func:`results_dir`), sorted by chapter then name.

    A directory that does not exist gives an empty list (nothing has been measured yet).
    """
    directory = Path(directory) if directory is not None else results_dir()
    if not directory.is_dir():
        return []
    rows = [load(p) for p in sorted(directory.glob("*.json"))]
    return sorted(rows, key=lambda r: (r["chapter"], r["name"]))


def _row_key(row: Mapping) -> str | None:
    return row.get("key") or zoo.key_for_name(row["name"])


def merge(rows: Sequence[Mapping]) -> list[dict]:
    """Join results of the same model from several chapters into one row per model: by registry key
    (``row["key"]``, or the key of its display name), by name only for models outside the registry.
    The merged row has the ``key`` and the ``name`` (the registry's display name, else its first file's).

    Each metric keeps where it came from (``sources[metric] = chapter``; attack metrics also their budget,
    ``attacks[metric]``). When two chapters measured the
    same metric, the one measured on more test images wins (the earlier chapter on a tie), ``worst_acc``
    included: a worst case is a per-image AND over attacks on the same images, so it is never the minimum
    of numbers measured on different images, seeds or threat models.
    """
    merged: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["chapter"]):
        key = _row_key(row)
        out = merged.setdefault(
            key if key is not None else f"name:{row['name']}",
            {
                "key": key,
                "name": zoo.REGISTRY[key].name if key in zoo.REGISTRY else row["name"],
                "metrics": {},
                "spread": {},
                "sources": {},
                "n": {},
                "chapters": [],
            },
        )
        out["chapters"].append(row["chapter"])
        for key, value in row["metrics"].items():
            attack_metric = key in ("fgsm_acc", "pgd_acc", "worst_acc")
            n = (row.get("n_attack") if attack_metric else None) or row["n_test"]
            if key in out["metrics"] and out["n"][key] >= n:
                # never a minimum across chapters: their images, seeds and attacks differ
                continue
            out["metrics"][key] = value
            out["n"][key] = n
            out["sources"][key] = row["chapter"]
            if attack_metric:
                out.setdefault("attacks", {})[key] = row.get("attack")
            if key in row.get("spread", {}):
                out["spread"][key] = row["spread"][key]
            else:
                out["spread"].pop(key, None)
        for key in ("parameters", "train_seconds"):
            if row.get(key) is not None and out.get(key) is None:
                out[key] = row[key]
        out.setdefault("provenance", row["provenance"])
    return list(merged.values())
