"""Exact operation counts and the energy model (docs/metrics.md).

A layer fed by spikes performs one accumulate (AC) per incoming spike and per target it reaches:
SynOps = Σ_t Σ_inputs spike × fan-out. Input that is sparse but not binary (spikes after an average
pool) costs one accumulate per nonzero value and target. A window's fan-out at each input position,
padding and stride included, is the transposed convolution of an all-ones output with an all-ones
kernel (as in sinabs). A layer fed by real-valued frames performs dense multiply-accumulates (MACs):
k²·H_out·W_out·C_in·C_out per time step for a convolution, in·out for a linear layer. A gated layer
(SpQuant-SNN's channel gate) computes, at each frame, only its open output channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


def fan_out(layer: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Number of output units each input unit of `layer` reaches; shape = one sample's input shape."""
    if isinstance(layer, nn.Linear):
        return torch.full(input_shape, float(layer.out_features))
    if isinstance(layer, nn.Conv2d):
        channels, height, width = input_shape
        windows = window_fan_out(height, width, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        # each input channel feeds the out_channels/groups output channels of its group, through the same windows
        return (windows * (layer.out_channels // layer.groups)).expand(channels, height, width).clone()
    if isinstance(layer, nn.AvgPool2d) and not layer.ceil_mode:
        # pooling works channel by channel: an input reaches the windows of its own channel that cover it
        channels, height, width = input_shape
        windows = window_fan_out(height, width, _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding))
        return windows.expand(channels, height, width).clone()
    raise TypeError(f"no fan-out rule for {layer!r}")


def window_fan_out(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """How many sliding windows cover each position of a height × width plane [H, W] (zero padding excluded)."""
    out_height = _output_size(height, kernel[0], stride[0], padding[0], dilation[0])
    out_width = _output_size(width, kernel[1], stride[1], padding[1], dilation[1])
    # Without padding the transposed convolution covers the padded input; cut the real input out of
    # it. Rows/columns the stride never reaches are missing at the bottom/right and reach nothing.
    padded = F.conv_transpose2d(torch.ones(1, 1, out_height, out_width), torch.ones(1, 1, *kernel), stride=stride,
                                dilation=dilation)[0, 0]
    top, left = padding
    inside = padded[top:top + height, left:left + width]
    windows = torch.zeros(height, width)
    windows[:inside.shape[0], :inside.shape[1]] = inside
    return windows


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_size(layer: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    """Output height and width of a 2-d convolution."""
    sizes = [_output_size(size, k, s, p, d) for size, k, s, p, d in zip(
        (height, width), layer.kernel_size, layer.stride, layer.padding, layer.dilation, strict=True)]
    return sizes[0], sizes[1]


def synops(inputs: torch.Tensor, fan: torch.Tensor) -> float:
    """Accumulates caused by `inputs` [..., *input_shape] (any leading time/batch axes) in total.

    One per nonzero input value and target it reaches: spikes × fan-out for spikes, nonzeros × fan-out
    for sparse real values such as average-pooled spikes.
    """
    leading = inputs.dim() - fan.dim()
    nonzero = (inputs != 0).cpu().double()  # counted on the CPU in float64: exact, on any device
    per_input = nonzero.sum(dim=tuple(range(leading))) if leading else nonzero
    return float((per_input * fan.double()).sum())


def gated_synops(inputs: torch.Tensor, fan: torch.Tensor, open_channels: torch.Tensor, groups: int = 1) -> float:
    """Accumulates of a layer that computes, frame by frame, only its open output channels.

    `inputs` [N, *input_shape] holds N frames (time × batch, in the order of `open_channels`), `fan` is the
    layer's full fan-out [C_in, …] and `open_channels` [N, C_out] is 1 where a channel is computed. An input of
    group g reaches each of its group's C_out/groups channels with fan/(C_out/groups) targets, so frame n costs
    Σ_g (Σ_{nonzero inputs of g} fan)/(C_out/groups) × (open channels of g at n).
    """
    frames, channels_out = open_channels.shape
    nonzero = (inputs != 0).cpu().double().reshape(frames, groups, -1)
    one_channel = (nonzero * fan.double().reshape(groups, -1)).sum(dim=2) / (channels_out // groups)  # [N, groups]
    open_per_group = open_channels.cpu().double().reshape(frames, groups, -1).sum(dim=2)
    return float((one_channel * open_per_group).sum())


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


def gated_macs(layer: nn.Module, input_shape: tuple[int, ...], open_channels: torch.Tensor) -> float:
    """MACs of a frame-fed layer that computes only its open output channels [N, C_out], over all N frames.

    Every output channel costs the same share of a dense pass: dense MACs / C_out per open channel and frame.
    """
    return dense_macs(layer, input_shape) / open_channels.shape[1] * float(open_channels.sum(dtype=torch.float64))


def gate_ops(input_shape: tuple[int, ...], channels_out: int) -> tuple[int, int]:
    """(adds, MACs) of one channel gate per frame: global average pool of its input [C_in, H, W] (C_in·H·W adds)
    and the 1×1 predictor (C_in·C_out MACs)."""
    return math.prod(input_shape), input_shape[0] * channels_out


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
