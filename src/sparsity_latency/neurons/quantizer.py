"""Membrane quantization to an integer grid with unit interval (SpQuant-SNN).

With b bits the grid holds n = round(2^b) levels whose top level is the threshold θ (in grid units):
{θ − n + 1, …, θ}. Ternary (b = 1.58 = log2 3, θ = 1) is {−1, 0, 1}; SpQuant's released default of
5 levels is {−3, …, 1}. A value is clamped to [lowest level, θ] and snapped to the nearest level,
ties going to the lower one (SpQuant's code takes the first of the nearest levels in ascending order):
q(x) = clamp(⌈x − ½⌉, low, θ). A memory stores ⌈b⌉ bits per neuron (`storage_bits`).

Backward, selectable:
- `stacked-sigmoid` (SpQuant-SNN): the derivative of a smoothed staircase, a sum of sigmoid-derivative
  bumps τ·σ(τ(x − c))·(1 − σ(τ(x − c))) centred on each boundary c between adjacent levels, with
  τ = 2 as in SpQuant's code. It is applied everywhere (no clamp mask): far outside the grid it decays
  towards 0. With more than 16 boundaries only the `BUMP_WINDOW` nearest on each side of x are summed;
  the ones left out add less than 1.1e-5 together (peak of one bump: τ/4 = 0.5).
- `ste`: straight-through inside the clamp range, 0 outside it.
"""

from __future__ import annotations

import math

import torch

FULL_PRECISION_BITS = 32.0
QUANT_GRADS = ("stacked-sigmoid", "ste")
SIGMOID_TEMPERATURE = 2.0  # τ of the stacked-sigmoid backward (SpQuant-SNN's code)
STACKED_SIGMOID_EXACT_UP_TO = 16  # boundaries (4 bits) up to which every bump is summed
BUMP_WINDOW = 6  # bumps summed on each side of x when there are many: those beyond add < 2·Σ_j 2e^(−2(6.5+j))


def membrane_levels(bits: float, top: float = 1.0) -> tuple[float, float]:
    """Lowest and highest grid level for a membrane of `bits` bits whose top level is `top`."""
    n_levels = round(2.0**bits)
    return top - (n_levels - 1), top


def is_full_precision(bits: float) -> bool:
    return bits >= FULL_PRECISION_BITS


def storage_bits(bits: float) -> int:
    """Bits a memory spends per value: ⌈b⌉ (2 for a ternary membrane), 32 for full precision."""
    return int(FULL_PRECISION_BITS) if is_full_precision(bits) else math.ceil(bits - 1e-9)


def snap(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """clamp(⌈x − ½⌉, low, high): the nearest level, ties to the lower one (forward values only)."""
    return torch.ceil(x - 0.5).clamp_(low, high)


def ste_derivative(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """1 inside [low, high], 0 outside."""
    return ((x >= low) & (x <= high)).to(x.dtype)


def stacked_sigmoid_derivative(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Σ over level boundaries c of τ·σ(τ(x − c))·(1 − σ(τ(x − c))), boundaries c = low + ½, …, high − ½."""
    n_boundaries = int(high - low)
    total = torch.zeros_like(x)
    if n_boundaries <= STACKED_SIGMOID_EXACT_UP_TO:
        for k in range(n_boundaries):
            total += _bump(x - (low + 0.5 + k))
        return total
    # Many levels: only the boundaries within BUMP_WINDOW of x, picked per element.
    nearest = (x - low - 0.5).round().clamp(0, n_boundaries - 1)
    for offset in range(-BUMP_WINDOW, BUMP_WINDOW + 1):
        index = nearest + offset
        inside = (index >= 0) & (index < n_boundaries)
        total += torch.where(inside, _bump(x - (low + 0.5 + index)), 0.0)
    return total


def _bump(distance: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(distance * SIGMOID_TEMPERATURE)
    return s.mul_(1 - s).mul_(SIGMOID_TEMPERATURE)


QUANT_DERIVATIVES = {"stacked-sigmoid": stacked_sigmoid_derivative, "ste": ste_derivative}


class _Quantize(torch.autograd.Function):
    """`snap` forward; the chosen derivative times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, low: float, high: float, grad: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.low, ctx.high, ctx.grad = low, high, grad
        return snap(x, low, high)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return grad_out * QUANT_DERIVATIVES[ctx.grad](x, ctx.low, ctx.high), None, None, None


def quantize_membrane(mem: torch.Tensor, low: float, high: float, grad: str = "ste") -> torch.Tensor:
    """Snap `mem` to the grid [low, high] with the `grad` backward (see the module docstring)."""
    if grad not in QUANT_DERIVATIVES:
        raise ValueError(f"unknown quantizer gradient '{grad}' (known: {', '.join(QUANT_GRADS)})")
    return _Quantize.apply(mem, low, high, grad)


def dyadic_ceil(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """⌈x · 2^f⌉ / 2^f: x on a grid of 2^−f, rounded up (exact in floating point)."""
    scale = float(2**frac_bits)
    return torch.ceil(x * scale).div_(scale)


class _DyadicCeil(torch.autograd.Function):
    """`dyadic_ceil` forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, frac_bits: int) -> torch.Tensor:
        return dyadic_ceil(x, frac_bits)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_out, None


def snap_input(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """`dyadic_ceil` with a straight-through gradient."""
    return _DyadicCeil.apply(x, frac_bits)
