"""White-box attacks (robust accuracy over a test set: :func:`pushpull_lite.measure.accuracy`).

Bounded gradient attacks: FGSM and PGD (L-inf, L2). Minimum-norm: Carlini-Wagner L2. Localised: an
optimised square patch and a sparse (few-pixel) attack. For defenses that break gradients, the wrappers
:class:`BPDA` (non-differentiable stages) and :class:`EOT` (randomised models) turn any of these into an
adaptive attack (Athalye et al. 2018).

Every attack takes images ``x: (N, C, H, W)`` float in [0, 1] and labels ``y: (N,)`` int64 (the target
classes when ``targeted``), and returns adversarial images of the same shape and dtype, in [0, 1]; the
bounded attacks stay within ``eps`` of ``x`` (``eps`` in [0, 1] pixel units; for ``norm="l2"`` the L2
norm of the whole perturbation of one image). The model is any ``nn.Module`` mapping [0, 1] images to
logits ``(N, K)``; it runs in eval mode during the attack, and its modes, parameter ``.grad`` and
``requires_grad`` are left exactly as they were: gradients are taken with ``torch.autograd.grad`` w.r.t.
the input only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, config
from .measure import eval_mode, hits

__all__ = [
    "BPDA",
    "EOT",
    "NORMS",
    "cw_l2",
    "fgsm",
    "patch_attack",
    "pgd",
    "sparse_pixel_attack",
    "transfer",
    "ATTACKS",
    "AttackInfo",
    "THREATS",
]

NORMS = ("linf", "l2")


def _attack_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Validate ``x: (N, C, H, W)`` in [0, 1] and ``y: (N,)``; return ``y`` as int64 on x's device."""
    checks.model("model", model)
    checks.image_batch("x", x)
    return checks.labels("y", y, x.shape[0]).to(device=x.device, dtype=torch.long)


def _random_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A uniform point of the L-inf ball, or a random L2 direction with radius uniform in [0, eps]."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        direction = torch.randn_like(x)
        norms = direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        radius = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * eps
        delta = direction * (radius / norms)
    return (x + delta).clamp_(0, 1)


def _run_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: str,
    random_start: bool,
    targeted: bool,
) -> torch.Tensor:
    """One PGD run from one start: exactly ``steps`` forward+backward passes, no extra forward."""
    if norm == "linf":
        # Box and ball intersected once, so each step is a single clamp between two bounds.
        low = (x - eps).clamp_(min=0)
        high = (x + eps).clamp_(max=1)
    x_adv = _random_start(x, eps, norm) if random_start else x.clone()
    sign = -1.0 if targeted else 1.0
    for step in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        if step == 0:
            checks.logits(logits, y)  # once: checking every step would sync a GPU each step
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach()
        if norm == "linf":
            x_adv = torch.max(torch.min(x_adv + (sign * step_size) * grad.sign(), high), low)
        else:
            grad_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = x_adv + (sign * step_size / grad_norm) * grad - x
            delta_norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * (eps / delta_norm.clamp_min(eps))
            # Clamping to the box after projecting only shrinks |delta|, so the ball still holds.
            x_adv = (x + delta).clamp_(0, 1)
    return x_adv.detach()


