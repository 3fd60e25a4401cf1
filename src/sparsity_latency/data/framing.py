"""Events → count frames [N, T, P, H', W'] on T equal time windows, after denoising and downsampling.

Windows (`sample_windows`; a sample's events and its intensity frames share them):
- Fixed duration D (`data.duration_us`, else the dataset's own): window i is [i·D/T, (i+1)·D/T) from
  t = 0. Events at t ≥ D lie outside the recording window: they are dropped, not merged into the last
  window, and `late_event_counts` counts them.
- No fixed duration: each sample's own span [t_first, t_last] (of its events before denoising) is cut
  into T equal windows, the last one closed, so the last event lands in window T − 1. When all events
  share one timestamp the span is empty and they all land in window 0.
An empty sample gives all-zero frames.

Order: denoise at full resolution (tonic's Denoise rule, `denoise`), then downsample by f
(x // f, y // f; the sensor becomes ceil(W/f) × ceil(H/f), so audio's height 1 stays 1), then count.
Counts are uint16 and saturate at 65 535, far above any useful `frame_clip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EVENT_DTYPE, IntensityFrames

COUNT_MAX = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class Windows:
    """T equal windows per sample: window i of sample n is [s + i·L/T, s + (i+1)·L/T) with
    s = start_us[n], L = length_us[n]. `fixed`: events at t ≥ s + L are outside (dropped); otherwise
    the last window is closed at s + L, the sample's last event."""

    start_us: np.ndarray  # [N] float64
    length_us: np.ndarray  # [N] float64
    time_steps: int
    fixed: bool

    def ends_us(self) -> np.ndarray:
        """Where each window ends, [N, T]."""
        fractions = np.arange(1, self.time_steps + 1) / self.time_steps
        return self.start_us[:, None] + self.length_us[:, None] * fractions


def sample_windows(samples: Sequence[np.ndarray], config: DataConfig, dataset_duration_us: float) -> Windows:
    """The T windows of each sample: over `config.duration_us`, else `dataset_duration_us`, from t = 0;
    if both are 0, over each sample's own span [t_first, t_last] (an empty sample: [0, 0])."""
    duration_us = config.duration_us if config.duration_us > 0 else dataset_duration_us
    if duration_us > 0:
        return Windows(np.zeros(len(samples)), np.full(len(samples), float(duration_us)), config.time_steps,
                       fixed=True)
    first = np.array([s["t"][0] if len(s) else 0 for s in samples], dtype=np.float64)
    last = np.array([s["t"][-1] if len(s) else 0 for s in samples], dtype=np.float64)
    return Windows(first, last - first, config.time_steps, fixed=False)


def late_event_counts(samples: Sequence[np.ndarray], config: DataConfig, dataset_duration_us: float) -> np.ndarray:
    """Per sample, how many events lie at or after the end of a fixed duration and are dropped
    (always 0 without a fixed duration), int64 [N]."""
    windows = sample_windows(samples, config, dataset_duration_us)
    return np.array([len(s) - _inside_count(s, windows, n) for n, s in enumerate(samples)], dtype=np.int64)


