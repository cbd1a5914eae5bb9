"""What a chapter is about to train, and roughly how long that takes here: said before it starts.

A chapter opened alone (on Colab, say) trains every model it needs that the model cache does not hold.
:func:`announce` prints how many that is and an estimate of the training time on this device, from a
few training steps of each model timed right here::

    plan.announce(plan.resnet_jobs())   # chapter 2: "trains 5 models (0 in the cache): about 34 min ..."

The estimate is the timed seconds per step times the recipe's steps, times the forward-backward passes
an adversarial training step makes: a rough estimate (data loading, evaluation and attacks come on
top), said as such wherever it is printed. Defined for chapter 2; every training chapter uses it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import amsdn, config, feedback, train
from .models import FirstLayer, build

__all__ = ["Job", "amsdn_jobs", "announce", "cnnf_jobs", "estimate", "resnet_jobs", "seed_cnn_jobs"]


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


def _trained_model_jobs(
    arch: str,
    name: str,
    first_layers: Mapping[str, FirstLayer | None],
    recipe_name: str,
    train_limit: int | None,
    seeds: Sequence[int],
) -> list[Job]:
    """Jobs for :func:`pushpull_lite.train.train_model`: ``arch`` with each first layer, for each seed."""
    recipe = train.get_recipe(recipe_name)
    steps = _steps(train_limit or 50_000, recipe.batch_size, recipe.epochs)
    return [
        Job(
            f"{name} {label}, seed {seed}",
            lambda fl=fl: build(arch, fl),
            steps,
            recipe.batch_size,
            amp=recipe.amp,
            channels_last=recipe.channels_last,
            cached=train.model_path(arch, fl, recipe, train_limit, seed).is_file(),
        )
        for label, fl in first_layers.items()
        for seed in seeds
    ]


def resnet_jobs(
    profile: str | None = None, variants: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[Job]:
    """The ResNet-20 variants of :data:`pushpull_lite.zoo.RESNET_VARIANTS` (default: all) for each seed."""
    from .zoo import RESNET_VARIANTS

    prof = config.get_profile(profile)
    chosen = {label: RESNET_VARIANTS[label] for label in (RESNET_VARIANTS if variants is None else variants)}
    seeds = prof.seeds if seeds is None else seeds
    return _trained_model_jobs("resnet20", "ResNet-20", chosen, prof.resnet_recipe, prof.train_limit, seeds)


def seed_cnn_jobs(
    first_layers: Mapping[str, FirstLayer], profile: str | None = None, seeds: Sequence[int] | None = None
) -> list[Job]:
    """The seed project's CNN with each of ``first_layers`` ({label: first layer}) for each seed."""
    prof = config.get_profile(profile)
    seeds = prof.seeds if seeds is None else seeds
    return _trained_model_jobs(
        "seed_cnn", "seed CNN", first_layers, prof.cnn_recipe, prof.cnn_train_limit, seeds
    )


def cnnf_jobs(recipe: str | feedback.FeedbackRecipe, seed: int = 0, *, feedforward: bool = True) -> list[Job]:
    """Chapter 5's CNN-F and (with ``feedforward``) its same-size feed-forward twin."""
    r = feedback.get_recipe(recipe)
    n = r.train_limit or 50_000
    jobs = []
    for rr in [r] + ([r.feedforward()] if feedforward else []):
        jobs.append(
            Job(
                f"CNN-F, {rr.cycles} cycles, seed {seed}" if rr.cycles else f"feed-forward CNN, seed {seed}",
                lambda rr=rr: feedback.build(rr),
                _steps(n, rr.batch_size, rr.epochs),
                rr.batch_size,
                # the PGD steps on the feed-forward pass, then the loss at every cycle on two batches
                passes=rr.pgd_steps + 2 * (rr.cycles + 1),
                cached=feedback.model_path(rr, seed).is_file(),
            )
        )
    return jobs


def amsdn_jobs(
    models: Mapping[str, tuple[Sequence[str], str | None]],
    recipe: str | amsdn.AMSDNRecipe | None = None,
    seed: int = 0,
) -> list[Job]:
    """Chapter 6's AMSDNs: ``{label: (stages, stem)}``, trained with ``recipe``."""
    r = amsdn.get_recipe(recipe)
    n = r.train_limit or 50_000
    # forward-backward passes per batch in each stage: two views; the attack plus clean and attacked
    per_stage = {
        "ssrt": (r.ssrt_epochs, 2),
        "clean": (r.adv_epochs + r.multi_epochs, 1),
        "adv": (r.adv_epochs, r.pgd_steps + 2),
        "multi": (r.multi_epochs, max(r.pgd_steps, r.patch_steps, r.pixel_steps) + 2),
    }
    jobs = []
    for label, (stages, stem) in models.items():
        steps = sum(_steps(n, r.batch_size, per_stage[s][0]) for s in stages)
        work = sum(_steps(n, r.batch_size, per_stage[s][0]) * per_stage[s][1] for s in stages)
        arch = r.arch if stem is None else replace(r.arch, stem=stem)
        jobs.append(
            Job(
                f"AMSDN {label}, seed {seed}",
                lambda arch=arch: amsdn.build(arch),
                steps,
                r.batch_size,
                passes=work / max(steps, 1),
                cached=amsdn.model_path(r, seed, stages=stages, stem=stem).is_file(),
            )
        )
    return jobs


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
