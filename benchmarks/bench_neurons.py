"""LIF layers: ours (`MultiStepLIF`, fused, quantized membrane) against snntorch's `Leaky` stepped through time.

(a) One training step (forward, cross-entropy, backward, Adam) of a conv SNN, T = 10, B = 32, random
    2×34×34 frames in [0, 1], 10 classes: [conv 3×3 → BatchNorm → LIF → 2×2 average pool] with 16, 32, 64
    channels, then a linear readout 64·4·4 → 10 applied at every step and averaged over T. Convolution
    and BatchNorm run once over all T·B frames (BatchNorm statistics over time and batch); only the LIF
    layers loop over time. The same network, weights, frames and labels with three LIF layers:
    - ours: `MultiStepLIF(LIFDynamics(membrane_bits=2, quant_grad="stacked-sigmoid"))` (triangle surrogate),
    - snntorch `Leaky(beta=0.5, threshold=1, reset_mechanism="zero", reset_delay=False)` with
      `state_quant(num_bits=2, uniform=True, threshold=1)`, stepped by `MultiStep`,
    - the same `Leaky` in full precision (no state_quant).
    Both quantizers have 4 levels, but the sets do not coincide: snntorch's are linspace(−θ, 1.2θ, 4) =
    {−1, −0.267, 0.467, 1.2}, ours the integers {−2, −1, 0, 1} (top level θ). snntorch also quantizes
    the membrane before the threshold test, ours the stored membrane after the reset: two different
    quantized neurons of equal level count, compared for cost, not values.
(b) A LIF-dominated layer: Linear(16 → 4096) into 4096 LIF neurons, T = 100, B = 16, forward and backward
    of Σ spikes · a fixed random tensor. Ours with a ternary membrane {−1, 0, 1} and the stacked-sigmoid
    backward, ours in full precision, snntorch's `Leaky` in full precision and with its `StateQuant` at
    3 levels by its own uniform rule, linspace(−θ, 1.2θ, 3) = {−1, 0.1, 1.2}. (With exactly our levels
    {−1, 0, 1} snntorch's neuron never fires: it compares the quantized membrane with θ = 1 by `>`, and
    no level exceeds 1; the checks print this.) "Linear alone" is the same step without a neuron: the
    floor the neuron's share of the time is measured above. The fan-in of 16 keeps the layer dominated by
    its neurons: with 64 inputs the matrix products alone took about a fifth of snntorch's step on our CPU.

Before timing, the script checks that the nets agree where they should: in full precision, with the same
input and weights, ours (zero reset, atan surrogate α = 2) and snntorch's `Leaky(reset_delay=False)` give
identical spikes and logits; their gradients agree only with `detach_reset=False`, because snntorch's
immediate reset h − s·h keeps the spike's surrogate gradient. Ours fused equals ours stepped by autograd.

Times are medians over rounds in which the methods run one after another (A, B, C, A, B, C, …), after
warm-up rounds that also JIT-load our numba kernels; this machine's speed drifts, so ratios are the median
of the ratio within each round. Memory (part a) is the growth of the peak over one training step after a
warm-up step, in a fresh child process per method: on CPU the peak resident set (Linux: reset through
/proc/self/clear_refs, read as VmHWM), with glibc's MALLOC_MMAP_THRESHOLD_ fixed at 64 KiB so that every
large tensor is its own mapping, handed back when freed (otherwise the allocator keeps what the warm-up
step freed and the growth reads near 0); on CUDA `torch.cuda.max_memory_allocated`.

    .venv/bin/python benchmarks/bench_neurons.py [--device cpu|cuda] [--threads 1] [--repeats 15] [--warmup 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch.functional import quant
from torch import nn

from sparsity_latency.neurons import LIFDynamics, MultiStep, MultiStepLIF, QuantLeaky

CONV_STEPS, CONV_BATCH, FRAME, CLASSES = 10, 32, (2, 34, 34), 10
CONV_CHANNELS = (16, 32, 64)
LAYER_STEPS, LAYER_BATCH, LAYER_IN, LAYER_NEURONS = 100, 16, 16, 4096
MMAP_THRESHOLD_BYTES = 65536

Step = Callable[[], torch.Tensor]


def ours_lif(membrane_bits: float, **dynamics) -> MultiStepLIF:
    return MultiStepLIF(LIFDynamics(membrane_bits=membrane_bits, quant_grad="stacked-sigmoid", **dynamics))


def snntorch_lif(state_quant: Callable[[torch.Tensor], torch.Tensor] | bool = False) -> MultiStep:
    return MultiStep(snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                               state_quant=state_quant))


def snntorch_levels(levels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """snntorch's state quantizer (`StateQuant`: nearest of `levels`, straight-through gradient) at given levels."""
    return lambda mem: quant.StateQuant.apply(mem, levels)


