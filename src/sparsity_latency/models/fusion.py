"""Two-modality SNNs: one network per modality and a fusion head, chosen by `model.fusion`.

The input is the packed frames of data/pairs.py, [T, B, D₁ + D₂]: each modality's frame flattened per
step, first modality first. Each branch sees its own frames [T, B, P, H, W] again. A modality whose frames
are one pixel high (audio spikes: SHD, N-TIDIGITS) gets the `mlp` network with its default widths; an
image modality gets `model.name`. Branch modules are named after the modality (`dvs`, `aps`, `audio`), so
layer names read `dvs.conv1`, `audio.lif2`.

- `late`: each modality has its own network and readout; the logits are averaged (Bjorndahl et al.'s
  N-MNIST + SHD fusion).
- `early`: the inputs are concatenated and one network reads them: along channels when both have the
  same height and width (events and intensity frames of one scene), otherwise flattened side by side into
  the `mlp` network.
- `attention`: each branch runs up to its last spiking layer and gives tokens (a conv branch one per
  position with C features, an mlp branch one token of all its features); every token is projected to
  ATTENTION_DIM features (query, key, value); each modality's queries attend to the other modality's keys
  (one head, scaled dot product) and the attended values are added to the modality's own values; all
  tokens of both go to the readout (positions matter for images), applied at every step and averaged over
  time.
  The projections are fed by spikes and count as SynOps; the attention's own products and softmax are
  full-precision arithmetic that `profile` does not count (docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from sparsity_latency.config import ModelConfig

ATTENTION_DIM = 32
FUSIONS = ("early", "late", "attention")


def is_audio(shape: tuple[int, int, int]) -> bool:
    """Frames one pixel high and of one polarity: a row of audio channels."""
    return shape[0] == 1 and shape[1] == 1


class FusionSNN(nn.Module):
    """Two modalities → logits [B, classes]; input packed frames [T, B, D₁ + D₂]."""

    supports_gating = True

    def __init__(self, config: ModelConfig, modalities: tuple[tuple[str, tuple[int, int, int]], ...],
                 n_classes: int) -> None:
        super().__init__()
        if len(modalities) != 2:
            raise ValueError(f"fusion joins two modalities, got {len(modalities)}")
        self.fusion = config.fusion
        self.modality_names = tuple(name for name, _ in modalities)
        self.shapes = tuple(shape for _, shape in modalities)
        self.sizes = tuple(math.prod(shape) for shape in self.shapes)
        if self.fusion == "early":
            self.joint = self._early_network(config, n_classes)
            branches = {"joint": self.joint}
        else:
            for name, shape in modalities:
                self.add_module(name, branch_network(config, shape, n_classes))
            branches = {name: getattr(self, name) for name in self.modality_names}
        if self.fusion == "attention":
            for branch in branches.values():
                branch.fc = nn.Identity()  # the branches' readouts give way to the attention's
            (tokens_a, features_a), (tokens_b, features_b) = (
                token_shape(branch, shape) for branch, shape in zip(branches.values(), self.shapes, strict=True))
            self.attention = CrossAttention(features_a, features_b)
            self.fc = nn.Linear((tokens_a + tokens_b) * ATTENTION_DIM, n_classes)
        self.frame_fed_layers = tuple(f"{name}.{layer}" for name, branch in branches.items()
                                      for layer in branch.frame_fed_layers)

    def _early_network(self, config: ModelConfig, n_classes: int) -> nn.Module:
        (channels_a, height_a, width_a), (channels_b, height_b, width_b) = self.shapes
        self.concat_channels = (height_a, width_a) == (height_b, width_b) and not is_audio(self.shapes[0])
        if self.concat_channels:
            return branch_network(config, (channels_a + channels_b, height_a, width_a), n_classes)
        return branch_network(config, (1, 1, sum(self.sizes)), n_classes)

    def split(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed frames [T, B, D₁ + D₂] → each modality's frames [T, B, P, H, W]."""
        first, second = packed.split(self.sizes, dim=2)
        return (first.unflatten(2, self.shapes[0]), second.unflatten(2, self.shapes[1]))

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.step_logits(packed).mean(0)

    def step_logits(self, packed: torch.Tensor) -> torch.Tensor:
        """The logits at every step [T, B, classes]; their mean over time is the output."""
        if self.fusion == "early":
            return self.joint.step_logits(torch.cat(self.split(packed), dim=2) if self.concat_channels else packed)
        first, second = self.split(packed)
        branch_a, branch_b = (getattr(self, name) for name in self.modality_names)
        if self.fusion == "late":
            return (branch_a.step_logits(first) + branch_b.step_logits(second)) / 2
        fused = self.attention(tokens(branch_a.features(first)), tokens(branch_b.features(second)))
        return self.fc(fused)


def branch_network(config: ModelConfig, shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The network for one modality's frames: `mlp` (its default widths) for audio, else `model.name`."""
    from sparsity_latency.models import MODELS

    if is_audio(shape) and config.name != "mlp":
        return MODELS["mlp"](dataclasses.replace(config, name="mlp", channels=(), gating=False), shape, n_classes)
    return MODELS[config.name](config, shape, n_classes)


def tokens(features: torch.Tensor) -> torch.Tensor:
    """Spike features [T, B, C, h, w] → tokens [T, B, h·w, C]; [T, B, F] → one token [T, B, 1, F]."""
    if features.dim() == 5:
        return features.flatten(3).transpose(2, 3)
    return features.unsqueeze(2)


def token_shape(branch: nn.Module, shape: tuple[int, int, int]) -> tuple[int, int]:
    """(tokens, features per token) of a branch's last spiking layer, from one zero frame."""
    with torch.no_grad():
        training = branch.training
        branch.eval()
        features = branch.features(torch.zeros(1, 1, *shape))
        branch.train(training)
    return tuple(tokens(features).shape[-2:])


class CrossAttention(nn.Module):
    """Each modality's tokens attend to the other's; returns [T, B, (L₁ + L₂)·ATTENTION_DIM]."""

    def __init__(self, features_a: int, features_b: int) -> None:
        super().__init__()
        self.query_a, self.key_a, self.value_a = (nn.Linear(features_a, ATTENTION_DIM, bias=False) for _ in range(3))
        self.query_b, self.key_b, self.value_b = (nn.Linear(features_b, ATTENTION_DIM, bias=False) for _ in range(3))

    def forward(self, tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> torch.Tensor:
        value_a, value_b = self.value_a(tokens_a), self.value_b(tokens_b)
        attended_a = attend(self.query_a(tokens_a), self.key_b(tokens_b), value_b)
        attended_b = attend(self.query_b(tokens_b), self.key_a(tokens_a), value_a)
        return torch.cat(((value_a + attended_a).flatten(2), (value_b + attended_b).flatten(2)), dim=-1)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over the token axis (−2)."""
    weights = torch.softmax(query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1]), dim=-1)
    return weights @ value
