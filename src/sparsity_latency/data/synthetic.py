"""`synthetic-digits`: scikit-learn's bundled 8×8 digits seen by a simulated DAVIS event camera.

Like N-MNIST (Orchard et al. 2015), each digit sits still on a screen while the sensor makes three
saccades of 105 ms along the triangle (0,0) → (3.5,7) → (7,0) → (0,0) px over a 34×34 two-polarity
field. The digit is upsampled 3× (bilinear) to 24×24 and placed at (1, 1), so that the whole motion
stays on the sensor. Intensity is `background` off the digit and rises linearly with ink to 1.

The moving image is rendered every `render_dt_us` (and at every APS frame time) and fed to the sensor model
of `simulator.dvs_events`: ESIM with per-pixel thresholds C ~ N(contrast_threshold, threshold_sigma), fixed
for the sensor (drawn once per seed), leak and shot-noise events, and a refractory period. Like a DAVIS, the
sensor also returns intensity (APS) frames: the very images the events were computed from, every
`aps_interval_us` from t = 0, as float32 in [0, 1] (instantaneous, global-shutter snapshots). No download:
the digits ship with scikit-learn. docs/simulator.md explains the defaults and their calibration.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from scipy import ndimage

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EVENT_DTYPE, EventSplit, IntensityFrames, make_events
from sparsity_latency.data.nmnist_format import write_nmnist_folder
from sparsity_latency.data.simulator import dvs_events, log_intensity
from sparsity_latency.errors import InputError
from sparsity_latency.runs import write_atomic

SENSOR_SIZE = (34, 34, 2)  # tonic's (width, height, polarities)
N_CLASSES = 10
SACCADE_VERTICES_PX = np.array([(0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0)])  # (x, y)
SACCADE_US = 105_000.0
DURATION_US = SACCADE_US * (len(SACCADE_VERTICES_PX) - 1)
DIGIT_SCALE = 3
DIGIT_OFFSET_PX = 1
MIN_THRESHOLD = 0.01  # v2e's floor for a pixel's drawn threshold


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


def frame_times(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Render times over the recording (every `render_dt_us`, the end, and every APS time) and the APS
    frame times (every `aps_interval_us` from 0, up to the end), in µs."""
    aps = np.arange(0.0, DURATION_US + 1e-9, config.aps_interval_us)
    render = np.union1d(np.append(np.arange(0.0, DURATION_US, config.render_dt_us), DURATION_US), aps)
    return render, aps


def rendered(screens: np.ndarray, times_us: np.ndarray, background: float) -> Iterator[np.ndarray]:
    """The images [N, H, W] (float32) the moving sensor sees at each time."""
    dx, dy = saccade_offsets(times_us)
    for x, y in zip(dx, dy, strict=True):
        yield shifted(screens, x, y, background).astype(np.float32)


def simulate(images: np.ndarray, config: DataConfig,
             rng: np.random.Generator) -> tuple[list[np.ndarray], tuple[IntensityFrames, ...]]:
    """Events of each digit image over the three saccades (one tonic-style structured array each) and its
    intensity frames."""
    width, height, _ = SENSOR_SIZE
    screens = digit_screens(images, config.background)
    thresholds = np.maximum(
        rng.normal(config.contrast_threshold, config.threshold_sigma, size=height * width), MIN_THRESHOLD
    )
    times, aps_times = frame_times(config)
    aps_slot = np.searchsorted(aps_times, times)
    is_aps = np.isin(times, aps_times)
    aps_images = np.empty((len(images), len(aps_times), height, width), dtype=np.float32)

    def log_frames() -> Iterator[tuple[float, np.ndarray]]:
        for index, (t, image) in enumerate(zip(times, rendered(screens, times, config.background), strict=True)):
            if is_aps[index]:
                aps_images[:, aps_slot[index]] = image
            yield t, log_intensity(image).ravel()

    pixel, time_us, polarity = dvs_events(
        log_frames(), np.tile(thresholds, len(images)), rng, leak_rate_hz=config.leak_rate_hz,
        shot_noise_hz=config.shot_noise_hz, refractory_us=config.refractory_us,
    )
    frames = tuple(IntensityFrames(aps_times, sample_images) for sample_images in aps_images)
    return split_by_sample(pixel, time_us, polarity, len(images)), frames


