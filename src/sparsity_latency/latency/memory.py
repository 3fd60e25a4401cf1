"""Model memory in bits, the "model size" SpQuant-SNN reports: weights, other parameters, membrane state.

- weights: each conv/linear weight × ⌈its layer's `weight_bits`⌉, 32 where it has none (the full-precision
  readout, the gate predictors);
- other parameters: biases and BatchNorm's weight, bias, running mean and running variance, at 32 bits;
- membrane: one stored state per LIF neuron of one sample (not per time step) × `storage_bits(membrane_bits)`
  (2 for a ternary membrane, 32 at full precision).
A channel gate's predictor is counted on the gate's row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
from torch import nn

from sparsity_latency.models.gating import ChannelGate
from sparsity_latency.neurons import storage_bits
from sparsity_latency.neurons.quantizer import FULL_PRECISION_BITS
from sparsity_latency.probes import NET, spiking_layers

WEIGHT, OTHER, MEMBRANE, TOTAL = ("weight_memory_bits", "other_param_memory_bits", "membrane_memory_bits",
                                  "model_memory_bits")
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def model_memory_bits(model: nn.Module, lif_neurons: Mapping[str, int],
                      membrane_bits: float) -> dict[str, dict[str, float]]:
    """Memory of `model` by layer and at `__net__`: weight, other-parameter, membrane and total bits.

    `lif_neurons` gives the neurons per sample of each LIF layer (`lif_neuron_counts`). A row holds only the
    parts that apply to its layer, and their sum as `model_memory_bits`; `__net__` holds all four totals.
    """
    full = storage_bits(FULL_PRECISION_BITS)
    gates = [name for name, module in model.named_modules() if isinstance(module, ChannelGate)]
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for name, module in model.named_modules():
        row = rows[next((gate for gate in gates if name.startswith(f"{gate}.")), name)]
        if isinstance(module, nn.Conv2d | nn.Linear):
            bits = storage_bits(getattr(module, "weight_bits", FULL_PRECISION_BITS))
            row[WEIGHT] = row.get(WEIGHT, 0.0) + module.weight.numel() * bits
            row[OTHER] = row.get(OTHER, 0.0) + (module.bias.numel() * full if module.bias is not None else 0.0)
        elif isinstance(module, BATCH_NORMS):
            tensors = (module.weight, module.bias, module.running_mean, module.running_var)
            row[OTHER] = float(sum(t.numel() for t in tensors if t is not None) * full)
    for name, neurons in lif_neurons.items():
        rows[name][MEMBRANE] = float(neurons * storage_bits(membrane_bits))
    rows = {name: {**row, TOTAL: sum(row.values())} for name, row in rows.items() if row}
    rows[NET] = {column: sum(row.get(column, 0.0) for row in rows.values())
                 for column in (WEIGHT, OTHER, MEMBRANE, TOTAL)}
    return rows


def lif_neuron_counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Neurons per sample of each LIF layer, from one forward pass of one zero frame (T = 1, B = 1) in eval mode.

    The pass leaves the model's training mode as it was; gates keep the mask of that pass.
    """
    counts: dict[str, int] = {}
    handles = [layer.register_forward_hook(
        lambda module, args, output, name=name: counts.__setitem__(name, output[0, 0].numel()))
        for name, layer in spiking_layers(model).items()]
    training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, *input_shape, device=device))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return counts