def downsampled_sensor(sensor_size: tuple[int, int, int], factor: int) -> tuple[int, int, int]:
    """tonic's (width, height, polarities) after x // f, y // f: (ceil(W/f), ceil(H/f), P)."""
    width, height, polarities = sensor_size
    return -(-width // factor), -(-height // factor), polarities


def frame_samples(samples: Sequence[np.ndarray], sensor_size: tuple[int, int, int], config: DataConfig,
                  dataset_duration_us: float) -> np.ndarray:
    """Event counts per (sample, window, polarity, y', x'): uint16 [N, T, P, ceil(H/f), ceil(W/f)].

    Events outside a fixed duration are dropped (see `late_event_counts`); then `config.denoise_us` > 0
    applies `denoise`, and `config.downsample` = f divides the coordinates.
    """
    windows = sample_windows(samples, config, dataset_duration_us)
    inside = [np.asarray(s[: _inside_count(s, windows, n)], dtype=EVENT_DTYPE) for n, s in enumerate(samples)]
    if config.denoise_us > 0:
        inside = denoise(inside, sensor_size, config.denoise_us)
    width, height, polarities = downsampled_sensor(sensor_size, config.downsample)
    counts = np.zeros((len(samples), config.time_steps, polarities, height, width), dtype=np.uint16)
    column_of = np.arange(sensor_size[0]) // config.downsample
    row_of = np.arange(sensor_size[1]) // config.downsample
    for n, events in enumerate(inside):
        _count_events(events, windows.start_us[n], windows.length_us[n], column_of, row_of, counts[n])
    return counts


def denoise(samples: Sequence[np.ndarray], sensor_size: tuple[int, int, int], filter_us: float) -> list[np.ndarray]:
    """tonic's `Denoise(filter_time=filter_us)` on each sample: keep an event only if one of its four
    edge neighbours (x ± 1 or y ± 1; not diagonals, not its own pixel) had an earlier event (in stream
    order) less than `filter_us` before it. Unlike tonic, no event is kept for lack of history: tonic
    starts every pixel as if it had fired at t = 0, so it keeps any event at t < filter_us that has a
    neighbour pixel inside the sample's bounding box."""
    width, height, _ = sensor_size
    expiry = np.empty((height, width), dtype=np.float64)
    return [s[_denoise_mask(np.asarray(s, dtype=EVENT_DTYPE), float(filter_us), expiry)] for s in samples]


def intensity_frames(frames: Sequence[IntensityFrames], samples: Sequence[np.ndarray],
                     sensor_size: tuple[int, int, int], config: DataConfig, dataset_duration_us: float) -> np.ndarray:
    """Intensity images on the events' windows: float32 [N, T, 1, ceil(H/f), ceil(W/f)] in [0, 1].

    Window i shows the latest image taken at or before its end (zero-order hold; before the first
    image, the first image; a sample without images gives zeros), mean-pooled over f × f blocks (edge
    blocks average the pixels they have). `samples` are the same events given to `frame_samples`: they
    fix the windows when there is no fixed duration.
    """
    windows = sample_windows(samples, config, dataset_duration_us)
    width, height, _ = downsampled_sensor(sensor_size, config.downsample)
    images = np.zeros((len(frames), config.time_steps, 1, height, width), dtype=np.float32)
    for n, (sample_frames, ends_us) in enumerate(zip(frames, windows.ends_us(), strict=True)):
        if sample_frames.images.shape[1:] != (sensor_size[1], sensor_size[0]):
            raise ValueError(f"sample {n}: images of {sample_frames.images.shape[1:]} (H, W) on a sensor of "
                             f"{sensor_size[1]} × {sensor_size[0]}")
        if len(sample_frames.times_us):
            held = np.searchsorted(sample_frames.times_us, ends_us, side="right") - 1
            images[n, :, 0] = mean_pool(sample_frames.images[np.maximum(held, 0)], config.downsample)
    return images


def mean_pool(images: np.ndarray, factor: int) -> np.ndarray:
    """Mean over f × f blocks of [K, H, W]: float32 [K, ceil(H/f), ceil(W/f)]; an edge block that the
    image only partly covers averages the pixels it has."""
    height, width = images.shape[1:]
    rows, cols = np.arange(0, height, factor), np.arange(0, width, factor)
    sums = np.add.reduceat(np.add.reduceat(images.astype(np.float64), rows, axis=1), cols, axis=2)
    pixels = np.outer(np.diff(rows, append=height), np.diff(cols, append=width))
    return (sums / pixels).astype(np.float32)


def normalize_counts(counts: np.ndarray, clip: float) -> np.ndarray:
    """Map counts to the network's input range [0, 1]: min(count, clip) / clip, float32."""
    values = counts.astype(np.float32)
    np.minimum(values, clip, out=values)
    values /= np.float32(clip)
    return values


def _inside_count(sample: np.ndarray, windows: Windows, n: int) -> int:
    """How many of a sample's (time-sorted) events lie inside its windows."""
    if not windows.fixed:
        return len(sample)
    return int(np.searchsorted(sample["t"], windows.start_us[n] + windows.length_us[n], side="left"))


@numba.njit(cache=True)
def _count_events(events, start_us, length_us, column_of, row_of, counts):
    """Add each event of one sample to counts[window, p, row_of[y], column_of[x]]; the window is
    ⌊(t − start)·T / length⌋ (t ≥ start), clamped to T − 1 (only the closed end of a span reaches T),
    0 for an empty span. Indexes the flat array: about a third faster than four indices."""
    time_steps, polarities, height, width = counts.shape
    flat = counts.reshape(-1)
    for event in events:
        step = min(int((event.t - start_us) * time_steps / length_us), time_steps - 1) if length_us > 0 else 0
        cell = ((step * polarities + event.p) * height + row_of[event.y]) * width + column_of[event.x]
        if flat[cell] < COUNT_MAX:
            flat[cell] += 1


@numba.njit(cache=True)
def _denoise_mask(events, filter_us, expiry):
    """Which events of one sample `denoise` keeps. `expiry[y, x]` is when the pixel's last event stops
    supporting its neighbours (its time + filter_us), −∞ before its first event."""
    height, width = expiry.shape
    expiry[:] = -np.inf
    keep = np.zeros(len(events), dtype=np.bool_)
    for i, event in enumerate(events):
        x, y, t = event.x, event.y, event.t
        expiry[y, x] = t + filter_us
        keep[i] = ((x > 0 and expiry[y, x - 1] > t) or (x < width - 1 and expiry[y, x + 1] > t)
                   or (y > 0 and expiry[y - 1, x] > t) or (y < height - 1 and expiry[y + 1, x] > t))
    return keep


