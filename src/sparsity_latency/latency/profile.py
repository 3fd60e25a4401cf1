"""The `profile` stage's measurements: per-layer op counts, energy and memory, network wall-clock."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sparsity_latency.config import ProfileConfig
from sparsity_latency.errors import InputError
from sparsity_latency.latency.backends import BACKEND_DENSE, BACKEND_EVENT
from sparsity_latency.latency.early_exit import early_exit, step_logits_of
from sparsity_latency.latency.layer_timing import LayerMeasure, dense_layer_measure, median_layer_ms
from sparsity_latency.latency.memory import model_memory_bits
from sparsity_latency.latency.opcount import (
    EnergyModel,
    dense_macs,
    fan_out,
    gate_ops,
    gated_macs,
    gated_synops,
    membrane_traffic_bits,
    synops,
)
from sparsity_latency.latency.timing import fixed_threads, time_per_sample
from sparsity_latency.metrics import spike_sparsity
from sparsity_latency.models.gating import ChannelGate
from sparsity_latency.neurons import storage_bits
from sparsity_latency.probes import NET, SparsityProbe, spiking_layers, weight_layers

EXIT = "__exit__"  # layer name of the early-exit rows
SUMMED = ("synops", "macs", "spike_count", "membrane_traffic_bits", "energy_pj")  # `__net__` = Σ over layers


def operation_counts(model: nn.Module, frames: torch.Tensor, membrane_bits: float,
                     energy: EnergyModel) -> dict[str, dict[str, float]]:
    """Per-sample means over frames [T, N, …], layer → column → value, in forward order (docs/metrics.md).

    Weight layers: synops (spike-fed) or macs (frame-fed), only over open channels where gated; average pools:
    synops; gates: synops (pooling adds), macs (predictor), gate_open_fraction; LIF layers: spikes and membrane
    traffic; all these: energy_pj. Every layer that holds memory (BatchNorm too): the memory columns
    (`model_memory_bits`). `__net__`: the sums.
    """
    steps, n_samples = frames.shape[:2]
    gates = {name: m for name, m in model.named_modules() if isinstance(m, ChannelGate)}
    computing = {name: m for name, m in weight_layers(model).items()
                 if not any(name.startswith(f"{gate}.") for gate in gates)}  # gate predictors count on their gate
    gated = _gated_layers(model, computing, gates)
    pools = {name: m for name, m in model.named_modules() if isinstance(m, nn.AvgPool2d)}
    with (torch.no_grad(), SparsityProbe(model, record_inputs=True) as probe,
          _recorded_inputs({**pools, **gates}) as inputs):
        model(frames)
    rows: dict[str, dict[str, float]] = {}
    for name, layer in computing.items():
        layer_input = probe.layer_inputs[name]
        input_shape = tuple(layer_input.shape[-(3 if isinstance(layer, nn.Conv2d) else 1):])
        mask = gates[gated[name]].mask if name in gated else None
        if name in model.frame_fed_layers:
            macs = (float(dense_macs(layer, input_shape) * steps) if mask is None
                    else gated_macs(layer, input_shape, mask) / n_samples)
            rows[name] = {"macs": macs, "energy_pj": energy.energy_pj(macs=macs)}
        else:
            fan = fan_out(layer, input_shape)
            ops = (synops(layer_input, fan) if mask is None
                   else gated_synops(layer_input, fan, mask, getattr(layer, "groups", 1))) / n_samples
            rows[name] = {"synops": ops, "energy_pj": energy.energy_pj(synops=ops)}
    for name, pool in pools.items():
        pool_input = inputs[name]
        ops = synops(pool_input, fan_out(pool, tuple(pool_input.shape[-3:]))) / n_samples
        rows[name] = {"synops": ops, "energy_pj": energy.energy_pj(synops=ops)}
    for name, gate in gates.items():
        adds_per_frame, macs_per_frame = gate_ops(tuple(inputs[name].shape[-3:]), gate.mask.shape[1])
        adds, macs = float(adds_per_frame * steps), float(macs_per_frame * steps)
        rows[name] = {"synops": adds, "macs": macs, "gate_open_fraction": float(gate.mask.mean()),
                      "energy_pj": energy.energy_pj(synops=adds, macs=macs)}
    bits = storage_bits(membrane_bits)
    neurons = {name: spikes[0, 0].numel() for name, spikes in probe.spikes.items()}
    for name in spiking_layers(model):
        spikes = probe.spikes[name]
        traffic = membrane_traffic_bits(neurons[name], steps, bits)
        rows[name] = {
            "spike_count": float(spikes.count_nonzero()) / n_samples,  # spikes are 0 or 1: an exact count
            "spike_sparsity": spike_sparsity(spikes),
            "membrane_traffic_bits": traffic,
            "energy_pj": energy.energy_pj(traffic_bits=traffic),
        }
    memory = model_memory_bits(model, neurons, membrane_bits)
    net_memory = memory.pop(NET)
    for name, columns in memory.items():
        rows.setdefault(name, {}).update(columns)
    totals = {column: sum(row.get(column, 0.0) for row in rows.values()) for column in SUMMED}
    rows[NET] = {**totals, **net_memory, "time_steps": float(steps)}
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    return dict(sorted(rows.items(), key=lambda item: order.get(item[0], len(order))))


def _gated_layers(model: nn.Module, computing: dict[str, nn.Module],
                  gates: dict[str, ChannelGate]) -> dict[str, str]:
    """Weight layer → the gate of its output channels: the weight layer registered last before the gate."""
    gated: dict[str, str] = {}
    last = None
    for name, _ in model.named_modules():
        if name in computing:
            last = name
        elif name in gates:
            if last is None or gates[name].predictor.out_channels != _out_channels(computing[last]):
                raise ValueError(f"gate '{name}' does not follow a weight layer with as many output channels")
            gated[last] = name
    return gated


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


@contextmanager
def _recorded_inputs(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, the first input of each module's last forward call, by name."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(
        lambda module, args, output, name=name: inputs.__setitem__(name, args[0].detach()))
        for name, module in modules.items()]
    try:
        yield inputs
    finally:
        for handle in handles:
            handle.remove()


def event_backend(model: nn.Module) -> tuple[Callable[[torch.Tensor], object], LayerMeasure]:
    """The event engine's `run(batch)` and per-layer `measure(batch)` for `model` (a CPU copy if it is elsewhere)."""
    from sparsity_latency.latency.event_engine import EventEngine

    on_cpu = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    try:
        engine = EventEngine.from_model(on_cpu)
    except ValueError as exc:
        raise InputError(f"profile backend 'event': {exc}") from None
    def run(batch: torch.Tensor) -> object:  # logits only, as the dense forward returns
        return engine.run(batch, record_spikes=False)

    return run, lambda batch: engine.run(batch, record_spikes=False).layer_ns


