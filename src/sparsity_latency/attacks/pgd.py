"""FGSM and PGD (L∞ and L2, with random starts and restarts): the gradient attacks everything else builds on.

The steps follow torchattacks' FGSM, PGD and PGDL2 (Goodfellow et al. 2015; Madry et al. 2018), which
the tests check them against: L∞ steps by step_size · sign(∇), L2 steps by step_size · ∇/‖∇‖₂, each
followed by the projection onto the eps ball and the input range. The random start is uniform in the
L∞ ball, and for L2 a Gaussian direction scaled to a uniform radius in [0, eps) (as torchattacks).
PGD returns its last iterate; with restarts it keeps, per sample, the restart that fools the model
and otherwise the one with the highest loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks.gradients import (
    clamp_input,
    input_gradient,
    l2_norms,
    normalized_l2,
    per_sample_shape,
    project_l2,
    project_linf,
)

NORMS = ("linf", "l2")


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method: x + eps·sign(∇ₓL), clamped to the input range."""
    grad, _ = input_gradient(model, x, y)
    return clamp_input(x + eps * grad.sign()).detach()


def default_step_size(eps: float, steps: int, step_size: float = 0.0) -> float:
    """`step_size`, or 2.5·eps/steps when it is 0 (Madry et al.: enough to cross the ball in any direction)."""
    return step_size or 2.5 * eps / steps


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random point of the eps ball around x, clamped to the input range (drawn on the CPU)."""
    if norm == "linf":
        noise = torch.empty(x.shape).uniform_(-eps, eps, generator=generator).to(x)
        return clamp_input(x + noise).detach()
    direction = torch.empty(x.shape).normal_(generator=generator).to(x)
    radius = torch.empty(x.shape[1]).uniform_(0, 1, generator=generator).to(x)
    scale = per_sample_shape(radius / l2_norms(direction) * eps, x)
    return clamp_input(x + direction * scale).detach()


def step(x_adv: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, eps: float, step_size: float | torch.Tensor,
         norm: str) -> torch.Tensor:
    """One ascent step of size `step_size` (a number, or per sample broadcastable) in the norm's steepest
    direction, projected back."""
    if norm == "linf":
        return project_linf(x_adv + step_size * grad.sign(), x, eps)
    return project_l2(x_adv + step_size * normalized_l2(grad), x, eps)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float = 0.0,
    norm: str = "linf",
    restarts: int = 1,
    random_init: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy; `step_size` 0 means 2.5·eps/steps (`default_step_size`)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}' (known: {', '.join(NORMS)})")
    step_size = default_step_size(eps, steps, step_size)
    best: torch.Tensor | None = None
    for _ in range(restarts):
        x_adv = random_start(x, eps, norm, generator) if random_init and eps > 0 else x.detach()
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y)
            x_adv = step(x_adv, x, grad, eps, step_size, norm)
        best = x_adv if best is None else keep_stronger(model, best, x_adv, y)
    return best


@torch.no_grad()
def keep_stronger(model: nn.Module, current: torch.Tensor, candidate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, `candidate` where it fools the model and `current` does not, or both do the same
    and `candidate`'s loss is higher; else `current`."""
    scores = []
    for x_adv in (current, candidate):
        logits = model(x_adv)
        scores.append((logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")))
    (fooled_a, loss_a), (fooled_b, loss_b) = scores
    take = (fooled_b & ~fooled_a) | ((fooled_b == fooled_a) & (loss_b > loss_a))
    return torch.where(per_sample_shape(take, current), candidate, current)
