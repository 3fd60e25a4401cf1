"""Events → count frames (data/framing.py) with hand-made events."""

from __future__ import annotations

import numpy as np
import pytest

from sparsity_latency.data.events import make_events
from sparsity_latency.data.framing import events_to_frames, normalize_counts

SENSOR = (4, 3, 2)  # (width, height, polarities): non-square, so swapped x/y would show


def events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Events from (x, y, t, p) rows."""
    x, y, t, p = np.array(rows, dtype=np.int64).reshape(-1, 4).T
    return make_events(x, y, t, p)


def test_counts_land_in_window_polarity_y_x() -> None:
    # T = 4 windows over 100 µs: window = ⌊t·4/100⌋ → t 0..24 → 0, 25..49 → 1, 50..74 → 2, 75..99 → 3
    sample0 = events([
        (0, 0, 0, 0),    # window 0, OFF, (y 0, x 0)
        (3, 2, 24, 1),   # 24·4 = 96 < 100 → window 0, ON, (y 2, x 3)
        (1, 2, 25, 1),   # 25·4 = 100 → window 1
        (1, 2, 30, 1),   # same cell again → 2 in window 1
        (2, 1, 74, 0),   # 296//100 = 2
        (0, 1, 75, 1),   # 300//100 = 3
    ])
    sample1 = events([(3, 0, 99, 0)])  # 396//100 = 3
    frames = events_to_frames([sample0, sample1], SENSOR, time_steps=4, duration_us=100.0)
    assert frames.shape == (2, 4, 2, 3, 4)  # [N, T, P, H, W]
    assert frames.dtype == np.float32
    expected = np.zeros_like(frames)
    expected[0, 0, 0, 0, 0] = 1
    expected[0, 0, 1, 2, 3] = 1
    expected[0, 1, 1, 2, 1] = 2
    expected[0, 2, 0, 1, 2] = 1
    expected[0, 3, 1, 1, 0] = 1
    expected[1, 3, 0, 0, 3] = 1
    np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize(("time_steps", "duration_us"), [(4, 100.0), (8, 315_000.0), (3, 1000.0)])
def test_event_at_the_end_of_the_duration_goes_to_the_last_window(time_steps: int, duration_us: float) -> None:
    # t = duration: ⌊duration·T/duration⌋ = T, one past the end → clamped into window T − 1, not dropped
    sample = events([(1, 1, int(duration_us), 1), (2, 0, 0, 0)])
    frames = events_to_frames([sample], SENSOR, time_steps, duration_us)
    assert frames[0, time_steps - 1, 1, 1, 1] == 1
    assert frames[0, 0, 0, 0, 2] == 1
    assert frames.sum() == 2


def test_window_boundaries_with_the_real_duration() -> None:
    # 315 000 µs in 8 windows of 39 375 µs: 39 374 → 0, 39 375 → 1, 314 999 → 7
    sample = events([(0, 0, 39_374, 0), (0, 0, 39_375, 0), (0, 0, 314_999, 0)])
    frames = events_to_frames([sample], SENSOR, 8, 315_000.0)
    np.testing.assert_array_equal(frames[0, :, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 1])


def test_total_count_is_preserved() -> None:
    rng = np.random.default_rng(0)
    samples = []
    for n in (0, 1, 50, 500):
        samples.append(make_events(rng.integers(0, 4, n), rng.integers(0, 3, n), np.sort(rng.integers(0, 1001, n)),
                                   rng.integers(0, 2, n)))
    frames = events_to_frames(samples, SENSOR, 5, 1000.0)
    # every event of every sample counted once, in its own sample
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3, 4)), [0, 1, 50, 500])
    # per pixel and polarity, the sum over windows equals the events there
    for index, sample in enumerate(samples):
        per_pixel = np.zeros((2, 3, 4))
        np.add.at(per_pixel, (sample["p"], sample["y"], sample["x"]), 1)
        np.testing.assert_array_equal(frames[index].sum(axis=0), per_pixel)


def test_empty_samples_give_zero_frames_of_the_right_shape() -> None:
    frames = events_to_frames([events([]), events([])], SENSOR, 6, 100.0)
    assert frames.shape == (2, 6, 2, 3, 4)
    assert frames.dtype == np.float32
    assert not frames.any()


def test_an_empty_sample_among_others_stays_zero() -> None:
    frames = events_to_frames([events([(1, 1, 10, 1)]), events([]), events([(0, 2, 90, 0)])], SENSOR, 2, 100.0)
    assert frames.shape == (3, 2, 2, 3, 4)
    assert frames[0, 0, 1, 1, 1] == 1 and frames[0].sum() == 1
    assert not frames[1].any()
    assert frames[2, 1, 0, 2, 0] == 1 and frames[2].sum() == 1


def test_normalize_counts_clips_and_scales() -> None:
    # min(c, 3)/3: 0 → 0, 1 → 1/3, 3 → 1, 5 → 3/3 = 1
    result = normalize_counts(np.array([0.0, 1.0, 3.0, 5.0], dtype=np.float32), 3.0)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [0.0, 1 / 3, 1.0, 1.0], rtol=1e-6)


def test_normalize_counts_keeps_shape() -> None:
    counts = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    # clip 4: 0, 0.25, 0.5, 0.75, then 1 for every count ≥ 4
    result = normalize_counts(counts, 4.0)
    assert result.shape == counts.shape
    np.testing.assert_allclose(result.ravel(), [0, 0.25, 0.5, 0.75] + [1.0] * 8)