def profile_model(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, config: ProfileConfig,
                  membrane_bits: float, device: torch.device) -> list[dict]:
    """Rows of the profile table (without run columns): backend × batch size × layer, then early-exit rows.

    Per backend and batch size: the op counts of every layer (the same on every backend: they count the
    work the spikes require), the network's wall-clock on `__net__` and each layer's on its row; then one
    `__exit__` row per early-exit threshold (time steps to decision; no timing, batch_size 0).
    """
    model.eval()
    frames = test_x[:config.samples].transpose(0, 1).to(device)
    energy = EnergyModel(config.ac_pj, config.mac_pj, config.memory_pj_per_bit)
    counts = operation_counts(model, frames, membrane_bits, energy)
    timed_layers = {name: m for name, m in model.named_modules() if name in counts}
    backends = {BACKEND_DENSE: (model, dense_layer_measure(model, timed_layers))}
    if BACKEND_EVENT in config.backends:
        backends[BACKEND_EVENT] = event_backend(model)
    rows = []
    with fixed_threads(config.threads):
        for backend in config.backends:
            run, measure = backends[backend]
            for batch_size in config.batch_sizes:
                on = frames if backend == BACKEND_DENSE else frames.cpu()  # the event engine runs on the CPU
                wall = time_per_sample(run, on, batch_size, config.warmup, min_repeats=config.repeats,
                                       max_repeats=config.max_repeats, rel_tolerance=config.stable_tolerance)
                layer_ms = median_layer_ms(measure, on, batch_size, config.warmup, config.repeats)
                for layer, values in counts.items():
                    row = {"backend": backend, "batch_size": batch_size, "layer": layer, "threads": config.threads,
                           **values}
                    if layer == NET:
                        row.update(wall.columns())
                    if layer in layer_ms:
                        row["layer_ms_p50"] = layer_ms[layer]
                    rows.append(row)
    step_logits = step_logits_of(model, test_x[:config.samples], max(config.batch_sizes), device)
    for result in early_exit(step_logits, test_y[:config.samples], config.exit_thresholds):
        rows.append({"backend": BACKEND_DENSE, "batch_size": 0, "layer": EXIT, "threads": config.threads,
                     "exit_threshold": result["threshold"], "decision_time_steps": result["time_steps_mean"],
                     "exit_accuracy": result["accuracy_at_exit"], "exit_fraction": result["exit_fraction"]})
    return rows
