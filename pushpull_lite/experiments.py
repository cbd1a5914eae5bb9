"""The book's standard measurement of every model, and the reference-results runner.

The models it measures are the registry's standard entries: :data:`ENTRIES` is derived from
:mod:`pushpull_lite.zoo` (``zoo.entries(standard=True)``) and an :class:`Entry` is the registry's.
:func:`measure` applies one protocol to any of them, so the leaderboard compares like with like: clean
accuracy, accuracy under Gaussian noise, CIFAR-10-C mCE/rCE, FGSM and PGD at the same budget, and the
worst case of that threat model (FGSM, PGD and AutoAttack's APGD-CE, APGD-T and Square).
:func:`run_entry` measures one entry over the profile's seeds and writes a results file keyed by the registry
key (:mod:`pushpull_lite.results`).

Reference results, resumable per seed (the file is written after every seed; seeds already measured by
the same code, in the same profile, on the same data are kept; trained models come from the model cache)::

    python -m pushpull_lite.experiments --profile medium   # pushpull_lite/reference_results/medium/
    python -m pushpull_lite.experiments --profile quick --only resnet20 --out /tmp/r
    python -m pushpull_lite.experiments --profile medium --only resnet20 resnet20-pp --seeds 0 1 2 3 4 5 6 7

From an installed package (no checkout) the default output is ``<cache>/results/<profile>/``: the runner
never writes into site-packages.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from . import attacks, autoattack, config, results, robustness, zoo
from . import measure as measure_lib
from .data import DataNotFoundError, cifar10_source, load_cifar10

#: The attack budget of every leaderboard number (L-inf, [0, 1] pixel units; Madry et al.'s CIFAR-10 setting).
STANDARD_ATTACK = {"norm": "linf", "eps": 8 / 255, "step_size": 2 / 255, "steps": 10, "restarts": 1}
#: Gaussian noise for ``noise_acc``: variance 0.01 in [0, 1] units (sigma 0.1), from chapter 2's sweep.
NOISE_VARIANCE = 0.01
#: Images per CIFAR-10-C set where the profile uses whole sets (medium and up): 95 sets of 1,000 different
#: seeded samples cover the 10,000 test images 9.5 times, at a tenth of the cost of 950,000 images per model.
CORRUPTION_PER_SET = 1_000
#: The chapter name under which the standard protocol's results files are written.
CHAPTER = "08_leaderboard"

__all__ = [
    "CHAPTER",
    "CORRUPTION_PER_SET",
    "ENTRIES",
    "NOISE_VARIANCE",
    "STANDARD_ATTACK",
    "Entry",
    "default_output",
    "get_entry",
    "is_done",
    "main",
    "measure",
    "result_path",
    "run_all",
    "run_entry",
]

#: A model of the book: the registry's entry type (key, display name, chapter, baseline, ``train``).
Entry = zoo.Entry

#: key -> entry of the standard protocol, in registry order: the registry's ``standard`` entries (no list
#: of its own, so the leaderboard's rows are always the registry's models).
ENTRIES: dict[str, Entry] = {e.key: e for e in zoo.entries(standard=True)}


def get_entry(key: str) -> Entry:
    """The standard-protocol entry ``key`` (a key of :data:`ENTRIES`); a clear error for any other."""
    if key not in ENTRIES:
        raise ValueError(f"unknown entry {key!r}; expected one of {list(ENTRIES)}")
    return ENTRIES[key]


def measure(model: nn.Module, profile: str | config.Profile | None = None, *, batch_size: int = 250) -> dict:
    """The standard protocol on one model (eval mode, logits output, input in [0, 1]).

    Returns ``{"metrics": {...}, "n_test", "n_attack", "n_per_set"}`` with percentages: ``clean_acc``
    and ``noise_acc`` on ``prof.test_limit`` test images; ``mce`` and ``rce`` from CIFAR-10-C (19
    corruptions x 5 severities, ``prof.corruption_per_set`` or :data:`CORRUPTION_PER_SET` images per
    set); ``fgsm_acc`` and ``pgd_acc`` at :data:`STANDARD_ATTACK` on ``prof.attack_limit`` images, and
    ``worst_acc``, the worst case of that threat model on the same images: an image counts only if the
    model is right on it clean, under FGSM, PGD and, where torchattacks is installed, APGD-CE, APGD-T and
    Square (:mod:`pushpull_lite.autoattack`, budget by profile). ``"worst_case"`` says which attacks ran,
    their budget, and how many images each was the first to fool (``found_by``).
    Deterministic for a given model and profile (seeded noise and attack starts; ``batch_size`` is the
    attack's batch, which fixes how the random starts are drawn). Leaves ``model`` in the channels-last
    memory format.
    """
    prof = profile if isinstance(profile, config.Profile) else config.get_profile(profile)
    # channels-last convolutions: about 1.3x faster attacks on CPUs; same weights (moved in place)
    model.to(memory_format=torch.channels_last)
    images, labels = load_cifar10("test", limit=prof.test_limit)
    correct = measure_lib.correct(model, images, labels, batch_size=100)
    noisy = robustness.gaussian_noise(images, NOISE_VARIANCE, seed=0)
    noisy_correct = measure_lib.correct(model, noisy, labels, batch_size=100)
    corr = robustness.corruption_errors(
        {"m": model},
        limit=prof.test_limit,
        per_set=prof.corruption_per_set or config.smoke_size(CORRUPTION_PER_SET),
        progress=False,
    )
    summary = robustness.summary(corr)["m"]

    x, y = load_cifar10("test", limit=prof.attack_limit)
    a = STANDARD_ATTACK
    fgsm_ok = measure_lib.correct(
        model, x, y, functools.partial(attacks.fgsm, eps=a["eps"]), batch_size=batch_size
    )
    torch.manual_seed(0)  # PGD's random start (FGSM draws no random numbers)
    pgd = functools.partial(
        attacks.pgd,
        eps=a["eps"],
        step_size=a["step_size"],
        steps=a["steps"],
        norm=a["norm"],
        restarts=a["restarts"],
    )
    pgd_ok = measure_lib.correct(model, x, y, pgd, batch_size=batch_size)
    clean_ok = measure_lib.correct(model, x, y, batch_size=batch_size)
    # The worst case of one threat model (L-inf at STANDARD_ATTACK's eps): an image counts only if the
    # model is right on it clean, under FGSM and PGD, and under AutoAttack's APGD-CE, APGD-T and Square,
    # each run on the images still standing (when torchattacks is installed; the note says otherwise).
    strong = autoattack.budget(prof)
    library, note = autoattack.library_attacks(a["eps"], strong)
    worst = autoattack.cascade(
        model,
        x,
        y,
        library,
        threat=f"linf {a['eps'] * 255:.0f}/255",
        done={"clean": clean_ok, "FGSM": fgsm_ok, f"PGD-{a['steps']}": pgd_ok},
        note=note,
        budget=strong,
        batch_size=batch_size,
    )
    pct = lambda t: 100.0 * t.double().mean().item()  # noqa: E731
    return {
        "metrics": {
            "clean_acc": pct(correct),
            "noise_acc": pct(noisy_correct),
            "mce": summary["mCE"],
            "rce": summary["rCE"],
            "fgsm_acc": pct(fgsm_ok),
            "pgd_acc": pct(pgd_ok),
            "worst_acc": 100.0 * worst.accuracy,
        },
        "worst_case": {
            "threat": worst.threat,
            "attacks": [k for k in worst.correct if k != "clean"],
            "found_by": worst.counts(),
            "library": note,
            "budget": worst.budget if library else {},
        },
        "n_test": len(labels),
        "n_attack": len(y),
        "n_per_set": corr["n_per_set"],
        "corruption_source": corr["source"],
    }


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def result_path(entry: Entry, directory: str | os.PathLike | None = None) -> Path:
    directory = Path(directory) if directory is not None else results.results_dir()
    return directory / f"{results.slug(CHAPTER)}__{results.slug(entry.name)}.json"


def _same_code_and_data(row: dict, profile: str) -> bool:
    """Was ``row`` measured by this package's code (its sources' hash), in ``profile``, on this data?"""
    prov = row["provenance"]
    if prov.get("source") != results.source_hash() or prov.get("profile") != profile:
        return False
    try:
        return prov.get("data") == cifar10_source()
    except DataNotFoundError:
        return False


def is_done(
    entry: Entry,
    directory: str | os.PathLike | None = None,
    profile: str | None = None,
    seeds: Sequence[int] | None = None,
) -> bool:
    """True when ``entry``'s results file exists for this profile, this code (the package sources' hash)
    and this data, and holds every seed of ``seeds`` (when given; it may hold more)."""
    path = result_path(entry, directory)
    if not path.is_file():
        return False
    try:
        row = results.load(path)
    except ValueError:  # unreadable or from another schema: measure again
        return False
    if not _same_code_and_data(row, profile or config.profile_name()):
        return False
    return seeds is None or set(seeds) <= set(row["seeds"])


def _runs_in_file(entry: Entry, directory: str | os.PathLike | None, profile: str) -> dict[int, dict]:
    """seed -> run (as :func:`measure` returns it, plus its times) from ``entry``'s results file, when that
    file was measured by this code, in ``profile``, on this data and records every run's details."""
    path = result_path(entry, directory)
    try:
        row = results.load(path) if path.is_file() else None
    except ValueError:
        return {}
    if row is None or not _same_code_and_data(row, profile):
        return {}
    extra = row["extra"]
    needed = ("per_seed", "found_by", "train_seconds_per_seed", "measure_seconds_per_seed", "worst_case")
    if any(len(extra.get(k, ())) == 0 for k in needed):
        return {}
    return {
        seed: {
            "metrics": extra["per_seed"][i],
            "worst_case": {**extra["worst_case"], "found_by": extra["found_by"][i]},
            "n_test": row["n_test"],
            "n_attack": row["n_attack"],
            "n_per_set": extra["corruption_images_per_set"],
            "corruption_source": extra["corruption_source"],
            "train_seconds": extra["train_seconds_per_seed"][i],
            "measure_seconds": extra["measure_seconds_per_seed"][i],
            "parameters": row["parameters"],
        }
        for i, seed in enumerate(row["seeds"])
    }


