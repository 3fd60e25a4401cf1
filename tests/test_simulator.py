"""Event simulation (data/simulator.py), the synthetic-digits dataset (data/synthetic.py) and N-MNIST files
(data/nmnist_format.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tonic
from scipy import ndimage

from sparsity_latency.config import Config, DataConfig, check_config
from sparsity_latency.data import synthetic
from sparsity_latency.data.events import EventSplit, make_events
from sparsity_latency.data.nmnist_format import nmnist_records, write_nmnist_bin, write_nmnist_folder
from sparsity_latency.data.simulator import (
    LOG_EPS,
    dvs_events,
    esim_events,
    log_intensity,
    refractory_keep,
    shot_noise_events,
)
from sparsity_latency.errors import InputError


def ramp(times: list[float] | np.ndarray, levels: list[float] | np.ndarray) -> list[tuple[float, np.ndarray]]:
    """One-pixel log-intensity frames (t, [L])."""
    return [(float(t), np.array([level])) for t, level in zip(times, levels, strict=True)]


def test_rising_ramp_gives_one_on_event_per_level() -> None:
    # L: 0 → 1 over 0..1000 µs, C = 0.25: levels 0.25, 0.5, 0.75, 1.0 crossed at t = 1000·L
    pixel, time, polarity = esim_events(ramp([0, 1000], [0.0, 1.0]), 0.25)
    np.testing.assert_array_equal(pixel, [0, 0, 0, 0])
    np.testing.assert_allclose(time, [250, 500, 750, 1000], atol=1e-6)
    np.testing.assert_array_equal(polarity, [1, 1, 1, 1])
    assert polarity.dtype == np.int8


def test_falling_ramp_gives_off_events_at_interpolated_times() -> None:
    # L: 0 → −0.9 over 0..900 µs, C = 0.2: |Δ|/C = 4.5 → 4 levels −0.2, −0.4, −0.6, −0.8 at t = 900·|L|/0.9
    pixel, time, polarity = esim_events(ramp([0, 900], [0.0, -0.9]), 0.2)
    np.testing.assert_array_equal(pixel, [0, 0, 0, 0])
    np.testing.assert_allclose(time, [200, 400, 600, 800], atol=1e-6)
    np.testing.assert_array_equal(polarity, [-1, -1, -1, -1])


def test_ramp_not_starting_at_zero_or_time_zero() -> None:
    # L: 0.1 → 0.75 over 2000..3000 µs, C = 0.3: reference 0.1, levels 0.4 and 0.7 (|Δ|/C = 2.17 → 2)
    # at t = 2000 + 1000·(level − 0.1)/0.65
    _, time, polarity = esim_events(ramp([2000, 3000], [0.1, 0.75]), 0.3)
    np.testing.assert_allclose(time, [2000 + 1000 * 0.3 / 0.65, 2000 + 1000 * 0.6 / 0.65], atol=1e-6)
    np.testing.assert_array_equal(polarity, [1, 1])


@pytest.mark.parametrize("n_frames", [3, 5, 10, 17])
def test_finer_sampling_of_a_linear_ramp_gives_the_same_events(n_frames: int) -> None:
    # linear interpolation between frames: sampling the same straight line more finely changes nothing
    coarse = esim_events(ramp([0, 1000], [0.0, 1.0]), 0.25)
    fine = esim_events(ramp(np.linspace(0, 1000, n_frames), np.linspace(0.0, 1.0, n_frames)), 0.25)
    np.testing.assert_array_equal(fine[0], coarse[0])
    np.testing.assert_allclose(fine[1], coarse[1], atol=1e-6)
    np.testing.assert_array_equal(fine[2], coarse[2])


@pytest.fixture(scope="module")
def random_walk() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times [F], log intensities [F, pixels] and per-pixel thresholds of a random walk."""
    rng = np.random.default_rng(7)
    n_frames, n_pixels = 40, 60
    times = np.cumsum(rng.uniform(50, 500, n_frames))
    logs = np.cumsum(rng.normal(0, 0.4, (n_frames, n_pixels)), axis=0) + rng.uniform(-3, 0, n_pixels)
    thresholds = rng.uniform(0.1, 0.5, n_pixels)
    return times, logs, thresholds


