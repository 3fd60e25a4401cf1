"""Wall-clock latency of the dense forward pass, per sample.

Each measurement times one forward pass of a batch (`time.perf_counter`, inference mode) and divides
by the batch size; the first `warmup` passes are discarded. The thread count is fixed for the
measurement and restored afterwards. On CUDA the device is synchronized before reading the clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_sample_ms(model: nn.Module, frames: torch.Tensor, batch_size: int, warmup: int,
                  repeats: int) -> np.ndarray:
    """Milliseconds per sample of `repeats` timed passes over batches cut from frames [T, N, …]."""
    n_samples = frames.shape[1]
    device = frames.device
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            batch = frames[:, torch.arange(index * batch_size, (index + 1) * batch_size) % n_samples]
            _sync(device)
            begin = time.perf_counter()
            model(batch)
            _sync(device)
            if index >= warmup:
                times.append((time.perf_counter() - begin) * 1000.0 / batch_size)
    return np.asarray(times)