def _write(entry: Entry, runs: dict[int, dict], directory: str | os.PathLike | None) -> Path:
    """One results file from the runs measured so far (seed -> run), seeds in increasing order."""
    seeds = sorted(runs)
    ordered = [runs[s] for s in seeds]
    keys = ordered[0]["metrics"].keys()
    stats = {k: _mean_sd([r["metrics"][k] for r in ordered]) for k in keys}
    spread = {k: sd for k, (_, sd) in stats.items() if sd is not None}
    first = ordered[0]
    return results.record(
        key=entry.key,
        chapter=CHAPTER,
        metrics={k: m for k, (m, _) in stats.items()},
        spread=spread,
        seeds=seeds,
        n_test=first["n_test"],
        n_attack=first["n_attack"],
        attack=STANDARD_ATTACK,
        train_seconds=statistics.fmean(r["train_seconds"] for r in ordered),
        parameters=first["parameters"],
        extra={
            "trained_in": entry.chapter,
            "noise_variance": NOISE_VARIANCE,
            "corruption_images_per_set": first["n_per_set"],
            "corruption_source": first["corruption_source"],
            "per_seed": [r["metrics"] for r in ordered],
            # which attacks the worst case is over, with their budget, and per seed how many images each
            # attack was the first to get wrong
            "worst_case": {k: v for k, v in first["worst_case"].items() if k != "found_by"},
            "found_by": [r["worst_case"]["found_by"] for r in ordered],
            "train_seconds_per_seed": [r["train_seconds"] for r in ordered],
            "measure_seconds_per_seed": [r["measure_seconds"] for r in ordered],
            "measure_seconds": round(sum(r["measure_seconds"] for r in ordered), 1),
        },
        directory=directory,
    )


