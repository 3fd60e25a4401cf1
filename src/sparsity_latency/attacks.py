"""Attacks on the input frames, registered by name (FGSM, PGD).

Inputs live in [0, 1] (normalized event counts, see data.framing); every attack clamps to that range
and to the L∞ ball of radius eps around the clean input. The SNN state starts at rest in every
forward pass, so the state is reset between attack iterations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_MIN, INPUT_MAX = 0.0, 1.0

Attack = Callable[..., torch.Tensor]


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂CE/∂x at x (mean cross-entropy over the batch); parameter gradients are left untouched."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), INPUT_MIN, INPUT_MAX).detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **_: object) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps·sign(∇ₓL), clamped."""
    return _project(x + eps * input_gradient(model, x, y).sign(), x, eps)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float = 0.0,
    generator: torch.Generator | None = None,
    random_start: bool = True,
) -> torch.Tensor:
    """L∞ projected gradient descent (Madry et al. 2018) with a uniform random start.

    `step_size` 0 means 2.5·eps/steps.
    """
    step_size = step_size or 2.5 * eps / steps
    x_adv = x.detach()
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
        x_adv = _project(x + (2 * noise - 1) * eps, x, eps)
    for _ in range(steps):
        x_adv = _project(x_adv + step_size * input_gradient(model, x_adv, y).sign(), x, eps)
    return x_adv


ATTACKS: dict[str, Attack] = {
    "fgsm": fgsm,
    "pgd": pgd,
}
