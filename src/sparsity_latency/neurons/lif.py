"""Leaky integrate-and-fire neuron with a quantized membrane, a drop-in for `snntorch.Leaky`.

Call convention as snntorch's (with `init_hidden=False`): `spk, mem = lif(x, mem)`, where `mem=None`
starts from rest. The state is explicit; the module keeps no record of live instances.

One step (SpQuant-SNN): mem ← β·mem + x; spk = [mem > θ]; reset (hard: mem ← (1 − spk)·mem, or
subtract: mem ← mem − spk·θ, the reset using the spike without its gradient, as snntorch does);
then the stored membrane is snapped to the integer grid (see `quantizer`).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsity_latency.neurons.quantizer import is_full_precision, membrane_levels, quantize_membrane
from sparsity_latency.neurons.surrogates import SURROGATES

RESETS = ("zero", "subtract")


class QuantLeaky(nn.Module):
    """LIF neuron whose stored membrane lives on a `membrane_bits` integer grid."""

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        membrane_bits: float = 1.58,
        reset: str = "zero",
        surrogate: str = "triangle",
        surrogate_width: float = 1.0,
    ) -> None:
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"unknown reset '{reset}'")
        self.beta = beta
        self.threshold = threshold
        self.membrane_bits = membrane_bits
        self.reset = reset
        self.surrogate = surrogate
        self.surrogate_width = surrogate_width
        self._spike = SURROGATES[surrogate]
        self.quantized = not is_full_precision(membrane_bits)
        self.low, self.high = membrane_levels(membrane_bits, top=threshold)
        # Identity on the membrane before it fires: a place where probes can hook ∂L/∂membrane.
        self.membrane_tap = nn.Identity()

    def init_leaky(self) -> None:
        """snntorch's name for the initial state; `None` means "at rest" (zeros of the input's shape)."""
        return None

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mem = self.membrane_tap(input_ if mem is None else self.beta * mem + input_)
        spk = self._spike(mem - self.threshold, self.surrogate_width)
        fired = spk.detach()
        mem = mem * (1 - fired) if self.reset == "zero" else mem - fired * self.threshold
        if self.quantized:
            mem = quantize_membrane(mem, self.low, self.high)
        return spk, mem

    def extra_repr(self) -> str:
        return (f"beta={self.beta}, threshold={self.threshold}, membrane_bits={self.membrane_bits}, "
                f"reset={self.reset}, surrogate={self.surrogate}({self.surrogate_width})")


class MultiStep(nn.Module):
    """Runs a single-step neuron over the leading time axis: [T, B, …] in, spikes [T, B, …] out."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        mem = None
        spikes = []
        for x_t in inputs:
            spk, mem = self.neuron(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)
