"""`synthetic-digits`: scikit-learn's bundled 8×8 digits seen by a simulated event camera.

Like N-MNIST (Orchard et al. 2015), each digit sits still on a screen while the sensor makes three
saccades of 105 ms along the triangle (0,0) → (3.5,7) → (7,0) → (0,0) px over a 34×34 two-polarity
field. The digit is upsampled 3× (bilinear) to 24×24 and placed at (1, 1), so that the whole motion
stays on the sensor. Intensity is `background` off the digit and rises linearly with ink to 1.
Frames of the moving image are rendered every `render_dt_us` and fed to the ESIM model
(`simulator.esim_events`) with per-pixel thresholds C ~ N(contrast_threshold, threshold_sigma),
fixed for the sensor (drawn once per seed). No download: the digits ship with scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import make_events
from sparsity_latency.data.simulator import esim_events, log_intensity
from sparsity_latency.errors import InputError

SENSOR_SIZE = (34, 34, 2)  # tonic's (width, height, polarities)
N_CLASSES = 10
SACCADE_VERTICES_PX = np.array([(0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0)])  # (x, y)
SACCADE_US = 105_000.0
DURATION_US = SACCADE_US * (len(SACCADE_VERTICES_PX) - 1)
DIGIT_SCALE = 3
DIGIT_OFFSET_PX = 1
MIN_THRESHOLD = 0.01


@dataclass(frozen=True)
class EventSplit:
    """Events (one structured array per sample) and integer labels."""

    events: list[np.ndarray]
    labels: np.ndarray


def saccade_offsets(times_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensor displacement (dx, dy) in pixels at each time, piecewise linear along the saccades."""
    vertex_times = np.arange(len(SACCADE_VERTICES_PX)) * SACCADE_US
    dx = np.interp(times_us, vertex_times, SACCADE_VERTICES_PX[:, 0])
    dy = np.interp(times_us, vertex_times, SACCADE_VERTICES_PX[:, 1])
    return dx, dy


def digit_screens(images: np.ndarray, background: float) -> np.ndarray:
    """Intensity in [0, 1] of the screen showing each 8×8 digit (values 0–16): [N, 34, 34]."""
    width, height, _ = SENSOR_SIZE
    digits = ndimage.zoom(images.astype(np.float64) / 16.0, (1, DIGIT_SCALE, DIGIT_SCALE), order=1)
    digits = np.clip(digits, 0.0, 1.0)
    screens = np.full((len(images), height, width), background)
    size = digits.shape[-1]
    window = (slice(None), slice(DIGIT_OFFSET_PX, DIGIT_OFFSET_PX + size),
              slice(DIGIT_OFFSET_PX, DIGIT_OFFSET_PX + size))
    screens[window] = background + (1.0 - background) * digits
    return screens


def shifted(screens: np.ndarray, dx: float, dy: float, fill: float) -> np.ndarray:
    """The screens seen by a sensor moved by (dx, dy) px: bilinear sample of screen(y − dy, x − dx)."""
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 1
    padded = np.pad(screens, ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    height, width = screens.shape[1:]

    def window(row_shift: int, col_shift: int) -> np.ndarray:
        top, left = pad - iy - row_shift, pad - ix - col_shift
        return padded[:, top:top + height, left:left + width]

    return ((1 - fy) * ((1 - fx) * window(0, 0) + fx * window(0, 1))
            + fy * ((1 - fx) * window(1, 0) + fx * window(1, 1)))


def simulate(images: np.ndarray, config: DataConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Events of each digit image over the three saccades: one tonic-style structured array each."""
    width, height, _ = SENSOR_SIZE
    screens = digit_screens(images, config.background)
    thresholds = np.maximum(
        rng.normal(config.contrast_threshold, config.threshold_sigma, size=height * width), MIN_THRESHOLD
    )
    times = np.append(np.arange(0.0, DURATION_US, config.render_dt_us), DURATION_US)
    dx, dy = saccade_offsets(times)
    frames = ((t, log_intensity(shifted(screens, x, y, config.background)).ravel())
              for t, x, y in zip(times, dx, dy, strict=True))
    pixel, time_us, polarity = esim_events(frames, np.tile(thresholds, len(images)), config.refractory_us)
    sample, within = np.divmod(pixel, height * width)
    y, x = np.divmod(within, width)
    order = np.lexsort((time_us, sample))
    events = make_events(x[order], y[order], np.round(time_us[order]).astype(np.int64),
                         (polarity[order] > 0).astype(np.int8))
    bounds = np.searchsorted(sample[order], np.arange(1, len(images)))
    return np.split(events, bounds)


def synthetic_digits(config: DataConfig, seed: int) -> tuple[EventSplit, EventSplit]:
    """Disjoint train and test splits of simulated digit events, deterministic for `seed`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    needed = config.train_samples + config.test_samples
    if needed > len(digits.images):
        raise InputError(f"synthetic-digits has {len(digits.images)} images; "
                         f"train_samples + test_samples = {needed}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(digits.images))[:needed]
    events = simulate(digits.images[chosen], config, rng)
    labels = digits.target[chosen].astype(np.int64)
    n_train = config.train_samples
    return (EventSplit(events[:n_train], labels[:n_train]), EventSplit(events[n_train:], labels[n_train:]))