def levels_of(quantizer: Callable[[torch.Tensor], torch.Tensor]) -> list[float]:
    """The values a quantizer produces over [−5, 5]: its level set."""
    return [round(level, 4) for level in torch.unique(quantizer(torch.linspace(-5, 5, 10001))).tolist()]


def snntorch_uniform(levels: int, threshold: float = 1.0) -> torch.Tensor:
    """snntorch's uniform levels (`state_quant`'s rule, defaults lower_limit 0, upper_limit 0.2) for any count."""
    return torch.linspace(-threshold, 1.2 * threshold, levels)


CONV_NEURONS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "ours": ("ours: MultiStepLIF, 2-bit membrane", lambda: ours_lif(2)),
    "state_quant": ("snntorch Leaky + state_quant(num_bits=2)",
                    lambda: snntorch_lif(quant.state_quant(num_bits=2, uniform=True, threshold=1.0))),
    "snntorch": ("snntorch Leaky, full precision", lambda: snntorch_lif()),
}

LAYER_LIFS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "ours": ("ours: MultiStepLIF, ternary membrane", lambda: ours_lif(1.58)),
    "ours-fp": ("ours: MultiStepLIF, full precision", lambda: ours_lif(32)),
    "snntorch": ("snntorch Leaky, full precision", lambda: snntorch_lif()),
    "state_quant": ("snntorch Leaky + StateQuant, 3 levels",
                    lambda: snntorch_lif(snntorch_levels(snntorch_uniform(3)))),
    "linear": ("Linear alone (no neuron)", nn.Identity),
}


class ConvSNN(nn.Module):
    """[conv 3×3 → BatchNorm → LIF → avg pool 2] per channel count, readout per step averaged over time."""

    def __init__(self, lif: Callable[[], nn.Module]) -> None:
        super().__init__()
        channels = (FRAME[0], *CONV_CHANNELS)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
                                   for c_in, c_out in itertools.pairwise(channels))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in CONV_CHANNELS)
        self.lifs = nn.ModuleList(lif() for _ in CONV_CHANNELS)
        self.pool = nn.AvgPool2d(2)
        side = FRAME[1] // 2 ** len(CONV_CHANNELS)
        self.fc = nn.Linear(CONV_CHANNELS[-1] * side * side, CLASSES)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        steps, batch = frames.shape[:2]
        hidden = frames.flatten(0, 1)
        for conv, norm, lif in zip(self.convs, self.norms, self.lifs, strict=True):
            spikes = lif(norm(conv(hidden)).unflatten(0, (steps, batch)))
            hidden = self.pool(spikes.flatten(0, 1))
        return self.fc(hidden.flatten(1)).unflatten(0, (steps, batch)).mean(0)


def conv_step(lif: Callable[[], nn.Module], device: str) -> Step:
    """One training step of the conv SNN; weights, frames and labels are the same for every `lif`."""
    torch.manual_seed(0)
    model = ConvSNN(lif).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(CONV_STEPS, CONV_BATCH, *FRAME, generator=generator).to(device)
    labels = torch.randint(CLASSES, (CONV_BATCH,), generator=generator).to(device)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        logits = model(frames)
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
        return logits

    return step


def layer_step(lif: Callable[[], nn.Module], device: str) -> Step:
    """Forward and backward of Σ spikes · w through Linear(LAYER_IN → LAYER_NEURONS) and `lif`; returns the spikes."""
    torch.manual_seed(0)
    linear = nn.Linear(LAYER_IN, LAYER_NEURONS).to(device)
    neuron = lif().to(device)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(LAYER_STEPS, LAYER_BATCH, LAYER_IN, generator=generator).to(device)
    weights = torch.randn(LAYER_STEPS, LAYER_BATCH, LAYER_NEURONS, generator=generator).to(device)

    def step() -> torch.Tensor:
        linear.zero_grad(set_to_none=True)
        spikes = neuron(linear(inputs))
        (spikes * weights).sum().backward()
        return spikes

    return step


# ------------------------------------------------------------------------------------------------ checks


