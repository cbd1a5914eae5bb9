"""Speed of the push-pull layers against nn.Conv2d and against the straightforward implementation.

    python benchmarks/layer_speed.py [--reps 15] [--resnet-reps 9] [--batch 128] [--clock wall|cpu]

Part 1 times forward + backward (input without gradient, as for a first layer; a fixed upstream gradient)
of each layer, of ``nn.Conv2d`` with the same shape, and of the straightforward implementation written
below (one ``F.interpolate`` on the whole weight, plain ``F.conv2d`` calls, autograd for the rest), all
interleaved, and prints medians, ratios and the largest output difference from the straightforward
version, then the cost of deriving the pull kernel. Part 2 times training steps (SGD) of ResNet-20,
ResNet-20-PP and ResNet-20-PP with the straightforward layer, side by side: in float32, then as the
medium and full recipes train (bfloat16 autocast, channels-last).

The numbers depend on the machine and on whatever else runs on it: read ratios from one run, never
absolute times across runs. ``--clock cpu`` measures this process's CPU time instead of wall time,
which is steadier on a shared machine (with ``--threads 1`` it is the single-core cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pushpull_lite import layers, models

# ------------------------------------------------------------------------------------------------------
# straightforward implementations: the formulas as written, nothing shared with pushpull_lite.layers


def plain_pushpull(layer: layers.PushPull2d, x: Tensor) -> Tensor:
    w, b, k, size = layer.weight, layer.bias, layer.kernel_size, layer.pull_size
    pull_w = -F.interpolate(w, size=(size, size), mode="bilinear", align_corners=True)
    push = F.conv2d(x, w, b, layer.stride, layer.padding)
    pull = F.conv2d(x, pull_w, None if b is None else -b, layer.stride, size // 2 - k // 2 + layer.padding)
    alpha = F.relu(layer.alpha).view(1, -1, 1, 1) if layer.trainable_alpha else layer.alpha
    return F.relu(push) - alpha * F.relu(pull)


def plain_pushpull_conv(layer: layers.PushPullConv2d, x: Tensor) -> Tensor:
    w = layer.weight
    flat = w.flatten(1)
    pull_w = -w + (flat.max(dim=1).values + flat.min(dim=1).values).view(-1, 1, 1, 1)
    push = F.conv2d(x, w, None, layer.stride, layer.padding)
    pull = F.conv2d(x, pull_w, None, layer.stride, layer.padding)
    if layer.avg_kernel_size:
        k = layer.avg_kernel_size
        pull = nn.functional.avg_pool2d(pull, k, 1, (k - 1) // 2, count_include_pad=False)
    alpha = F.relu(layer.alpha) if layer.trainable_alpha else layer.alpha
    out = F.relu(push) - alpha * F.relu(pull)
    return out if layer.bias is None else out + layer.bias.view(1, -1, 1, 1)


def plain_multiscale(layer: layers.MultiScalePushPull2d, x: Tensor) -> Tensor:
    out = 0
    for i, k in enumerate(layer.kernel_sizes):
        w = layer.push_weights[i]
        push = F.conv2d(x, w, None, layer.stride, k // 2)
        if layer.derived_pull:
            size = layer.pull_sizes[i]
            pull_w = -F.interpolate(w, size=(size, size), mode="bilinear", align_corners=True)
            pull = F.conv2d(x, pull_w, None, layer.stride, size // 2)
        else:
            pull = -F.conv2d(x, layer.pull_weights[i], None, layer.stride, k // 2)
        out = out + F.relu(push) - F.relu(layer.alphas[i]) * F.relu(pull)
    return out


# ------------------------------------------------------------------------------------------------------
# timing


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns in every repetition."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fwd_bwd(module_or_fn: Callable[[Tensor], Tensor], params: list[Tensor], x: Tensor, grad: Tensor):
    def run() -> None:
        for p in params:
            p.grad = None
        module_or_fn(x).backward(grad)

    return run


def layer_part(batch: int, reps: int, clock: Callable[[], float]) -> None:
    cases: list[tuple[str, nn.Module, Callable[[nn.Module, Tensor], Tensor], tuple[int, int, int]]] = [
        ("PushPull2d 3->16 k3", layers.PushPull2d(3, 16, 3, padding=1), plain_pushpull, (3, 16, 3)),
        ("PushPull2d 3->64 k5", layers.PushPull2d(3, 64, 5, padding=2), plain_pushpull, (3, 64, 5)),
        (
            "PushPull2d 3->16 k3 bias, trainable alpha",
            layers.PushPull2d(3, 16, 3, padding=1, bias=True, trainable_alpha=True),
            plain_pushpull,
            (3, 16, 3),
        ),
        (
            "PushPullConv2d 3->16 k3 avg3",
            layers.PushPullConv2d(3, 16, 3, padding=1),
            plain_pushpull_conv,
            (3, 16, 3),
        ),
        (
            "PushPullConv2d 3->64 k5 avg5",
            layers.PushPullConv2d(3, 64, 5, padding=2, avg_kernel_size=5),
            plain_pushpull_conv,
            (3, 64, 5),
        ),
        (
            "MultiScale 3->64 (3,5,7) derived",
            layers.MultiScalePushPull2d(3, 64),
            plain_multiscale,
            (3, 64, 5),
        ),
        (
            "MultiScale 3->64 (3,5,7) seed",
            layers.MultiScalePushPull2d(3, 64, derived_pull=False),
            plain_multiscale,
            (3, 64, 5),
        ),
    ]
    print(
        f"\nForward + backward, batch {batch}, 32x32, {torch.get_num_threads()} threads, "
        f"median of {reps} interleaved reps ({clock.__name__})"
    )
    head = f"{'layer':44s} {'conv ms':>8s} {'plain ms':>9s} {'layer ms':>9s} {'plain/layer':>12s}"
    head += f" {'layer/conv':>11s} {'max |diff|':>11s}"
    print(head)
    print("-" * len(head))
    for name, layer, plain, (cin, cout, k) in cases:
        torch.manual_seed(0)
        x = torch.rand(batch, cin, 32, 32)
        conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        params = list(layer.parameters())
        with torch.no_grad():
            diff = (layer(x) - plain(layer, x)).abs().max().item()
        grad = torch.randn(batch, cout, 32, 32)
        medians = interleaved(
            {
                "conv": fwd_bwd(conv, list(conv.parameters()), x, grad),
                "plain": fwd_bwd(lambda t, layer=layer, plain=plain: plain(layer, t), params, x, grad),
                "layer": fwd_bwd(layer, params, x, grad),
            },
            reps,
            clock,
        )
        c, p, lay = (medians[key] * 1e3 for key in ("conv", "plain", "layer"))
        print(f"{name:44s} {c:8.2f} {p:9.2f} {lay:9.2f} {p / lay:11.2f}x {lay / c:10.2f}x {diff:11.2e}")


def kernel_part(reps: int, clock: Callable[[], float]) -> None:
    # how to derive the pull kernel, and is it worth caching in eval mode? time the two ways
    w = torch.randn(16, 3, 3, 3)
    a = layers.upsampling_matrix(3, 7)
    medians = interleaved(
        {
            "F.interpolate": lambda: F.interpolate(w, size=(7, 7), mode="bilinear", align_corners=True),
            "A @ w @ A.T": lambda: torch.matmul(torch.matmul(a, w), a.t()),
        },
        reps,
        clock,
    )
    print(f"\nPull kernel of a 3->16, 3x3 layer (7x7), median of {reps} interleaved reps:")
    for name, t in medians.items():
        print(f"  {name:16s} {t * 1e6:9.1f} us")


class _PlainPushPull(nn.Module):
    """The straightforward implementation around a PushPull2d's parameters, for the ResNet comparison."""

    def __init__(self, layer: layers.PushPull2d):
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return plain_pushpull(self.layer, x)


