"""Membrane quantizer: ours (clamp + round) against snntorch's `StateQuant` (compare with every level).

Both snap a membrane tensor to the same integer level table {low, …, θ}; the script checks the results
are equal, then prints, side by side in one run, the median forward+backward time and the peak memory
each adds, and their ratios. Memory is the growth of the process's peak resident set while one
forward+backward runs, in a fresh child process per method (Linux only: the peak is reset through
/proc/self/clear_refs just before the pass).

    .venv/bin/python benchmarks/bench_membrane_quant.py [--elements 1000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch
from snntorch.functional.quant import StateQuant

from sparsity_latency.neurons import membrane_levels, quantize_membrane


def ours(mem: torch.Tensor, bits: float) -> torch.Tensor:
    low, high = membrane_levels(bits)
    return quantize_membrane(mem, low, high)


def snntorch_levels(mem: torch.Tensor, bits: float) -> torch.Tensor:
    low, high = membrane_levels(bits)
    return StateQuant.apply(mem, torch.arange(low, high + 1))


METHODS = {"ours": ours, "snntorch": snntorch_levels}


def _input(elements: int, bits: float) -> torch.Tensor:
    low, high = membrane_levels(bits)
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(elements, generator=generator) * (high - low + 2) + low - 1).requires_grad_(True)


def median_ms(method: str, elements: int, bits: float, repeats: int) -> float:
    mem = _input(elements, bits)
    times = []
    for index in range(repeats + 2):
        begin = time.perf_counter()
        METHODS[method](mem, bits).sum().backward()
        if index >= 2:  # two warm-up passes
            times.append((time.perf_counter() - begin) * 1000)
        mem.grad = None
    return statistics.median(times)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _peak_child(method: str, elements: int, bits: float, queue: mp.Queue) -> None:
    torch.set_num_threads(1)
    mem = _input(elements, bits)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _status_kib("VmRSS")
    METHODS[method](mem, bits).sum().backward()
    queue.put((_status_kib("VmHWM") - before) / 1024)


def peak_mib(method: str, elements: int, bits: float) -> float:
    """Growth of the peak resident set over one forward+backward, in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(method, elements, bits, queue))
    child.start()
    value = queue.get()
    child.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.elements} membrane values, 1 thread, median of {args.repeats} forward+backward passes")
    print(f"{'bits':>5} {'levels':>6} {'ours ms':>9} {'snntorch ms':>12} {'speedup':>8} "
          f"{'ours +MiB':>10} {'snntorch +MiB':>14} {'memory ratio':>13}")
    for bits in (1.58, 2.0, 3.0, 4.0):
        mem = _input(args.elements, bits)
        assert torch.equal(ours(mem, bits), snntorch_levels(mem, bits)), "quantizers disagree"
        fast, slow = (median_ms(m, args.elements, bits, args.repeats) for m in ("ours", "snntorch"))
        fast_mib, slow_mib = (peak_mib(m, args.elements, bits) for m in ("ours", "snntorch"))
        low, high = membrane_levels(bits)
        print(f"{bits:>5} {int(high - low + 1):>6} {fast:>9.2f} {slow:>12.2f} {slow / fast:>7.1f}x "
              f"{fast_mib:>10.1f} {slow_mib:>14.1f} {slow_mib / fast_mib:>12.1f}x")


if __name__ == "__main__":
    main()