def run_entry(
    key: str,
    profile: str | None = None,
    *,
    directory: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    force: bool = False,
) -> Path:
    """Train (or load) ``key`` for every seed (default: the profile's chapter seeds), :func:`measure` each,
    and write the results file after every seed, so a long run can be stopped, committed and resumed.

    Seeds already in the file, measured by this code in this profile on this data, are kept and not
    measured again (unless ``force``); the file then holds the union of its seeds and ``seeds``. A file of
    the same profile measured by other code is measured again for the union too, never narrowed to
    ``seeds``. Returns at once when :func:`is_done` for ``seeds``.
    """
    entry = get_entry(key)
    prof = config.get_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative ints, at least one; got {seeds!r}")
    if not force and is_done(entry, directory, prof.name, seeds):
        return result_path(entry, directory)
    runs = {} if force else _runs_in_file(entry, directory, prof.name)
    path = result_path(entry, directory)
    if not runs and path.is_file():
        # A file measured by other code (or data, or profile) is replaced, never narrowed: its seeds are
        # measured again with this code, so `--seeds 3` does not turn a 3-seed file into a 1-seed one.
        try:
            old = results.load(path)
            if old["provenance"].get("profile") == prof.name:
                seeds = tuple(sorted(set(seeds) | set(old["seeds"])))
        except ValueError:
            pass
    for seed in seeds:
        if seed in runs:
            continue
        trained = entry.train(seed, prof, progress=False)
        start = time.perf_counter()
        run = measure(trained.model, prof)
        run.update(
            measure_seconds=round(time.perf_counter() - start, 1),
            train_seconds=trained.train_seconds,
            parameters=trained.parameters,
        )
        runs[seed] = run
        path = _write(entry, runs, directory)  # after every seed: a stopped run keeps what it measured
    return path


