"""Spike functions: Heaviside forward, a surrogate derivative backward, registered by name.

The surrogate decides how sparse gradients can be: the triangle is exactly zero outside its width,
atan never is. Both are functions of u = membrane − threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class _Triangle(torch.autograd.Function):
    """Heaviside(u > 0); backward max(0, γ − |u|) / γ² (SpQuant-SNN, width γ)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        gamma = ctx.width
        return grad_out * (gamma - u.abs()).clamp(min=0) / gamma**2, None


class _Atan(torch.autograd.Function):
    """Heaviside(u > 0); backward (α/2) / (1 + (π/2 · α · u)²) (snntorch's atan)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad_out * (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2), None


SpikeFn = Callable[[torch.Tensor, float], torch.Tensor]

SURROGATES: dict[str, SpikeFn] = {
    "triangle": _Triangle.apply,
    "atan": _Atan.apply,
}
