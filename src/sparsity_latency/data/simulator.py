"""Event-camera simulation: ESIM's contrast-threshold model (Rebecq et al., CoRL 2018) with v2e's leak and
shot-noise events (Hu, Liu & Delbruck, CVPR workshops 2021) and a refractory period over all events.

Signal (ESIM). Each pixel keeps a reference log intensity L_ref. When the log intensity moves from L0 (time
t0) to L1 (time t1), an event is emitted at every level L_ref ± n·C crossed on the way, its time interpolated
linearly between t0 and t1, its polarity the sign of the change. L_ref then moves by the crossed levels, so
|L − L_ref| < C holds after every step.

Leak (v2e). Junction leakage in the pixel's reset switch lets L_ref drift down at leak_rate·C per second, so a
pixel watching a constant intensity emits ON events at leak_rate Hz whatever its C. It is simulated exactly
as the equivalent ramp leak_rate·C·(t − t_first) added to L (a straight line, so the linear interpolation
stays exact). At the first frame each pixel sits at phase φ ∈ [0, 1) of its leak cycle, L_ref = L − φ·C, so
a constant pixel's leak events fall at t_first + (k − φ)/leak_rate, k = 1, 2, …

Shot noise (v2e). Each pixel emits Poisson noise events at shot_noise_hz (ON and OFF together, each polarity
half of it), uniformly in time. Unlike v2e, which moves L_ref by ±C at a noise event, noise events leave L_ref
alone: the noise rate is then exactly the configured one and the signal events do not depend on the noise.
(v2e also lowers the rate in bright pixels, down to a quarter; here it is the same everywhere.)

Refractory period. After an event a pixel emits nothing for `refractory_us`; this holds for signal, leak and
noise events alike. A signal or leak crossing dropped this way still moves L_ref.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

LOG_EPS = 1e-3  # ESIM: L = log(I + eps)
US_PER_S = 1e6

Events = tuple[np.ndarray, np.ndarray, np.ndarray]  # (pixel index int64, time in µs float64, polarity ±1 int8)


def log_intensity(intensity: np.ndarray) -> np.ndarray:
    """ESIM's log response, L = log(I + 1e-3), for intensities in [0, 1]."""
    return np.log(intensity.astype(np.float64) + LOG_EPS)


def no_events() -> Events:
    """An empty event stream."""
    return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int8)


def sort_events(pixel: np.ndarray, time: np.ndarray, polarity: np.ndarray) -> Events:
    """Events in time order, ties by pixel."""
    order = np.lexsort((pixel, time))
    return pixel[order], time[order], polarity[order]


def concatenate_events(*streams: Events) -> Events:
    """One stream of the events of several (unsorted)."""
    pixel, time, polarity = (np.concatenate(column) for column in zip(*streams, strict=True))
    return pixel, time, polarity


def threshold_crossings(
    log_frames: Iterable[tuple[float, np.ndarray]],
    threshold: np.ndarray | float,
    leak_rate_hz: float = 0.0,
    leak_phase: np.ndarray | float = 0.0,
) -> tuple[Events, float, float]:
    """Every ESIM level crossing (signal and leak) of pixels sampled at increasing times, unsorted, with
    the first and last frame time. `log_frames` yields (t_us, L), L a flat array of pixel log intensities;
    `threshold` is C, one value or one per pixel; `leak_phase` is φ, one value or one per pixel."""
    frames = iter(log_frames)
    t_first, l0 = next(frames)
    l0 = np.asarray(l0, dtype=np.float64)
    contrast = np.broadcast_to(np.asarray(threshold, dtype=np.float64), l0.shape)
    leak_per_us = leak_rate_hz / US_PER_S * contrast  # slope of the ramp that stands for the falling L_ref
    reference = l0 - np.asarray(leak_phase, dtype=np.float64) * contrast if leak_rate_hz > 0 else l0.copy()
    t0 = t_first
    pixels, times, polarities = [], [], []
    for t1, l1 in frames:
        l1 = np.asarray(l1, dtype=np.float64)
        if leak_rate_hz > 0:
            l1 = l1 + leak_per_us * (t1 - t_first)
        delta = l1 - reference
        crossings = np.floor(np.abs(delta) / contrast).astype(np.int64)
        active = np.flatnonzero(crossings)
        if active.size:
            sign = np.sign(delta[active])
            counts = crossings[active]
            slope = (l1 - l0)[active]
            for level_index in range(1, int(counts.max()) + 1):
                selected = counts >= level_index
                pix = active[selected]
                level = reference[pix] + sign[selected] * level_index * contrast[pix]
                with np.errstate(divide="ignore", invalid="ignore"):
                    fraction = np.where(slope[selected] != 0, (level - l0[pix]) / slope[selected], 1.0)
                pixels.append(pix)
                times.append(t0 + np.clip(fraction, 0.0, 1.0) * (t1 - t0))
                polarities.append(sign[selected].astype(np.int8))
            reference[active] += sign * counts * contrast[active]
        t0, l0 = t1, l1
    if not pixels:
        return no_events(), t_first, t0
    return (np.concatenate(pixels), np.concatenate(times), np.concatenate(polarities)), t_first, t0


