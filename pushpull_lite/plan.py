"""What a chapter is about to train, and roughly how long that takes here: said before it starts.

A chapter opened alone (on Colab, say) trains every model it needs that the model cache does not hold.
:func:`announce` prints how many that is and an estimate of the training time on this device, from a
few training steps of each model timed right here::

    plan.announce(plan.resnet_jobs())   # chapter 2: "trains 5 models (0 in the cache): about 34 min ..."

The estimate is the timed seconds per step times the recipe's steps, times the forward-backward passes
an adversarial training step makes: a rough estimate (data loading, evaluation and attacks come on
top), said as such wherever it is printed. Defined for chapter 2; every training chapter uses it.

The models come from the registry (:mod:`pushpull_lite.zoo`): :func:`jobs` takes registry keys;
:func:`resnet_jobs`, :func:`seed_cnn_jobs`, :func:`cnnf_jobs` and :func:`amsdn_jobs` pick a family's.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import config, feedback, zoo
from .models import FirstLayer

__all__ = [
    "Job",
    "amsdn_jobs",
    "announce",
    "cnnf_jobs",
    "estimate",
    "jobs",
    "resnet_jobs",
    "seed_cnn_jobs",
]


@dataclass(frozen=True)
class Job:
    """One model a chapter trains.

    build: makes an untrained copy (for timing a step); steps: optimiser steps of its recipe; passes:
    forward-backward passes per step (1 for clean training, more when each batch is attacked first);
    cached: the model cache already holds it (nothing to train).
    """

    label: str
    build: Callable[[], nn.Module]
    steps: int
    batch_size: int
    passes: float = 1.0
    amp: bool = False
    channels_last: bool = False
    cached: bool = False


def _steps(images: int, batch_size: int, epochs: int) -> int:
    batches = images // batch_size if images > batch_size else 1  # the loops drop the last partial batch
    return epochs * batches


def _job(entry: zoo.Entry, prof: config.Profile, seed: int) -> Job:
    """The job of training ``entry`` for ``seed`` with ``prof``'s recipe (see :meth:`zoo.Entry.train`)."""
    r = entry.recipe_for(prof)
    n = entry.train_limit(prof) or 50_000
    label = f"{entry.name}, seed {seed}"
    cached = entry.model_path(seed, prof).is_file()
    build = lambda: entry.build_network(prof)  # noqa: E731
    if entry.recipe in ("resnet", "cnn"):
        steps = _steps(n, r.batch_size, r.epochs)
        return Job(label, build, steps, r.batch_size, amp=r.amp, channels_last=r.channels_last, cached=cached)
    if entry.recipe == "cnnf":
        # what trains is a CNN-F (the twin: with 0 cycles): the PGD steps on the feed-forward pass, then the
        # loss at every cycle on two batches
        passes = r.pgd_steps + 2 * (r.cycles + 1)
        build = lambda: feedback.build(r, first_layer=entry.first_layer)  # noqa: E731
        return Job(
            label, build, _steps(n, r.batch_size, r.epochs), r.batch_size, passes=passes, cached=cached
        )
    # AMSDN: forward-backward passes per batch in each stage: two views; the attack plus clean and attacked
    per_stage = {
        "ssrt": (r.ssrt_epochs, 2),
        "clean": (r.adv_epochs + r.multi_epochs, 1),
        "adv": (r.adv_epochs, r.pgd_steps + 2),
        "multi": (r.multi_epochs, max(r.pgd_steps, r.patch_steps, r.pixel_steps) + 2),
    }
    steps = sum(_steps(n, r.batch_size, per_stage[s][0]) for s in entry.stages)
    work = sum(_steps(n, r.batch_size, per_stage[s][0]) * per_stage[s][1] for s in entry.stages)
    return Job(label, build, steps, r.batch_size, passes=work / max(steps, 1), cached=cached)


def jobs(
    models: Iterable[str | zoo.Entry], profile: str | None = None, seeds: Sequence[int] | None = None
) -> list[Job]:
    """One job per model of the registry (keys or entries) and seed (default: the profile's seeds), in
    that order: ``plan.announce(plan.jobs(["cnnf", "cnnf-ff"], seeds=[0]))``.

    Defined in :mod:`pushpull_lite.plan`; every chapter that trains announces its models with it.
    """
    prof = config.get_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    return [_job(zoo._resolve(m), prof, seed) for m in models for seed in seeds]


def _family(family: str, variants: Iterable[str | zoo.Entry] | None) -> list[zoo.Entry]:
    if variants is None:
        return zoo.entries(family=family)
    chosen = [zoo._resolve(v, family) for v in variants]
    other = [e.key for e in chosen if e.family != family]
    if other:
        raise ValueError(
            f"{other} are not of family {family!r}; expected keys from {zoo.keys(family=family)}"
        )
    return chosen


