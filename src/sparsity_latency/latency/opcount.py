"""Exact operation counts and the energy model (docs/metrics.md).

A layer fed by spikes performs one accumulate (AC) per incoming spike and per target it reaches:
SynOps = Σ_t Σ_inputs spike × fan-out. A convolution's true fan-out at each input position, padding
and stride included, is the transposed convolution of an all-ones output with an all-ones kernel
(as in sinabs). A layer fed by real-valued frames performs dense multiply-accumulates (MACs):
k²·H_out·W_out·C_in·C_out per time step for a convolution, in·out for a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def fan_out(layer: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Number of output units each input unit of `layer` reaches; shape = one sample's input shape."""
    if isinstance(layer, nn.Linear):
        return torch.full(input_shape, float(layer.out_features))
    if isinstance(layer, nn.Conv2d):
        channels, height, width = input_shape
        out_height, out_width = conv_output_size(layer, height, width)
        ones_out = torch.ones(1, layer.out_channels, out_height, out_width)
        ones_kernel = torch.ones(layer.out_channels, channels // layer.groups, *layer.kernel_size)
        # Without padding the transposed convolution covers the padded input; cut the real input out of
        # it. Rows/columns the stride never reaches are missing at the bottom/right and reach nothing.
        padded = F.conv_transpose2d(ones_out, ones_kernel, stride=layer.stride, dilation=layer.dilation,
                                    groups=layer.groups)[0]
        top, left = layer.padding
        inside = padded[:, top:top + height, left:left + width]
        fan = torch.zeros(channels, height, width)
        fan[:, :inside.shape[1], :inside.shape[2]] = inside
        return fan
    raise TypeError(f"no fan-out rule for {type(layer).__name__}")


def conv_output_size(layer: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    """Output height and width of a 2-d convolution."""
    sizes = []
    for size, k, s, p, d in zip((height, width), layer.kernel_size, layer.stride, layer.padding,
                                layer.dilation, strict=True):
        sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return sizes[0], sizes[1]


def synops(spikes: torch.Tensor, fan: torch.Tensor) -> float:
    """Accumulates caused by `spikes` [..., *input_shape] (any leading time/batch axes) in total."""
    leading = spikes.dim() - fan.dim()
    per_input = spikes.sum(dim=tuple(range(leading))) if leading else spikes
    return float((per_input * fan).sum())


def dense_macs(layer: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one dense pass of `layer` over one sample at one time step."""
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    if isinstance(layer, nn.Conv2d):
        out_height, out_width = conv_output_size(layer, *input_shape[1:])
        k_height, k_width = layer.kernel_size
        return (k_height * k_width * (layer.in_channels // layer.groups) * layer.out_channels
                * out_height * out_width)
    raise TypeError(f"no MAC rule for {type(layer).__name__}")


def membrane_traffic_bits(neurons: int, time_steps: int, membrane_bits: float) -> float:
    """Bits of membrane state read and written per sample: neurons × T × bits × 2."""
    return neurons * time_steps * membrane_bits * 2


@dataclass(frozen=True)
class EnergyModel:
    """pJ per accumulate, per multiply-accumulate and per bit of membrane memory traffic."""

    ac_pj: float = 0.9
    mac_pj: float = 4.6
    memory_pj_per_bit: float = 0.15625

    def energy_pj(self, synops: float = 0.0, macs: float = 0.0, traffic_bits: float = 0.0) -> float:
        return synops * self.ac_pj + macs * self.mac_pj + traffic_bits * self.memory_pj_per_bit
