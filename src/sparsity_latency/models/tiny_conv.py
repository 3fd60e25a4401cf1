"""A small convolutional SNN for CI and the smoke study: [conv(3×3, stride 2) → BN → LIF] × n → linear.

BatchNorm stays in floating point (as in SpQuant-SNN) and folds into the convolution at inference,
so it adds no operations of its own.

Stateless layers (convolutions, the readout) run once over all T·B frames; only the LIF layers loop
over time. The readout is the time average of the linear layer's output (a non-spiking integrator),
so every LIF layer's spikes are counted as SynOps of the layer after it.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.neurons import MultiStep, QuantLeaky


def lif_from_config(config: ModelConfig) -> MultiStep:
    """A multi-step quantized-membrane LIF layer with the neuron settings of `config`."""
    return MultiStep(QuantLeaky(
        beta=config.beta,
        threshold=config.threshold,
        membrane_bits=config.membrane_bits,
        reset=config.reset,
        surrogate=config.surrogate,
        surrogate_width=config.surrogate_width,
    ))


class TinyConvSNN(nn.Module):
    """Layers conv1, bn1, lif1, conv2, bn2, lif2, …, fc; input [T, B, C, H, W], output logits [B, classes]."""

    # Layers whose input is real-valued frames rather than spikes: their work is counted in MACs.
    frame_fed_layers = ("conv1",)

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        channels_in, height, width = input_shape
        self.depth = len(config.channels)
        for index, channels_out in enumerate(config.channels, start=1):
            self.add_module(f"conv{index}", nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1,
                                                      bias=False))
            self.add_module(f"bn{index}", nn.BatchNorm2d(channels_out))
            self.add_module(f"lif{index}", lif_from_config(config))
            channels_in = channels_out
            height, width = (height + 1) // 2, (width + 1) // 2
        self.fc = nn.Linear(channels_in * height * width, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        steps, batch = frames.shape[:2]
        hidden = frames
        for index in range(1, self.depth + 1):
            current = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(hidden.flatten(0, 1)))
            hidden = getattr(self, f"lif{index}")(current.unflatten(0, (steps, batch)))
        return self.fc(hidden.flatten(2)).mean(0)