@torch.no_grad()
def _score(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, targeted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: did the attack succeed, and the loss the attacker maximises."""
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y, reduction="none")
    hit = hits(logits, y)
    return (hit, -loss) if targeted else (~hit, loss)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al. 2018).

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64, true labels (or target labels when ``targeted``).
    eps: radius of the ball in [0, 1] pixel units (per-image L2 norm for ``norm="l2"``); step_size: step
    length in the same units (L-inf: step along the gradient sign; L2: along the unit-norm gradient).
    Each step is clamped to [0, 1] and projected to the ball. With ``restarts > 1`` each example keeps
    the restart that fools the model (for targeted: reaches the target), else the one with the highest
    loss; later restarts only run on examples not fooled yet. Cost: ``steps`` forward+backward passes per
    restart, plus one forward per restart when ``restarts > 1``.

    ``eps = 0`` returns a copy of ``x`` without running the model.

    Returns x_adv: (N, C, H, W), same dtype and device as ``x``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    # Only L-inf has a bound of 1: an L2 radius sums over all pixels and may exceed 1 (e.g. 0.5 to 2).
    linf = norm == "linf"
    eps = checks.real("eps", eps, minimum=0.0, pixel_units=linf)
    # step_size = 0 is accepted with eps = 0 only, so sweeps like ``step_size=eps / 4`` can start at 0.
    step_size = checks.real("step_size", step_size, positive=eps > 0, minimum=0.0, pixel_units=linf)
    steps = config.smoke_steps(checks.integer("steps", steps))
    restarts = config.smoke_steps(checks.integer("restarts", restarts))
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True: without it every restart is the same run")
    y = _attack_inputs(model, x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    # inference_mode(False) and enable_grad: the attack needs autograd even inside a caller's no_grad.
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        # Clones: a caller's inference-mode tensors cannot be saved for backward.
        x, y = x.detach().clone(), y.clone()
        args = (eps, step_size, steps, norm, random_start, targeted)
        best = _run_pgd(model, x, y, *args)
        if restarts == 1:
            return best
        best_success, best_loss = _score(model, best, y, targeted)
        for _ in range(restarts - 1):
            todo = (~best_success).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            candidate = _run_pgd(model, x[todo], y[todo], *args)
            success, loss = _score(model, candidate, y[todo], targeted)
            was = best_success[todo]
            better = (success & ~was) | ((success == was) & (loss > best_loss[todo]))
            idx = todo[better]
            best[idx] = candidate[better]
            best_success[idx] = success[better]
            best_loss[idx] = loss[better]
        return best


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one L-inf step of size ``eps``.

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64 true labels; eps in [0, 1] pixel units.
    Returns x_adv = clamp(x + eps * sign(grad_x CE), 0, 1): (N, C, H, W). One forward+backward pass.
    """
    eps = checks.real("eps", eps, minimum=0.0, pixel_units=True)
    y = _attack_inputs(model, x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        return _run_pgd(model, x.detach().clone(), y.clone(), eps, eps, 1, "linf", False, False)


# --------------------------------------------------------------------------------------------------
# Minimum-norm attack: Carlini-Wagner L2


def _margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per example: how far the attack still is from its goal in logits (<= 0 once reached).

    Untargeted: Z_y - max_{j != y} Z_j; targeted (y = target): max_{j != y} Z_j - Z_y.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return others - true if targeted else true - others


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.01,
    binary_search_steps: int = 5,
    targeted: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Carlini-Wagner L2 attack (Carlini & Wagner 2017): the smallest L2 perturbation that fools the model.

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64 true labels (target labels when ``targeted``).
    Change of variables ``x_adv = (tanh(w) + 1) / 2`` keeps x_adv in the box with no clipping; Adam
    (learning rate ``lr``, ``steps`` steps) minimises ``||x_adv - x||_2^2 + c * max(margin, -kappa)``
    with ``margin = Z_y - max_{j != y} Z_j`` on the logits Z (the paper's f_6). ``c`` is the starting
    trade-off constant; ``binary_search_steps`` rounds of a per-example binary search then shrink it
    after a success and grow it (x10 until an upper bound is known) after a failure. Each example keeps
    the smallest successful perturbation of any step of any round; examples never fooled (with
    confidence ``kappa``, in logit units) are returned unchanged. Cost: ``binary_search_steps * steps``
    forward+backward passes.

    Returns x_adv: (N, C, H, W), same dtype and device as ``x``.
    """
    c = checks.real("c", c, positive=True)
    kappa = checks.real("kappa", kappa, minimum=0.0)
    steps = config.smoke_steps(checks.integer("steps", steps))
    lr = checks.real("lr", lr, positive=True)
    binary_search_steps = config.smoke_steps(checks.integer("binary_search_steps", binary_search_steps))
    y = _attack_inputs(model, x, y)
    if x.shape[0] == 0:
        return x.detach().clone()
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x, y = x.detach().clone(), y.clone()
        n = x.shape[0]
        # atanh(+-1) is infinite: shrink the box a hair so pixels at exactly 0 or 1 stay finite.
        w0 = torch.atanh((2 * x - 1) * (1 - 1e-6))
        const = torch.full((n,), c, device=x.device, dtype=x.dtype)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, float("inf"))
        best = x.clone()
        best_dist = torch.full_like(const, float("inf"))
        rounds = config.progress(range(binary_search_steps), desc="C&W L2", enabled=progress)
        for round_ in rounds:
            w = w0.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=lr)
            fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
            for step in range(steps):
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                if round_ == 0 and step == 0:
                    checks.logits(logits, y)
                margin = _margin(logits, y, targeted)
                dist = (x_adv - x).flatten(1).pow(2).sum(dim=1)
                loss = (dist + const * margin.clamp_min(-kappa)).sum()
                # autograd.grad, not backward(): the model's parameter .grad must stay untouched.
                (w.grad,) = torch.autograd.grad(loss, w)
                with torch.no_grad():
                    # The scored point is the one the logits were computed on (before this step).
                    success = (margin <= -kappa) & (margin < 0)
                    l2 = dist.sqrt()
                    better = success & (l2 < best_dist)
                    best_dist = torch.where(better, l2, best_dist)
                    best[better] = x_adv.detach()[better]
                    fooled |= success
                optimiser.step()
            with torch.no_grad():
                # Per-example binary search on c: smaller after a success, larger after a failure.
                upper = torch.where(fooled, torch.minimum(upper, const), upper)
                lower = torch.where(fooled, lower, torch.maximum(lower, const))
                bounded = torch.isfinite(upper)
                const = torch.where(bounded, (lower + upper) / 2, const * 10)
        return best


# --------------------------------------------------------------------------------------------------
# Localised attacks: an optimised patch, a few pixels


def _input_grad(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, sign: float) -> torch.Tensor:
    """Gradient w.r.t. the input of the loss the attacker ascends (cross-entropy, negated when targeted)."""
    x_adv = x_adv.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y, reduction="sum")
    (grad,) = torch.autograd.grad(sign * loss, x_adv)
    return grad


def _window_masks(corners: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Boolean masks (N, 1, H, W) of the ``size`` x ``size`` squares whose top-left corners are (N, 2)."""
    rows = torch.arange(height, device=corners.device)
    cols = torch.arange(width, device=corners.device)
    r, c = corners[:, 0, None], corners[:, 1, None]
    in_rows = (rows >= r) & (rows < r + size)
    in_cols = (cols >= c) & (cols < c + size)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _salient_windows(grad: torch.Tensor, size: int, count: int) -> torch.Tensor:
    """Top-left corners (N, count, 2) of the ``count`` non-overlapping windows of largest summed abs(grad)."""
    saliency = grad.abs().sum(dim=1, keepdim=True)
    scores = F.avg_pool2d(saliency, size, stride=1).squeeze(1)  # (N, H - size + 1, W - size + 1)
    n, rows, cols = scores.shape
    r_grid = torch.arange(rows, device=grad.device).view(1, -1, 1)
    c_grid = torch.arange(cols, device=grad.device).view(1, 1, -1)
    corners = []
    for _ in range(count):
        flat = scores.flatten(1).argmax(dim=1)
        r, c = flat // cols, flat % cols
        corners.append(torch.stack([r, c], dim=1))
        # Suppress every window overlapping the chosen one, so candidates cover different places.
        overlap = ((r_grid - r.view(-1, 1, 1)).abs() < size) & ((c_grid - c.view(-1, 1, 1)).abs() < size)
        scores = scores.masked_fill(overlap, float("-inf"))
    return torch.stack(corners, dim=1)


def _ascend_in_mask(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    steps: int,
    step_size: float,
    sign: float,
) -> torch.Tensor:
    """Sign-gradient ascent on the pixels inside ``mask`` (values free in [0, 1]); outside it x is kept."""
    x_adv = torch.where(mask, start, x)
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y, sign)
        x_adv = torch.where(mask, (x_adv + step_size * grad.sign()).clamp_(0, 1), x)
    return x_adv


def patch_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    size: int = 4,
    steps: int = 50,
    step_size: float = 0.05,
    location: str | tuple[int, int] = "search",
    random_start: bool = True,
    candidates: int = 4,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial patch: one ``size`` x ``size`` square per image, its values free in [0, 1].

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64 true labels (targets when ``targeted``). All channels
    of the square may change, nothing outside it does. The patch is optimised by ``steps`` sign-gradient
    steps of ``step_size`` on the cross-entropy, from uniform noise (``random_start``) or from the
    image's own pixels. ``location``:

    - ``"search"``: ``candidates`` non-overlapping windows with the largest summed absolute input gradient at
      ``x`` (one extra forward+backward), tried in that order; each example keeps the first window that
      fools the model, else the one with the highest loss (later windows only run on examples not yet
      fooled);
    - ``"random"``: one uniformly random window per example (from ``generator``, default the global RNG);
    - ``(row, col)``: the top-left corner, the same for every example.

    Cost: ``steps`` forward+backward passes per window tried (plus the saliency pass and one forward
    per window for ``"search"``). Returns x_adv: (N, C, H, W), same dtype and device as ``x``.
    """
    steps = config.smoke_steps(checks.integer("steps", steps))
    step_size = checks.real("step_size", step_size, positive=True, pixel_units=True)
    candidates = config.smoke_steps(checks.integer("candidates", candidates))
    size = checks.integer("size", size)
    y = _attack_inputs(model, x, y)
    n, channels, height, width = x.shape
    if size > min(height, width):
        raise ValueError(f"size must be at most the image side {min(height, width)}, got {size}")
    fixed = None
    if isinstance(location, tuple):
        if len(location) != 2 or not all(
            isinstance(v, Integral) and not isinstance(v, bool) for v in location
        ):
            raise TypeError(
                f"location must be 'search', 'random' or a (row, col) tuple of ints, got {location}"
            )
        fixed = tuple(int(v) for v in location)
        if not (0 <= fixed[0] <= height - size and 0 <= fixed[1] <= width - size):
            raise ValueError(
                f"location {fixed} puts a {size}x{size} patch outside the {height}x{width} image: the "
                f"corner must lie in [0, {height - size}] x [0, {width - size}]"
            )
    elif location not in ("search", "random"):
        raise ValueError(f"location must be 'search', 'random' or a (row, col) tuple, got {location!r}")
    if n == 0:
        return x.detach().clone()
    sign = -1.0 if targeted else 1.0
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x, y = x.detach().clone(), y.clone()
        with torch.no_grad():
            checks.logits(model(x[:1]), y[:1])
        if fixed is not None:
            corners = torch.tensor(fixed, device=x.device).expand(n, 1, 2)
        elif location == "random":
            gen_device = generator.device if generator is not None else torch.device("cpu")
            high = torch.tensor([height - size + 1, width - size + 1], device=gen_device)
            corners = (torch.rand(n, 1, 2, generator=generator, device=gen_device) * high).long()
            corners = corners.to(x.device)
        else:
            corners = _salient_windows(_input_grad(model, x, y, sign), size, candidates)

        def run(idx: torch.Tensor, window: int) -> torch.Tensor:
            mask = _window_masks(corners[idx, window], size, height, width)
            if random_start:
                gen_device = generator.device if generator is not None else torch.device("cpu")
                start = torch.rand(x[idx].shape, generator=generator, device=gen_device, dtype=x.dtype)
                start = start.to(x.device)
            else:
                start = x[idx]
            return _ascend_in_mask(model, x[idx], y[idx], mask, start, steps, step_size, sign)

        everyone = torch.arange(n, device=x.device)
        best = run(everyone, 0)
        if corners.shape[1] == 1:
            return best.detach()
        best_success, best_loss = _score(model, best, y, targeted)
        for window in range(1, corners.shape[1]):
            todo = (~best_success).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            candidate = run(todo, window)
            success, loss = _score(model, candidate, y[todo], targeted)
            better = success | (loss > best_loss[todo])
            idx = todo[better]
            best[idx] = candidate[better]
            best_success[idx] = success[better]
            best_loss[idx] = loss[better]
        return best.detach()


def sparse_pixel_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    pixels: int = 5,
    steps: int = 10,
    step_size: float = 0.25,
    targeted: bool = False,
) -> torch.Tensor:
    """Sparse (L0) attack: change at most ``pixels`` pixel locations per image, all channels free in [0, 1].

    x: (N, C, H, W) float in [0, 1]; y: (N,) int64 true labels (targets when ``targeted``). Greedy
    gradient saliency with refinement, in the spirit of JSMA (Papernot et al. 2016) for RGB pixels:
    ``pixels`` rounds, each (1) ranks the unused locations by the first-order gain of moving every
    channel to the bound its gradient points at, ``sum_c max(g_c (1 - x_c), -g_c x_c)``, (2) adds the
    best location and sets it to that corner, (3) refines all chosen pixels with ``steps`` sign-gradient
    steps of ``step_size``. An example stops as soon as it is fooled, so it uses as few pixels as the
    greedy order allows. Cost: at most ``pixels * (steps + 1)`` forward+backward passes and ``pixels``
    forwards. Returns x_adv: (N, C, H, W), same dtype and device as ``x``.
    """
    pixels = checks.integer("pixels", pixels)
    if isinstance(steps, bool) or not isinstance(steps, Integral):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0 (0: greedy corners only), got {steps}")
    steps = config.smoke_steps(steps)
    step_size = checks.real("step_size", step_size, positive=True, pixel_units=True)
    y = _attack_inputs(model, x, y)
    n, _, height, width = x.shape
    if pixels > height * width:
        raise ValueError(f"pixels must be at most H * W = {height * width}, got {pixels}")
    if n == 0:
        return x.detach().clone()
    sign = -1.0 if targeted else 1.0
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x, y = x.detach().clone(), y.clone()
        with torch.no_grad():
            checks.logits(model(x[:1]), y[:1])
        x_adv = x.clone()
        mask = torch.zeros(n, 1, height, width, dtype=torch.bool, device=x.device)
        todo = torch.arange(n, device=x.device)
        for _ in range(pixels):
            xs, ys, ms = x_adv[todo], y[todo], mask[todo]
            grad = _input_grad(model, xs, ys, sign)
            gain = torch.maximum(grad * (1 - xs), -grad * xs).sum(dim=1, keepdim=True)
            gain = gain.masked_fill(ms, float("-inf"))
            pick = gain.flatten(1).argmax(dim=1)
            new = torch.zeros_like(ms).flatten(1).scatter_(1, pick[:, None], True).view_as(ms)
            xs = torch.where(new, (grad > 0).to(xs.dtype), xs)
            ms = ms | new
            xs = _ascend_in_mask(model, x[todo], ys, ms, xs, steps, step_size, sign)
            x_adv[todo], mask[todo] = xs, ms
            success, _ = _score(model, xs, ys, targeted)
            todo = todo[~success]
            if todo.numel() == 0:
                break
        return x_adv.detach()


# --------------------------------------------------------------------------------------------------
# Adaptive attacks on defenses that break gradients: BPDA and EOT wrappers (Athalye et al. 2018)


class BPDA(nn.Module):
    """Backward-pass differentiable approximation: ``forward_fn``'s value, ``backward_fn``'s gradient.

    Wrap a non-differentiable (or gradient-masking) stage, e.g. quantisation or a purifier, and compose
    it with the classifier, ``nn.Sequential(BPDA(purify), model)``, then run any gradient attack (say
    :func:`pgd`) on the composition. The output equals ``forward_fn(x)``; its gradient w.r.t. ``x`` is
    that of ``backward_fn(x)`` (the identity when None, the usual choice when ``forward_fn(x) ~ x``).
    Both map ``(N, ...)`` to a tensor of the same shape as each other. An ``nn.Module`` given as either
    function is registered as a submodule, so ``.eval()`` and ``.to()`` reach it.
    """

    def __init__(
        self,
        forward_fn: Callable[[torch.Tensor], torch.Tensor],
        backward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not callable(forward_fn):
            raise TypeError(f"forward_fn must be callable, got {type(forward_fn).__name__}")
        if backward_fn is not None and not callable(backward_fn):
            raise TypeError(f"backward_fn must be callable or None, got {type(backward_fn).__name__}")
        self.forward_fn = forward_fn
        self.backward_fn = backward_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.forward_fn(x)
        surrogate = x if self.backward_fn is None else self.backward_fn(x)
        if not isinstance(out, torch.Tensor) or out.shape != surrogate.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"forward_fn must return a tensor shaped like backward_fn's output {tuple(surrogate.shape)} "
                f"(the input's shape when backward_fn is None), got {got}"
            )
        # Straight-through: the value of forward_fn, the gradient of the surrogate.
        return surrogate + (out - surrogate).detach()

    def extra_repr(self) -> str:
        # Submodules print themselves below; name only plain functions here.
        parts = [
            f"{label}={getattr(fn, '__name__', type(fn).__name__)}"
            for label, fn in (("forward_fn", self.forward_fn), ("backward_fn", self.backward_fn))
            if fn is not None and not isinstance(fn, nn.Module)
        ]
        if self.backward_fn is None:
            parts.append("backward_fn=identity")
        return ", ".join(parts)


class EOT(nn.Module):
    """Expectation over transformation: average a randomised model's probabilities over ``samples`` draws.

    model: a module whose output on ``x: (N, ...)`` is random logits ``(N, K)`` (it must stay random in
    eval mode, since the attacks put it there). Forward returns ``log(mean_s softmax(model(x)))``:
    log-probabilities, so cross-entropy-based attacks (:func:`pgd`, :func:`fgsm`) see the expected
    prediction and their gradient is the Monte Carlo estimate of the expected gradient over ``samples``
    draws (``samples`` forward passes per call, one graph through all of them).
    """

    def __init__(self, model: nn.Module, samples: int = 8) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.samples = checks.integer("samples", samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = sum(F.softmax(self.model(x), dim=1) for _ in range(self.samples)) / self.samples
        # The floor keeps log finite (and its gradient bounded) when a class gets probability 0.
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def extra_repr(self) -> str:
        return f"samples={self.samples}"


def transfer(source: nn.Module, attack: Callable[..., torch.Tensor], **kwargs) -> Callable[..., torch.Tensor]:
    """A transfer attack: ``attack`` computed on ``source`` (an independently trained model), shown to
    whichever model it is evaluated on, ``(model, x, y) -> attack(source, x, y, **kwargs)``.

    It needs no gradient of the attacked model, so it checks defenses whose own gradients may be masked:
    if adversarial examples made on another model fool a defense more often than a white-box attack on
    the defense itself, the white-box attack was not working (Athalye et al. 2018; Carlini et al. 2019).
    """
    checks.model("source", source)
    if not callable(attack):
        raise TypeError(f"attack must be callable (model, x, y, ...) -> x_adv, got {type(attack).__name__}")

    def transferred(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _attack_inputs(model, x, y)
        return attack(source, x, y, **kwargs)

    return transferred


# --------------------------------------------------------------------------------------------------
# The registry: every attack of the book, with its threat model and a small example budget


@dataclass(frozen=True)
class AttackInfo:
    """One registered attack: ``fn(model, x, y, **example) -> x_adv``.

    threat: what the attacker may change, one of :data:`THREATS`. ``"linf"`` / ``"l2"``: a ball of
    radius ``example["eps"]`` (pixel units); ``"l2-min"``: a minimum-norm L2 attack (no fixed radius);
    ``"patch"``: one square of ``size`` x ``size`` pixels; ``"pixels"``: at most ``pixels`` pixel
    locations. example: arguments for a quick run (the registry test runs every attack with them).
    """

    fn: Callable[..., torch.Tensor]
    threat: str
    example: dict
    chapter: str


#: threat models of :class:`AttackInfo`; a worst case is taken over attacks of one threat model only
THREATS = ("linf", "l2", "l2-min", "patch", "pixels")

#: name -> :class:`AttackInfo`; chapters and tests iterate over this (add a new attack here, once)
ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo(fgsm, "linf", {"eps": 8 / 255}, "04_adversarial"),
    "pgd": AttackInfo(pgd, "linf", {"eps": 8 / 255, "step_size": 2 / 255, "steps": 3}, "04_adversarial"),
    "pgd-l2": AttackInfo(
        pgd, "l2", {"eps": 0.5, "step_size": 0.125, "steps": 3, "norm": "l2"}, "04_adversarial"
    ),
    "cw-l2": AttackInfo(cw_l2, "l2-min", {"steps": 5, "binary_search_steps": 2}, "06_amsdn"),
    "patch": AttackInfo(patch_attack, "patch", {"size": 4, "steps": 3, "candidates": 2}, "06_amsdn"),
    "sparse-pixels": AttackInfo(sparse_pixel_attack, "pixels", {"pixels": 3, "steps": 2}, "06_amsdn"),
}
