"""Latency of a trained run: op counts, energy model, wall-clock."""

from sparsity_latency.latency.opcount import EnergyModel, dense_macs, fan_out, membrane_traffic_bits, synops
from sparsity_latency.latency.timing import fixed_threads, per_sample_ms

__all__ = ["EnergyModel", "dense_macs", "fan_out", "fixed_threads", "membrane_traffic_bits",
           "per_sample_ms", "synops"]
