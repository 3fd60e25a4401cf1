"""Events → frames: our `frame_samples` against tonic's `ToFrame`; our `denoise` against tonic's `Denoise`;
and the disk cache's hit against computing the frames.

Workloads, random events uniform over the sensor and sorted in time, as a recording's stream:
  (a) N-MNIST-like: 256 samples × ~5 000 events (uniform 4 000–6 000) over 300 ms on 34×34×2, T = 8;
  (b) DVS-Gesture-like: 32 samples × ~100 000 events (80 000–120 000) over 6 s on 128×128×2, T = 16.
Ours frames all samples in one call with per-sample span windows (`data.duration_us` = 0), the mode nearest
to tonic's `ToFrame(sensor_size, n_time_bins=T, include_incomplete=True)`, which runs per sample as a tonic
user would call it, its frames stacked. Denoise (filter 10 ms) runs on the first 32 samples of (a): tonic's
is a Python loop over events. The cache times `cached` in a temporary folder on workloads (a) and (b) and on
what it saves in practice, synthetic-digits' default 256 + 128 samples simulated and framed: computing
alone, a miss (compute + write) and a hit (read back).

Each round runs every method once, in turn (ours, tonic, ours, tonic, …), after warm-up rounds that also
load our numba kernels; times are medians over rounds and the speedup is the median of the per-round ratios.

    .venv/bin/python benchmarks/bench_framing.py [--repeats 7] [--warmup 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tonic.transforms import Denoise, ToFrame

from sparsity_latency.config import DataConfig
from sparsity_latency.data import synthetic
from sparsity_latency.data.cache import cached
from sparsity_latency.data.events import make_events
from sparsity_latency.data.framing import denoise, frame_samples


@dataclass(frozen=True)
class Workload:
    name: str
    samples: list[np.ndarray]
    sensor_size: tuple[int, int, int]
    time_steps: int


def random_workload(name: str, n_samples: int, events: tuple[int, int], duration_us: int,
                    sensor_size: tuple[int, int, int], time_steps: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    width, height, polarities = sensor_size
    samples = []
    for n in rng.integers(*events, n_samples):
        samples.append(make_events(rng.integers(0, width, n), rng.integers(0, height, n),
                                   np.sort(rng.integers(0, duration_us, n)), rng.integers(0, polarities, n)))
    return Workload(name, samples, sensor_size, time_steps)


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rounds(methods: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per method and round; the methods run in turn within each round."""
    for _ in range(warmup):
        for function in methods.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, function in methods.items():
            times[name].append(timed(function))
    return times


def report(title: str, times: dict[str, list[float]], baseline: str) -> None:
    print(f"\n{title}")
    for name, seconds in times.items():
        ratio = statistics.median(b / s for b, s in zip(times[baseline], seconds, strict=True))
        speed = "" if name == baseline else f"   speedup vs {baseline}: {ratio:.2f}×"
        print(f"  {name:<24} median {statistics.median(seconds) * 1e3:9.2f} ms{speed}")


def framing_methods(workload: Workload) -> dict[str, Callable[[], object]]:
    config = DataConfig(time_steps=workload.time_steps)
    to_frame = ToFrame(workload.sensor_size, n_time_bins=workload.time_steps, include_incomplete=True)
    return {
        "tonic ToFrame per sample": lambda: np.stack([to_frame(sample) for sample in workload.samples]),
        "ours frame_samples": lambda: frame_samples(workload.samples, workload.sensor_size, config, 0.0),
    }


def denoise_methods(workload: Workload, filter_us: float) -> dict[str, Callable[[], object]]:
    tonic_denoise = Denoise(filter_time=filter_us)
    return {
        "tonic Denoise per sample": lambda: [tonic_denoise(sample) for sample in workload.samples],
        "ours denoise": lambda: denoise(workload.samples, workload.sensor_size, filter_us),
    }


def cache_methods(name: str, compute: Callable[[], dict[str, np.ndarray]],
                  folder: Path) -> dict[str, Callable[[], object]]:
    misses = iter(range(10**9))
    return {
        "compute (no cache)": compute,
        "miss (compute + write)": lambda: cached({"workload": name, "miss": next(misses)}, compute, folder),
        "hit (read)": lambda: cached({"workload": name}, compute, folder),
    }


def framed(workload: Workload) -> Callable[[], dict[str, np.ndarray]]:
    config = DataConfig(time_steps=workload.time_steps)
    return lambda: {"counts": frame_samples(workload.samples, workload.sensor_size, config, 0.0)}


def simulated_and_framed() -> dict[str, np.ndarray]:
    """What the cache saves for synthetic-digits: simulating the events, then framing them."""
    config = DataConfig()
    train, test = synthetic.synthetic_digits(config, 0)
    return {part: frame_samples(split.events, synthetic.SENSOR_SIZE, config, synthetic.DURATION_US)
            for part, split in (("train", train), ("test", test))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    workloads = [
        random_workload("(a) 256 × ~5k events, 34×34×2, T=8", 256, (4_000, 6_001), 300_000, (34, 34, 2), 8, 0),
        random_workload("(b) 32 × ~100k events, 128×128×2, T=16", 32, (80_000, 120_001), 6_000_000,
                        (128, 128, 2), 16, 1),
    ]
    for workload in workloads:
        report(f"framing {workload.name}", rounds(framing_methods(workload), args.repeats, args.warmup),
               baseline="tonic ToFrame per sample")
    first = workloads[0]
    few = Workload(first.name, first.samples[:32], first.sensor_size, first.time_steps)
    report("denoise, filter 10 ms, 32 samples of (a)", rounds(denoise_methods(few, 10_000.0), args.repeats,
                                                              args.warmup), baseline="tonic Denoise per sample")
    with tempfile.TemporaryDirectory() as folder:
        for workload in workloads:
            report(f"cache {workload.name}", rounds(cache_methods(workload.name, framed(workload), Path(folder)),
                                                    args.repeats, args.warmup), baseline="compute (no cache)")
        report("cache synthetic-digits, 256 + 128 samples simulated and framed",
               rounds(cache_methods("synthetic", simulated_and_framed, Path(folder)), min(args.repeats, 3), 1),
               baseline="compute (no cache)")


if __name__ == "__main__":
    main()
