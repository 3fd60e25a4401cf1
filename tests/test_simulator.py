"""ESIM event simulation (data/simulator.py) and the synthetic-digits dataset (data/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sparsity_latency.config import DataConfig
from sparsity_latency.data import synthetic
from sparsity_latency.data.simulator import LOG_EPS, esim_events, log_intensity
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
def digits_seed0() -> tuple[synthetic.EventSplit, synthetic.EventSplit]:
    return synthetic.synthetic_digits(SMALL, seed=0)


def test_synthetic_digits_is_deterministic(digits_seed0: tuple[synthetic.EventSplit, synthetic.EventSplit]) -> None:
    again = synthetic.synthetic_digits(SMALL, seed=0)
    for first, second in zip(digits_seed0, again, strict=True):
        np.testing.assert_array_equal(first.labels, second.labels)
        assert len(first.events) == len(second.events)
        for a, b in zip(first.events, second.events, strict=True):
            np.testing.assert_array_equal(a, b)


def test_synthetic_digits_differs_for_another_seed(
    digits_seed0: tuple[synthetic.EventSplit, synthetic.EventSplit],
) -> None:
    other_train, _ = synthetic.synthetic_digits(SMALL, seed=1)
    train, _ = digits_seed0
    same = [len(a) == len(b) and np.array_equal(a, b) for a, b in zip(train.events, other_train.events, strict=True)]
    assert not all(same)


def test_synthetic_digits_events_are_well_formed(
    digits_seed0: tuple[synthetic.EventSplit, synthetic.EventSplit],
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
