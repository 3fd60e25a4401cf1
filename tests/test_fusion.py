"""Fusion networks for two modalities (models/fusion.py) on packed inputs (data/pairs.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sparsity_latency.config import ModelConfig
from sparsity_latency.data.pairs import pack
from sparsity_latency.latency.opcount import dense_macs
from sparsity_latency.latency.profile import EnergyModel, operation_counts
from sparsity_latency.models.conv_snn import TinyConvSNN
from sparsity_latency.models.fusion import FUSIONS, FusionSNN, attend
from sparsity_latency.models.mlp import SpikingMLP

VISION = ("dvs", (2, 8, 8))
AUDIO = ("audio", (1, 1, 20))
APS = ("aps", (1, 8, 8))
CONFIG = ModelConfig(channels=(4, 8))


def inputs(modalities, steps: int = 3, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    parts = [(torch.rand(batch, steps, *shape, generator=generator) < 0.4).float() for _, shape in modalities]
    return (*parts, pack(*parts).transpose(0, 1))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("modalities", [(VISION, AUDIO), (VISION, APS)], ids=["dvs+audio", "dvs+aps"])
def test_every_fusion_trains_both_modalities(fusion: str, modalities) -> None:
    torch.manual_seed(0)
    model = FusionSNN(dataclasses.replace(CONFIG, fusion=fusion), modalities, n_classes=5)
    *_, packed = inputs(modalities)
    logits = model(packed.requires_grad_(True))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    sizes = [torch.Size(shape).numel() for _, shape in modalities]
    grad_first, grad_second = packed.grad.split(sizes, dim=2)
    assert grad_first.abs().sum() > 0 and grad_second.abs().sum() > 0  # both modalities reach the output
    names = dict(model.named_modules())
    assert all(layer in names for layer in model.frame_fed_layers)


def test_split_undoes_pack() -> None:
    model = FusionSNN(CONFIG, (VISION, AUDIO), n_classes=3)
    first, second, packed = inputs((VISION, AUDIO))
    got_first, got_second = model.split(packed)
    assert torch.equal(got_first, first.transpose(0, 1)) and torch.equal(got_second, second.transpose(0, 1))


def test_late_fusion_is_the_mean_of_the_branch_logits() -> None:
    torch.manual_seed(0)
    model = FusionSNN(dataclasses.replace(CONFIG, fusion="late"), (VISION, AUDIO), n_classes=4).eval()
    first, second, packed = inputs((VISION, AUDIO))
    assert isinstance(model.dvs, TinyConvSNN) and isinstance(model.audio, SpikingMLP)
    expected = (model.dvs(first.transpose(0, 1)) + model.audio(second.transpose(0, 1))) / 2
    torch.testing.assert_close(model(packed), expected)


def test_early_fusion_concatenates_channels_of_same_sized_frames_else_flattens() -> None:
    torch.manual_seed(0)
    same = FusionSNN(dataclasses.replace(CONFIG, fusion="early"), (VISION, APS), n_classes=4).eval()
    assert isinstance(same.joint, TinyConvSNN) and same.joint.conv1.in_channels == 3
    first, second, packed = inputs((VISION, APS))
    joined = torch.cat((first, second), dim=2).transpose(0, 1)
    torch.testing.assert_close(same(packed), same.joint(joined))
    mixed = FusionSNN(dataclasses.replace(CONFIG, fusion="early"), (VISION, AUDIO), n_classes=4)
    assert isinstance(mixed.joint, SpikingMLP) and mixed.joint.fc1.in_features == 2 * 8 * 8 + 20


def test_attention_matches_a_hand_computed_softmax() -> None:
    query = torch.tensor([[[1.0, 0.0]]])  # one query token
    key = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    value = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
    weight = torch.softmax(torch.tensor([1.0, 0.0]) / 2 ** 0.5, dim=0)
    expected = weight[0] * value[0, 0] + weight[1] * value[0, 1]
    torch.testing.assert_close(attend(query, key, value)[0, 0], expected)


def test_profile_counts_both_frame_fed_layers_in_macs() -> None:
    torch.manual_seed(0)
    model = FusionSNN(dataclasses.replace(CONFIG, fusion="late"), (VISION, AUDIO), n_classes=4).eval()
    *_, packed = inputs((VISION, AUDIO), steps=3, batch=2)
    rows = operation_counts(model, packed, membrane_bits=1.58, energy=EnergyModel(0.9, 4.6, 0.0))
    assert rows["dvs.conv1"]["macs"] == dense_macs(model.dvs.conv1, (2, 8, 8)) * 3
    assert rows["audio.fc1"]["macs"] == dense_macs(model.audio.fc1, (20,)) * 3
    assert "synops" in rows["dvs.conv2"] and "spike_count" in rows["audio.lif1"]


def test_input_gradient_sparsity_is_reported_per_modality() -> None:
    from sparsity_latency.metrics import grad_sparsity
    from sparsity_latency.probes import NET, SparsityProbe, layer_sparsity, modality_row

    torch.manual_seed(0)
    model = FusionSNN(CONFIG, (VISION, AUDIO), n_classes=5)
    *_, packed = inputs((VISION, AUDIO))
    packed.requires_grad_(True)
    with SparsityProbe(model) as probe:
        model(packed).sum().backward()
    rows = layer_sparsity(model, probe, packed.grad, 0.01)
    dvs_part, audio_part = packed.grad.split([2 * 8 * 8, 20], dim=2)
    assert rows[modality_row("dvs")] == {f"input_grad_{k}": v for k, v in grad_sparsity(dvs_part, 0.01).items()}
    assert rows[modality_row("audio")] == {f"input_grad_{k}": v for k, v in grad_sparsity(audio_part, 0.01).items()}
    assert rows[NET] == {f"input_grad_{k}": v for k, v in grad_sparsity(packed.grad, 0.01).items()}
    assert modality_row("dvs") == "__input_dvs__"
