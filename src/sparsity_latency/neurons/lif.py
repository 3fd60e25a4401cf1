"""Leaky integrate-and-fire neuron with a quantized membrane, a drop-in for `snntorch.Leaky`.

Call convention as snntorch's (with `init_hidden=False`): `spk, mem = lif(x, mem)`, where `mem=None`
starts from rest. The state is explicit; the module keeps no record of live instances (snntorch's
neurons register every instance in a class-level list). The step is `dynamics.LIFDynamics`'s, run
through autograd one time step at a time; `multistep.MultiStepLIF` runs the same step over a whole
sequence with a hand-written backward.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from sparsity_latency.neurons.dynamics import LIFDynamics
from sparsity_latency.neurons.quantizer import quantize_membrane, snap_input
from sparsity_latency.neurons.surrogates import SURROGATES


class QuantLeaky(nn.Module):
    """LIF neuron whose stored membrane lives on a `membrane_bits` integer grid (≥ 32: full precision)."""

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        membrane_bits: float = 1.58,
        reset: str = "zero",
        surrogate: str = "triangle",
        surrogate_param: float = 0.0,
        quant_grad: str = "stacked-sigmoid",
        detach_reset: bool = True,
    ) -> None:
        super().__init__()
        self.dynamics = LIFDynamics(beta, threshold, membrane_bits, reset, surrogate, surrogate_param, quant_grad,
                                    detach_reset)
        self._spike = SURROGATES[surrogate]
        # Identity on the membrane before it fires: a place where probes can hook ∂L/∂membrane.
        self.membrane_tap = nn.Identity()

    @classmethod
    def from_dynamics(cls, dynamics: LIFDynamics) -> QuantLeaky:
        """The single-step neuron with the settings of `dynamics`."""
        return cls(**dataclasses.asdict(dynamics))

    def init_leaky(self) -> None:
        """snntorch's name for the initial state; `None` means "at rest" (zeros of the input's shape)."""
        return None

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dynamics
        current = input_ if d.frac_bits is None else snap_input(input_, d.frac_bits)
        mem = self.membrane_tap(current if mem is None else d.integrate(mem, current))
        spk = self._spike(mem - d.threshold, d.param)
        fired = spk.detach() if d.detach_reset else spk
        mem = mem * (1 - fired) if d.reset == "zero" else mem - fired * d.threshold
        if d.quantized:
            mem = quantize_membrane(mem, *d.levels, grad=d.quant_grad)
        return spk, mem

    def extra_repr(self) -> str:
        d = self.dynamics
        return (f"beta={d.beta}, threshold={d.threshold}, membrane_bits={d.membrane_bits}, reset={d.reset}, "
                f"surrogate={d.surrogate}({d.param}), quant_grad={d.quant_grad}, detach_reset={d.detach_reset}")
