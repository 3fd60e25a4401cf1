"""Weight quantization with straight-through gradients, and the conv / linear layers that use it (SpQuant-SNN).

Rules, each over the whole weight tensor w:
- ternary, used for 2 bits (SpQuant-SNN's `TernFunc`): th = 0.05·max|w|; m = mean of |w| over the entries with
  |w| ≥ th; q = +m where w ≥ th, −m where w ≤ −th, 0 elsewhere. The largest entry always reaches th, so m is a
  mean over at least one entry; an all-zero w gives m = 0 and q = 0.
- sawb, 4 or 8 bits: statistics-aware weight binning (Choi et al., "Bridging the accuracy gap for 2-bit quantized
  neural networks (QNN)", arXiv 1807.06964, 2018), the "symm" mode of SpQuant-SNN's `SAWB`:
  α = c1·std(w) − c2·mean|w| with std unbiased, c1 = 1/z0, c2 = z1/z0 and (z0, z1) from `SAWB_COEFFICIENTS`;
  α = max|w| when that is not > 0. α is recomputed from the detached weights on every call. (SpQuant-SNN's
  released QConv2d builds SAWB in its "asymm" mode, α = 2·mean|w|, and zeroes the gradient outside ±α; we keep
  the SAWB formula and the identity gradient.)
- uniform, 2 to 8 bits: symmetric uniform with α = max|w|.
Both k-bit rules keep n = 2^(k−1) − 1 levels each side of zero: with s = n/α, q = round(clamp(w, −α, α)·s)/s,
so q takes at most 2n + 1 = 2^k − 1 values. 32 bits or more means full precision: w itself.

Backward is straight-through, the identity, as in SpQuant-SNN's `TernFunc` (repository Ahmedhasssan/IM_SNN-SpQuant_SNN,
models/t2c/methods/qlayer.py). The forward value is the quantized tensor exactly, not w + (q − w).detach(), which
rounds in float.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.neurons.quantizer import FULL_PRECISION_BITS

WEIGHT_QUANTIZERS = ("sawb", "uniform")  # rules for 3 bits and more; 2 bits is always ternary
TERNARY_THRESHOLD = 0.05  # th = 0.05·max|w| (SpQuant-SNN's tFactor)
SAWB_COEFFICIENTS = {4: (0.077, 1.013), 8: (0.027, 1.114)}  # bits → (z0, z1), SAWB's fitted table
UNIFORM_MAX_BITS = 8


class _StraightThrough(torch.autograd.Function):
    """Forward: `values(weight)`; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, values: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return values(weight)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


def ternary_weights(w: torch.Tensor) -> torch.Tensor:
    """SpQuant-SNN's 2-bit weights {−m, 0, +m} (see the module docstring), straight-through gradient."""
    return _StraightThrough.apply(w, _ternary_values)


def sawb_alpha(w: torch.Tensor, bits: float) -> torch.Tensor:
    """SAWB's clipping level α = std(w)/z0 − (z1/z0)·mean|w|, or max|w| when that is not > 0 (0-dim tensor)."""
    _raise_if(_rule_error(bits, "sawb"))
    z0, z1 = SAWB_COEFFICIENTS[int(bits)]
    w = w.detach()
    alpha = (1 / z0) * w.std() - (z1 / z0) * w.abs().mean()
    return torch.where(alpha > 0, alpha, w.abs().max())


def sawb_weights(w: torch.Tensor, bits: float) -> torch.Tensor:
    """Statistics-aware binning to 4 or 8 bits, straight-through gradient."""
    _raise_if(_rule_error(bits, "sawb"))
    return _StraightThrough.apply(w, lambda v: _round_to_grid(v, sawb_alpha(v, bits), int(bits)))


def uniform_weights(w: torch.Tensor, bits: float) -> torch.Tensor:
    """Symmetric uniform quantization to 2–8 bits with α = max|w|, straight-through gradient."""
    _raise_if(_rule_error(bits, "uniform"))
    return _StraightThrough.apply(w, lambda v: _round_to_grid(v, v.abs().max(), int(bits)))


_RULES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {"sawb": sawb_weights, "uniform": uniform_weights}


