"""How much training each chapter does when opened alone, counted in FLOPs, and what that means on a GPU.

The book has not been timed on a GPU. This script counts the floating-point operations of one training
step of every model a chapter trains (torch's FlopCounterMode on a forward and backward pass, times the
passes an adversarial step makes), multiplies by the recipe's steps, and converts the total into minutes
at an assumed sustained throughput (default 5 TFLOP/s, a guess for small convolutional networks in mixed
precision on a T4, whose fp16 peak is 65 TFLOP/s). The counts are measurements; the minutes are an
estimate until someone times a chapter on a GPU. The model lists mirror each chapter's plan.announce call.

    PUSHPULL_DATA=../shared/data python benchmarks/full_plan.py --profile full --tflops 5
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pushpull_lite import config, plan, zoo


def flops_per_image(job: plan.Job) -> float:
    """FLOPs of one forward-backward pass per image (a batch of 8, counted)."""
    model = job.build().train()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        logits = out["logits"] if isinstance(out, dict) else out
        F.cross_entropy(logits.float(), y).backward()
    return counter.get_total_flops() / 8


def chapter_jobs(profile: str) -> dict[str, list[plan.Job]]:
    """Every model each chapter trains when opened alone (the lists of the chapters' plan.announce calls)."""
    prof = config.get_profile(profile)
    seed = prof.seeds[0]
    amsdn_models = {"AMSDN": (("ssrt", "adv", "multi"), None), "clean-trained": (("clean",), None)}
    if profile in ("medium", "paper"):
        amsdn_models |= {
            "without ssrt": (("adv", "multi"), None),
            "without adv": (("ssrt", "multi"), None),
            "without multi": (("ssrt", "adv"), None),
            "push-pull stem": (("ssrt", "adv", "multi"), "pushpull"),
        }
    few = profile in ("quick", "full")
    resnets = ["ResNet-20", "PushPull2d"] if few else list(zoo.RESNET_VARIANTS)
    cnns = ["push-pull"] if few else list(zoo.SEED_CNN_VARIANTS)
    return {
        "2. The Push-Pull layer": plan.resnet_jobs(profile),
        "3. Common corruptions": plan.resnet_jobs(profile),
        "4. Adversarial attacks": plan.seed_cnn_jobs(zoo.SEED_CNN_VARIANTS, profile),
        "5. CNN-F": plan.cnnf_jobs(profile, seed),
        "6. AMSDN": plan.amsdn_jobs(amsdn_models, profile, seed),
        "7. Evaluating defenses": plan.resnet_jobs(profile, variants=resnets, seeds=[seed])
        + plan.seed_cnn_jobs({k: zoo.SEED_CNN_VARIANTS[k] for k in cnns}, profile, seeds=[seed])
        + plan.cnnf_jobs(profile, seed)
        + plan.amsdn_jobs({"AMSDN": (("ssrt", "adv", "multi"), None)}, profile, seed),
        "8. The leaderboard": plan.resnet_jobs(profile) + plan.seed_cnn_jobs(zoo.SEED_CNN_VARIANTS, profile),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="full", choices=config.PROFILE_NAMES)
    parser.add_argument("--tflops", type=float, default=5.0, help="assumed sustained TFLOP/s of the GPU")
    args = parser.parse_args()
    os.environ["PUSHPULL_CACHE"] = tempfile.mkdtemp()  # an empty model cache: every chapter opened alone
    per_image: dict[str, float] = {}
    print(
        f"profile {args.profile}; minutes at an assumed {args.tflops:g} TFLOP/s (an estimate, not a timing)"
    )
    print(f"{'chapter':26s} {'models':>6s} {'PFLOP':>8s} {'minutes':>8s}")
    for chapter, jobs in chapter_jobs(args.profile).items():
        total = 0.0
        for job in jobs:
            key = job.label.rsplit(", seed", 1)[0]
            if key not in per_image:
                per_image[key] = flops_per_image(job)
            total += per_image[key] * job.batch_size * job.steps * job.passes
        print(f"{chapter:26s} {len(jobs):6d} {total / 1e15:8.1f} {total / (args.tflops * 1e12) / 60:8.0f}")


if __name__ == "__main__":
    main()
