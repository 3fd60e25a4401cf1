"""Event-driven engine (`latency.event_engine`) against the dense torch forward, at batch 1, across spike sparsity.

Networks (`NETWORKS`), each on 2×48×48 input, T = 8 steps, ternary weights (weight_bits 2) and ternary membranes
(SpQuant-SNN's setting), BatchNorm statistics from random inputs:
- `vgg9`: SpQuant-SNN's VGG-9 with channels (32, 64, 64, 128, 128, 128, 128, 128), a 2×2 average pool after every
  second conv;
- `strided`: four stride-2 3×3 convs (the tiny-conv architecture) with channels (64, 128, 256, 256) and no pool,
  so that every later layer is fed by the spikes themselves and 1/(1 − s) is the ratio of the work.
The
spike sparsity s (share of LIF outputs that are 0, over all LIF layers) is set by shifting every BatchNorm bias
by one common amount, found by bisection. Both paths run single-threaded (torch.set_num_threads(1), numba
without threads) on the same binary input frames; the dense path under torch.inference_mode.

Each round runs the dense forward `--calls` times back to back, then the engine as often, after warm-up rounds
(numba compiles). The first call of each run finds the caches holding the other path's data ("cold"); the later
ones measure the steady state of a path that serves one request after another ("warm", the main figures, as
`profile` times: warm-up excluded). Times are medians over the warm calls of all rounds, and the speedup is the
median of the per-round ratios of those; the rounds' alternation cancels drift. The ideal speedup is
1/(1 − s): the dense path does all the work, the event path a share 1 − s of it. The engine's time includes
the LIF layers (∝ neurons, not spikes), which bound its speedup at high sparsity, and conv1, which runs from the
binary frames' events (20 % of pixels on, whatever the spike sparsity).
The engine runs with `record_spikes=False` (logits only, like the dense forward; spikes would be written and
converted to torch tensors otherwise). The correlation is Pearson's r between per-layer time and per-layer
SynOps over every event-fed layer (conv1…, pools, fc) of every sparsity level, per network, from the engine's own
`layer_ns` and `synops` (medians): the issue's definition, across layers and inputs. A secondary line gives
each layer's r across the sparsity levels alone (time ∝ SynOps within a layer, whatever its cost per op).

A second ideal, "op ideal", is the ratio of the work itself: the dense path's multiply-accumulates over all weight
layers (`opcount.dense_macs`, padding included, as the dense kernels compute it) over the engine's (every weight
layer's SynOps, conv1's counted as MACs if it ran densely). It differs from 1/(1 − s) because an average pool of
spikes is denser than the spikes (a 2×2 window at 90 % spike sparsity is nonzero with probability 1 − 0.9⁴ ≈ 34 %),
so the layers after a pool do more than a share 1 − s of their dense work.

    .venv/bin/python benchmarks/bench_event_engine.py [--repeats 7] [--warmup 2] [--calls 3] [--layers]
        [--networks vgg9,strided]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.latency.event_engine import EventEngine
from sparsity_latency.latency.opcount import dense_macs
from sparsity_latency.models import build_model

NETWORKS = {  # name → (model, channels): SpQuant-SNN's pooled VGG-9, and a pool-free stride-2 network
    "vgg9": ("vgg9", (32, 64, 64, 128, 128, 128, 128, 128)),
    "strided": ("tiny-conv", (64, 128, 256, 256)),
}
SHAPE = (2, 48, 48)
STEPS = 8
TARGETS = (0.5, 0.7, 0.8, 0.9, 0.95)


def calibrated_model(network: str = "vgg9", seed: int = 0) -> nn.Module:
    """`NETWORKS[network]` with ternary weights, its BatchNorm statistics from random frames."""
    torch.manual_seed(seed)
    name, channels = NETWORKS[network]
    model = build_model(ModelConfig(name=name, channels=channels, weight_bits=2), SHAPE, 10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(frames(4))
    return model.eval()


def frames(batch: int) -> torch.Tensor:
    return (torch.rand(STEPS, batch, *SHAPE) < 0.2).float()


def sparsity(model: nn.Module, x: torch.Tensor) -> float:
    result = EventEngine.from_model(model).run(x)
    fired = sum(float(s.sum()) for s in result.spikes.values())
    return 1.0 - fired / sum(s.numel() for s in result.spikes.values())


def set_sparsity(model: nn.Module, biases: list[torch.Tensor], x: torch.Tensor, target: float) -> float:
    """Shift every BatchNorm bias by one amount so that the spike sparsity on x is close to `target`."""
    low, high = -4.0, 4.0
    for _ in range(20):
        middle = (low + high) / 2
        with torch.no_grad():
            for index, bias in enumerate(biases, start=1):
                getattr(model, f"bn{index}").bias.copy_(bias - middle)
        if sparsity(model, x) < target:
            low = middle
        else:
            high = middle
    return sparsity(model, x)


def dense_work(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of the dense forward over x: every conv and linear layer at every step."""
    total = 0.0

    def count(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        shape = args[0].shape
        per_sample = tuple(shape[-3:]) if isinstance(module, nn.Conv2d) else (shape[-1],)
        total += dense_macs(module, per_sample) * (args[0].numel() // math.prod(per_sample))

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def sweep(network: str, repeats: int, warmup: int, calls: int, layers: bool) -> None:
    """Print one network's table across `TARGETS`, its per-layer points (`layers`) and r."""
    model = calibrated_model(network)
    x = frames(1)
    biases = [getattr(model, f"bn{i}").bias.detach().clone() for i in range(1, model.depth + 1)]
    name, channels = NETWORKS[network]
    print(f"\n{network}: {name} {channels} on {SHAPE[0]}×{SHAPE[1]}×{SHAPE[2]}, T = {STEPS}, batch 1, ternary weights "
          f"and membranes, 1 thread; medians of the warm calls of {repeats} interleaved rounds of {calls} calls per "
          f"path (cold: the ratio to ideal of the first calls)")
    # synop ms: the event-fed layers' own time (layer_ns)
    print(f"{'target':>6} {'sparsity':>8} {'dense ms':>9} {'event ms':>9} {'speedup':>8} {'ideal':>6} {'ratio':>6} "
          f"{'synop ms':>9} {'syn spdup':>9} {'op ideal':>8} {'ratio':>6} {'cold':>6}")
    times, ops, series = [], [], {}
    for target in TARGETS:
        measured = set_sparsity(model, biases, x, target)
        engine = EventEngine.from_model(model)
        dense, event, ratios, cold, layer_ns = [], [], [], [], []
        for index in range(warmup + repeats):
            with torch.inference_mode():
                d = [timed(lambda: model(x)) for _ in range(calls)]
            e = []
            for _ in range(calls):
                begin = time.perf_counter()
                result = engine.run(x, record_spikes=False)  # inference: logits only, as the dense forward returns
                e.append(time.perf_counter() - begin)
                if index >= warmup and len(e) > 1:
                    layer_ns.append(result.layer_ns)
            if index >= warmup:
                dense += d[1:]
                event += e[1:]
                ratios.append(statistics.median(d[1:]) / statistics.median(e[1:]))
                cold.append(d[0] / e[0])
        engine_work = sum(result.macs.values()) + sum(ops for name, ops in result.synops.items()
                                                       if not name.startswith("pool"))
        op_ideal = dense_work(model, x) / engine_work
        synop_layers = list(result.synops)  # the event-fed layers: conv1…, pools, fc
        per_layer = {name: statistics.median(ns[name] for ns in layer_ns) for name in synop_layers}
        for name in synop_layers:
            times.append(per_layer[name])
            ops.append(result.synops[name])
            series.setdefault(name, []).append((per_layer[name], result.synops[name]))
        scatter_ms = sum(per_layer.values()) / 1e6
        dense_ms = statistics.median(dense) * 1e3
        ideal = 1 / (1 - measured)
        speedup = statistics.median(ratios)
        print(f"{target:6.0%} {measured:8.1%} {dense_ms:9.2f} {statistics.median(event) * 1e3:9.2f} "
              f"{speedup:8.2f} {ideal:6.2f} {speedup / ideal:6.2f} {scatter_ms:9.2f} {dense_ms / scatter_ms:9.2f} "
              f"{op_ideal:8.2f} {speedup / op_ideal:6.2f} {statistics.median(cold) / ideal:6.2f}")
    if layers:
        print("per layer: µs / M SynOps at each target sparsity")
        for name, points in series.items():
            print(f"  {name:6s} " + "  ".join(f"{ns / 1e3:7.1f} / {op / 1e6:6.2f}" for ns, op in points))
    r = float(np.corrcoef(times, ops)[0, 1])
    print(f"Pearson r(per-layer time, per-layer SynOps) over {len(times)} layer × sparsity points: {r:.3f}")
    within = {name: float(np.corrcoef(*zip(*points, strict=True))[0, 1]) for name, points in series.items()
              if len(points) > 2 and len({op for _, op in points}) > 1}
    scatter = [within[name] for name in within if name.startswith("conv")]
    print(f"  per layer, across sparsity (secondary): median r {statistics.median(within.values()):.3f} over "
          f"{len(within)} layers; conv layers min {min(scatter):.3f}, median {statistics.median(scatter):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3, help="calls per path and round, the first one cold (>= 2)")
    parser.add_argument("--layers", action="store_true", help="also print each layer's time and SynOps")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {', '.join(NETWORKS)}")
    args = parser.parse_args()
    networks = args.networks.split(",")
    if unknown := [network for network in networks if network not in NETWORKS]:
        parser.error(f"unknown network {unknown[0]!r}: choose from {', '.join(NETWORKS)}")
    if args.calls < 2:
        parser.error("--calls must be at least 2: the first call of each path and round is cold")
    torch.set_num_threads(1)
    import numba
    numba.set_num_threads(1)
    for network in networks:
        sweep(network, args.repeats, args.warmup, args.calls, args.layers)


if __name__ == "__main__":
    main()