def test_contrast_threshold_invariant(random_walk: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    times, logs, thresholds = random_walk
    pixel, _, polarity = esim_events(zip(times, logs, strict=True), thresholds)
    n_pixels = logs.shape[1]
    n_on = np.bincount(pixel[polarity > 0], minlength=n_pixels)
    n_off = np.bincount(pixel[polarity < 0], minlength=n_pixels)
    assert n_on.sum() > 100 and n_off.sum() > 100  # the walk really produces events both ways
    # the reference moves by C per event; it ends within C of the final log intensity
    reference = logs[0] + thresholds * (n_on - n_off)
    assert np.all(np.abs(logs[-1] - reference) < thresholds)


def test_each_event_sits_on_its_level(random_walk: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    # The k-th event of a pixel is emitted where the piecewise-linear L(t) meets L0 + C·(running sum of
    # polarities up to and including that event).
    times, logs, thresholds = random_walk
    pixel, time, polarity = esim_events(zip(times, logs, strict=True), thresholds)
    assert np.all((time >= times[0]) & (time <= times[-1]))
    for index in np.unique(pixel):
        mine = pixel == index
        levels = logs[0, index] + thresholds[index] * np.cumsum(polarity[mine])
        np.testing.assert_allclose(np.interp(time[mine], times, logs[:, index]), levels, atol=1e-9)


def test_events_are_sorted_by_time_then_pixel(random_walk: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    times, logs, thresholds = random_walk
    pixel, time, _ = esim_events(zip(times, logs, strict=True), thresholds)
    assert np.all(np.diff(time) >= 0)
    same_time = np.diff(time) == 0
    assert np.all(np.diff(pixel)[same_time] > 0)


def test_refractory_period_drops_events_but_moves_the_reference() -> None:
    # Frames: L 0 → 1 over 0..1000, held at 1 until 2000, then → 1.25 at 3000; C = 0.25, refractory 300 µs.
    # Step 1 crosses 0.25, 0.5, 0.75, 1.0 at 250, 500, 750, 1000:
    #   250 kept (first); 500 − 250 = 250 < 300 dropped; 750 − 250 = 500 kept; 1000 − 750 = 250 dropped.
    # The reference still ends at 1.0, so the flat step emits nothing (a reference left at the last *emitted*
    # level 0.75 would emit at 2000), and the last step crosses 1.25 at 3000 (3000 − 750 ≥ 300, kept).
    frames = ramp([0, 1000, 2000, 3000], [0.0, 1.0, 1.0, 1.25])
    _, time, polarity = esim_events(frames, 0.25, refractory_us=300.0)
    np.testing.assert_allclose(time, [250, 750, 3000], atol=1e-6)
    np.testing.assert_array_equal(polarity, [1, 1, 1])
    # without the refractory period every crossing is an event
    _, time, _ = esim_events(frames, 0.25)
    np.testing.assert_allclose(time, [250, 500, 750, 1000, 3000], atol=1e-6)


def test_refractory_period_is_per_pixel() -> None:
    # two pixels, the same ramp, C = 0.25 and 0.5: pixel 1 crosses 0.5 and 1.0 at 500 and 1000 (500 apart, both
    # kept with refractory 300); pixel 0 keeps 250 and 750 as above
    frames = [(0.0, np.array([0.0, 0.0])), (1000.0, np.array([1.0, 1.0]))]
    pixel, time, _ = esim_events(frames, np.array([0.25, 0.5]), refractory_us=300.0)
    np.testing.assert_array_equal(pixel, [0, 1, 0, 1])
    np.testing.assert_allclose(time, [250, 500, 750, 1000], atol=1e-6)


def test_no_change_no_events() -> None:
    pixel, time, polarity = esim_events([(0.0, np.zeros(5)), (100.0, np.full(5, 0.24))], 0.25)
    assert pixel.size == time.size == polarity.size == 0


def test_log_intensity() -> None:
    # L = log(I + 1e-3): I = 1 → log(1.001); I = 0 → log(1e-3)
    np.testing.assert_allclose(log_intensity(np.array([1.0, 0.0])), [np.log(1.001), np.log(LOG_EPS)])


# --- leak (v2e): the reference falls at leak_rate·C per second -------------------------------------------------


def test_leak_events_of_a_constant_pixel_fall_at_k_minus_phase_over_rate() -> None:
    # Constant L; leak 100 Hz = one ON event per 10 000 µs whatever C. Pixel 0: C = 0.2, φ = 0.25 → events at
    # (k − 0.25)·10 000 = 7 500, 17 500, 27 500. Pixel 1: C = 0.5, φ = 0.9 → 1 000, 11 000, 21 000 (and 31 000,
    # after the last frame at 30 000).
    frames = [(t, np.array([0.3, -2.0])) for t in (0.0, 10_000.0, 20_000.0, 30_000.0)]
    pixel, time, polarity = esim_events(frames, np.array([0.2, 0.5]), leak_rate_hz=100.0,
                                        leak_phase=np.array([0.25, 0.9]))
    np.testing.assert_array_equal(pixel, [1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(time, [1_000, 7_500, 11_000, 17_500, 21_000, 27_500], atol=1e-6)
    np.testing.assert_array_equal(polarity, [1, 1, 1, 1, 1, 1])
    # one frame interval gives the same events: the leak is a straight line, interpolated exactly
    _, coarse, _ = esim_events([frames[0], frames[-1]], np.array([0.2, 0.5]), leak_rate_hz=100.0,
                               leak_phase=np.array([0.25, 0.9]))
    np.testing.assert_allclose(coarse, time, atol=1e-6)


def test_leak_adds_its_ramp_to_a_rising_signal() -> None:
    # L: 0 → 0.6 over 0..1000 µs, C = 0.2, leak 100 Hz, φ = 0: L − L_ref grows at 0.6/1000 + 100·0.2/1e6
    # = 6.2e-4 per µs, so it crosses 0.2, 0.4, 0.6 at 322.58…, 645.16…, 967.74… µs (without leak: 333⅓, 666⅔, 1000)
    _, time, polarity = esim_events(ramp([0, 1000], [0.0, 0.6]), 0.2, leak_rate_hz=100.0)
    np.testing.assert_allclose(time, [0.2 / 6.2e-4, 0.4 / 6.2e-4, 0.6 / 6.2e-4], atol=1e-6)
    np.testing.assert_array_equal(polarity, [1, 1, 1])


def test_leak_rate_over_many_pixels_with_random_phases() -> None:
    # 0.1 Hz over 2 s with φ ~ U[0, 1): a pixel fires once iff φ > 1 − 0.2, i.e. a fifth of the pixels
    frames = [(0.0, np.zeros(5000)), (2e6, np.zeros(5000))]
    pixel, _, polarity = dvs_events(frames, 0.2, np.random.default_rng(0), leak_rate_hz=0.1)
    assert abs(len(pixel) - 1000) < 4 * np.sqrt(5000 * 0.2 * 0.8)
    assert np.all(polarity == 1) and len(np.unique(pixel)) == len(pixel)


# --- shot noise and the refractory period --------------------------------------------------------------------


def test_shot_noise_rate_and_polarity_balance() -> None:
    # 4 Hz on 2000 pixels for 1 s: Poisson count with mean 8000 (sd 89); ON share 0.5 (sd 0.0056)
    pixel, time, polarity = shot_noise_events(2000, 1e6, 2e6, 4.0, np.random.default_rng(1))
    assert abs(len(pixel) - 8000) < 4 * np.sqrt(8000)
    assert abs((polarity == 1).mean() - 0.5) < 4 * np.sqrt(0.25 / 8000)
    assert set(np.unique(polarity).tolist()) == {-1, 1}
    assert np.all((time >= 1e6) & (time < 2e6)) and abs(time.mean() - 1.5e6) < 4 * 1e6 / np.sqrt(12 * 8000)
    counts = np.bincount(pixel, minlength=2000)
    assert 0.85 < counts.var() / counts.mean() < 1.15  # Poisson: variance = mean


def test_shot_noise_is_deterministic_for_a_seed_and_off_at_rate_zero() -> None:
    first = shot_noise_events(50, 0.0, 1e6, 3.0, np.random.default_rng(5))
    second = shot_noise_events(50, 0.0, 1e6, 3.0, np.random.default_rng(5))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(shot_noise_events(50, 0.0, 1e6, 0.0, np.random.default_rng(5))[0]) == 0


def test_refractory_keep_by_hand() -> None:
    # pixel 0 at 0, 300, 600, 1000, 1100 µs, refractory 500: keep 0; 300 − 0 < 500 drop; 600 keep;
    # 1000 − 600 < 500 drop; 1100 − 600 ≥ 500 keep. Pixel 1 at 250 keep. Input in any order.
    pixel = np.array([0, 1, 0, 0, 0, 0])
    time = np.array([1000.0, 250.0, 0.0, 600.0, 300.0, 1100.0])
    np.testing.assert_array_equal(refractory_keep(pixel, time, 500.0), [False, True, True, True, False, True])
    assert refractory_keep(pixel, time, 0.0).all()


def refractory_keep_loop(pixel: np.ndarray, time: np.ndarray, refractory_us: float) -> np.ndarray:
    """The obvious version: one event after another in time order."""
    keep = np.zeros(len(time), dtype=bool)
    last: dict[int, float] = {}
    for index in np.lexsort((pixel, time)):
        if time[index] - last.get(int(pixel[index]), -np.inf) >= refractory_us:
            keep[index] = True
            last[int(pixel[index])] = time[index]
    return keep


@pytest.mark.parametrize("refractory_us", [1.0, 50.0, 400.0])
def test_refractory_keep_equals_the_event_by_event_loop(refractory_us: float) -> None:
    rng = np.random.default_rng(2)
    pixel = rng.integers(0, 30, 3000)
    time = np.round(rng.uniform(0, 20_000, 3000))  # whole µs: ties happen
    np.testing.assert_array_equal(refractory_keep(pixel, time, refractory_us),
                                  refractory_keep_loop(pixel, time, refractory_us))


def test_refractory_period_applies_to_noise_as_dead_time() -> None:
    # 1000 Hz of noise, dead time τ = 1 ms counted from the last kept event: kept rate λ/(1 + λτ) = 500 Hz,
    # so 200 pixels × 1 s keep 100 000 events (sd ≈ √(200·λ/(1+λτ)³) = 158)
    frames = [(0.0, np.zeros(200)), (1e6, np.zeros(200))]
    pixel, time, _ = dvs_events(frames, 0.2, np.random.default_rng(3), shot_noise_hz=1000.0, refractory_us=1000.0)
    assert abs(len(pixel) - 100_000) < 5 * 158
    order = np.lexsort((time, pixel))
    same_pixel = np.diff(pixel[order]) == 0
    assert np.all(np.diff(time[order])[same_pixel] >= 1000.0)


def test_refractory_period_spans_signal_and_noise() -> None:
    # a steep ramp (an event every 250 µs) with heavy noise: after the refractory filter no two events of a
    # pixel, whatever their kind, are closer than 300 µs
    n_frames = 20
    frames = [(t, np.full(10, level)) for t, level in zip(np.linspace(0, 10_000, n_frames),
                                                            np.linspace(0, 8.0, n_frames), strict=True)]
    pixel, time, _ = dvs_events(frames, 0.2, np.random.default_rng(4), shot_noise_hz=2000.0, refractory_us=300.0)
    order = np.lexsort((time, pixel))
    same_pixel = np.diff(pixel[order]) == 0
    assert np.all(np.diff(time[order])[same_pixel] >= 300.0)
    noisy, _, _ = dvs_events(frames, 0.2, np.random.default_rng(4), shot_noise_hz=2000.0)
    assert len(noisy) > len(pixel) > 0


def test_noise_and_leak_leave_the_signal_alone() -> None:
    # without refractory period, the noisy, leaky output contains the clean signal events unchanged when φ = 0,
    # and switching the leak off leaves the noise as it was (the phases are drawn either way)
    times = np.linspace(0, 50_000, 11)
    logs = np.cumsum(np.random.default_rng(6).normal(0, 0.3, (11, 40)), axis=0)
    frames = list(zip(times, logs, strict=True))
    clean = esim_events(frames, 0.2)
    noisy = dvs_events(frames, 0.2, np.random.default_rng(7), shot_noise_hz=50.0)
    noisy_set = set(zip(*(column.tolist() for column in noisy), strict=True))
    assert set(zip(*(column.tolist() for column in clean), strict=True)) <= noisy_set
    leaky = dvs_events(frames, 0.2, np.random.default_rng(7), shot_noise_hz=50.0, leak_rate_hz=0.1)
    assert len(leaky[0]) > 0 and not np.array_equal(leaky[1], noisy[1])
    noise_only = dvs_events([(0.0, np.zeros(40)), (50_000.0, np.zeros(40))], 0.2, np.random.default_rng(7),
                            shot_noise_hz=50.0)
    noise_only_leaky = dvs_events([(0.0, np.zeros(40)), (50_000.0, np.zeros(40))], 0.2, np.random.default_rng(7),
                                  shot_noise_hz=50.0, leak_rate_hz=1e-6)
    for a, b in zip(noise_only, noise_only_leaky, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("dx", "dy"),
    [(0.0, 0.0), (0.3, 0.7), (2.5, -1.25), (-3.0, 0.5), (-0.4, -6.6), (3.5, 7.0), (11.5, 0.0), (40.0, 2.0)],
)
def test_shifted_is_scipy_bilinear_shift_with_constant_fill(dx: float, dy: float) -> None:
    rng = np.random.default_rng(3)
    screens = rng.random((2, 10, 12))
    fill = 0.1
    expected = ndimage.shift(screens, (0, dy, dx), order=1, mode="grid-constant", cval=fill)
    np.testing.assert_allclose(synthetic.shifted(screens, dx, dy, fill), expected, atol=1e-12)


def test_saccade_offsets_at_the_vertices_and_midpoints() -> None:
    vertex_times = np.array([0.0, 105_000.0, 210_000.0, 315_000.0])
    dx, dy = synthetic.saccade_offsets(vertex_times)
    np.testing.assert_allclose(dx, [0.0, 3.5, 7.0, 0.0])
    np.testing.assert_allclose(dy, [0.0, 7.0, 0.0, 0.0])
    # half-way along each saccade: ((0 + 3.5)/2, (0 + 7)/2), ((3.5 + 7)/2, (7 + 0)/2), ((7 + 0)/2, 0)
    dx, dy = synthetic.saccade_offsets(vertex_times[:-1] + 52_500.0)
    np.testing.assert_allclose(dx, [1.75, 5.25, 3.5])
    np.testing.assert_allclose(dy, [3.5, 3.5, 0.0])
    assert synthetic.DURATION_US == 315_000.0


SMALL = DataConfig(train_samples=4, test_samples=2)


@pytest.fixture(scope="module")
def digits_seed0() -> tuple[EventSplit, EventSplit]:
    return synthetic.synthetic_digits(SMALL, seed=0)


def test_synthetic_digits_is_deterministic(digits_seed0: tuple[EventSplit, EventSplit]) -> None:
    again = synthetic.synthetic_digits(SMALL, seed=0)
    for first, second in zip(digits_seed0, again, strict=True):
        np.testing.assert_array_equal(first.labels, second.labels)
        assert len(first.events) == len(second.events)
        for a, b in zip(first.events, second.events, strict=True):
            np.testing.assert_array_equal(a, b)


def test_synthetic_digits_differs_for_another_seed(
    digits_seed0: tuple[EventSplit, EventSplit],
) -> None:
    other_train, _ = synthetic.synthetic_digits(SMALL, seed=1)
    train, _ = digits_seed0
    same = [len(a) == len(b) and np.array_equal(a, b) for a, b in zip(train.events, other_train.events, strict=True)]
    assert not all(same)


def test_synthetic_digits_events_are_well_formed(
    digits_seed0: tuple[EventSplit, EventSplit],
) -> None:
    train, test = digits_seed0
    assert len(train.events) == len(train.labels) == 4
    assert len(test.events) == len(test.labels) == 2
    width, height, _ = synthetic.SENSOR_SIZE
    for split in (train, test):
        assert split.labels.dtype == np.int64
        assert np.all((split.labels >= 0) & (split.labels < synthetic.N_CLASSES))
        for sample in split.events:
            assert len(sample) > 0
            assert np.all((sample["x"] >= 0) & (sample["x"] < width))
            assert np.all((sample["y"] >= 0) & (sample["y"] < height))
            assert np.all((sample["t"] >= 0) & (sample["t"] <= synthetic.DURATION_US))
            assert set(np.unique(sample["p"]).tolist()) == {0, 1}  # both polarities, nothing else
            assert np.all(np.diff(sample["t"]) >= 0)  # in time order within a sample


def test_synthetic_digits_rejects_more_samples_than_the_dataset_has() -> None:
    with pytest.raises(InputError):
        synthetic.synthetic_digits(DataConfig(train_samples=1700, test_samples=100), seed=0)


def test_synthetic_digits_frames_are_the_aps_frames(digits_seed0: tuple[EventSplit, EventSplit]) -> None:
    # one IntensityFrames per sample: float32 images in [0, 1] every aps_interval_us from 0 to the end
    for split in digits_seed0:
        assert split.frames is not None and len(split.frames) == len(split.events)
        for frames in split.frames:
            np.testing.assert_array_equal(frames.times_us, np.arange(0.0, 300_001.0, SMALL.aps_interval_us))
            assert frames.images.shape == (16, 34, 34) and frames.images.dtype == np.float32
            assert frames.images.min() >= SMALL.background - 1e-6 and frames.images.max() <= 1.0
            assert not np.array_equal(frames.images[0], frames.images[5])  # the sensor moved


def net_polarity_between_frames(events: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Σ(ON) − Σ(OFF) per pixel in each interval (t_k, t_k+1] of consecutive frames: [K − 1, H, W]."""
    width, height, _ = synthetic.SENSOR_SIZE
    interval = np.searchsorted(frame_times, events["t"], side="left") - 1
    inside = (interval >= 0) & (interval < len(frame_times) - 1)
    net = np.zeros((len(frame_times) - 1, height, width))
    np.add.at(net, (interval[inside], events["y"][inside], events["x"][inside]),
              np.where(events["p"][inside] == 1, 1.0, -1.0))
    return net


def strong_change_agreement(split: EventSplit, threshold: float) -> tuple[int, int]:
    """Pixels whose log intensity changes by more than 4·C between consecutive frames, and how many of them
    have a net event polarity of the same sign in between."""
    strong = agree = 0
    for events, frames in zip(split.events, split.frames, strict=True):
        change = np.diff(log_intensity(frames.images), axis=0)
        net = net_polarity_between_frames(events, frames.times_us)
        mask = np.abs(change) > 4 * threshold
        strong += int(mask.sum())
        agree += int((np.sign(net[mask]) == np.sign(change[mask])).sum())
    return strong, agree


def test_frames_predict_the_events_between_them_exactly_without_noise() -> None:
    # |L − L_ref| < C before and after: between two frames the reference moves by within 2C of the change in L,
    # so a change beyond 4C (room for one event rounded across each frame time) fixes the sign of the net count
    config = DataConfig(train_samples=4, test_samples=0, background=0.1, threshold_sigma=0.0, leak_rate_hz=0.0,
                        shot_noise_hz=0.0)
    train, _ = synthetic.synthetic_digits(config, seed=3)
    strong, agree = strong_change_agreement(train, config.contrast_threshold)
    assert strong > 500 and agree == strong


def test_frames_predict_the_events_between_them_with_the_default_sensor() -> None:
    # thresholds spread (C up to ~0.3), leak and noise, on a high-contrast screen: the sign still agrees
    # almost everywhere
    train, _ = synthetic.synthetic_digits(DataConfig(train_samples=4, test_samples=0, background=0.05), seed=0)
    strong, agree = strong_change_agreement(train, 0.3)
    assert strong > 500 and agree / strong > 0.99


def test_synthetic_digits_noise_and_leak_add_events() -> None:
    quiet = dataclasses.replace(SMALL, leak_rate_hz=0.0, shot_noise_hz=0.0)
    noisy = dataclasses.replace(SMALL, shot_noise_hz=20.0)
    count = {name: sum(len(e) for e in synthetic.synthetic_digits(config, seed=0)[0].events)
             for name, config in (("quiet", quiet), ("default", SMALL), ("noisy", noisy))}
    # 20 Hz adds ≈ 20 · 0.315 s · 1156 pixels · 4 samples ≈ 29 000 events over the default's 1 Hz
    assert count["quiet"] < count["default"] < count["noisy"]
    assert abs(count["noisy"] - count["default"] - 19 * 0.315 * 1156 * 4) < 0.05 * 19 * 0.315 * 1156 * 4


def test_synthetic_frames_are_deterministic(digits_seed0: tuple[EventSplit, EventSplit]) -> None:
    again, _ = synthetic.synthetic_digits(SMALL, seed=0)
    for first, second in zip(digits_seed0[0].frames, again.frames, strict=True):
        np.testing.assert_array_equal(first.images, second.images)


@pytest.mark.parametrize(("key", "value"), [("leak_rate_hz", -0.1), ("shot_noise_hz", -1.0), ("aps_interval_us", 0.0)])
def test_config_refuses_bad_simulator_values(key: str, value: float) -> None:
    with pytest.raises(InputError, match=key):
        check_config(dataclasses.replace(Config(), data=dataclasses.replace(DataConfig(), **{key: value})))


# --- N-MNIST files --------------------------------------------------------------------------------------------


def test_nmnist_record_bytes_by_hand() -> None:
    # x = 3, y = 5, ON, t = 0x12345 µs → 03 05 (1<<7 | 0x01) 23 45; x = 33, y = 0, OFF, t = 2^23 − 1 → 21 00 7F FF FF
    events = make_events(np.array([3, 33]), np.array([5, 0]), np.array([0x12345, 2**23 - 1]), np.array([1, 0]))
    assert nmnist_records(events) == bytes([3, 5, 0x81, 0x23, 0x45, 33, 0, 0x7F, 0xFF, 0xFF])


@pytest.mark.parametrize(("field", "value"), [("t", 2**23), ("t", -1), ("x", 256), ("y", 240), ("p", 2)])
def test_write_nmnist_bin_refuses_events_that_do_not_fit(tmp_path: Path, field: str, value: int) -> None:
    events = make_events(np.array([1, 2]), np.array([1, 2]), np.array([10, 20]), np.array([0, 1]))
    events[field][1] = value
    path = tmp_path / "0" / "00001.bin"
    with pytest.raises(InputError, match="00001.bin"):
        write_nmnist_bin(path, events)
    assert not path.exists() and list(tmp_path.rglob("*.tmp")) == []


def read_back_with_tonic(root: Path, train: bool) -> list[tuple[np.ndarray, int]]:
    with mock.patch.object(tonic.datasets.NMNIST, "_check_exists", return_value=True):
        dataset = tonic.datasets.NMNIST(save_to=str(root), train=train)
        return [dataset[index] for index in range(len(dataset))]


def test_tonic_reads_the_written_nmnist_files_back_exactly(
    tmp_path: Path, digits_seed0: tuple[EventSplit, EventSplit],
) -> None:
    counts = write_nmnist_folder(tmp_path, *digits_seed0)
    assert counts["train_files"] == 4 and counts["test_files"] == 2
    for split, is_train in zip(digits_seed0, (True, False), strict=True):
        read = read_back_with_tonic(tmp_path, is_train)
        order = np.argsort(split.labels, kind="stable")  # tonic walks the digit folders, then the files, in order
        assert [label for _, label in read] == split.labels[order].tolist()
        for (events, _), index in zip(read, order, strict=True):
            expected = split.events[index]
            assert len(events) == len(expected) > 0
            for name in ("x", "y", "t", "p"):
                np.testing.assert_array_equal(events[name], expected[name])


def test_write_nmnist_folder_refuses_a_full_folder_and_bad_labels(
    tmp_path: Path, digits_seed0: tuple[EventSplit, EventSplit],
) -> None:
    write_nmnist_folder(tmp_path, *digits_seed0)
    with pytest.raises(InputError, match="already holds"):
        write_nmnist_folder(tmp_path, *digits_seed0)
    write_nmnist_folder(tmp_path, *digits_seed0, overwrite=True)
    assert len(list((tmp_path / "NMNIST" / "Train").rglob("*.bin"))) == 4
    train, test = digits_seed0
    bad = EventSplit(train.events, np.full(len(train.labels), 10))
    with pytest.raises(InputError, match="0–9"):
        write_nmnist_folder(tmp_path / "other", bad, test)


def test_simulate_to_folder_writes_both_formats(tmp_path: Path) -> None:
    config = DataConfig(train_samples=3, test_samples=2)
    counts = synthetic.simulate_to_folder(config, 0, tmp_path / "bins", "nmnist")
    assert len(list((tmp_path / "bins" / "NMNIST").rglob("*.bin"))) == 5 == counts["train_files"] + counts["test_files"]
    counts = synthetic.simulate_to_folder(config, 0, tmp_path / "npz", "npz")
    train, _ = synthetic.synthetic_digits(config, 0)
    with np.load(tmp_path / "npz" / "train.npz") as saved:
        np.testing.assert_array_equal(saved["labels"], train.labels)
        offsets = saved["offsets"]
        assert offsets[-1] == counts["train_events"] == sum(len(e) for e in train.events)
        np.testing.assert_array_equal(saved["t"][offsets[1]:offsets[2]], train.events[1]["t"])
        np.testing.assert_array_equal(saved["frames"][2], train.frames[2].images)
    with pytest.raises(InputError, match="unknown format"):
        synthetic.simulate_to_folder(config, 0, tmp_path / "x", "aedat")
