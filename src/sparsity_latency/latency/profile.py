"""The `profile` stage's measurements: per-layer op counts and energy, network wall-clock."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sparsity_latency.config import ProfileConfig
from sparsity_latency.latency.opcount import EnergyModel, dense_macs, fan_out, membrane_traffic_bits, synops
from sparsity_latency.latency.timing import fixed_threads, per_sample_ms
from sparsity_latency.metrics import spike_sparsity
from sparsity_latency.neurons.quantizer import storage_bits
from sparsity_latency.probes import NET, SparsityProbe, spiking_layers, weight_layers

BACKEND_DENSE = "dense"


def operation_counts(model: nn.Module, frames: torch.Tensor, membrane_bits: float,
                     energy: EnergyModel) -> dict[str, dict[str, float]]:
    """Per-sample means over frames [T, N, …]: layer → synops, macs, spikes, traffic, energy_pj."""
    steps, n_samples = frames.shape[:2]
    with torch.no_grad(), SparsityProbe(model, record_inputs=True) as probe:
        model(frames)
    rows: dict[str, dict[str, float]] = {}
    for name, layer in weight_layers(model).items():
        layer_input = probe.layer_inputs[name]
        input_shape = tuple(layer_input.shape[-(3 if isinstance(layer, nn.Conv2d) else 1):])
        if name in model.frame_fed_layers:
            macs = float(dense_macs(layer, input_shape) * steps)
            rows[name] = {"macs": macs, "energy_pj": energy.energy_pj(macs=macs)}
        else:
            ops = synops(layer_input, fan_out(layer, input_shape)) / n_samples
            rows[name] = {"synops": ops, "energy_pj": energy.energy_pj(synops=ops)}
    bits = storage_bits(membrane_bits)
    for name in spiking_layers(model):
        spikes = probe.spikes[name]
        traffic = membrane_traffic_bits(spikes[0, 0].numel(), steps, bits)
        rows[name] = {
            "spike_count": float(spikes.sum()) / n_samples,
            "spike_sparsity": spike_sparsity(spikes),
            "membrane_traffic_bits": traffic,
            "energy_pj": energy.energy_pj(traffic_bits=traffic),
        }
    totals = {column: sum(row.get(column, 0.0) for row in rows.values())
              for column in ("synops", "macs", "spike_count", "membrane_traffic_bits", "energy_pj")}
    rows[NET] = {**totals, "time_steps": float(steps)}
    return rows


def profile_model(model: nn.Module, test_x: torch.Tensor, config: ProfileConfig, membrane_bits: float,
                  device: torch.device) -> list[dict]:
    """Rows of the profile table (without run columns): backend × batch size × layer."""
    model.eval()
    frames = test_x[:config.samples].transpose(0, 1).to(device)
    energy = EnergyModel(config.ac_pj, config.mac_pj, config.memory_pj_per_bit)
    counts = operation_counts(model, frames, membrane_bits, energy)
    rows = []
    with fixed_threads(config.threads):
        for batch_size in config.batch_sizes:
            wall = per_sample_ms(model, frames, batch_size, config.warmup, config.repeats)
            timing = {
                "wall_ms_p50": float(np.percentile(wall, 50)),
                "wall_ms_p95": float(np.percentile(wall, 95)),
                "wall_ms_std": float(wall.std(ddof=1)) if len(wall) > 1 else 0.0,
            }
            for layer, values in counts.items():
                row = {"backend": BACKEND_DENSE, "batch_size": batch_size, "layer": layer,
                       "threads": config.threads, **values}
                if layer == NET:
                    row.update(timing)
                rows.append(row)
    return rows
