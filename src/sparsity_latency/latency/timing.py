"""Wall-clock latency per sample of any backend that runs a batch of frames: `run(batch)`.

`time_per_sample` cuts batches of `batch_size` samples from frames [T, N, …] (cycling through the
samples) and times one `run(batch)` call per batch, under `torch.inference_mode`:

- the first `warmup` calls are run but not timed;
- then it times in rounds: a first round of `min_repeats` calls, then rounds of `round_size` calls, until
  the median of all samples so far moves by at most `rel_tolerance` (relative) from one round to the next
  (`converged`), or `max_repeats` calls were timed (not converged, unless that last round settled it);
- each sample is the call's milliseconds divided by the batch size;
- on the CPU the clock is `clock` (`time.perf_counter`, injectable for tests); when the frames are on a
  CUDA device, the time between two CUDA events recorded around the call, after synchronizing, so
  queued kernels are counted where they run.

The thread count is not touched here: wrap the measurement in `fixed_threads(n)`; `Timing.threads` records
the count in force. `per_sample_ms` is the former fixed-repeat interface for an `nn.Module`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Clock = Callable[[], float]  # seconds


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Timing:
    """Timed calls of one backend at one batch size: milliseconds per sample of each call."""

    per_sample_ms: np.ndarray
    batch_size: int
    repeats: int  # timed calls (warm-up excluded)
    converged: bool  # the median settled within the tolerance before `max_repeats`
    threads: int  # intra-op threads during the measurement

    @property
    def p50(self) -> float:
        return float(np.percentile(self.per_sample_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.per_sample_ms, 95))

    @property
    def std(self) -> float:
        return float(self.per_sample_ms.std(ddof=1)) if len(self.per_sample_ms) > 1 else 0.0

    def columns(self) -> dict[str, float | int | bool]:
        """The profile table's timing columns."""
        return {"wall_ms_p50": self.p50, "wall_ms_p95": self.p95, "wall_ms_std": self.std,
                "wall_repeats": self.repeats, "wall_converged": self.converged}


def call_ms(run: Callable[[torch.Tensor], object], batch: torch.Tensor, clock: Clock = time.perf_counter) -> float:
    """Milliseconds of one `run(batch)`: CUDA events when the batch is on a CUDA device, else `clock`."""
    if batch.device.type == "cuda":
        with torch.cuda.device(batch.device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            run(batch)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
    begin = clock()
    run(batch)
    return (clock() - begin) * 1000.0


def cyclic_batch(frames: torch.Tensor, index: int, batch_size: int) -> torch.Tensor:
    """The `index`-th batch of `batch_size` samples cut from frames [T, N, …], cycling through the N samples."""
    return frames[:, torch.arange(index * batch_size, (index + 1) * batch_size) % frames.shape[1]]


def time_per_sample(run: Callable[[torch.Tensor], object], frames: torch.Tensor, batch_size: int, warmup: int = 3,
                    min_repeats: int = 10, max_repeats: int = 100, rel_tolerance: float = 0.02,
                    round_size: int | None = None, clock: Clock = time.perf_counter) -> Timing:
    """Time `run` on batches of `batch_size` samples cut from frames [T, N, …] until the median settles.

    `round_size` (default `min_repeats`) is the number of calls per round after the first.
    """
    if not 1 <= min_repeats <= max_repeats:
        raise ValueError(f"need 1 ≤ min_repeats ≤ max_repeats, got {min_repeats} and {max_repeats}")
    round_size = round_size or min_repeats

    def batch(index: int) -> torch.Tensor:
        return cyclic_batch(frames, index, batch_size)

    samples: list[float] = []
    converged = False
    with torch.inference_mode():
        for index in range(warmup):
            run(batch(index))
        median = None
        target = min_repeats
        while True:
            while len(samples) < target:
                samples.append(call_ms(run, batch(warmup + len(samples)), clock) / batch_size)
            previous, median = median, float(np.median(samples))
            converged = previous is not None and abs(median - previous) <= rel_tolerance * abs(previous)
            if converged or len(samples) >= max_repeats:
                break
            target = min(len(samples) + round_size, max_repeats)
    return Timing(np.asarray(samples), batch_size, len(samples), converged, torch.get_num_threads())


def per_sample_ms(model: nn.Module, frames: torch.Tensor, batch_size: int, warmup: int,
                  repeats: int) -> np.ndarray:
    """Milliseconds per sample of exactly `repeats` timed forward passes over batches cut from frames [T, N, …]."""
    return time_per_sample(model, frames, batch_size, warmup, min_repeats=repeats, max_repeats=repeats).per_sample_ms
