"""Threshold tables: the integer LIF update of `neurons.integer` as compares on an integer accumulator.

An event-fed layer with integer weight codes hands its LIF layer an exact integer sum `acc` per neuron; the
current is x = acc·gain[c] + offset[c] and the fixed-point update (`event_kernels.lif_integer`) is

    H = S(M) + A_c(acc),   S(M) = (M << f) >> k,   A_c(acc) = ⌈clamp(x, ±2^40)·2^f⌉.

Every outcome of the step is a test H > K for a constant K: the spike (K = θ·2^f), and, with
q = −((2^(f−1) − R) >> f) the level the membrane rounds to, q ≥ L ⟺ R > 2^(f−1) + (L − 1)·2^f for each level L
above the lowest, where R = H (no spike), R = H − θ·2^f (subtract reset) or R = 0 (zero reset: one fixed level).
For a channel with gain ≥ 0, A_c is nondecreasing in acc (every float64 operation in it rounds monotonically),
so H > K ⟺ acc > B_c(K − S(M)), with B_c(v) the largest acc of the accumulator's range with A_c(acc) ≤ v. The
tables hold B_c for each stored level M and each K, found by bisection over the very float64 formula the
scalar kernel evaluates: the compares give the scalar kernel's decisions for every acc in range (tested
exhaustively). Channels with gain < 0 are made nondecreasing by negating their weight columns and gain.

With few levels (ternary: 3, two bits: 4) a step is a handful of vector compares and selects per 32 neurons
(`event_kernels.lif_table`), instead of float64 arithmetic per neuron.
"""

from __future__ import annotations

import numpy as np

from sparsity_latency.latency.simd import lanes as vector_lanes
from sparsity_latency.neurons.integer import INPUT_LIMIT

MAX_TABLE_LEVELS = 4  # more levels cost more selects per step than the float64 update they replace


def fixed_point(acc: np.ndarray, gain: np.ndarray, offset: np.ndarray, frac: int) -> np.ndarray:
    """A_c(acc) = ⌈clamp(acc·gain + offset, ±2^40)·2^f⌉ (int64), as `event_kernels.lif_integer` computes it."""
    x = np.clip(acc.astype(np.float64) * gain + offset, -INPUT_LIMIT, INPUT_LIMIT)
    return np.ceil(x * 2.0**frac).astype(np.int64)


def bounds(gain: np.ndarray, offset: np.ndarray, frac: int, targets: np.ndarray, limit: int) -> np.ndarray:
    """B_c(v): the largest acc in [−limit, limit] with A_c(acc) ≤ v, or −limit − 1 if none; targets [..., C]."""
    gain, offset = np.broadcast_to(gain, targets.shape), np.broadcast_to(offset, targets.shape)
    low = np.full(targets.shape, -limit - 1, dtype=np.int64)  # A ≤ v holds here (or nowhere: stays)
    high = np.full(targets.shape, limit + 1, dtype=np.int64)  # A ≤ v fails here (or everywhere below)
    while (high - low > 1).any():
        middle = (low + high) // 2
        below = fixed_point(middle, gain, offset, frac) <= targets
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return low


def level_thresholds(frac: int, threshold: int, low: int, high: int, zero_reset: bool) -> list[int]:
    """The constants K of the tests H > K: the spike first, then one per level above `low` for R = H, then
    (subtract reset) one per level for R = H − θ·2^f. `threshold` is θ·2^f."""
    half = 1 << (frac - 1)
    levels = [half + ((level - 1) << frac) for level in range(low + 1, high + 1)]
    return [threshold, *levels, *([] if zero_reset else [threshold + k for k in levels])]


def reset_level(frac: int, low: int, high: int) -> int:
    """The level a zero reset (R = 0) stores."""
    return min(max(-((1 << (frac - 1)) >> frac), low), high)


def lif_table(gain: np.ndarray, offset: np.ndarray, frac: int, shift: int, threshold: int, low: int, high: int,
              zero_reset: bool, limit: int, dtype: type) -> np.ndarray:
    """Tables [blocks, 2·L − 1, L, lanes] of `dtype` (L = MAX_TABLE_LEVELS, lanes = one 512-bit vector of dtype,
    channel c in block c // lanes, lane c % lanes): entry [·, j, M − low, ·] = B_c(K_j − S(M)).

    Threshold j = 0 is the spike; j = 1… the levels above `low` without a spike; j = L… the levels after a
    subtract reset (`level_thresholds`). The table is padded to the widest case, so that the kernel's loops have
    fixed counts: a missing level's thresholds are `limit` (never exceeded), a missing stored level repeats the
    last one (never selected), channels past C fill the last block, or, when C divides a vector's lanes, the
    channels repeat across it (lane i: channel i mod C; `event_kernels.lif_table` runs such a vector across
    positions). One vector's thresholds are one contiguous block. gain ≥ 0 for every channel (see the module
    docstring); limit bounds |acc| and must fit `dtype`.
    """
    if (gain < 0).any():
        raise ValueError("threshold tables need gain ≥ 0: negate the channel's weights and gain first")
    levels = high - low + 1
    if levels > MAX_TABLE_LEVELS:
        raise ValueError(f"threshold tables take at most {MAX_TABLE_LEVELS} membrane levels, not {levels}")
    lanes = vector_lanes(dtype)
    if len(gain) < lanes and lanes % len(gain) == 0:  # the channels repeated across one vector
        gain, offset = np.tile(gain, lanes // len(gain)), np.tile(offset, lanes // len(gain))
    constants = np.array(level_thresholds(frac, threshold, low, high, zero_reset), dtype=np.int64)
    stored = np.array([(level << frac) >> shift for level in range(low, high + 1)], dtype=np.int64)
    targets = constants[:, None, None] - stored[None, :, None] + np.zeros(len(gain), dtype=np.int64)
    found = bounds(gain, offset, frac, targets, limit)  # [K, levels, C]
    blocks = -(-len(gain) // lanes)
    table = np.full((2 * MAX_TABLE_LEVELS - 1, MAX_TABLE_LEVELS, blocks * lanes), limit, dtype=np.int64)
    table[:levels, :levels, :len(gain)] = found[:levels]
    if not zero_reset:
        table[MAX_TABLE_LEVELS:MAX_TABLE_LEVELS + levels - 1, :levels, :len(gain)] = found[levels:]
    table[:, levels:] = table[:, levels - 1:levels]
    return np.ascontiguousarray(table.reshape(*table.shape[:2], blocks, lanes).transpose(2, 0, 1, 3)).astype(dtype)
