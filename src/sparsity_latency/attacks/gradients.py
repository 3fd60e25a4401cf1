"""What every attack shares: the input range, the loss it ascends, its input gradient, the projections.

Inputs live in [0, 1] (normalized event counts, see data.framing). The loss of a batch is the *sum* of
the per-sample cross-entropies, so a sample's gradient does not depend on which other samples share
its batch (a mean would scale it by 1/B, which changes no sign but does change L2 steps). Every
forward pass starts the SNN at rest, so the state is reset between attack iterations and per sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_MIN, INPUT_MAX = 0.0, 1.0
BATCH_DIM = 1  # inputs are time-major: [T, B, …]


def per_sample(x: torch.Tensor) -> torch.Tensor:
    """x [T, B, …] viewed as one flat row per sample: [B, T·…]."""
    return x.transpose(0, BATCH_DIM).flatten(1)


def from_per_sample(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `per_sample`: rows [B, T·…] back to time-major `like`'s shape [T, B, …]."""
    return flat.reshape(like.transpose(0, BATCH_DIM).shape).transpose(0, BATCH_DIM).contiguous()


def per_sample_shape(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values [B] shaped to broadcast against time-major `like` [T, B, …]."""
    return values.view(1, -1, *([1] * (like.dim() - 2)))


def score_gradient(model: nn.Module, x: torch.Tensor,
                   score: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂/∂x of the summed per-sample score(logits), logits at x); no graph kept, parameter grads untouched."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(score(logits).sum(), x)
    return grad, logits.detach()


def cross_entropy_gradient(model: nn.Module, x: torch.Tensor,
                           y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∂L/∂x, per-sample cross-entropy [B], logits) at x from one pass, L the summed cross-entropy."""
    grad, logits = score_gradient(model, x, lambda z: F.cross_entropy(z, y, reduction="none"))
    return grad, F.cross_entropy(logits, y, reduction="none"), logits


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂L/∂x, per-sample cross-entropy [B]) at x, L the summed cross-entropy; parameter grads untouched."""
    grad, losses, _ = cross_entropy_gradient(model, x, y)
    return grad, losses


def clamp_input(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(INPUT_MIN, INPUT_MAX)


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest point of the L∞ ball of radius eps around x that lies in the input range.

    Written as x + clamp(x_adv − x, ±eps), the same floating-point operations as torchattacks.
    """
    return clamp_input(x + (x_adv - x).clamp(-eps, eps)).detach()


def l2_norms(delta: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms [B] of time-major `delta` [T, B, …]."""
    return per_sample(delta).norm(dim=1)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """x_adv's perturbation scaled into the L2 ball of radius eps, then clamped to the input range.

    The same order as torchattacks' PGDL2 (scale, then clamp): the clamp can only shrink the norm.
    """
    delta = x_adv - x
    norms = l2_norms(delta)
    scale = torch.where(norms > eps, eps / norms, 1.0)  # = min(eps/‖δ‖, 1), and 1 (not 0/0) for δ = 0
    return clamp_input(x + delta * per_sample_shape(scale, delta)).detach()


def normalized_l2(grad: torch.Tensor) -> torch.Tensor:
    """grad scaled to unit L2 norm per sample (zero where the gradient is zero; + 1e-10 as torchattacks)."""
    return grad / per_sample_shape(l2_norms(grad) + 1e-10, grad)
