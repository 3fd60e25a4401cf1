"""Convolutional SNNs: [conv 3×3 → BatchNorm → (channel gate) → LIF → (2×2 average pool)] × n → readout.

BatchNorm stays in floating point (SpQuant-SNN) and folds into the convolution at inference, so it adds
no operations of its own. Stateless layers run once over all T·B frames; only the LIF layers loop over
time. The readout is a full-precision linear layer applied at every step and averaged over time (a
non-spiking integrator), so every LIF layer's spikes count as SynOps of the layer after it.

- `tiny-conv` (CI and the smoke study): stride-2 convolutions, channels (8, 16) by default, no pooling.
- `vgg9` (SpQuant-SNN's VGG-9 for 48×48 DVS input, repository Ahmedhasssan/IM_SNN-SpQuant_SNN,
  models/vgg_new.py): 64, 128, pool, 256, 256, pool, 512, 512, pool, 512, 512, pool; stride 1; average
  pooling over spikes; classifier 512·3·3 → classes for 48×48 input. Its convolutions have biases in
  SpQuant's code; ours have none, as BatchNorm's shift makes them redundant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.errors import InputError
from sparsity_latency.models.gating import ChannelGate
from sparsity_latency.models.layers import conv3x3, lif_layer, readout


@dataclass(frozen=True)
class Stage:
    channels: int
    stride: int
    pool: bool


class ConvSNN(nn.Module):
    """Layers conv1, bn1, [gate1,] lif1, [pool1,] conv2, …, fc; input [T, B, C, H, W] → logits [B, classes]."""

    frame_fed_layers = ("conv1",)  # layers whose input is real-valued frames: their work counts in MACs
    supports_gating = True

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int,
                 stages: list[Stage]) -> None:
        super().__init__()
        channels_in, height, width = input_shape
        self.depth = len(stages)
        for index, stage in enumerate(stages, start=1):
            self.add_module(f"conv{index}", conv3x3(channels_in, stage.channels, stage.stride, config))
            self.add_module(f"bn{index}", nn.BatchNorm2d(stage.channels))
            if config.gating:
                self.add_module(f"gate{index}", ChannelGate(channels_in, stage.channels, config.gate_mass))
            self.add_module(f"lif{index}", lif_layer(config))
            height, width = (height - 1) // stage.stride + 1, (width - 1) // stage.stride + 1
            if stage.pool:
                self.add_module(f"pool{index}", nn.AvgPool2d(2))
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise InputError(f"input of {input_shape[1]}×{input_shape[2]} pixels is too small for this network")
            channels_in = stage.channels
        self.fc = readout(channels_in * height * width, n_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.step_logits(frames).mean(0)

    def step_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The readout at every step [T, B, classes]; their mean over time is the output."""
        return self.fc(self.features(frames).flatten(2))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """The last stage's spikes (pooled where it pools) [T, B, C, h, w] for frames [T, B, C, H, W]."""
        steps, batch = frames.shape[:2]
        hidden = frames.flatten(0, 1)
        for index in range(1, self.depth + 1):
            current = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(hidden))
            gate = getattr(self, f"gate{index}", None)
            if gate is not None:
                current = gate(hidden, current)
            hidden = getattr(self, f"lif{index}")(current.unflatten(0, (steps, batch))).flatten(0, 1)
            pool = getattr(self, f"pool{index}", None)
            if pool is not None:
                hidden = pool(hidden)
        return hidden.unflatten(0, (steps, batch))


class TinyConvSNN(ConvSNN):
    """A small stride-2 conv net for CI and the smoke study."""

    default_channels = (8, 16)

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> None:
        channels = config.channels or self.default_channels
        super().__init__(config, input_shape, n_classes, [Stage(c, 2, False) for c in channels])

    @staticmethod
    def check_channels(channels: tuple[int, ...]) -> str | None:
        return None


class VGG9(ConvSNN):
    """SpQuant-SNN's VGG-9: eight 3×3 conv layers, average pooling after every second one."""

    default_channels = (64, 128, 256, 256, 512, 512, 512, 512)

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> None:
        channels = config.channels or self.default_channels
        super().__init__(config, input_shape, n_classes,
                         [Stage(c, 1, index % 2 == 1) for index, c in enumerate(channels)])

    @staticmethod
    def check_channels(channels: tuple[int, ...]) -> str | None:
        if channels and len(channels) != 8:
            return f"vgg9 has 8 conv layers, so it takes 8 channel counts (or none for SpQuant's), got {len(channels)}"
        return None
