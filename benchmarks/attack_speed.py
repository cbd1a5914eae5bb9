"""How much does PGD-10 cost compared with the passes it is made of?

PGD-10 needs 10 forward+backward passes (gradient w.r.t. the input), so 10 clean passes over the same
images are the floor; anything above it is the attack's own overhead (sign, projection, clamping).
Timed side by side, interleaved, on ``--n`` CIFAR-10 test images with an untrained ResNet-20 (weights do
not change the cost):

- ``input-grad pass``: forward + cross-entropy + ``autograd.grad`` w.r.t. the input (the unit PGD repeats);
- ``10 input-grad``: that pass 10 times on the same batch, the floor measured directly (same cache reuse);
- ``param-grad pass``: forward + ``loss.backward()`` into the parameters (a training step's pass), for scale;
- ``PGD-10``: ``attacks.pgd(eps=8/255, step_size=2/255, steps=10)``;
- ``measure.accuracy``: PGD-10 plus the final forward that scores it, as a chapter would call it.

Wall time is what a reader waits; CPU time of this process is printed beside it because it is far
less disturbed by other jobs on a shared machine (use ``--threads 1`` there: idle OpenMP threads spin).

Run: ``PUSHPULL_DATA=/work/shared/data python benchmarks/attack_speed.py [--n 1000] [--reps 5]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pushpull_lite import attacks, config, measure, models


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images float (n, 3, 32, 32) in [0, 1], labels (n,), where they came from)."""
    try:
        from pushpull_lite import data

        images, labels = data.load_cifar10("test", limit=n)
        return data.to_float(images), labels, f"CIFAR-10 test ({data.cifar10_source()})"
    except (ImportError, OSError) as error:  # timing does not depend on pixel values
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(n, 3, 32, 32, generator=generator)
        labels = torch.randint(0, 10, (n,), generator=generator)
        return images, labels, f"RANDOM images (CIFAR-10 not loadable: {error})"


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def input_grad_pass(model, x: torch.Tensor, y: torch.Tensor, repeat: int = 1) -> None:
    for _ in range(repeat):
        x_leaf = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_leaf), y, reduction="sum")
        torch.autograd.grad(loss, x_leaf)


def param_grad_pass(model, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)


def paired_ratio(times: dict[str, list[float]], name: str, unit: str) -> float:
    """Median over reps of time[name] / time[unit]: each ratio compares neighbours in time."""
    return statistics.median(t / u for t, u in zip(times[name], times[unit]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config.seed_everything(0)
    x, y, source = load_images(args.n)
    model = models.resnet20().eval()
    parts = batches(x, y, args.batch_size)
    attack = functools.partial(attacks.pgd, eps=8 / 255, step_size=2 / 255, steps=10)
    cases: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
        "input-grad pass": lambda xb, yb: input_grad_pass(model, xb, yb),
        "10 input-grad": lambda xb, yb: input_grad_pass(model, xb, yb, repeat=10),
        "param-grad pass": lambda xb, yb: param_grad_pass(model, xb, yb),
        "PGD-10": lambda xb, yb: attack(model, xb, yb),
        "measure.accuracy": lambda xb, yb: measure.accuracy(
            model, xb, yb, attack, batch_size=len(xb), device="cpu"
        ),
    }
    print(f"images: {len(x)} x {tuple(x.shape[1:])}, {source}")
    print(
        f"model: untrained ResNet-20; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.batch_size}, {args.reps} interleaved reps after one warm-up"
    )

    for run in cases.values():  # warm-up: allocator, oneDNN kernels
        run(*parts[0])
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for rep in range(args.reps):
        spent = {name: [0.0, 0.0] for name in cases}
        # Interleaved per batch, in an order that rotates, so every case sees the same machine load.
        for b, (xb, yb) in enumerate(parts):
            shift = (rep * len(parts) + b) % len(order)
            for name in order[shift:] + order[:shift]:
                start, start_cpu = time.perf_counter(), time.process_time()
                cases[name](xb, yb)
                spent[name][0] += time.perf_counter() - start
                spent[name][1] += time.process_time() - start_cpu
        for name, (seconds, cpu_seconds) in spent.items():
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)

    print(f"\n{'case':<18}{'median s':>10}{'min s':>9}{'max s':>9}{'images/s':>10}", end="")
    print(f"{'x pass (wall)':>15}{'x pass (CPU)':>14}")
    for name in cases:
        ts = wall[name]
        med = statistics.median(ts)
        print(f"{name:<18}{med:>10.3f}{min(ts):>9.3f}{max(ts):>9.3f}{len(x) / med:>10.1f}", end="")
        by_wall, by_cpu = (
            paired_ratio(wall, name, "input-grad pass"),
            paired_ratio(cpu, name, "input-grad pass"),
        )
        print(f"{by_wall:>15.2f}{by_cpu:>14.2f}")
    print("\nPGD-10 cost in input-grad passes (floor 10, target <= 11):")
    for label, times in (("wall", wall), ("CPU", cpu)):
        one = paired_ratio(times, "PGD-10", "input-grad pass")
        ten = 10 * paired_ratio(times, "PGD-10", "10 input-grad")
        print(f"  {label:>4} time: {one:.2f} x one pass, {ten:.2f} x (10 passes on the same batch) / 10")


if __name__ == "__main__":
    main()