def resnet_part(batch: int, reps: int, clock: Callable[[], float], *, recipe_mode: bool = False) -> None:
    """Training steps of the three ResNets, interleaved. ``recipe_mode``: as the medium and full recipes
    train (bfloat16 autocast on the CPU, channels-last), else float32 contiguous."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    torch.manual_seed(0)
    plain = models.resnet20(first_layer=models.first_layer("pushpull"))
    plain.conv1 = _PlainPushPull(plain.conv1)
    nets = {
        "ResNet-20": models.resnet20(),
        "ResNet-20-PP": models.resnet20(first_layer=models.first_layer("pushpull")),
        "ResNet-20-PP, plain layer": plain,
    }
    if recipe_mode:
        x = x.contiguous(memory_format=torch.channels_last)
        for m in nets.values():
            m.to(memory_format=torch.channels_last)

    def step(model: nn.Module) -> Callable[[], None]:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def run() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe_mode):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        return run

    medians = interleaved({name: step(m) for name, m in nets.items()}, reps, clock)
    base = medians["ResNet-20"]
    mode = "bfloat16 autocast, channels-last (the medium recipe)" if recipe_mode else "float32"
    print(
        f"\nResNet training step (forward, backward, SGD), {mode}, batch {batch}, "
        f"{torch.get_num_threads()} threads, median of {reps} interleaved reps ({clock.__name__})"
    )
    for name, t in medians.items():
        print(f"{name:26s} {t * 1e3:9.1f} ms  {t / base:6.3f}x ResNet-20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions per layer (median)")
    parser.add_argument("--resnet-reps", type=int, default=9, help="interleaved ResNet steps (median, >= 7)")
    parser.add_argument("--batch", type=int, default=128)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser.add_argument("--threads", type=int, default=cores, help="torch threads (default: all cores)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    if args.resnet_reps < 7:
        parser.error("--resnet-reps must be >= 7")
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"torch {torch.__version__}, {args.threads} threads")
    if not args.skip_layers:
        layer_part(args.batch, args.reps, clock)
        kernel_part(200, clock)
    if not args.skip_resnet:
        resnet_part(args.batch, args.resnet_reps, clock)
        resnet_part(args.batch, args.resnet_reps, clock, recipe_mode=True)


if __name__ == "__main__":
    main()
