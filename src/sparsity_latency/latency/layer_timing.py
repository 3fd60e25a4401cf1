"""Per-layer wall-clock latency, so that per-layer gradient sparsity can be set against per-layer time.

A backend's per-layer times come from one measured call: `measure(batch)` returns nanoseconds per layer
for that call. The dense backend measures with forward hooks around every leaf module (the clock read
before and after each module's forward; on CUDA after synchronizing), in passes of their own, so the
network-level wall-clock (latency/timing.py) is never slowed by the hooks. The event-driven engine
reports its own per-layer times. Each layer's figure is the median over `repeats` calls (after
`warmup`), divided by the batch size: milliseconds per sample.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from sparsity_latency.latency.timing import cyclic_batch

LayerMeasure = Callable[[torch.Tensor], dict[str, float]]  # batch → nanoseconds per layer of one call


def median_layer_ms(measure: LayerMeasure, frames: torch.Tensor, batch_size: int, warmup: int,
                    repeats: int) -> dict[str, float]:
    """Median over `repeats` calls on batches cut from frames [T, N, …] of each layer's ms per sample."""
    samples: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for index in range(warmup + repeats):
            layer_ns = measure(cyclic_batch(frames, index, batch_size))
            if index >= warmup:
                for layer, ns in layer_ns.items():
                    samples[layer].append(ns / 1e6 / batch_size)
    return {layer: float(np.median(values)) for layer, values in samples.items()}


def dense_layer_measure(model: nn.Module, layers: dict[str, nn.Module]) -> LayerMeasure:
    """`measure(batch)` for the model's own forward pass: nanoseconds spent in each of `layers` (summed over
    its calls in the pass)."""
    def measure(batch: torch.Tensor) -> dict[str, float]:
        with _timed(layers, batch.device) as spent:
            model(batch)
        return dict(spent)
    return measure


@contextmanager
def _timed(layers: dict[str, nn.Module], device: torch.device) -> Iterator[dict[str, float]]:
    spent: dict[str, float] = defaultdict(float)
    started: dict[str, int] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def before(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            sync()
            started[name] = time.perf_counter_ns()
        return hook

    def after(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            sync()
            spent[name] += time.perf_counter_ns() - started.pop(name)
        return hook

    handles = []
    for name, module in layers.items():
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after(name)))
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()