def run_all(
    profile: str | None = None,
    *,
    only: Sequence[str] | None = None,
    directory: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """:func:`run_entry` for every entry (or those in ``only``), in order; resumable."""
    keys = list(ENTRIES) if not only else [get_entry(k).key for k in only]
    paths = []
    for key in keys:
        start = time.perf_counter()
        done = not force and is_done(ENTRIES[key], directory, config.get_profile(profile).name, seeds)
        paths.append(run_entry(key, profile, directory=directory, seeds=seeds, force=force))
        log(f"{key:18s} {'already done' if done else f'{time.perf_counter() - start:7.1f} s'} -> {paths[-1]}")
    return paths


def default_output(profile: str) -> Path:
    """Where the runner writes by default: the committed reference results when the package runs from
    the book's checkout, else the cache's results folder (never into an installed package)."""
    if config.checkout_root() is not None:
        return results.reference_dir(profile)
    return results.results_dir(profile)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pushpull_lite.experiments", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--profile", choices=config.PROFILE_NAMES, default=None, help="default: PUSHPULL_PROFILE"
    )
    parser.add_argument("--only", nargs="*", help=f"entries to run (default all): {' '.join(ENTRIES)}")
    parser.add_argument(
        "--out",
        default=None,
        help="results directory (default: pushpull_lite/reference_results/<profile> in a checkout, "
        "else <cache>/results/<profile>)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="training seeds (default: the profile's reference seeds, 0 1 2); seeds already in a results "
        "file measured by this code are kept, so --seeds 0 1 2 3 4 5 6 7 extends a 3-seed file",
    )
    parser.add_argument("--force", action="store_true", help="re-measure entries that are already done")
    args = parser.parse_args(argv)
    profile = args.profile or config.profile_name()
    os.environ["PUSHPULL_PROFILE"] = profile  # so results.record labels the files with it
    out = Path(args.out).absolute() if args.out else default_output(profile)
    print(config.describe(), file=sys.stderr)
    print(f"results go to {out}", file=sys.stderr)
    # the runner: 3 seeds in every profile unless told otherwise
    seeds = tuple(args.seeds) if args.seeds else config.get_profile(profile).reference_seeds
    run_all(profile, only=args.only, directory=out, seeds=seeds, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
