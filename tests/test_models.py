"""Networks by name (models/): VGG-9, tiny-conv, MLP; quantized weights in place; SpQuant's channel gate."""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn.functional as F

from sparsity_latency.config import Config, ModelConfig, with_changes
from sparsity_latency.errors import InputError
from sparsity_latency.models import build_model
from sparsity_latency.models.gating import ChannelGate, gate_loss, mass_target
from sparsity_latency.models.quantized import QuantConv2d, QuantLinear
from sparsity_latency.neurons import MultiStep, MultiStepLIF, QuantLeaky
from sparsity_latency.training import train

# ---------------------------------------------------------------------------------------------- networks


def test_vgg9_has_spquants_layers_for_48x48_dvs_input() -> None:
    model = build_model(ModelConfig(name="vgg9"), (2, 48, 48), 10)
    convs = [(m.in_channels, m.out_channels) for name, m in model.named_children() if name.startswith("conv")]
    assert convs == [(2, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    pools = [name for name, _ in model.named_children() if name.startswith("pool")]
    assert pools == ["pool2", "pool4", "pool6", "pool8"]
    # 48 → 24 → 12 → 6 → 3 after four 2×2 poolings: 512·3·3 = 4608 features into the classifier
    assert model.fc.in_features == 4608 and model.fc.out_features == 10
    assert all(isinstance(m, MultiStepLIF) for name, m in model.named_children() if name.startswith("lif"))


def test_vgg9_forward_shape_with_thin_channels() -> None:
    model = build_model(ModelConfig(name="vgg9", channels=(2, 2, 4, 4, 4, 4, 8, 8)), (2, 34, 34), 5)
    # 34 → 17 → 8 → 4 → 2: 8·2·2 = 32 features
    assert model.fc.in_features == 32
    logits = model(torch.rand(3, 2, 2, 34, 34))  # [T, B, C, H, W]
    assert logits.shape == (2, 5)


def test_vgg9_rejects_input_too_small_for_four_poolings() -> None:
    try:
        build_model(ModelConfig(name="vgg9", channels=(2,) * 8), (2, 12, 12), 10)
    except InputError as error:
        assert "too small" in str(error)
    else:
        raise AssertionError("a 12×12 input reaches 0×0 after four poolings and must be refused")


def test_mlp_flattens_each_step_and_averages_the_readout_over_time() -> None:
    model = build_model(ModelConfig(name="mlp", channels=(16, 8)), (1, 1, 700), 20)
    assert model.fc1.in_features == 700 and model.fc2.in_features == 16 and model.fc.in_features == 8
    frames = torch.rand(4, 3, 1, 1, 700)
    logits = model(frames)
    assert logits.shape == (3, 20)
    # the readout is applied per step and averaged: recompute it from the last LIF layer's spikes
    spikes = {}
    handle = model.lif2.register_forward_hook(lambda m, args, out: spikes.__setitem__("lif2", out))
    model(frames)
    handle.remove()
    torch.testing.assert_close(model.fc(spikes["lif2"]).mean(0), logits)


def test_weight_bits_reach_every_hidden_layer_but_not_the_readout() -> None:
    model = build_model(ModelConfig(weight_bits=2, channels=(4, 8)), (2, 34, 34), 10)
    for name in ("conv1", "conv2"):
        layer = getattr(model, name)
        assert isinstance(layer, QuantConv2d) and layer.weight_bits == 2
        assert len(torch.unique(layer.quantized_weight())) <= 3  # ternary {−m, 0, m}
    assert not isinstance(model.fc, QuantConv2d | QuantLinear)
    mlp = build_model(ModelConfig(name="mlp", weight_bits=4, channels=(8,)), (1, 1, 20), 3)
    assert isinstance(mlp.fc1, QuantLinear) and mlp.fc1.weight_bits == 4


def test_neuron_choice_builds_the_named_layer() -> None:
    loop = build_model(ModelConfig(neuron="spquant-loop"), (2, 34, 34), 10)
    assert isinstance(loop.lif1, MultiStep) and isinstance(loop.lif1.neuron, QuantLeaky)
    snntorch_config = ModelConfig(neuron="snntorch", membrane_bits=32, surrogate="atan", detach_reset=False)
    baseline = build_model(snntorch_config, (2, 34, 34), 10)
    assert isinstance(baseline.lif1, MultiStep) and isinstance(baseline.lif1.neuron, snn.Leaky)


def test_fused_and_loop_networks_agree() -> None:
    torch.manual_seed(0)
    fused = build_model(ModelConfig(channels=(4, 8)), (2, 34, 34), 10)
    loop = build_model(ModelConfig(channels=(4, 8), neuron="spquant-loop"), (2, 34, 34), 10)
    loop.load_state_dict(fused.state_dict())
    frames = torch.rand(5, 3, 2, 34, 34)
    torch.testing.assert_close(fused(frames), loop(frames))


# ---------------------------------------------------------------------------------------------- gating


def test_mass_target_keeps_the_smallest_set_holding_the_mass() -> None:
    # spatial max |current| per channel: [4, 3, 2, 1] → shares [0.4, 0.3, 0.2, 0.1];
    # mass held by the channels ranked above each: [0, 0.4, 0.7, 0.9]
    current = torch.zeros(1, 4, 2, 2)
    current[0, 0, 0, 0], current[0, 1, 1, 1], current[0, 2, 0, 1], current[0, 3, 1, 0] = -4.0, 3.0, 2.0, -1.0
    # 85 %: keep while less than 0.85 is held above → channels 0, 1, 2 (they hold 0.9 ≥ 0.85)
    torch.testing.assert_close(mass_target(current, 0.85), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    # 70 %: channels 0 and 1 hold exactly 0.7, enough
    torch.testing.assert_close(mass_target(current, 0.7), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    # order of channels does not matter: the same scores shuffled give the same kept scores
    shuffled = current[:, [2, 0, 3, 1]]
    torch.testing.assert_close(mass_target(shuffled, 0.85), torch.tensor([[1.0, 1.0, 0.0, 1.0]]))


def test_gate_closes_and_opens_channels_and_learns_through_the_straight_through_mask() -> None:
    gate = ChannelGate(2, 3, 0.85)
    layer_input = torch.rand(4, 2, 5, 5)
    current = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        gate.predictor.weight.zero_()
        gate.predictor.bias.copy_(torch.tensor([10.0, -10.0, 10.0]))  # σ: ~1, ~0, ~1 → open, closed, open
    out = gate(layer_input, current)
    torch.testing.assert_close(out[:, 0], current[:, 0])
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))
    torch.testing.assert_close(gate.mask, torch.tensor([[1.0, 0.0, 1.0]] * 4))
    # supervision: BCE of the logits against the 85 % mass target of this current
    target = mass_target(current, 0.85)
    logits = torch.tensor([[10.0, -10.0, 10.0]] * 4)
    torch.testing.assert_close(gate.loss, F.binary_cross_entropy_with_logits(logits, target))
    # the task loss reaches the predictor through the binary mask (straight-through)
    (out * torch.randn_like(out)).sum().backward()
    assert gate.predictor.bias.grad is not None


def test_gate_loss_is_the_mean_over_gates_and_none_without_gates() -> None:
    plain = build_model(ModelConfig(channels=(4, 8)), (2, 34, 34), 10)
    plain(torch.rand(2, 2, 2, 34, 34))
    assert gate_loss(plain) is None
    gated = build_model(ModelConfig(channels=(4, 8), gating=True), (2, 34, 34), 10)
    gated(torch.rand(2, 2, 2, 34, 34))
    torch.testing.assert_close(gate_loss(gated), (gated.gate1.loss + gated.gate2.loss) / 2)
    assert gated.gate1.mask.shape == (4, 4)  # [T·B, C_out]


def test_training_adds_the_weighted_gate_loss() -> None:
    base = with_changes(Config(), {
        "data": {"train_samples": 32, "test_samples": 8, "time_steps": 3},
        "model": {"channels": [4, 8], "gating": True},
        "train": {"epochs": 1, "batch_size": 16},
        "profile": {"backends": ["dense"]},  # the event engine does not run gated networks
    })
    weighted = train(base, torch.device("cpu")).model.gate1.predictor.weight.detach().clone()
    unweighted = train(with_changes(base, {"model.gate_loss_weight": 0.0}), torch.device("cpu"))
    assert not torch.allclose(weighted, unweighted.model.gate1.predictor.weight)
