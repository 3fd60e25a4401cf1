"""Events → frames [T, P, H, W] of event counts, T equal windows over a fixed duration.

Every event lands in a window: an event at exactly the end of the duration goes to the last window
(no partial window is dropped), and an empty sample gives all-zero frames of the right shape.
"""

from __future__ import annotations

import numpy as np


def events_to_frames(
    samples: list[np.ndarray],
    sensor_size: tuple[int, int, int],
    time_steps: int,
    duration_us: float,
) -> np.ndarray:
    """Count events per (sample, window, polarity, y, x); returns float32 [N, T, P, H, W].

    `sensor_size` is tonic's (width, height, polarities).
    """
    width, height, polarities = sensor_size
    lengths = np.array([len(s) for s in samples], dtype=np.int64)
    shape = (len(samples), time_steps, polarities, height, width)
    if lengths.sum() == 0:
        return np.zeros(shape, dtype=np.float32)
    events = np.concatenate(samples)
    sample = np.repeat(np.arange(len(samples)), lengths)
    window = np.minimum((events["t"] * time_steps // duration_us).astype(np.int64), time_steps - 1)
    flat = np.ravel_multi_index(
        (sample, window, events["p"].astype(np.int64), events["y"].astype(np.int64),
         events["x"].astype(np.int64)),
        shape,
    )
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    return counts.reshape(shape).astype(np.float32)


def normalize_counts(counts: np.ndarray, clip: float) -> np.ndarray:
    """Map counts to the network's input range [0, 1]: min(count, clip) / clip."""
    return (np.minimum(counts, clip) / clip).astype(np.float32)
