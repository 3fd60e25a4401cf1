"""Threshold-table LIF (`latency.lif_tables`, `event_kernels.lif_table`) against the scalar fixed-point kernel."""

from __future__ import annotations

import numpy as np
import pytest

from sparsity_latency.latency import event_kernels as kernels
from sparsity_latency.latency.lif_tables import bounds, fixed_point, level_thresholds, lif_table, reset_level

CHANNELS = 37  # one int16 vector (32 lanes) or two int32 vectors (16) plus a scalar tail


def gains_and_offsets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    gain = rng.choice([0.0, 1e-4, 3e-3, 0.02, 0.7, 5.0], CHANNELS) * rng.random(CHANNELS)
    gain[:3] = (0.0, 2.0**-7, 1.0 / 3)  # no slope; a power of two (exact ties with 2^f); a non-dyadic step
    return gain, rng.normal(0, 2, CHANNELS)


def run_both(acc: np.ndarray, start: np.ndarray, gain: np.ndarray, offset: np.ndarray, frac: int, shift: int,
             low: int, high: int, zero_reset: bool, limit: int) -> tuple[tuple, tuple]:
    """(spikes, final levels, events) of lif_integer and lif_table from the stored levels `start` [P, C]."""
    threshold = 1 << frac  # θ = 1: the levels' top
    steps, positions, channels = acc.shape
    outputs = []
    for table_path in (False, True):
        state = start.astype(acc.dtype if table_path else np.int32)
        spikes = np.zeros((steps, positions * channels), dtype=np.uint8)
        starts = np.zeros(steps + 1, dtype=np.int64)
        pos, chan = (np.zeros(acc.size + 16, dtype=np.int32) for _ in range(2))  # 16 spare slots
        if table_path:
            table = lif_table(gain, offset, frac, shift, threshold, low, high, zero_reset, limit, acc.dtype.type)
            n = kernels.lif_table(acc, table, low, zero_reset, reset_level(frac, low, high), state, True, spikes,
                                  starts, pos, chan)
        else:
            n = kernels.lif_integer(acc, gain, offset, frac, shift, threshold, low, high, zero_reset, state, True,
                                    spikes, starts, pos, chan)
        outputs.append((spikes, state.astype(np.int64), starts, pos[:n], chan[:n]))
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
