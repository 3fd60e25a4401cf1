"""Sparsity measures, defined once (docs/metrics.md).

Gradient sparsity is kept in three forms because surrogate gradients such as atan are never exactly
zero: the exact-zero fraction, the fraction at or below τ·max|g|, and Hoyer's measure
(√n − ‖g‖₁/‖g‖₂)/(√n − 1), which is 0 for a flat tensor and 1 for a one-hot one.
An all-zero gradient counts as fully sparse (1.0) in all three forms.
"""

from __future__ import annotations

import math

import torch

GRAD_FORMS = ("zero_fraction", "small_fraction", "hoyer")


def spike_sparsity(spikes: torch.Tensor) -> float:
    """1 − spikes / elements, for a binary spike tensor of any shape (e.g. [T, B, neurons])."""
    return 1.0 - float(spikes.sum()) / spikes.numel()


def grad_zero_fraction(grad: torch.Tensor) -> float:
    """Fraction of entries that are exactly zero."""
    return float((grad == 0).sum()) / grad.numel()


def grad_small_fraction(grad: torch.Tensor, tau: float) -> float:
    """Fraction of entries with |g| ≤ τ·max|g|."""
    magnitude = grad.abs()
    return float((magnitude <= tau * magnitude.max()).sum()) / grad.numel()


def hoyer_sparsity(grad: torch.Tensor) -> float:
    """(√n − ‖g‖₁/‖g‖₂)/(√n − 1) over all entries; 1.0 for an all-zero tensor or a single entry."""
    flat = grad.detach().flatten().double()
    n = flat.numel()
    l2 = float(flat.norm(2))
    if n == 1 or l2 == 0.0:
        return 1.0
    root_n = math.sqrt(n)
    return (root_n - float(flat.norm(1)) / l2) / (root_n - 1)


def grad_sparsity(grad: torch.Tensor, tau: float) -> dict[str, float]:
    """The three gradient-sparsity forms of one tensor, keyed by GRAD_FORMS."""
    grad = grad.detach()
    return {
        "zero_fraction": grad_zero_fraction(grad),
        "small_fraction": grad_small_fraction(grad, tau),
        "hoyer": hoyer_sparsity(grad),
    }