def check_weight_bits(bits: float, rule: str) -> str | None:
    """Why weights cannot be quantized to `bits` bits with `rule`, or None when they can."""
    if rule not in WEIGHT_QUANTIZERS:
        return f"unknown weight rule {rule!r}; choose one of {', '.join(WEIGHT_QUANTIZERS)}"
    if bits >= FULL_PRECISION_BITS or bits == 2:
        return None
    if bits < 2:
        return (f"weight bits must be at least 2 (2 = ternary), or {FULL_PRECISION_BITS:g} for full precision; "
                f"got {bits:g}")
    return _rule_error(bits, rule)


def quantize_weights(w: torch.Tensor, bits: float, rule: str) -> torch.Tensor:
    """w at `bits` bits: unchanged from 32 bits up, ternary at 2, else `rule`; raises ValueError when unsupported."""
    _raise_if(check_weight_bits(bits, rule))
    if bits >= FULL_PRECISION_BITS:
        return w
    if bits == 2:
        return ternary_weights(w)
    return _RULES[rule](w, bits)


class _QuantizedWeightLayer:
    """What QuantConv2d and QuantLinear share: extra keyword arguments `weight_bits` and `weight_rule`, checked
    before the layer is built, and the weight as forward uses it."""

    weight: nn.Parameter

    def __init__(self, *args: Any, weight_bits: float = FULL_PRECISION_BITS, weight_rule: str = "sawb",
                 **kwargs: Any) -> None:
        _raise_if(check_weight_bits(weight_bits, weight_rule))
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits
        self.weight_rule = weight_rule

    def forward_weight(self) -> torch.Tensor:
        """The weight quantized, with its straight-through gradient; the parameter itself at full precision."""
        return quantize_weights(self.weight, self.weight_bits, self.weight_rule)

    def quantized_weight(self) -> torch.Tensor:
        """The weight as forward uses it, detached (at full precision a view of the parameter itself)."""
        return self.forward_weight().detach()

    def extra_repr(self) -> str:
        if self.weight_bits >= FULL_PRECISION_BITS:
            return f"{super().extra_repr()}, weight_bits={self.weight_bits:g}"
        rule = "ternary" if self.weight_bits == 2 else self.weight_rule
        return f"{super().extra_repr()}, weight_bits={self.weight_bits:g}, weights={rule}"


class QuantConv2d(_QuantizedWeightLayer, nn.Conv2d):
    """nn.Conv2d whose forward uses the weight quantized to `weight_bits` bits; the bias stays floating point."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.forward_weight(), self.bias)


class QuantLinear(_QuantizedWeightLayer, nn.Linear):
    """nn.Linear whose forward uses the weight quantized to `weight_bits` bits; the bias stays floating point."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.forward_weight(), self.bias)


def _ternary_values(w: torch.Tensor) -> torch.Tensor:
    magnitude = w.abs()
    above = magnitude >= TERNARY_THRESHOLD * magnitude.max()
    mean_above = (magnitude * above).sum() / above.sum()
    return torch.sign(w) * above * mean_above


def _round_to_grid(w: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """round(clamp(w, −α, α)·s)/s with s = n/α, n = 2^(bits−1) − 1."""
    n_levels = 2 ** (bits - 1) - 1
    # α = 0 only when w is all zeros, which any finite scale maps to zeros.
    scale = n_levels / torch.where(alpha > 0, alpha, 1.0)
    return torch.round(torch.clamp(w, -alpha, alpha) * scale) / scale


def _rule_error(bits: float, rule: str) -> str | None:
    """Why the k-bit `rule` cannot give `bits` bits, or None."""
    if rule == "sawb" and bits not in SAWB_COEFFICIENTS:
        return f"sawb weights need 4 or 8 bits (its coefficient table has no others); got {bits:g}"
    if rule == "uniform" and not (float(bits).is_integer() and 2 <= bits <= UNIFORM_MAX_BITS):
        return f"uniform weights need a whole number of bits from 2 to {UNIFORM_MAX_BITS}; got {bits:g}"
    return None


def _raise_if(error: str | None) -> None:
    if error is not None:
        raise ValueError(error)