def resnet_jobs(
    profile: str | None = None, variants: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[Job]:
    """The registry's ResNet-20 variants (keys or labels; default all five) for each seed."""
    return jobs(_family("resnet20", variants), profile, seeds)


def seed_cnn_jobs(
    variants: Sequence[str] | Mapping[str, FirstLayer] | None = None,
    profile: str | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Job]:
    """The registry's seed-CNN variants (keys or labels; default all four) for each seed.

    A mapping {label: first layer} (as :data:`pushpull_lite.zoo.SEED_CNN_VARIANTS`) is taken by its labels,
    and each first layer must be the registry's.
    """
    chosen = _family("seed_cnn", variants)
    if isinstance(variants, Mapping):
        for (label, fl), e in zip(variants.items(), chosen):
            if fl != e.first_layer_factory():
                raise ValueError(f"first layer {fl!r} of {label!r} is not the registry's {e.key!r}")
    return jobs(chosen, profile, seeds)


def cnnf_jobs(profile: str | None = None, seed: int = 0, *, feedforward: bool = True) -> list[Job]:
    """Chapter 5's CNN-F and (with ``feedforward``) its same-size feed-forward twin, for ``seed``."""
    if isinstance(profile, feedback.FeedbackRecipe):
        raise TypeError(
            "cnnf_jobs takes a profile name (the registry picks the recipe), not a FeedbackRecipe"
        )
    return jobs(["cnnf", "cnnf-ff"] if feedforward else ["cnnf"], profile, [seed])


def amsdn_jobs(
    variants: Sequence[str] | Mapping[str, tuple[Sequence[str], str | None]] | None = None,
    profile: str | None = None,
    seed: int = 0,
) -> list[Job]:
    """Chapter 6's AMSDNs of the registry (keys or labels; default all six) for ``seed``.

    A mapping ``{label: (stages, stem)}`` is matched to the registry's entry with those stages and stem
    (None: ``"conv"``); one that is not in the registry is an error.
    """
    if isinstance(variants, Mapping):
        found = []
        for label, (stages, stem) in variants.items():
            match = [
                e
                for e in zoo.entries(family="amsdn")
                if set(e.stages) == set(stages) and e.first_layer == (stem or "conv")
            ]
            if not match:
                raise ValueError(
                    f"{label!r} (stages {tuple(stages)}, stem {stem!r}) is not an AMSDN of the registry"
                )
            found.append(match[0])
        variants = found
    return jobs(_family("amsdn", variants), profile, [seed])


def _time_step(job: Job, device: torch.device, repeats: int) -> float:
    """Median seconds of one forward-backward-update step of ``job``'s model on a random CIFAR-sized batch,
    in the memory format and precision its recipe trains in."""
    fmt = torch.channels_last if job.channels_last else torch.contiguous_format
    model = job.build().to(device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch_size, amp = job.batch_size, job.amp
    x = torch.rand(batch_size, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    times = []
    for i in range(repeats + 1):  # the first step warms up (allocations, kernel selection)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            out = model(x)
            logits = out["logits"] if isinstance(out, dict) else out
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def estimate(jobs: Sequence[Job], device: torch.device | str | None = None, repeats: int = 2) -> float:
    """Estimated seconds to train the jobs that are not cached, from ``repeats`` timed steps of each."""
    dev = config.device(device)
    seconds, timed = 0.0, {}
    for job in jobs:
        if job.cached:
            continue
        key = (job.label.rsplit(", seed", 1)[0], job.batch_size, job.amp)  # seeds share a timing
        if key not in timed:
            timed[key] = _time_step(job, dev, repeats)
        seconds += timed[key] * job.steps * job.passes
    return seconds


def announce(jobs: Sequence[Job], device: torch.device | str | None = None) -> str:
    """Print (and return) how many models the chapter trains, how many the cache holds, and the
    estimated training time on ``device`` (default :func:`pushpull_lite.config.device`).

    In ``quick`` (and in smoke runs) it only counts: timing steps would cost more than it tells, and the
    introduction's run-time table has the measured ``quick`` times.
    """
    dev = config.device(device)
    prof = config.get_profile()
    todo = [j for j in jobs if not j.cached]
    models = f"{len(jobs)} trained model{'s' * (len(jobs) != 1)}"
    head = f"This chapter needs {models} (profile `{prof.name}`)"
    if not todo:
        text = f"{head}: all are in the model cache, nothing to train."
    elif prof.name == "quick" or config.smoke_factor():
        text = (
            f"{head}; {len(jobs) - len(todo)} in the model cache, {len(todo)} to train now "
            "(the introduction's run-time table gives the measured `quick` times)."
        )
    else:
        minutes = estimate(todo, dev) / 60
        text = (
            f"{head}; {len(jobs) - len(todo)} in the model cache, {len(todo)} to train now: about "
            f"{math.ceil(minutes)} min on {dev.type} (a rough estimate from 2 timed training steps per "
            "model; evaluation and attacks come on top)."
        )
    print(text)
    return text
