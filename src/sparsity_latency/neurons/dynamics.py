"""The arithmetic of one quantized-membrane LIF neuron, shared by every way of running it.

One step (SpQuant-SNN):
    h_t = β·m_{t−1} + x_t                  membrane before firing (m_0 = 0)
    s_t = [h_t > θ]                         spike; backward through a surrogate of u = h_t − θ
    r_t = (1 − s_t)·h_t  or  h_t − s_t·θ    hard ("zero") or soft ("subtract") reset
    m_t = q(r_t)                            stored membrane: snapped to the grid (`quantizer`)

The reset uses the spike without its gradient unless `detach_reset` is off (snntorch's default,
delayed reset detaches it; SpQuant-SNN's code and snntorch's immediate reset do not).

When the membrane is quantized and β = 2^−k (a right shift by k), the input current is first put on
a grid of 2^−(k+1), rounded up: x ← ⌈x·2^(k+1)⌉ / 2^(k+1). Every decision of the step — h_t > θ and
which level r_t rounds to — compares x_t with a multiple of 2^−(k+1) (θ and the levels are integers,
β·m a multiple of 2^−k), and x > c ⟺ ⌈x·2^(k+1)⌉ > c·2^(k+1) for such c. So the rounding changes no
decision made in exact arithmetic, while it makes every floating-point operation of the step exact:
the integer-only path (`integer`) then gives bit-identical spikes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsity_latency.neurons.quantizer import (
    QUANT_DERIVATIVES,
    QUANT_GRADS,
    is_full_precision,
    membrane_levels,
    snap,
    storage_bits,
)
from sparsity_latency.neurons.surrogates import DERIVATIVES, surrogate_param

RESETS = ("zero", "subtract")


def leak_shift(beta: float) -> int | None:
    """k when β = 2^−k for a whole k ≥ 0 (a leak that is a right shift), else None."""
    k = -math.log2(beta) if beta > 0 else math.inf
    return round(k) if math.isfinite(k) and k == round(k) else None


@dataclass(frozen=True)
class LIFDynamics:
    """Parameters of the neuron and the pieces of its step (values and derivatives)."""

    beta: float = 0.5
    threshold: float = 1.0
    membrane_bits: float = 1.58
    reset: str = "zero"
    surrogate: str = "triangle"
    surrogate_param: float = 0.0  # 0: the surrogate's default (see surrogates)
    quant_grad: str = "stacked-sigmoid"
    detach_reset: bool = True

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise ValueError(f"unknown reset '{self.reset}' (known: {', '.join(RESETS)})")
        if self.surrogate not in DERIVATIVES:
            raise ValueError(f"unknown surrogate '{self.surrogate}' (known: {', '.join(DERIVATIVES)})")
        if self.quant_grad not in QUANT_GRADS:
            raise ValueError(f"unknown quantizer gradient '{self.quant_grad}' (known: {', '.join(QUANT_GRADS)})")
        if self.quantized and not float(self.threshold).is_integer():
            raise ValueError(f"a quantized membrane needs a whole-number threshold, got {self.threshold}")

    @property
    def quantized(self) -> bool:
        return not is_full_precision(self.membrane_bits)

    @property
    def levels(self) -> tuple[float, float]:
        """Lowest and highest membrane level (quantized membranes only)."""
        return membrane_levels(self.membrane_bits, top=self.threshold)

    @property
    def param(self) -> float:
        """The surrogate's parameter in use."""
        return surrogate_param(self.surrogate, self.surrogate_param)

    @property
    def leak_shift(self) -> int | None:
        return leak_shift(self.beta)

    @property
    def frac_bits(self) -> int | None:
        """Fractional bits of the input-current grid: k + 1 for a quantized membrane with β = 2^−k, else None."""
        shift = self.leak_shift
        return shift + 1 if self.quantized and shift is not None else None

    def describe(self) -> dict:
        """The neuron as run, with defaults resolved (recorded in run.json)."""
        record = {"beta": self.beta, "leak_shift": self.leak_shift, "threshold": self.threshold,
                  "reset": self.reset, "detach_reset": self.detach_reset, "surrogate": self.surrogate,
                  "surrogate_param": self.param, "membrane_bits": self.membrane_bits}
        if self.quantized:
            record.update(level_range=list(self.levels), storage_bits=storage_bits(self.membrane_bits),
                          quant_grad=self.quant_grad, input_frac_bits=self.frac_bits,
                          integer_path=self.frac_bits is not None)
        return record

    def spike_derivative(self, u: torch.Tensor) -> torch.Tensor:
        """dS/du of the surrogate at u = h − θ."""
        return DERIVATIVES[self.surrogate](u, self.param)

    def integrate(self, stored: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """h_t = β·m_{t−1} + x_t, as a product and then a sum (the order the compiled kernels use too)."""
        return stored * self.beta + current

    def reset_value(self, h: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
        """r_t: h_t after the reset of the neurons that fired (`fired` boolean), before quantization."""
        return torch.where(fired, 0.0, h) if self.reset == "zero" else torch.where(fired, h - self.threshold, h)

    def next_state(self, h: torch.Tensor) -> torch.Tensor:
        """Stored membrane m_t from the membrane before firing h_t (forward values only)."""
        reset = self.reset_value(h, h > self.threshold)
        if self.quantized:
            low, high = self.levels
            return snap(reset, low, high)
        return reset

    def carry(self, h: torch.Tensor) -> torch.Tensor:
        """∂h_{t+1}/∂h_t = β · ∂m_t/∂h_t through reset and quantizer, for each element of h [..]."""
        fired = h > self.threshold
        if self.reset == "zero":
            through_reset = (~fired).to(h.dtype)
            if not self.detach_reset:
                through_reset = through_reset - h * self.spike_derivative(h - self.threshold)
        else:
            through_reset = torch.ones_like(h)
            if not self.detach_reset:
                through_reset = through_reset - self.threshold * self.spike_derivative(h - self.threshold)
        if self.quantized:
            low, high = self.levels
            through_reset = through_reset * QUANT_DERIVATIVES[self.quant_grad](self.reset_value(h, fired), low, high)
        return through_reset.mul_(self.beta)
