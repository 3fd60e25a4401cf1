"""Spike functions: Heaviside forward, a surrogate derivative backward, registered by name.

The surrogate decides how sparse gradients can be: the triangle and the rectangle are exactly zero
outside their width, atan and the fast sigmoid never are. Each is a function of u = membrane −
threshold and one parameter, whose default is the one its source uses:

| name           | dS/du                               | parameter (default)           | source                       |
|----------------|-------------------------------------|-------------------------------|------------------------------|
| `triangle`     | max(0, γ − |u|) / γ²                | width γ (1, SpQuant-SNN)      | SpQuant-SNN, Esser et al.    |
| `atan`         | (α/2) / (1 + (π/2 · α · u)²)        | α (2, snntorch's default)     | Fang et al. 2021, snntorch   |
| `fast-sigmoid` | 1 / (1 + k·|u|)²                    | slope k (25, snntorch's)      | Zenke & Ganguli 2018         |
| `rectangle`    | [|u| < a/2] / a                     | width a (1)                   | Wu et al. 2018               |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Derivative = Callable[[torch.Tensor, float], torch.Tensor]
SpikeFn = Callable[[torch.Tensor, float], torch.Tensor]


def triangle_derivative(u: torch.Tensor, width: float) -> torch.Tensor:
    """max(0, γ − |u|) / γ² (SpQuant-SNN, width γ)."""
    return (width - u.abs()).clamp_(min=0).div_(width**2)


def atan_derivative(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """(α/2) / (1 + (π/2 · α · u)²) (snntorch's atan)."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)


def fast_sigmoid_derivative(u: torch.Tensor, slope: float) -> torch.Tensor:
    """1 / (1 + k·|u|)² (SuperSpike; snntorch's fast_sigmoid)."""
    return (u.abs() * slope + 1).pow_(-2)


def rectangle_derivative(u: torch.Tensor, width: float) -> torch.Tensor:
    """[|u| < a/2] / a (a box of area 1)."""
    return (u.abs() < width / 2).to(u.dtype).div_(width)


DERIVATIVES: dict[str, Derivative] = {
    "triangle": triangle_derivative,
    "atan": atan_derivative,
    "fast-sigmoid": fast_sigmoid_derivative,
    "rectangle": rectangle_derivative,
}

DEFAULT_PARAMS: dict[str, float] = {"triangle": 1.0, "atan": 2.0, "fast-sigmoid": 25.0, "rectangle": 1.0}


def surrogate_param(name: str, param: float) -> float:
    """The surrogate's parameter: `param`, or the surrogate's default when `param` is 0."""
    return param if param > 0 else DEFAULT_PARAMS[name]


class _Heaviside(torch.autograd.Function):
    """[u > 0] forward; `derivative(u, param)` times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, param: float, derivative: Derivative) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.param, ctx.derivative = param, derivative
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (u,) = ctx.saved_tensors
        return grad_out * ctx.derivative(u, ctx.param), None, None


def _spike_fn(derivative: Derivative) -> SpikeFn:
    def spike(u: torch.Tensor, param: float) -> torch.Tensor:
        return _Heaviside.apply(u, param, derivative)

    spike.__doc__ = f"Heaviside spike with the surrogate gradient {derivative.__name__}."
    return spike


SURROGATES: dict[str, SpikeFn] = {name: _spike_fn(derivative) for name, derivative in DERIVATIVES.items()}
