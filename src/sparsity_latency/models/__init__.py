"""Networks built by name from a registry."""

from __future__ import annotations

from torch import nn

from sparsity_latency.config import Config, ModelConfig
from sparsity_latency.data import FramedData
from sparsity_latency.models.conv_snn import VGG9, TinyConvSNN
from sparsity_latency.models.fusion import FusionSNN
from sparsity_latency.models.mlp import SpikingMLP

# name → network class, called as cls(model config, (channels, height, width), classes). Each class also
# has `check_channels(channels) -> problem | None`, `supports_gating` and `frame_fed_layers`.
MODELS: dict[str, type[nn.Module]] = {
    "tiny-conv": TinyConvSNN,
    "vgg9": VGG9,
    "mlp": SpikingMLP,
}


def build_for(config: Config, data: FramedData) -> nn.Module:
    """The config's network for the data's frame shape and classes; two modalities get a fusion network."""
    if len(data.modalities) > 1:
        return FusionSNN(config.model, data.modalities, data.n_classes)
    return build_model(config.model, data.input_shape, data.n_classes)


def build_model(config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The network `config.name` for frames of shape (channels, height, width) and `n_classes` classes."""
    return MODELS[config.name](config, input_shape, n_classes)
