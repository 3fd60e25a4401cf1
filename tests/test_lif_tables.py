"""Threshold-table LIF (`latency.lif_tables`, `event_kernels.lif_table`) against the scalar fixed-point kernel, and the
LIF kernels' pooling of their spikes into windows (`event_kernels.pool_grid`)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsity_latency.latency import event_kernels as kernels
from sparsity_latency.latency.lif_tables import bounds, fixed_point, level_thresholds, lif_table, reset_level

CHANNELS = 37  # one int16 vector (32 lanes) or two int32 vectors (16) plus a scalar tail
NO_CELLS = np.zeros(0, dtype=np.int32)


def gains_and_offsets(rng: np.random.Generator, channels: int = CHANNELS) -> tuple[np.ndarray, np.ndarray]:
    gain = rng.choice([0.0, 1e-4, 3e-3, 0.02, 0.7, 5.0], channels) * rng.random(channels)
    gain[:3] = (0.0, 2.0**-7, 1.0 / 3)  # no slope; a power of two (exact ties with 2^f); a non-dyadic step
    return gain, rng.normal(0, 2, channels)


def run_both(acc: np.ndarray, start: np.ndarray, gain: np.ndarray, offset: np.ndarray, frac: int, shift: int,
             low: int, high: int, zero_reset: bool, limit: int, cell_of: np.ndarray = NO_CELLS,
             windows: int = 0) -> tuple[tuple, tuple]:
    """(spikes, final levels, events, returned count, pool grid) of lif_integer and lif_table from the stored levels
    `start` [P, C]; a pooling layer when `cell_of` (each position's window) is given."""
    threshold = 1 << frac  # θ = 1: the levels' top
    steps, positions, channels = acc.shape
    outputs = []
    for table_path in (False, True):
        state = start.astype(acc.dtype if table_path else np.int32)
        spikes = np.zeros((steps, positions * channels), dtype=np.uint8)
        starts = np.zeros(steps + 1, dtype=np.int64)
        pos, chan = (np.zeros(acc.size + 16, dtype=np.int32) for _ in range(2))  # 16 spare slots
        grid = np.zeros((steps, windows * channels), dtype=acc.dtype if table_path else np.int32)
        if table_path:
            table = lif_table(gain, offset, frac, shift, threshold, low, high, zero_reset, limit, acc.dtype.type)
            n = kernels.lif_table(acc, table, low, high - low + 1, zero_reset, reset_level(frac, low, high), state,
                                  True, spikes, starts, pos, chan, cell_of, grid)
        else:
            n = kernels.lif_integer(acc, gain, offset, frac, shift, threshold, low, high, zero_reset, state, True,
                                    spikes, starts, pos, chan, cell_of, grid)
        events = n if len(cell_of) == 0 else 0
        outputs.append((spikes, state.astype(np.int64), starts, pos[:events], chan[:events], n,
                        grid.astype(np.int64)))
    return outputs[0], outputs[1]


@pytest.mark.parametrize(("low", "beta_shift"), [(-1, 1), (-2, 1), (-1, 2), (0, 3)])  # 3, 4, 3, 2 levels
@pytest.mark.parametrize("zero_reset", [True, False])
def test_every_int16_accumulator_value_gives_the_scalar_kernels_step(low: int, beta_shift: int,
                                                                     zero_reset: bool) -> None:
    """All 65535 accumulator values × every stored level × 37 channels: same spikes, levels and events."""
    rng = np.random.default_rng((low + 2) * 10 + beta_shift)
    gain, offset = gains_and_offsets(rng)
    limit = 2**15 - 1
    values = np.arange(-limit, limit + 1, dtype=np.int16)
    levels = np.arange(low, 2)
    acc = np.repeat(values, len(levels))[None, :, None].repeat(CHANNELS, axis=2)  # [1, P, C]
    start = np.tile(levels, len(values))[:, None].repeat(CHANNELS, axis=1)
    scalar, table = run_both(np.ascontiguousarray(acc), start, gain, offset, beta_shift + 1, beta_shift, low, 1,
                             zero_reset, limit)
    for expected, got in zip(scalar, table, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert 0 < scalar[0].mean() < 1  # both outcomes occur


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_sequences_over_steps_and_positions(dtype: type) -> None:
    """Many steps from rest: the levels carried from step to step give the scalar kernel's spikes."""
    rng = np.random.default_rng(3)
    gain, offset = gains_and_offsets(rng)
    limit = 2**15 - 1 if dtype == np.int16 else 2**31 - 1
    acc = rng.integers(-300, 300, size=(20, 11, CHANNELS)).astype(dtype)
    if dtype == np.int32:
        acc[0, 0] = (limit, -limit, *acc[0, 0, 2:])  # the range's ends
    start = np.zeros((11, CHANNELS), dtype=np.int64)
    for zero_reset in (True, False):
        scalar, table = run_both(acc, start, gain * 0.05, offset * 0.2, 2, 1, -1, 1, zero_reset, limit)
        for expected, got in zip(scalar, table, strict=True):
            np.testing.assert_array_equal(got, expected)
        assert scalar[0].any()


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
@pytest.mark.parametrize("channels", [4, 8, 16, 24])
def test_few_channels_run_across_positions(dtype: type, channels: int) -> None:
    """Fewer channels than a vector's lanes (32 int16, 16 int32): where they divide the lanes, the table repeats
    them and the kernel takes a vector across positions, 13 positions leaving a partial vector (24 channels, and
    16 in int32: one neuron at a time, as before); the scalar kernel's spikes, levels and events either way."""
    rng = np.random.default_rng(channels)
    gain, offset = gains_and_offsets(rng, channels)
    limit = 2**15 - 1 if dtype == np.int16 else 2**31 - 1
    acc = rng.integers(-300, 300, size=(9, 13, channels)).astype(dtype)
    start = rng.integers(-1, 2, size=(13, channels))
    for zero_reset in (True, False):
        scalar, table = run_both(acc, start, gain * 0.05, offset * 0.2, 2, 1, -1, 1, zero_reset, limit)
        for expected, got in zip(scalar, table, strict=True):
            np.testing.assert_array_equal(got, expected)
        assert scalar[0].any() and not scalar[0].all()


def test_bounds_by_hand() -> None:
    """A(acc) = ⌈(acc·0.5 + 0.25)·4⌉ = 2·acc + 1: A ≤ v ⟺ acc ≤ ⌊(v − 1)/2⌋, clipped to [−limit − 1, limit]."""
    gain, offset = np.array([0.5]), np.array([0.25])
    targets = np.array([[-100], [-3], [0], [1], [2], [7], [100]])
    assert fixed_point(np.array([-2, 0, 3]), 0.5, 0.25, 2).tolist() == [-3, 1, 7]
    assert bounds(gain, offset, 2, targets, 10)[:, 0].tolist() == [-11, -2, -1, 0, 0, 3, 10]


def test_level_thresholds_by_hand() -> None:
    """f = 2, θ·2^f = 4, levels −1…1: spike H > 4; level ≥ 0 ⟺ R > 2 − 4 = −2, level ≥ 1 ⟺ R > 2."""
    assert level_thresholds(2, 4, -1, 1, True) == [4, -2, 2]
    assert level_thresholds(2, 4, -1, 1, False) == [4, -2, 2, 2, 6]
    assert reset_level(2, -1, 1) == 0 and reset_level(2, 1, 1) == 1


def test_negative_gain_is_refused() -> None:
    with pytest.raises(ValueError, match="gain ≥ 0"):
        lif_table(np.array([-1.0]), np.zeros(1), 2, 1, 4, -1, 1, True, 100, np.int16)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_a_pooling_layer_counts_its_spikes_per_window(dtype: type) -> None:
    """A 5 × 7 map pooled 2 × 2 (its last row and column in no window): the LIF kernels add each spike to its
    window's count instead of listing it, with the spikes of the layer that does not pool; `pool_grid` lists the
    nonzero counts window by window, channels ascending, and leaves the grid zero."""
    rng = np.random.default_rng(5)
    gain, offset = gains_and_offsets(rng)
    limit = 2**15 - 1
    height, width, steps = 5, 7, 3
    acc = rng.integers(-300, 300, size=(steps, height * width, CHANNELS)).astype(dtype)
    y, x = np.divmod(np.arange(height * width), width)
    cell_of = np.where((y < 4) & (x < 6), (y // 2) * 3 + x // 2, -1).astype(np.int32)
    start = np.zeros((height * width, CHANNELS), dtype=np.int64)
    plain = run_both(acc, start, gain * 0.05, offset * 0.2, 2, 1, -1, 1, True, limit)
    pooled = run_both(acc, start, gain * 0.05, offset * 0.2, 2, 1, -1, 1, True, limit, cell_of, 6)
    spikes = plain[0][0].reshape(steps, height, width, CHANNELS).astype(np.int64)
    counts = spikes[:, :4, :6].reshape(steps, 2, 2, 3, 2, CHANNELS).sum(axis=(2, 4)).reshape(steps, -1)
    assert counts.max() > 1 and (counts == 0).any()
    for path, (expected, got) in enumerate(zip(plain, pooled, strict=True)):
        np.testing.assert_array_equal(got[0], expected[0])  # same spikes and levels
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[2], 0)  # no events listed
        np.testing.assert_array_equal(got[6], counts)
        assert got[5] == spikes[:, :4, :6].sum(), path  # returned: the spikes pooled
    grid = counts.astype(dtype)
    starts = np.zeros(steps + 1, dtype=np.int64)
    pos, chan, values = (np.zeros(grid.size + 16, dtype=np.int32) for _ in range(3))
    kernels.pool_grid(grid, CHANNELS, starts, pos, chan, values)
    step, flat = np.nonzero(counts)
    assert starts.tolist() == [0, *np.cumsum(np.bincount(step, minlength=steps)).tolist()]
    n = starts[-1]
    np.testing.assert_array_equal(pos[:n], flat // CHANNELS)
    np.testing.assert_array_equal(chan[:n], flat % CHANNELS)
    np.testing.assert_array_equal(values[:n], counts[step, flat])
    assert not grid.any()
