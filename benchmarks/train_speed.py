"""Training speed of ResNet-20 on this machine, and the clean accuracy each CPU profile's recipe reaches.

    PUSHPULL_DATA=../shared/data python benchmarks/train_speed.py [--profiles quick,medium] [--reps 7]

Part 1 times one training step (forward + backward + SGD) at batch 128 in three set-ups, interleaved,
and prints medians and ratios. Part 2 trains ResNet-20 with each profile's recipe on that profile's
training set (no cache) and prints wall time and clean accuracy on the profile's test set.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pushpull_lite import config, data, measure, models, train


def step_time(model, x, y, amp: bool) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def speed(reps: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    setups = {
        "fp32, NCHW": (models.resnet20(), x, False),
        "fp32, channels_last": (
            models.resnet20().to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
            False,
        ),
        "bf16 autocast, channels_last": (
            models.resnet20().to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
            True,
        ),
    }
    times = {k: [] for k in setups}
    for m, xx, amp in setups.values():  # warm-up
        step_time(m, xx, y, amp)
    for _ in range(reps):
        for name, (m, xx, amp) in setups.items():
            times[name].append(step_time(m, xx, y, amp))
    base = statistics.median(times["fp32, NCHW"])
    print(
        f"ResNet-20 training step, batch 128, {torch.get_num_threads()} threads, "
        f"median of {reps} interleaved reps"
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:32s} {1000 * med:7.1f} ms  {128 / med:7.0f} images/s  speed-up {base / med:4.2f}x")


def accuracy(profiles: list[str]) -> None:
    source = data.cifar10_source()
    print(f"\nClean accuracy per CPU profile recipe (data: {source})")
    for name in profiles:
        prof = config.get_profile(name)
        recipe = train.get_recipe(prof.resnet_recipe)
        x, y = data.load_cifar10("train", limit=prof.train_limit)
        xt, yt = data.load_cifar10("test", limit=prof.test_limit)
        config.seed_everything(0)
        model = models.resnet20()
        history = train.fit(model, x, y, recipe, seed=0, device="cpu")
        acc = measure.accuracy(model, xt, yt)
        print(
            f"  {name:7s} recipe {recipe.name}: {recipe.epochs} epochs on {len(y)} images, "
            f"{history[-1]['seconds']:.0f} s of training, "
            f"clean accuracy {100 * acc:.2f} % on {len(yt)} test images"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="quick,medium")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not args.skip_speed:
        speed(args.reps)
    if args.profiles:
        accuracy(args.profiles.split(","))


if __name__ == "__main__":
    main()