def shot_noise_events(n_pixels: int, start_us: float, end_us: float, rate_hz: float,
                      rng: np.random.Generator) -> Events:
    """Poisson noise events at `rate_hz` per pixel over [start_us, end_us), polarity a fair coin (so each
    polarity is a Poisson process at rate_hz / 2). Unsorted."""
    if rate_hz <= 0 or end_us <= start_us:
        return no_events()
    counts = rng.poisson(rate_hz * (end_us - start_us) / US_PER_S, size=n_pixels)
    pixel = np.repeat(np.arange(n_pixels, dtype=np.int64), counts)
    time = rng.uniform(start_us, end_us, size=len(pixel))
    polarity = np.where(rng.random(len(pixel)) < 0.5, -1, 1).astype(np.int8)
    return pixel, time, polarity


def refractory_keep(pixel: np.ndarray, time: np.ndarray, refractory_us: float) -> np.ndarray:
    """Which events survive a refractory period: per pixel in time order, an event is kept when at least
    `refractory_us` has passed since the pixel's last *kept* event. Any input order; a mask in that order.

    The scan runs over the k-th event of every pixel at once (k = 1, 2, …), so the Python loop is as long
    as the busiest pixel's event count, not the number of events."""
    keep = np.ones(len(time), dtype=bool)
    if refractory_us <= 0 or len(time) == 0:
        return keep
    order = np.lexsort((time, pixel))  # by pixel, then time
    sorted_pixel, sorted_time = pixel[order], time[order]
    group_start = np.flatnonzero(np.r_[True, sorted_pixel[1:] != sorted_pixel[:-1]])
    group = np.repeat(np.arange(len(group_start)), np.diff(np.r_[group_start, len(order)]))
    rank = np.arange(len(order)) - group_start[group]  # k − 1 for a pixel's k-th event
    by_rank = np.argsort(rank, kind="stable")
    rank_bounds = np.r_[0, np.cumsum(np.bincount(rank))]
    last_kept = np.full(len(group_start), -np.inf)
    kept = np.zeros(len(order), dtype=bool)
    for lo, hi in itertools.pairwise(rank_bounds):
        index = by_rank[lo:hi]  # the k-th event of every pixel that has k events
        ok = index[sorted_time[index] - last_kept[group[index]] >= refractory_us]
        kept[ok] = True
        last_kept[group[ok]] = sorted_time[ok]
    keep[order] = kept
    return keep


def apply_refractory(events: Events, refractory_us: float) -> Events:
    """`events` without those that fall in their pixel's refractory period (see `refractory_keep`)."""
    keep = refractory_keep(events[0], events[1], refractory_us)
    return events[0][keep], events[1][keep], events[2][keep]


def esim_events(
    log_frames: Iterable[tuple[float, np.ndarray]],
    threshold: np.ndarray | float,
    refractory_us: float = 0.0,
    leak_rate_hz: float = 0.0,
    leak_phase: np.ndarray | float = 0.0,
) -> Events:
    """Noise-free events (signal and leak) of pixels whose log intensity is sampled at increasing times.

    `log_frames` yields (t_us, L) with L a flat array of pixel log intensities (any number of pixels, of
    one or many samples). `threshold` is C, one value or one per pixel. Returns (pixel index, time in µs as
    float, polarity ±1), sorted by time, then pixel."""
    events, _, _ = threshold_crossings(log_frames, threshold, leak_rate_hz, leak_phase)
    return apply_refractory(sort_events(*events), refractory_us)


def dvs_events(
    log_frames: Iterable[tuple[float, np.ndarray]],
    threshold: np.ndarray | float,
    rng: np.random.Generator,
    leak_rate_hz: float = 0.0,
    shot_noise_hz: float = 0.0,
    refractory_us: float = 0.0,
) -> Events:
    """The whole sensor: signal, leak and shot-noise events through the refractory period, sorted by time,
    then pixel. `rng` draws each pixel's leak phase φ ~ U[0, 1) (always, so that switching the leak on or
    off leaves the noise as it was), then the noise events over the span of the frames."""
    frames: Iterator[tuple[float, np.ndarray]] = iter(log_frames)
    first = next(frames)
    n_pixels = np.size(first[1])
    leak_phase = rng.random(n_pixels)
    signal, start_us, end_us = threshold_crossings(itertools.chain([first], frames), threshold, leak_rate_hz,
                                                   leak_phase)
    noise = shot_noise_events(n_pixels, start_us, end_us, shot_noise_hz, rng)
    return apply_refractory(sort_events(*concatenate_events(signal, noise)), refractory_us)