def _spikes_and_grad(lif: nn.Module, current: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaf = current.detach().clone().requires_grad_(True)
    spikes = lif(leaf)
    (spikes * weights).sum().backward()
    return spikes.detach(), leaf.grad


def check_agreement(device: str) -> list[str]:
    """Assert what must agree does; return lines that say what was checked and what was found."""
    generator = torch.Generator().manual_seed(2)
    current = (torch.randn(LAYER_STEPS, LAYER_BATCH, 256, generator=generator) * 0.7 + 0.4).to(device)
    weights = torch.randn(current.shape, generator=generator).to(device)
    lines = []

    sq_levels, our_levels = levels_of(quant.state_quant(num_bits=2, uniform=True, threshold=1.0)), [-2, -1, 0, 1]
    low, high = LIFDynamics(membrane_bits=2).levels
    assert [int(v) for v in (low, high)] == [our_levels[0], our_levels[-1]]
    lines.append(f"2-bit levels: snntorch state_quant {sq_levels}, ours {our_levels}: "
                 f"{len(sq_levels)} and {len(our_levels)} levels, "
                 f"{'the same set' if sq_levels == our_levels else 'different sets'}")

    theirs = _spikes_and_grad(snntorch_lif().to(device), current, weights)
    atan = {"reset": "zero", "surrogate": "atan", "surrogate_param": 2.0}
    detached = _spikes_and_grad(ours_lif(32, **atan), current, weights)
    attached = _spikes_and_grad(ours_lif(32, **atan, detach_reset=False), current, weights)
    assert torch.equal(detached[0], theirs[0]) and torch.equal(attached[0], theirs[0]), "full-precision spikes differ"
    torch.testing.assert_close(attached[1], theirs[1])
    lines.append(f"full precision, one layer: spikes identical to snntorch (rate {theirs[0].mean():.3f}); "
                 f"∂L/∂input max |Δ| {(attached[1] - theirs[1]).abs().max():.1e} with detach_reset=False, "
                 f"{(detached[1] - theirs[1]).abs().max():.2f} with our default detach_reset=True "
                 f"(max |grad| {theirs[1].abs().max():.2f}): snntorch's reset h − s·h keeps s's surrogate gradient")

    ours_net = conv_step(lambda: ours_lif(32, **atan, detach_reset=False), device)
    theirs_net = conv_step(lambda: snntorch_lif(), device)
    ours_logits, theirs_logits = ours_net(), theirs_net()  # one Adam step each: the logits are from before it
    assert torch.equal(ours_logits, theirs_logits), "full-precision conv nets' logits differ"
    lines.append("full precision, conv net, same weights: logits identical to snntorch's")

    dynamics = LIFDynamics(membrane_bits=2, quant_grad="stacked-sigmoid")
    fused = _spikes_and_grad(MultiStepLIF(dynamics), current, weights)
    stepped = _spikes_and_grad(MultiStep(QuantLeaky(**dataclasses.asdict(dynamics))).to(device), current, weights)
    assert torch.equal(fused[0], stepped[0]), "fused and stepped quantized LIF differ"
    torch.testing.assert_close(fused[1], stepped[1])
    lines.append(f"ours 2-bit, fused vs stepped by autograd (QuantLeaky): spikes identical, "
                 f"∂L/∂input max |Δ| {(fused[1] - stepped[1]).abs().max():.1e}")

    ternary = torch.tensor([-1.0, 0.0, 1.0])
    dead = _spikes_and_grad(snntorch_lif(snntorch_levels(ternary)).to(device), current, weights)
    three = levels_of(snntorch_levels(snntorch_uniform(3)))
    alive = _spikes_and_grad(LAYER_LIFS["state_quant"][1]().to(device), current, weights)
    lines.append(f"snntorch StateQuant at our ternary levels {ternary.tolist()}: spike rate {dead[0].mean():.3f}; "
                 f"at its own 3 levels {three} (used in b): {alive[0].mean():.3f}")
    return lines


# ------------------------------------------------------------------------------------------- measurement


def interleaved_ms(steps: dict[str, Step], repeats: int, warmup: int, device: str) -> dict[str, list[float]]:
    """Wall time of each step, in rounds that run every method once; the first `warmup` rounds are dropped."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(warmup + repeats):
        for name, step in steps.items():
            sync()
            begin = time.perf_counter()
            step()
            sync()
            if index >= warmup:
                times[name].append((time.perf_counter() - begin) * 1000)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio within a round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _peak_child(neuron: str, device: str, threads: int, queue: mp.Queue) -> None:
    torch.set_num_threads(threads)
    step = conv_step(CONV_NEURONS[neuron][1], device)
    step()  # warm-up: kernels loaded, optimizer state allocated
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        queue.put((torch.cuda.max_memory_allocated() - before) / 2**20)
        return
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _status_kib("VmRSS")
    step()
    queue.put((_status_kib("VmHWM") - before) / 1024)


@contextmanager
def _children_env(name: str, value: str) -> Iterator[None]:
    """An environment variable for the processes started within the block (this one's allocator is set up)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def peak_mib(neuron: str, device: str, threads: int) -> float:
    """Growth of the peak memory over one conv training step (after a warm-up step), in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    with _children_env("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD_BYTES)):
        child = context.Process(target=_peak_child, args=(neuron, device, threads, queue))
        child.start()
    value = queue.get()
    child.join()
    return value


# ---------------------------------------------------------------------------------------------- printing


def _quartiles(times: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(times, n=4)
    return f"{q1:.1f}–{q3:.1f}"


def _target_row(what: str, value: float, sign: str, target: float) -> str:
    met = value >= target if sign == "≥" else value <= target
    return f"  {what:<48} {value:>8.2f}x {sign} {target:<5g} {'PASS' if met else 'MISS'}"


def conv_part(device: str, threads: int, repeats: int, warmup: int) -> None:
    steps = {name: conv_step(build, device) for name, (_, build) in CONV_NEURONS.items()}
    times = interleaved_ms(steps, repeats, warmup, device)
    mib = {name: peak_mib(name, device, threads) for name in CONV_NEURONS}
    memory = "CUDA max_memory_allocated" if device == "cuda" else "peak RSS"
    print(f"\n(a) conv SNN training step (fwd + CE + bwd + Adam), T={CONV_STEPS}, B={CONV_BATCH}, "
          f"{'×'.join(map(str, FRAME))} → {CLASSES}; median of {repeats} interleaved rounds")
    print(f"  {'LIF layers':<42} {'ms/step':>9} {'q1–q3 ms':>13} {'+MiB/step':>10}   ({memory})")
    for name, (label, _) in CONV_NEURONS.items():
        print(f"  {label:<42} {statistics.median(times[name]):>9.1f} {_quartiles(times[name]):>13} "
              f"{mib[name]:>10.1f}")
    print(f"  {'ratio':<48} {'measured':>9} {'target':<7} met")
    print(_target_row("state_quant time / ours (speed-up)", paired_ratio(times["state_quant"], times["ours"]),
                      "≥", 3))
    print(_target_row("ours time / full-precision snntorch", paired_ratio(times["ours"], times["snntorch"]),
                      "≤", 1.15))
    print(_target_row("ours memory / state_quant memory", mib["ours"] / mib["state_quant"], "≤", 0.5))


def layer_part(device: str, repeats: int, warmup: int) -> None:
    steps = {name: layer_step(build, device) for name, (_, build) in LAYER_LIFS.items()}
    rates = {name: step().float().mean().item() for name, step in steps.items() if name != "linear"}
    times = interleaved_ms(steps, repeats, warmup, device)
    floor = times["linear"]
    neuron_ms = {name: [t - f for t, f in zip(times[name], floor, strict=True)] for name in steps}
    print(f"\n(b) Linear({LAYER_IN} → {LAYER_NEURONS}) → LIF, T={LAYER_STEPS}, B={LAYER_BATCH}, fwd + bwd of "
          f"Σ spikes·w; median of {repeats} interleaved rounds")
    print(f"  {'neuron':<42} {'ms/step':>9} {'q1–q3 ms':>13} {'neuron ms':>10} {'spike rate':>11}")
    for name, (label, _) in LAYER_LIFS.items():
        rate = f"{rates[name]:>11.3f}" if name in rates else ""
        neuron = f"{statistics.median(neuron_ms[name]):>10.1f}" if name != "linear" else ""
        print(f"  {label:<42} {statistics.median(times[name]):>9.1f} {_quartiles(times[name]):>13} "
              f"{neuron:>10} {rate}")
    print(f"  {'ratio (whole step; neuron share in brackets)':<48} {'measured':>9} {'target':<7} met")
    for other, what in (("snntorch", "full-precision snntorch time / ours"),
                        ("state_quant", "snntorch StateQuant time / ours")):
        share = paired_ratio(neuron_ms[other], neuron_ms["ours"])
        print(_target_row(what, paired_ratio(times[other], times["ours"]), "≥", 5) + f"  [{share:.2f}x]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2, help="rounds dropped before timing (JIT, caches)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} torch thread(s) (our numba kernels: 1), "
          f"torch {torch.__version__}, snntorch {snn.__version__}")
    print("checks (before timing):")
    for line in check_agreement(args.device):
        print(f"  {line}")
    conv_part(args.device, args.threads, args.repeats, args.warmup)
    layer_part(args.device, args.repeats, args.warmup)


if __name__ == "__main__":
    main()
