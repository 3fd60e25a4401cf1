"""Spike functions: Heaviside forward, a surrogate derivative backward, registered by name.

The surrogate decides how sparse gradients can be: the triangle is exactly zero outside its width,
atan never is. Both are functions of u = membrane − threshold and one width parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Derivative = Callable[[torch.Tensor, float], torch.Tensor]
SpikeFn = Callable[[torch.Tensor, float], torch.Tensor]


def triangle_derivative(u: torch.Tensor, width: float) -> torch.Tensor:
    """max(0, γ − |u|) / γ² (SpQuant-SNN, width γ)."""
    return (width - u.abs()).clamp(min=0) / width**2


def atan_derivative(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """(α/2) / (1 + (π/2 · α · u)²) (snntorch's atan)."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)


class _Heaviside(torch.autograd.Function):
    """[u > 0] forward; `derivative(u, width)` times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, width: float, derivative: Derivative) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.width, ctx.derivative = width, derivative
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (u,) = ctx.saved_tensors
        return grad_out * ctx.derivative(u, ctx.width), None, None


def _spike_fn(derivative: Derivative) -> SpikeFn:
    def spike(u: torch.Tensor, width: float) -> torch.Tensor:
        return _Heaviside.apply(u, width, derivative)

    spike.__doc__ = f"Heaviside spike with the surrogate gradient {derivative.__name__}."
    return spike


SURROGATES: dict[str, SpikeFn] = {
    "triangle": _spike_fn(triangle_derivative),
    "atan": _spike_fn(atan_derivative),
}
