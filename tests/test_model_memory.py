"""Model memory in bits (latency/memory.py) against hand counts, and SpQuant-SNN's VGG-9 on 2×48×48 DVS input."""

from __future__ import annotations

import pytest
import torch

from sparsity_latency.config import ModelConfig
from sparsity_latency.latency.memory import lif_neuron_counts, model_memory_bits
from sparsity_latency.latency.opcount import EnergyModel
from sparsity_latency.latency.profile import operation_counts
from sparsity_latency.models import build_model
from sparsity_latency.probes import NET


def memory_of(config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> dict[str, dict[str, float]]:
    model = build_model(config, input_shape, n_classes)
    return model_memory_bits(model, lif_neuron_counts(model, input_shape), config.membrane_bits)


def test_tiny_conv_memory_by_layer() -> None:
    # tiny-conv (2, 3) on 1×6×6, 2 classes: conv1 3×3·1·2 = 18 weights, conv2 3×3·2·3 = 54, no conv biases;
    # BatchNorm 4 values per channel: 8 and 12; readout Linear(3·2·2 = 12, 2): 24 weights + 2 biases;
    # LIF neurons per sample: 2·3·3 = 18 and 3·2·2 = 12; ternary membrane stored in 2 bits
    rows = memory_of(ModelConfig(name="tiny-conv", channels=(2, 3), weight_bits=2, membrane_bits=1.58), (1, 6, 6), 2)
    assert rows["conv1"] == {"weight_memory_bits": 18 * 2, "other_param_memory_bits": 0, "model_memory_bits": 36}
    assert rows["bn1"] == {"other_param_memory_bits": 8 * 32, "model_memory_bits": 256}
    assert rows["lif1"] == {"membrane_memory_bits": 18 * 2, "model_memory_bits": 36}
    assert rows["conv2"]["weight_memory_bits"] == 54 * 2
    assert rows["lif2"]["membrane_memory_bits"] == 12 * 2
    # the readout stays at full precision
    assert rows["fc"] == {"weight_memory_bits": 24 * 32, "other_param_memory_bits": 2 * 32,
                          "model_memory_bits": 26 * 32}
    assert rows[NET] == {
        "weight_memory_bits": 36 + 108 + 768,  # 912
        "other_param_memory_bits": (8 + 12 + 2) * 32,  # 704
        "membrane_memory_bits": 36 + 24,  # 60
        "model_memory_bits": 912 + 704 + 60,
    }


def test_gate_predictors_count_on_the_gate_at_full_precision() -> None:
    # gated tiny-conv (2, 3) on 1×6×6: gate1's predictor Conv2d(1, 2, 1): 2 weights + 2 biases; gate2's (2 → 3):
    # 6 weights + 3 biases, all at 32 bits even with 2-bit conv weights
    rows = memory_of(ModelConfig(name="tiny-conv", channels=(2, 3), gating=True, weight_bits=2), (1, 6, 6), 2)
    assert rows["gate1"] == {"weight_memory_bits": 2 * 32, "other_param_memory_bits": 2 * 32, "model_memory_bits": 128}
    assert rows["gate2"] == {"weight_memory_bits": 6 * 32, "other_param_memory_bits": 3 * 32, "model_memory_bits": 288}
    assert not any(".predictor" in name for name in rows)
    # conv 36 + 108, gates 64 + 192, readout 768
    assert rows[NET]["weight_memory_bits"] == 36 + 108 + 64 + 192 + 768


def test_mlp_memory_with_4_bit_weights_and_3_bit_membrane() -> None:
    # mlp (4, 3) on 2×2×2 = 8 features, 2 classes: fc1 8·4 = 32 and fc2 4·3 = 12 weights at 4 bits; BatchNorm1d 4·4
    # and 4·3 values; readout 3·2 weights + 2 biases at 32 bits; 4 + 3 neurons × 3 bits (8 membrane levels)
    rows = memory_of(ModelConfig(name="mlp", channels=(4, 3), weight_bits=4, membrane_bits=3), (2, 2, 2), 2)
    assert rows[NET] == {
        "weight_memory_bits": (32 + 12) * 4 + 6 * 32,  # 368
        "other_param_memory_bits": (16 + 12 + 2) * 32,  # 960
        "membrane_memory_bits": 7 * 3,  # 21
        "model_memory_bits": 368 + 960 + 21,
    }


def test_membrane_memory_is_one_state_per_neuron_not_per_step() -> None:
    # the profile sees T = 3, B = 2 and gives the same memory as one T = 1, B = 1 pass
    config = ModelConfig(name="tiny-conv", channels=(2, 3), gating=True)
    model = build_model(config, (1, 6, 6), 2).train()
    expected = model_memory_bits(model, lif_neuron_counts(model, (1, 6, 6)), config.membrane_bits)
    assert model.training  # lif_neuron_counts restores the mode
    rows = operation_counts(model.eval(), torch.rand(3, 2, 1, 6, 6), config.membrane_bits, EnergyModel())
    for name, row in expected.items():
        assert {column: rows[name][column] for column in row} == row


# SpQuant-SNN's VGG-9 (our build: no conv biases) on 2×48×48 DVS frames, 10 classes:
# conv weights 3·3·C_in·C_out: 9·(2·64 + 64·128 + 128·256 + 256·256 + 256·512 + 512·512·3)
#                            = 9·(128 + 8,192 + 32,768 + 65,536 + 131,072 + 786,432) = 9·1,024,128 = 9,217,152
# readout Linear(512·3·3 = 4608, 10): 46,080 weights + 10 biases
# BatchNorm: 4 values × (64 + 128 + 256 + 256 + 512·4 = 2,752) channels = 11,008
# LIF neurons: 64·48² + 128·48² + 256·24²·2 + 512·12²·2 + 512·6²·2
#            = 147,456 + 294,912 + 294,912 + 147,456 + 36,864 = 921,600
VGG9_CONV_WEIGHTS = 9_217_152
VGG9_READOUT_WEIGHTS = 46_080
VGG9_OTHER_PARAMS = 11_008 + 10
VGG9_NEURONS = 921_600


@pytest.mark.parametrize(("weight_bits", "membrane_bits", "stored_weight_bits", "stored_membrane_bits", "total_bits"), [
    # full precision: (9,217,152 + 46,080)·32 = 296,423,424 + 11,018·32 = 352,576 + 921,600·32 = 29,491,200
    # = 326,267,200 bits = 40.78 MB
    (32.0, 32.0, 32, 32, 326_267_200),
    # SpQuant: 9,217,152·2 + 46,080·32 = 19,908,864 + 352,576 + 921,600·2 (ternary stored in 2 bits) = 1,843,200
    # = 22,104,640 bits = 2.76 MB
    (2.0, 1.58, 2, 2, 22_104_640),
], ids=["full-precision", "spquant-2-1.58"])
def test_vgg9_memory_on_48x48_dvs(weight_bits: float, membrane_bits: float, stored_weight_bits: int,
                                  stored_membrane_bits: int, total_bits: int) -> None:
    config = ModelConfig(name="vgg9", weight_bits=weight_bits, membrane_bits=membrane_bits)
    assert memory_of(config, (2, 48, 48), 10)[NET] == {
        "weight_memory_bits": VGG9_CONV_WEIGHTS * stored_weight_bits + VGG9_READOUT_WEIGHTS * 32,
        "other_param_memory_bits": VGG9_OTHER_PARAMS * 32,
        "membrane_memory_bits": VGG9_NEURONS * stored_membrane_bits,
        "model_memory_bits": total_bits,
    }
