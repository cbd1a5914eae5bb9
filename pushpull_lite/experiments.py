"""The book's standard measurement of every model, and the reference-results runner.

The models it measures are the registry's standard entries: :data:`ENTRIES` is derived from
:mod:`pushpull_lite.zoo` (``zoo.entries(standard=True)``) and an :class:`Entry` is the registry's.
:func:`measure` applies one protocol to any of them, so the leaderboard compares like with like: clean
accuracy, accuracy under Gaussian noise, CIFAR-10-C mCE/rCE, FGSM and PGD at the same budget, and the
worst case of that threat model (FGSM, PGD and AutoAttack's APGD-CE, APGD-T and Square).
:func:`run_entry` measures one entry over the profile's seeds and writes a results file keyed by the registry
key (:mod:`pushpull_lite.results`).

Reference results, resumable (entries whose file is already there for this code version are skipped;
trained models come from the model cache)::

    python -m pushpull_lite.experiments --profile medium   # pushpull_lite/reference_results/medium/
    python -m pushpull_lite.experiments --profile quick --only resnet20 --out /tmp/r

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
from .data import load_cifar10

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


def is_done(entry: Entry, directory: str | os.PathLike | None = None, profile: str | None = None) -> bool:
    """True when ``entry``'s results file exists for this profile and this code version."""
    path = result_path(entry, directory)
    if not path.is_file():
        return False
    try:
        prov = results.load(path)["provenance"]
    except ValueError:  # unreadable or from another schema: measure again
        return False
    return prov["code"] == results.code_version() and prov["profile"] == (profile or config.profile_name())


def run_entry(
    key: str,
    profile: str | None = None,
    *,
    directory: str | os.PathLike | None = None,
    seeds: Sequence[int] | None = None,
    force: bool = False,
) -> Path:
    """Train (or load) ``key`` for every seed (default: the profile's chapter seeds), :func:`measure` each,
    write the results file.

    Skips the work and returns the existing path when :func:`is_done` (unless ``force``).
    """
    entry = get_entry(key)
    prof = config.get_profile(profile)
    if not force and is_done(entry, directory, prof.name):
        return result_path(entry, directory)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    runs, seconds, params, measuring = [], [], None, 0.0
    for seed in seeds:
        trained = entry.train(seed, prof, progress=False)
        start = time.perf_counter()
        runs.append(measure(trained.model, prof))
        measuring += time.perf_counter() - start
        seconds.append(trained.train_seconds)
        params = trained.parameters
    keys = runs[0]["metrics"].keys()
    stats = {k: _mean_sd([r["metrics"][k] for r in runs]) for k in keys}
    spread = {k: sd for k, (_, sd) in stats.items() if sd is not None}
    return results.record(
        key=entry.key,
        chapter=CHAPTER,
        metrics={k: m for k, (m, _) in stats.items()},
        spread=spread,
        seeds=seeds,
        n_test=runs[0]["n_test"],
        n_attack=runs[0]["n_attack"],
        attack=STANDARD_ATTACK,
        train_seconds=statistics.fmean(seconds),
        parameters=params,
        extra={
            "trained_in": entry.chapter,
            "noise_variance": NOISE_VARIANCE,
            "corruption_images_per_set": runs[0]["n_per_set"],
            "corruption_source": runs[0]["corruption_source"],
            "per_seed": [r["metrics"] for r in runs],
            # which attacks the worst case is over, with their budget, and per seed how many images each
            # attack was the first to get wrong
            "worst_case": {k: v for k, v in runs[0]["worst_case"].items() if k != "found_by"},
            "found_by": [r["worst_case"]["found_by"] for r in runs],
            "measure_seconds": round(measuring, 1),
        },
        directory=directory,
    )


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
        done = not force and is_done(ENTRIES[key], directory, config.get_profile(profile).name)
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
    parser.add_argument("--force", action="store_true", help="re-measure entries that are already done")
    args = parser.parse_args(argv)
    profile = args.profile or config.profile_name()
    os.environ["PUSHPULL_PROFILE"] = profile  # so results.record labels the files with it
    out = Path(args.out).absolute() if args.out else default_output(profile)
    print(config.describe(), file=sys.stderr)
    print(f"results go to {out}", file=sys.stderr)
    seeds = config.get_profile(profile).reference_seeds  # the runner: 3 seeds in every profile
    run_all(profile, only=args.only, directory=out, seeds=seeds, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
