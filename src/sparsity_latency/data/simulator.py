"""Event-camera simulation with the ESIM contrast-threshold model (Rebecq et al., CoRL 2018).

Each pixel keeps a reference log intensity L_ref. When the log intensity moves from L0 (time t0) to
L1 (time t1), an event is emitted at every level L_ref ± n·C crossed on the way, its time interpolated
linearly between t0 and t1, its polarity the sign of the change. L_ref then moves by the crossed
levels, so |L − L_ref| < C holds after every step. An event that falls within the refractory period
after the pixel's previous event is dropped, but L_ref moves all the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

LOG_EPS = 1e-3  # ESIM: L = log(I + eps)


def log_intensity(intensity: np.ndarray) -> np.ndarray:
    """ESIM's log response, L = log(I + 1e-3), for intensities in [0, 1]."""
    return np.log(intensity.astype(np.float64) + LOG_EPS)


def esim_events(
    log_frames: Iterable[tuple[float, np.ndarray]],
    threshold: np.ndarray | float,
    refractory_us: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of pixels whose log intensity is sampled at increasing times.

    `log_frames` yields (t_us, L) with L a flat array of pixel log intensities (any number of
    pixels, of one or many samples). `threshold` is C, one value or one per pixel. Returns
    (pixel index, time in µs as float, polarity ±1), sorted by time, then pixel.
    """
    frames = iter(log_frames)
    t0, l0 = next(frames)
    l0 = np.asarray(l0, dtype=np.float64)
    contrast = np.broadcast_to(np.asarray(threshold, dtype=np.float64), l0.shape)
    reference = l0.copy()
    last_event_us = np.full(l0.shape, -np.inf)
    pixels, times, polarities = [], [], []
    for t1, l1 in frames:
        l1 = np.asarray(l1, dtype=np.float64)
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
                t = t0 + np.clip(fraction, 0.0, 1.0) * (t1 - t0)
                emit = t - last_event_us[pix] >= refractory_us
                pixels.append(pix[emit])
                times.append(t[emit])
                polarities.append(sign[selected][emit].astype(np.int8))
                last_event_us[pix[emit]] = t[emit]
            reference[active] += sign * counts * contrast[active]
        t0, l0 = t1, l1
    if not pixels:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int8)
    pixel = np.concatenate(pixels)
    time = np.concatenate(times)
    polarity = np.concatenate(polarities)
    order = np.lexsort((pixel, time))
    return pixel[order], time[order], polarity[order]