def split_by_sample(pixel: np.ndarray, time_us: np.ndarray, polarity: np.ndarray, n_samples: int) -> list[np.ndarray]:
    """Events of n_samples stacked sensors (pixel = sample·H·W + y·W + x, sorted by time) → one structured
    array per sample, in time order, t rounded to whole µs, p ∈ {0, 1}."""
    width, height, _ = SENSOR_SIZE
    sample, within = np.divmod(pixel, height * width)
    y, x = np.divmod(within, width)
    order = np.argsort(sample, kind="stable")
    events = make_events(x[order], y[order], np.round(time_us[order]).astype(np.int64),
                         (polarity[order] > 0).astype(np.int8))
    bounds = np.searchsorted(sample[order], np.arange(1, n_samples))
    return np.split(events, bounds)


def split_sizes(available: int, config: DataConfig) -> tuple[int, int]:
    """(train, test) sample counts: as configured; test 0 = `test_fraction` of the digits, train 0 = the rest."""
    n_test = config.test_samples or round(config.test_fraction * available)
    n_train = config.train_samples or available - n_test
    if n_train + n_test > available:
        raise InputError(f"synthetic-digits has {available} images; train_samples + test_samples = {n_train + n_test}")
    return n_train, n_test


def synthetic_digits(config: DataConfig, seed: int) -> tuple[EventSplit, EventSplit]:
    """Disjoint train and test splits of simulated digit events with their intensity frames,
    deterministic for `seed`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    n_train, n_test = split_sizes(len(digits.images), config)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(digits.images))[:n_train + n_test]
    events, frames = simulate(digits.images[chosen], config, rng)
    labels = digits.target[chosen].astype(np.int64)
    return (EventSplit(events[:n_train], labels[:n_train], frames=frames[:n_train]),
            EventSplit(events[n_train:], labels[n_train:], frames=frames[n_train:]))


def write_npz_folder(root: Path, train: EventSplit, test: EventSplit, overwrite: bool = False) -> dict[str, int]:
    """Both splits as <root>/train.npz and <root>/test.npz: the events of all samples concatenated (x, y, t,
    p) with `offsets` [N + 1] (sample i is offsets[i]:offsets[i + 1]), `labels` [N], and the intensity frames
    `frame_times_us` [K] and `frames` [N, K, H, W]."""
    counts: dict[str, int] = {}
    for part, split in (("train", train), ("test", test)):
        path = root / f"{part}.npz"
        if path.exists() and not overwrite:
            raise InputError(f"{path} exists; choose an empty folder or overwrite")
        events = np.concatenate(split.events) if split.events else np.empty(0, EVENT_DTYPE)
        arrays = {name: events[name] for name in ("x", "y", "t", "p")}
        arrays["offsets"] = np.r_[0, np.cumsum([len(sample) for sample in split.events])].astype(np.int64)
        arrays["labels"] = np.asarray(split.labels, dtype=np.int64)
        if split.frames:
            arrays["frame_times_us"] = split.frames[0].times_us
            arrays["frames"] = np.stack([frames.images for frames in split.frames])
        data = _npz_bytes(arrays)
        write_atomic(path, lambda temporary, data=data: temporary.write_bytes(data))
        counts[f"{part}_files"] = 1
        counts[f"{part}_events"] = len(events)
    return counts


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


WRITERS: dict[str, Callable[..., dict[str, int]]] = {"nmnist": write_nmnist_folder, "npz": write_npz_folder}


def simulate_to_folder(config: DataConfig, seed: int, out: Path, format: str = "nmnist",
                       overwrite: bool = False) -> dict[str, int]:
    """Simulate the train and test splits of `config` for `seed` and write them under `out` as `format`:
    "nmnist" (out/NMNIST/{Train,Test}/<digit>/<nnnnn>.bin, events only) or "npz" (out/{train,test}.npz,
    events and intensity frames). Returns counts: <split>_files, <split>_events."""
    if format not in WRITERS:
        raise InputError(f"unknown format '{format}' (known: {', '.join(sorted(WRITERS))})")
    train, test = synthetic_digits(config, seed)
    return WRITERS[format](Path(out), train, test, overwrite=overwrite)
