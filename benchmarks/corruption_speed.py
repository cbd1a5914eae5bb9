"""How long generating CIFAR-10-C takes here: all 19 corruptions x 5 severities of the test images.

    python benchmarks/corruption_speed.py [--limit 10000] [--repeats 1] [--threads 1 2]

Uses the real test images when :func:`pushpull_lite.data.load_cifar10` finds them (set PUSHPULL_DATA),
otherwise random uint8 images of the same shape (and says so). Prints, per corruption, the time for its
5 severities (median over repeats), the total, the slowest corruption and each one's share of the total.
``--threads`` sets ``corruptions.THREADS`` (torch threads inside ``corrupt``); with several values the
settings are interleaved in every repetition, so all see the same machine load, and the ratio of the
totals is printed. Target: total under 5 minutes for 10,000 images.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pushpull_lite import corruptions


def test_images(limit: int) -> tuple[torch.Tensor, str]:
    """(images uint8 (N, 3, 32, 32), a label saying where they came from)."""
    try:
        from pushpull_lite import data

        images, _ = data.load_cifar10("test", limit=limit if limit < 10_000 else None)
        return images[:limit], data.cifar10_source()
    except Exception as exc:  # no loader or no data: time the same shapes on random pixels
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (limit, 3, 32, 32), dtype=torch.uint8, generator=gen)
        return images, f"random uint8 images (the test set could not be loaded: {type(exc).__name__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10_000, help="test images (default: all 10,000)")
    parser.add_argument("--repeats", type=int, default=1, help="repetitions (median is reported)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[corruptions.THREADS or torch.get_num_threads()],
        help="values of corruptions.THREADS to compare (torch threads inside corrupt)",
    )
    args = parser.parse_args()

    images, source = test_images(args.limit)
    print(f"{len(images)} images from {source}; torch {torch.__version__}; threads {args.threads}")
    times: dict[tuple[int, str], list[float]] = {
        (t, c): [] for t in args.threads for c in corruptions.CORRUPTIONS
    }
    for rep in range(args.repeats):
        for name in corruptions.CORRUPTIONS:
            for threads in args.threads:  # interleaved: every setting sees the same load
                corruptions.THREADS = threads
                start = time.perf_counter()
                for severity in corruptions.SEVERITIES:
                    corruptions.corrupt(images, name, severity, seed=severity)
                times[(threads, name)].append(time.perf_counter() - start)
            done = ", ".join(f"{t} thread(s) {times[(t, name)][-1]:.1f} s" for t in args.threads)
            print(f"  repetition {rep + 1}: {name}: {done}", flush=True)

    for threads in args.threads:
        medians = {c: statistics.median(times[(threads, c)]) for c in corruptions.CORRUPTIONS}
        total = sum(medians.values())
        print(
            f"\n{threads} thread(s): seconds for 5 severities of {len(images)} images "
            f"(median of {args.repeats})"
        )
        for name, sec in medians.items():
            print(f"  {name:18s} {sec:7.2f} s  {100 * sec / total:5.1f} %")
        slowest = max(medians, key=medians.get)
        verdict = "under" if total < 300 else "OVER"
        print(
            f"  total {total:.1f} s ({verdict} the 5-minute target); "
            f"slowest: {slowest} ({medians[slowest]:.1f} s)"
        )
    if len(args.threads) > 1:
        base = args.threads[0]
        totals = {
            t: sum(statistics.median(times[(t, c)]) for c in corruptions.CORRUPTIONS) for t in args.threads
        }
        for t in args.threads[1:]:
            print(f"\ntotal time ratio {base} thread(s) / {t} thread(s): {totals[base] / totals[t]:.2f}")


if __name__ == "__main__":
    main()
