"""Events → count frames (data/framing.py): hand-made events, the slow obvious loop, and tonic."""

from __future__ import annotations

import numpy as np
import pytest
from tonic.transforms import Denoise, ToFrame

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import IntensityFrames, make_events
from sparsity_latency.data.framing import (
    denoise,
    downsampled_sensor,
    frame_samples,
    intensity_frames,
    late_event_counts,
    mean_pool,
    normalize_counts,
    sample_windows,
)

SENSOR = (4, 3, 2)  # (width, height, polarities): non-square, so swapped x/y would show


def events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Events from (x, y, t, p) rows."""
    x, y, t, p = np.array(rows, dtype=np.int64).reshape(-1, 4).T
    return make_events(x, y, t, p)


def frames(samples: list[np.ndarray], time_steps: int, duration_us: float = 0.0, sensor: tuple[int, int, int] = SENSOR,
           dataset_duration_us: float = 0.0, **data: float) -> np.ndarray:
    config = DataConfig(time_steps=time_steps, duration_us=duration_us, **data)
    return frame_samples(samples, sensor, config, dataset_duration_us)


def random_samples(rng: np.random.Generator, sensor: tuple[int, int, int], sizes: list[int],
                   t_max: int) -> list[np.ndarray]:
    """Time-sorted random events; small integer times so that equal timestamps and neighbours are common."""
    width, height, polarities = sensor
    return [make_events(rng.integers(0, width, n), rng.integers(0, height, n), np.sort(rng.integers(0, t_max, n)),
                        rng.integers(0, polarities, n)) for n in sizes]


# --- windows ---------------------------------------------------------------------------------------


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
    counts = frames([sample0, sample1], time_steps=4, duration_us=100.0)
    assert counts.shape == (2, 4, 2, 3, 4)  # [N, T, P, H, W]
    assert counts.dtype == np.uint16
    expected = np.zeros_like(counts)
    expected[0, 0, 0, 0, 0] = 1
    expected[0, 0, 1, 2, 3] = 1
    expected[0, 1, 1, 2, 1] = 2
    expected[0, 2, 0, 1, 2] = 1
    expected[0, 3, 1, 1, 0] = 1
    expected[1, 3, 0, 0, 3] = 1
    np.testing.assert_array_equal(counts, expected)


def test_window_boundaries_with_the_real_duration() -> None:
    # 315 000 µs in 8 windows of 39 375 µs: 39 374 → 0, 39 375 → 1, 314 999 → 7
    sample = events([(0, 0, 39_374, 0), (0, 0, 39_375, 0), (0, 0, 314_999, 0)])
    counts = frames([sample], 8, 315_000.0)
    np.testing.assert_array_equal(counts[0, :, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 1])


@pytest.mark.parametrize(("time_steps", "duration_us"), [(4, 100.0), (8, 315_000.0), (3, 1000.0)])
def test_events_at_or_after_a_fixed_duration_are_dropped_and_counted(time_steps: int, duration_us: float) -> None:
    # t = D − 1 is the last window's; t = D and later lie outside [0, D): dropped, not merged into window T − 1
    end = int(duration_us)
    late = events([(2, 0, 0, 0), (1, 1, end - 1, 1), (1, 1, end, 1), (3, 2, end + 5, 0)])
    on_time = events([(0, 0, end - 1, 0)])
    counts = frames([late, on_time], time_steps, duration_us)
    assert counts[0, 0, 0, 0, 2] == 1 and counts[0, time_steps - 1, 1, 1, 1] == 1
    assert counts[0].sum() == 2 and counts[1].sum() == 1
    config = DataConfig(time_steps=time_steps, duration_us=duration_us)
    np.testing.assert_array_equal(late_event_counts([late, on_time], config, 0.0), [2, 0])


def test_the_dataset_duration_applies_unless_the_config_sets_one() -> None:
    sample = events([(0, 0, 10, 0), (0, 0, 150, 0)])
    # dataset's own 100 µs: t = 150 is late; T = 2 windows of 50 µs
    np.testing.assert_array_equal(frames([sample], 2, 0.0, dataset_duration_us=100.0)[0, :, 0, 0, 0], [1, 0])
    assert late_event_counts([sample], DataConfig(time_steps=2), 100.0).tolist() == [1]
    # data.duration_us = 200 wins: windows of 100 µs, nothing late
    np.testing.assert_array_equal(frames([sample], 2, 200.0, dataset_duration_us=100.0)[0, :, 0, 0, 0], [1, 1])
    assert late_event_counts([sample], DataConfig(time_steps=2, duration_us=200.0), 100.0).tolist() == [0]


def test_each_sample_own_span_puts_the_last_event_in_the_last_window() -> None:
    # span [1000, 1040] in T = 4 windows of 10 µs: 1000 → 0, 1010 → 1, 1025 → 2, 1039 → 3, and
    # t_last = 1040 (⌊40·4/40⌋ = 4, one past the end) in the closed last window 3
    first = events([(0, 0, 1000, 0), (0, 0, 1010, 0), (0, 0, 1025, 0), (0, 0, 1039, 0), (1, 0, 1040, 1)])
    # its own span [7, 9]: 7 → 0, 8 → ⌊1·4/2⌋ = 2, 9 → 3
    second = events([(2, 2, 7, 0), (2, 2, 8, 0), (2, 2, 9, 0)])
    counts = frames([first, second], 4)
    np.testing.assert_array_equal(counts[0, :, 0, 0, 0], [1, 1, 1, 1])
    assert counts[0, 3, 1, 0, 1] == 1 and counts[0].sum() == 5
    np.testing.assert_array_equal(counts[1, :, 0, 2, 2], [1, 0, 1, 1])
    assert late_event_counts([first, second], DataConfig(time_steps=4), 0.0).tolist() == [0, 0]


def test_a_sample_at_one_timestamp_lands_in_window_0() -> None:
    # span 0: no width to divide, every event in window 0 (per-sample span); nothing lost
    same = events([(0, 0, 500, 0), (1, 2, 500, 1), (1, 2, 500, 1)])
    single = events([(3, 1, 42, 0)])
    counts = frames([same, single], 5)
    assert counts[0, 0, 0, 0, 0] == 1 and counts[0, 0, 1, 2, 1] == 2 and counts[0].sum() == 3
    assert counts[1, 0, 0, 1, 3] == 1 and counts[1].sum() == 1


@pytest.mark.parametrize("duration_us", [0.0, 100.0])
def test_empty_samples_give_zero_frames_of_the_right_shape(duration_us: float) -> None:
    counts = frames([events([]), events([(1, 1, 10, 1)]), events([])], 6, duration_us)
    assert counts.shape == (3, 6, 2, 3, 4)
    assert not counts[0].any() and not counts[2].any()
    assert counts[1].sum() == 1
    assert frames([], 6, duration_us).shape == (0, 6, 2, 3, 4)


def test_windows_are_the_same_for_events_and_frames() -> None:
    samples = [events([(0, 0, 100, 0), (0, 0, 300, 0)]), events([])]
    windows = sample_windows(samples, DataConfig(time_steps=4), 0.0)
    np.testing.assert_array_equal(windows.ends_us(), [[150, 200, 250, 300], [0, 0, 0, 0]])
    fixed = sample_windows(samples, DataConfig(time_steps=2, duration_us=50.0), 0.0)
    np.testing.assert_array_equal(fixed.ends_us(), [[25, 50], [25, 50]])


def test_total_count_is_preserved() -> None:
    rng = np.random.default_rng(0)
    samples = random_samples(rng, SENSOR, [0, 1, 50, 500], t_max=1000)
    counts = frames(samples, 5, 1000.0)
    np.testing.assert_array_equal(counts.sum(axis=(1, 2, 3, 4)), [0, 1, 50, 500])
    for index, sample in enumerate(samples):
        per_pixel = np.zeros((2, 3, 4))
        np.add.at(per_pixel, (sample["p"], sample["y"], sample["x"]), 1)
        np.testing.assert_array_equal(counts[index].sum(axis=0), per_pixel)


def test_counts_saturate_at_the_uint16_maximum() -> None:
    crowd = make_events(np.zeros(70_000), np.zeros(70_000), np.zeros(70_000), np.zeros(70_000))
    assert frames([crowd], 2, 10.0)[0, 0, 0, 0, 0] == 65_535


# --- downsampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sensor", "factor", "expected"), [
    ((34, 34, 2), 1, (34, 34, 2)),
    ((34, 34, 2), 2, (17, 17, 2)),
    ((34, 34, 2), 3, (12, 12, 2)),  # ceil(34 / 3) = 12: the last column of blocks holds x 33 only
    ((5, 3, 2), 2, (3, 2, 2)),
    ((700, 1, 1), 4, (175, 1, 1)),  # audio: height 1 stays 1
    ((64, 1, 1), 3, (22, 1, 1)),
])
def test_downsampled_sensor(sensor: tuple[int, int, int], factor: int, expected: tuple[int, int, int]) -> None:
    assert downsampled_sensor(sensor, factor) == expected


def test_downsampling_divides_the_coordinates() -> None:
    # sensor 5 × 3, f = 2 → 3 × 2; (x, y) → (x // 2, y // 2)
    sample = events([(4, 2, 0, 0), (1, 1, 0, 1), (0, 0, 0, 1), (3, 0, 0, 0)])
    counts = frames([sample], 1, 10.0, sensor=(5, 3, 2), downsample=2)
    assert counts.shape == (1, 1, 2, 2, 3)
    expected = np.zeros_like(counts)
    expected[0, 0, 0, 1, 2] = 1  # (4, 2) → (2, 1)
    expected[0, 0, 1, 0, 0] = 2  # (1, 1) and (0, 0) → (0, 0)
    expected[0, 0, 0, 0, 1] = 1  # (3, 0) → (1, 0)
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize(("factor", "width"), [(1, 700), (4, 175)])
def test_audio_frames_have_one_polarity_and_height_1(factor: int, width: int) -> None:
    rng = np.random.default_rng(1)
    samples = [make_events(x, np.zeros(len(x)), np.arange(len(x)), np.zeros(len(x)))
               for x in (rng.integers(0, 700, 300), rng.integers(0, 700, 20))]
    counts = frames(samples, 6, sensor=(700, 1, 1), downsample=factor)
    assert counts.shape == (2, 6, 1, 1, width)  # [N, T, P = 1, H = 1, W]
    for index, sample in enumerate(samples):
        np.testing.assert_array_equal(counts[index].sum(axis=(0, 1, 2)),
                                      np.bincount(sample["x"] // factor, minlength=width))


# --- fast path against the obvious loop --------------------------------------------------------------


def slow_denoise(rows: list[tuple[int, ...]], filter_us: float) -> list[tuple[int, ...]]:
    """An event stays if one of (x ± 1, y), (x, y ± 1) had an earlier event less than filter_us before."""
    last_time: dict[tuple[int, int], int] = {}
    kept = []
    for x, y, t, p in rows:
        if any(t - last_time[pixel] < filter_us for pixel in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1))
               if pixel in last_time):
            kept.append((x, y, t, p))
        last_time[(x, y)] = t
    return kept


def slow_frames(samples: list[np.ndarray], sensor: tuple[int, int, int], time_steps: int, duration_us: int,
                factor: int, denoise_us: float) -> np.ndarray:
    """The window rules event by event, in exact integer arithmetic."""
    width, height, polarities = sensor
    counts = np.zeros((len(samples), time_steps, polarities, -(-height // factor), -(-width // factor)), np.int64)
    for index, sample in enumerate(samples):
        rows = [tuple(int(v) for v in event) for event in sample]
        if duration_us:
            rows = [row for row in rows if row[2] < duration_us]
        first, last = (rows[0][2], rows[-1][2]) if rows and not duration_us else (0, duration_us)
        if denoise_us:
            rows = slow_denoise(rows, denoise_us)
        for x, y, t, p in rows:
            if last == first:
                step = 0
            elif t == last and not duration_us:
                step = time_steps - 1
            else:
                step = (t - first) * time_steps // (last - first)
            counts[index, step, p, y // factor, x // factor] += 1
    return counts


@pytest.mark.parametrize("duration_us", [0, 700])
@pytest.mark.parametrize("factor", [1, 3])
@pytest.mark.parametrize("denoise_us", [0.0, 25.0])
def test_fast_path_equals_the_slow_loop(duration_us: int, factor: int, denoise_us: float) -> None:
    rng = np.random.default_rng([duration_us, factor, int(denoise_us)])
    sensor = (7, 5, 2)
    samples = random_samples(rng, sensor, [0, 1, 2, 40, 300, 300, 1000], t_max=1000)
    samples.append(events([(1, 1, 300, 0), (2, 1, 300, 1)]))  # one timestamp
    counts = frames(samples, 6, duration_us, sensor=sensor, downsample=factor, denoise_us=denoise_us)
    np.testing.assert_array_equal(counts, slow_frames(samples, sensor, 6, duration_us, factor, denoise_us))


# --- denoise ----------------------------------------------------------------------------------------


def test_denoise_by_hand() -> None:
    rows = [
        (1, 1, 100, 0),  # no earlier event anywhere → dropped
        (2, 2, 105, 0),  # (1, 1) is a diagonal neighbour: does not count → dropped
        (1, 1, 106, 0),  # its own pixel fired at 100: does not count → dropped
        (2, 1, 109, 0),  # left neighbour (1, 1) at 106: 3 µs < 10 → kept
        (1, 0, 112, 1),  # below-neighbour (1, 1) at 106, other polarity: polarity is ignored → kept
        (3, 1, 119, 0),  # left neighbour (2, 1) at 109: exactly 10 µs, not less → dropped
        (3, 2, 120, 0),  # (3, 1) at 119, itself dropped, still supports → kept
        (0, 2, 130, 0),  # same timestamp as the next: the later one is not yet seen → dropped
        (0, 1, 130, 0),  # (0, 2) at 130, earlier in the stream: 0 µs → kept
    ]
    kept = [False, False, False, True, True, False, True, False, True]
    sample = events(rows)
    expected = sample[np.array(kept)]
    np.testing.assert_array_equal(denoise([sample], SENSOR, 10.0)[0], expected)
    np.testing.assert_array_equal(Denoise(filter_time=10.0)(sample), expected)  # tonic agrees


@pytest.mark.parametrize("filter_us", [1.0, 30.0, 250.0])
def test_denoise_equals_tonic_once_the_filter_time_has_passed(filter_us: float) -> None:
    rng = np.random.default_rng(int(filter_us))
    sensor = (9, 6, 2)
    samples = random_samples(rng, sensor, [1, 2, 30, 400, 2000], t_max=3000)
    for sample, ours in zip(samples, denoise(samples, sensor, filter_us), strict=True):
        theirs = Denoise(filter_time=filter_us)(sample)
        # from t = filter_us on, the same events; before it tonic also keeps events without any history
        # (it starts every pixel as if it had fired at t = 0), so ours is a subset there
        np.testing.assert_array_equal(ours[ours["t"] >= filter_us], theirs[theirs["t"] >= filter_us])
        early = theirs[theirs["t"] < filter_us].tolist()
        assert all(event in early for event in ours[ours["t"] < filter_us].tolist())
        # shifted by filter_us, nothing is early and the two agree on every event
        shifted = sample.copy()
        shifted["t"] += int(filter_us)
        np.testing.assert_array_equal(denoise([shifted], sensor, filter_us)[0], Denoise(filter_time=filter_us)(shifted))


def test_tonic_keeps_early_events_that_have_no_history() -> None:
    # two lone events in the first 10 µs, far apart: tonic keeps both (pixels start "fired at 0"), we drop both
    sample = events([(1, 1, 5, 0), (3, 2, 6, 0)])
    assert len(Denoise(filter_time=10.0)(sample)) == 2
    assert len(denoise([sample], SENSOR, 10.0)[0]) == 0


# --- against tonic's ToFrame ------------------------------------------------------------------------


def test_matches_tonic_n_time_bins_except_the_last_event() -> None:
    # ToFrame(n_time_bins=T) cuts [t_first, t_first + T·⌊span/T⌋) into windows of ⌊span/T⌋ µs, half-open:
    # with span divisible by T the windows are ours, but tonic drops the events at t_last, which our
    # closed last window keeps
    rng = np.random.default_rng(2)
    time_steps = 5
    for sample in random_samples(rng, SENSOR, [50, 300, 2000], t_max=1000):
        sample["t"][-1] = sample["t"][0] + -(-np.ptp(sample["t"]) // time_steps) * time_steps  # span k·T
        ours = frames([sample], time_steps)[0].astype(np.int64)
        theirs = ToFrame(SENSOR, n_time_bins=time_steps, include_incomplete=True)(sample.copy())
        at_last = sample[sample["t"] == sample["t"][-1]]
        np.add.at(theirs, (time_steps - 1, at_last["p"], at_last["y"], at_last["x"]), 1)
        np.testing.assert_array_equal(ours, theirs)


def test_tonic_n_time_bins_drops_the_remainder_of_the_span() -> None:
    # span 10 µs, T = 4: tonic's windows are ⌊10/4⌋ = 2 µs wide and end at 8: t = 8, 9, 10 are lost
    sample = events([(0, 0, t, 0) for t in range(11)])
    assert ToFrame(SENSOR, n_time_bins=4, include_incomplete=True)(sample.copy()).sum() == 8
    assert frames([sample], 4).sum() == 11
    # span 3 < T = 4: tonic's windows are 0 µs wide and every event is lost
    assert ToFrame(SENSOR, n_time_bins=4, include_incomplete=True)(sample[:4].copy()).sum() == 0


def test_matches_tonic_time_window_on_a_fixed_duration() -> None:
    # fixed duration D: ToFrame(time_window=D/T, start_time=0, end_time=D) gives the same T windows and
    # also leaves out events at t ≥ D
    rng = np.random.default_rng(3)
    duration_us, time_steps = 800, 4
    samples = random_samples(rng, SENSOR, [1, 60, 500, 3000], t_max=1000)
    ours = frames(samples, time_steps, float(duration_us))
    to_frame = ToFrame(SENSOR, time_window=duration_us / time_steps, start_time=0, end_time=duration_us,
                       include_incomplete=True)
    for sample, counts in zip(samples, ours, strict=True):
        np.testing.assert_array_equal(counts, to_frame(sample.copy()))


def test_tonic_swaps_width_and_height_on_empty_input() -> None:
    theirs = ToFrame(SENSOR, n_time_bins=3, include_incomplete=True)(events([]))
    assert theirs.shape == (3, 2, 4, 3) and theirs.dtype == np.float64  # (T, P, W, H)
    ours = frames([events([])], 3)
    assert ours.shape == (1, 3, 2, 3, 4) and not ours.any()  # (N, T, P, H, W)


# --- intensity frames -------------------------------------------------------------------------------


def constant_images(values: list[float], height: int = 2, width: int = 3) -> np.ndarray:
    return np.array(values, dtype=np.float32)[:, None, None] * np.ones((1, height, width), dtype=np.float32)


def test_intensity_holds_the_latest_image_at_each_window_end() -> None:
    # fixed 100 µs, T = 4: windows end at 25, 50, 75, 100
    sensor = (3, 2, 2)
    config = DataConfig(time_steps=4, duration_us=100.0)
    held = IntensityFrames(np.array([10, 50, 90]), constant_images([0.1, 0.5, 0.9]))
    # 25 → image at 10; 50 → the image taken exactly at the end; 75 → still 50; 100 → 90
    early = IntensityFrames(np.array([30, 60]), constant_images([0.3, 0.6]))
    # 25 is before the first image → the first image
    result = intensity_frames([held, early], [events([]), events([])], sensor, config, 0.0)
    assert result.shape == (2, 4, 1, 2, 3) and result.dtype == np.float32
    np.testing.assert_allclose(result[0, :, 0, 0, 0], [0.1, 0.5, 0.5, 0.9])
    np.testing.assert_allclose(result[1, :, 0, 0, 0], [0.3, 0.3, 0.6, 0.6])


def test_intensity_windows_follow_each_sample_events_span() -> None:
    # no fixed duration: sample 0 spans [1000, 1400] → ends 1200, 1400; sample 1 spans [0, 100] → 50, 100
    sensor = (3, 2, 2)
    images = IntensityFrames(np.array([0, 1100, 1300]), constant_images([0.0, 0.2, 0.4]))
    samples = [events([(0, 0, 1000, 0), (0, 0, 1400, 0)]), events([(0, 0, 0, 0), (0, 0, 100, 0)])]
    result = intensity_frames([images, images], samples, sensor, DataConfig(time_steps=2), 0.0)
    np.testing.assert_allclose(result[:, :, 0, 1, 2], [[0.2, 0.4], [0.0, 0.0]])


def test_mean_pool_averages_partial_edge_blocks_over_the_pixels_they_have() -> None:
    image = np.arange(15, dtype=np.float32).reshape(1, 3, 5)  # rows 0-4, 5-9, 10-14
    # f = 2: row blocks {0, 1}, {2}; column blocks {0, 1}, {2, 3}, {4}
    expected = [[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2],
                [(10 + 11) / 2, (12 + 13) / 2, 14.0]]
    np.testing.assert_allclose(mean_pool(image, 2)[0], expected)
    np.testing.assert_array_equal(mean_pool(image, 1), image)


def test_intensity_frames_match_the_event_frames_shape() -> None:
    sensor = (5, 3, 2)
    config = DataConfig(time_steps=3, duration_us=30.0, downsample=2)
    images = IntensityFrames(np.array([0]), np.ones((1, 3, 5), dtype=np.float32))
    empty = IntensityFrames(np.zeros(0), np.zeros((0, 3, 5), dtype=np.float32))
    result = intensity_frames([images, empty], [events([]), events([])], sensor, config, 0.0)
    assert result.shape[2:] == (1, *frame_samples([events([])], sensor, config, 0.0).shape[3:]) == (1, 2, 3)
    assert (result[0] == 1).all() and not result[1].any()  # no images: zeros
    with pytest.raises(ValueError, match="images of"):
        intensity_frames([IntensityFrames(np.array([0]), np.ones((1, 5, 3)))], [events([])], sensor, config, 0.0)


# --- normalization ----------------------------------------------------------------------------------


def test_normalize_counts_clips_and_scales() -> None:
    # min(c, 3)/3: 0 → 0, 1 → 1/3, 3 → 1, 5 → 3/3 = 1
    for counts in (np.array([0, 1, 3, 5], dtype=np.uint16), np.array([0.0, 1.0, 3.0, 5.0], dtype=np.float32)):
        result = normalize_counts(counts, 3.0)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, [0.0, 1 / 3, 1.0, 1.0], rtol=1e-6)


def test_normalize_counts_keeps_shape() -> None:
    counts = np.arange(12, dtype=np.uint16).reshape(1, 2, 2, 3)
    # clip 4: 0, 0.25, 0.5, 0.75, then 1 for every count ≥ 4
    result = normalize_counts(counts, 4.0)
    assert result.shape == counts.shape
    np.testing.assert_allclose(result.ravel(), [0, 0.25, 0.5, 0.75] + [1.0] * 8)
