"""A fully connected SNN for spike trains of audio channels (SHD, N-TIDIGITS): [linear → BatchNorm → LIF] × n.

The input [T, B, C, H, W] is flattened per step (SHD: 700 channels), each hidden layer is a linear
layer at the configured weight precision, float BatchNorm and a LIF layer; the readout is the time
average of a full-precision linear layer. Hidden sizes default to (256, 256).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.models.layers import lif_layer, linear, readout


class SpikingMLP(nn.Module):
    """Layers fc1, bn1, lif1, fc2, …, fc (readout); input [T, B, C, H, W] → logits [B, classes]."""

    frame_fed_layers = ("fc1",)
    supports_gating = False
    default_channels = (256, 256)

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        features = math.prod(input_shape)
        sizes = config.channels or self.default_channels
        self.depth = len(sizes)
        for index, size in enumerate(sizes, start=1):
            self.add_module(f"fc{index}", linear(features, size, config))
            self.add_module(f"bn{index}", nn.BatchNorm1d(size))
            self.add_module(f"lif{index}", lif_layer(config))
            features = size
        self.fc = readout(features, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.step_logits(frames).mean(0)

    def step_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The readout at every step [T, B, classes]; their mean over time is the output."""
        return self.fc(self.features(frames))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's spikes [T, B, F] for frames [T, B, …]."""
        steps, batch = frames.shape[:2]
        hidden = frames.flatten(2).flatten(0, 1)
        for index in range(1, self.depth + 1):
            current = getattr(self, f"bn{index}")(getattr(self, f"fc{index}")(hidden))
            hidden = getattr(self, f"lif{index}")(current.unflatten(0, (steps, batch))).flatten(0, 1)
        return hidden.unflatten(0, (steps, batch))

    @staticmethod
    def check_channels(channels: tuple[int, ...]) -> str | None:
        return None
