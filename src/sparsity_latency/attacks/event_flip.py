"""Event-domain sparse attack: flip individual events, the budget counted in flipped events.

On event input an eps ball on normalized counts has no physical meaning; adding or removing an event
does (Büchel et al., arXiv 2110.02929; Marchisio et al., IJCNN 2021). A frame bin's input value
grows by `unit` (= 1 / data.frame_clip) for every event in it, so one flip is one event added
(x → x + unit, where that stays ≤ 1) or removed (x → x − unit, where x holds one). On binary input
(unit = 1) a flip toggles a bin between 0 and 1, so the input stays binary.

The attack is greedy and gradient-guided: in each of `steps` rounds it takes the gradient of the
loss, ranks every flip still allowed by its first-order gain ∂L/∂x · (±unit), and makes the best
ones (the budget spread evenly over the rounds). Each bin is flipped at most once, only flips with
a positive gain are made, and a sample stops once it is misclassified, so the budget is a maximum.
On a linear model the ranking is exact, and one round finds the best set of flips.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsity_latency.attacks.gradients import cross_entropy_gradient, from_per_sample, per_sample

TOLERANCE = 1e-6  # values within this of a unit boundary count as on it (normalized counts are k · unit)


def event_flip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: int, *, unit: float = 1.0,
               steps: int = 5, stop_when_fooled: bool = True) -> torch.Tensor:
    """x [T, B, …] with at most `budget` events flipped per sample."""
    if budget <= 0:
        return x.detach().clone()
    flat = per_sample(x.detach()).clone()  # [B, n]
    flipped = torch.zeros_like(flat, dtype=torch.bool)
    used = torch.zeros(len(flat), dtype=torch.long, device=x.device)
    for round_index in range(steps):
        grad, _, logits = cross_entropy_gradient(model, from_per_sample(flat, x), y)
        active = used < budget
        if stop_when_fooled:
            active &= logits.argmax(1) == y
        quota = torch.div(budget - used + (steps - round_index) - 1, steps - round_index, rounding_mode="floor")
        quota = torch.where(active, quota, torch.zeros_like(quota))
        if int(quota.max()) == 0:
            break
        gain, delta = _flip_gains(flat, per_sample(grad), unit, flipped)
        top_gain, top_index = gain.topk(min(int(quota.max()), gain.shape[1]), dim=1)
        rank = torch.arange(top_index.shape[1], device=x.device).expand_as(top_index)
        take = (rank < quota[:, None]) & (top_gain > 0)
        rows = torch.arange(len(flat), device=x.device)[:, None].expand_as(top_index)[take]
        cols = top_index[take]
        flat[rows, cols] = (flat[rows, cols] + delta[rows, cols]).clamp(0.0, 1.0)
        flipped[rows, cols] = True
        used += take.sum(1)
    return from_per_sample(flat, x)


def _flip_gains(flat: torch.Tensor, grad: torch.Tensor, unit: float,
                flipped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order loss gain of the better allowed flip of each bin, and that flip's change (±unit).

    Bins already flipped, and flips that would leave the input range, get gain −inf.
    """
    can_add = flat <= 1.0 - unit + TOLERANCE
    can_remove = flat >= unit - TOLERANCE
    add_gain = torch.where(can_add, grad * unit, -torch.inf)
    remove_gain = torch.where(can_remove, -grad * unit, -torch.inf)
    adding = add_gain >= remove_gain
    gain = torch.where(adding, add_gain, remove_gain).masked_fill(flipped, -torch.inf)
    delta = torch.where(adding, unit, -unit)
    return gain, delta
