"""Membrane quantization to an integer grid with unit interval (SpQuant-SNN).

With b bits the grid holds n = round(2^b) levels whose top level is the threshold (1 in grid
units): {2 − n, …, 0, 1}. Ternary (b = 1.58 = log2 3) is {−1, 0, 1}; SpQuant's released default of
5 levels is {−3, …, 1}. Values are clamped to [lowest level, top level], then rounded.
"""

from __future__ import annotations

import torch

FULL_PRECISION_BITS = 32.0


def membrane_levels(bits: float, top: float = 1.0) -> tuple[float, float]:
    """Lowest and highest grid level for a membrane of `bits` bits whose top level is `top`."""
    n_levels = round(2.0**bits)
    return top - (n_levels - 1), top


def is_full_precision(bits: float) -> bool:
    return bits >= FULL_PRECISION_BITS


def quantize_membrane(mem: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Clamp to [low, high] and round to the integer grid; straight-through gradient inside the range."""
    clamped = mem.clamp(low, high)
    return clamped + (torch.round(clamped) - clamped).detach()
