"""Compiled kernels (numba) of the event-driven engine (`event_engine`): gathers, pooling and membrane updates.

Every layer works on one sample's window of steps at once, one step after another. Maps are channels-last:
neuron (y, x, c) of an H × W × C map sits at position p = y·W + x, flat index p·C + c.

Events are step-major lists: the events of step t are the (position, channel) pairs
`pos[i], chan[i]` for starts[t] ≤ i < starts[t + 1] (ascending for LIF output), with integer `values` when they
come from average pooling (the spikes pooled there; the layer's gain holds the 1/k²), else value 1.

- `conv_gather` / `linear_gather`: output-stationary. For each step and output neuron, the weight rows of the
  events that reach it are summed in up to four 512-bit registers (`latency.simd`: 128 int16 outputs at once)
  and stored once; the sum visits exactly the events × true fan-out (the SynOps, returned). The conv sorts a
  step's events by position first, so that one kernel row's inputs form one contiguous stretch (see
  `conv_gather`). A scatter (each event adding into memory) was measured 2-4× slower: every add was a load and
  a store waiting on the one before.
- `frame_events`: the nonzero pixels of count frames (the first layer's input) as events, counts as values.
- `pool_events`: k × k average pooling (stride k) of one layer's spikes, step by step: one increment per spike
  into its window's counter; the windows touched become the step's output events with the counts as values; the
  counters are cleared through the event list, so the work is ∝ spikes, not ∝ map size.
- `lif_integer` / `lif_float`: the membrane update of `neurons.dynamics` over the accumulator, current
  x = acc·gain[c] + offset[c] (float64; the folded weight step and BatchNorm), lane-parallel over the channels of a
  position, step by step. The integer kernel is `neurons.integer`'s fixed-point update (quantized membranes with
  β = 2^−k); the float kernel repeats `neurons.kernels`' float32 (or float64) step operation for operation. Both
  optionally record the spikes [T, P·C] and write the next layer's events (∝ spikes: see `_emit`).
- `lif_table`: the same integer update for an integer accumulator and few membrane levels, as compares of acc
  with per-channel, per-level thresholds (`latency.lif_tables`), 32 int16 (or 16 int32) neurons per vector.

Kernels index arrays element by element rather than take a row view per position or event: each view costs
two atomic reference-count updates, which measured as much as the work.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from sparsity_latency.latency.simd import (
    popcount,
    trailing_zeros,
    vadd,
    vbits,
    vcompress,
    veq,
    vgt,
    vload,
    vscale,
    vselect,
    vsplat,
    vstore,
    vsub,
    vzero,
)

INPUT_LIMIT = 2.0**40  # as `neurons.integer`: beyond this every decision is the one at the limit


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled(w, v, has_values):
    """v · w for pooled events; spikes (value 1) need no multiply."""
    return vscale(w, v) if has_values else w


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate(a, weight, rows, values, has_values, lo, hi, row0, columns, offset, vectors):
    """a (4 vectors; the first `vectors` used) += value_i · weight row (row0 + rows[i]), columns offset … offset +
    vectors·lanes, for lo ≤ i < hi; weight is [rows, columns] flat."""
    a0, a1, a2, a3 = a
    width = 64 // weight.itemsize
    for i in range(lo, hi):
        base = (row0 + rows[i]) * columns + offset
        v = values[i] if has_values else 1
        a0 = vadd(a0, _scaled(vload(weight, base), v, has_values))
        if vectors > 1:
            a1 = vadd(a1, _scaled(vload(weight, base + width), v, has_values))
        if vectors > 2:
            a2 = vadd(a2, _scaled(vload(weight, base + 2 * width), v, has_values))
        if vectors > 3:
            a3 = vadd(a3, _scaled(vload(weight, base + 3 * width), v, has_values))
    return a0, a1, a2, a3


@numba.njit(cache=True, nogil=True, inline="always")
def _store(out, at, a, vectors) -> None:
    width = 64 // out.itemsize
    vstore(out, at, a[0])
    if vectors > 1:
        vstore(out, at + width, a[1])
    if vectors > 2:
        vstore(out, at + 2 * width, a[2])
    if vectors > 3:
        vstore(out, at + 3 * width, a[3])


@numba.njit(cache=True, nogil=True, inline="always")
def _tail(weight, rows, values, has_values, lo, hi, row0, columns, column, total):
    """total + Σ value_i · weight[(row0 + rows[i])·columns + column] (weight flat; the columns past the last whole
    vector)."""
    for i in range(lo, hi):
        w = weight[(row0 + rows[i]) * columns + column]
        total += values[i] * w if has_values else w
    return total


@numba.njit(cache=True, nogil=True)
def _by_position(starts, pos, chan, values, has_values, t, key_of, first, key, value):
    """The events (p, c) of step t sorted by position: position q's are key[first[q]:first[q + 1]] (and value[…]),
    key = key_of[p] + c. `first` has one entry per position plus one."""
    first[:] = 0
    for e in range(starts[t], starts[t + 1]):
        first[pos[e] + 1] += 1
    for q in range(1, len(first)):
        first[q] += first[q - 1]
    for e in range(starts[t], starts[t + 1]):
        q = pos[e]
        k = first[q]
        key[k] = key_of[q] + chan[e]
        if has_values:
            value[k] = values[e]
        first[q] = k + 1
    for q in range(len(first) - 1, 0, -1):  # placing advanced each start to the next one's; shift back
        first[q] = first[q - 1]
    first[0] = 0


@numba.njit(cache=True, nogil=True)
def conv_gather(starts, pos, chan, values, has_values, in_height, in_width, in_channels, kernel, stride, pad, weight,
                acc, key_of, first, key, value):
    """acc[t, oy, ox, :] = Σ value · weight[ky, kx, c, :] over the events (y, x, c) of step t with
    y = oy·stride − pad + ky, x = ox·stride − pad + kx, for every output neuron (written in full, zero where no
    event arrives). Returns the accumulates (SynOps).

    weight [k·k·C_in, C_out] has rows (ky·k + kx)·C_in + c. Each event carries key = (y·k + x)·C_in + c
    (key_of [H·W] holds (y·k + x)·C_in), so its row for output (oy, ox) is key − ((oy·s − pad)·k + ox·s − pad)·C_in:
    the inputs of one kernel row (ky) are the events of consecutive positions, one contiguous stretch of the
    position-sorted list, summed in one loop. first [H·W + 1], key / value [H·W·C_in] are scratch.
    """
    columns = weight.shape[1]
    width = 64 // weight.itemsize
    whole = columns - columns % width
    steps, out_height, out_width = acc.shape[0], acc.shape[1], acc.shape[2]
    flat, cells = acc.reshape(-1), weight.reshape(-1)
    ops = 0
    for t in range(steps):
        _by_position(starts, pos, chan, values, has_values, t, key_of, first, key, value)
        for oy in range(out_height):
            y0 = oy * stride - pad
            y_lo, y_hi = max(y0, 0), min(y0 + kernel, in_height)  # the kernel's rows inside the map
            for ox in range(out_width):
                x0 = ox * stride - pad
                x_lo, x_hi = max(x0, 0), min(x0 + kernel, in_width)  # the kernel's columns inside the map
                row0 = -(y0 * kernel + x0) * in_channels
                at = ((t * out_height + oy) * out_width + ox) * columns
                for y in range(y_lo, y_hi):
                    ops += first[y * in_width + x_hi] - first[y * in_width + x_lo]
                for offset in range(0, whole, 4 * width):
                    vectors = min(4, (whole - offset) // width)
                    a = vzero(weight), vzero(weight), vzero(weight), vzero(weight)
                    for y in range(y_lo, y_hi):
                        a = _accumulate(a, weight, key, value, has_values, first[y * in_width + x_lo],
                                        first[y * in_width + x_hi], row0, columns, offset, vectors)
                    _store(flat, at + offset, a, vectors)
                for column in range(whole, columns):
                    total = weight.dtype.type(0)
                    for y in range(y_lo, y_hi):
                        total = _tail(cells, key, value, has_values, first[y * in_width + x_lo],
                                      first[y * in_width + x_hi], row0, columns, column, total)
                    flat[at + column] = total
    return ops * columns


@numba.njit(cache=True, nogil=True)
def linear_gather(starts, pos, chan, values, has_values, channels, weight, acc, rows):
    """acc[t, :] = Σ value · weight[p·C + c, :] over the events (p, c) of step t (C = `channels`: the input map's
    channels-last order); weight [F_in, F_out], acc [T, F_out], rows [events of a step] scratch. Returns the
    accumulates."""
    columns = weight.shape[1]
    width = 64 // weight.itemsize
    whole = columns - columns % width
    flat, cells = acc.reshape(-1), weight.reshape(-1)
    ops = 0
    for t in range(acc.shape[0]):
        lo, hi = starts[t], starts[t + 1]
        for e in range(lo, hi):
            rows[e - lo] = pos[e] * channels + chan[e]
        step_values = values[lo:hi] if has_values else values
        for offset in range(0, whole, 4 * width):
            vectors = min(4, (whole - offset) // width)
            a = _accumulate((vzero(weight), vzero(weight), vzero(weight), vzero(weight)), weight, rows, step_values,
                            has_values, 0, hi - lo, 0, columns, offset, vectors)
            _store(flat, t * columns + offset, a, vectors)
        for column in range(whole, columns):
            flat[t * columns + column] = _tail(cells, rows, step_values, has_values, 0, hi - lo, 0, columns, column,
                                               weight.dtype.type(0))
        ops += hi - lo
    return ops * columns


@numba.njit(cache=True, nogil=True)
def pool_events(starts, pos, chan, cell_of, channels, grid, out_starts, out_pos, out_chan, out_values):
    """Average pooling (stride = kernel) of spike events into events whose values are the spikes per window.

    cell_of [H·W] is the window of each input position (−1: no window covers it); `grid` [windows·C] (int32)
    must be zero and is left zero; out_pos / out_chan need one spare slot (an event is written before it is
    kept). A step's output events are the (window, channel) pairs its spikes touched, in the order first
    touched. Returns the accumulates done (spikes inside a window).
    """
    ops = 0
    n = 0
    out_starts[0] = 0
    for t in range(len(starts) - 1):
        first = n
        for e in range(starts[t], starts[t + 1]):
            cell = cell_of[pos[e]]
            if cell < 0:
                continue
            q = cell * channels + chan[e]
            count = grid[q]
            grid[q] = count + 1
            out_pos[n] = cell  # branch-free: kept (the list advances) only at the window's first spike
            out_chan[n] = chan[e]
            n += count == 0
            ops += 1
        for e in range(first, n):
            q = out_pos[e] * channels + out_chan[e]
            out_values[e] = grid[q]
            grid[q] = 0
        out_starts[t + 1] = n
    return ops


@numba.njit(cache=True, nogil=True)
def frame_events(frames, starts, pos, chan, values):
    """The nonzero pixels of count frames [T, P, C] (integer-valued floats) as step-major events with the counts
    as values (position-major, then channel, within a step). Returns whether any count exceeds 1."""
    n = 0
    above_one = False
    starts[0] = 0
    for t in range(frames.shape[0]):
        for p in range(frames.shape[1]):
            for c in range(frames.shape[2]):
                count = frames[t, p, c]
                if count != 0:
                    pos[n] = p
                    chan[n] = c
                    values[n] = np.int32(count)
                    above_one |= count > 1
                    n += 1
        starts[t + 1] = n
    return above_one


PACK = np.uint64(0x0102040810204080)  # w·PACK >> 56 packs the eight 0/1 bytes of w into one byte, lowest first


@numba.njit(cache=True, nogil=True, inline="always")
def _emit(fired, words, channels, t, p, record, spikes, pos, chan, n):
    """Record a position's spikes in spikes[t] (if asked) and append its channels that fired to the event list;
    new length.

    `fired` holds one 0/1 byte per channel, zero-padded to a multiple of 64; `words` is the same memory as
    uint64. The channels are taken 64 at a time as a bit mask (eight bytes packed by one multiply) whose set
    bits are visited lowest first, so the work is ∝ spikes, not ∝ channels."""
    if record:
        for c in range(channels):
            spikes[t, p * channels + c] = fired[c]
    for base in range(0, channels, 64):
        mask = np.uint64(0)
        for k in range(8):
            mask |= ((words[base // 8 + k] * PACK) >> np.uint64(56)) << np.uint64(8 * k)
        while mask:
            pos[n] = p
            chan[n] = base + np.int64(trailing_zeros(mask))
            n += 1
            mask &= mask - np.uint64(1)
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _fired_flags(channels):
    """One zeroed 0/1 byte per channel, padded to a multiple of 64, and the same memory as uint64 words (`_emit`)."""
    fired = np.zeros((channels + 63) // 64 * 64, dtype=np.uint8)
    return fired, fired.view(np.uint64)


@numba.njit(cache=True, nogil=True)
def lif_integer(acc, gain, offset, frac, shift, threshold, low, high, zero_reset, state, record, spikes, starts, pos,
                chan):
    """`neurons.integer`'s fixed-point LIF over x = acc·gain[c] + offset[c]; threshold given as θ·2^f.

    acc [T, P, C]; state [P, C] (the stored levels, carried between windows); spikes [T, P·C] (uint8) written when
    `record`; the events of step t go to pos/chan[starts[t]:starts[t + 1]].
    """
    steps, positions, channels = acc.shape
    scale = 2.0**frac
    half = np.int64(1) << (frac - 1)
    fired, words = _fired_flags(channels)
    n = starts[0] = 0
    for t in range(steps):
        for p in range(positions):
            for c in range(channels):
                x = acc[t, p, c] * gain[c] + offset[c]
                x = min(max(x, -INPUT_LIMIT), INPUT_LIMIT)
                h = ((np.int64(state[p, c]) << frac) >> shift) + np.int64(math.ceil(x * scale))
                f = h > threshold
                h = (0 if f else h) if zero_reset else (h - threshold if f else h)
                state[p, c] = min(max(-((half - h) >> frac), low), high)
                fired[c] = f
            n = _emit(fired, words, channels, t, p, record, spikes, pos, chan, n)
        starts[t + 1] = n
    return n


@numba.njit(cache=True, nogil=True)
def lif_float(acc, gain, offset, beta, threshold, quantized, low, high, zero_reset, state, record, spikes, starts,
              pos, chan):
    """`neurons.kernels`' LIF step (no input rounding) in the float type of `state` ([P, C], the model's float32
    or float64, zeros at the start; the scalars of that type too), over x = acc·gain[c] + offset[c] rounded to
    that type. Layout and outputs as `lif_integer`."""
    steps, positions, channels = acc.shape
    value = state.dtype.type
    zero, half = value(0), value(0.5)
    fired, words = _fired_flags(channels)
    n = starts[0] = 0
    for t in range(steps):
        for p in range(positions):
            for c in range(channels):
                current = value(acc[t, p, c] * gain[c] + offset[c])
                h = state[p, c] * beta + current
                f = h > threshold
                r = (zero if f else h) if zero_reset else (h - threshold if f else h)
                if quantized:
                    r = min(max(np.ceil(r - half), low), high)
                state[p, c] = r
                fired[c] = f
            n = _emit(fired, words, channels, t, p, record, spikes, pos, chan, n)
        starts[t + 1] = n
    return n


LANE = np.arange(16, dtype=np.int32)  # lane numbers of one int32 vector


@numba.njit(cache=True, nogil=True, inline="always")
def _append(bits, width, p, offset, pos, chan, n):
    """Append the events (p, offset + i) for the set bits i of `bits` (`width` lanes) to pos / chan at n, 16 lanes
    at a time without a branch per spike: the channels by one compress-store, the position by a full vector
    store (pos needs 16 spare slots past the last event). New length."""
    for half in range(0, width, 16):
        chunk = (bits >> np.uint64(half)) & np.uint64(0xFFFF)
        vstore(pos, n, vsplat(pos, p))
        vcompress(chan, n, vadd(vload(LANE, 0), vsplat(chan, offset + half)), chunk)
        n += popcount(chunk)
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _pick(table, stored, at):
    """The threshold at flat offset `at` of the tables (level `low`), of each lane's stored level: the levels
    follow one vector apart; stored[k − 1] holds the lanes whose level is low + k."""
    width = 64 // table.itemsize
    bound = vload(table, at)
    for k in range(1, 4):
        bound = vselect(stored[k - 1], vload(table, at + k * width), bound)
    return bound


@numba.njit(cache=True, nogil=True, inline="always")
def _level(a, table, stored, low, at):
    """The level low + #{j : a > threshold j} over the three thresholds from flat offset `at` on."""
    width = 64 // table.itemsize
    level = vsplat(a, low)
    for j in range(3):
        level = vsub(level, vgt(a, _pick(table, stored, at + 4 * j * width)))  # a true mask is −1
    return level


@numba.njit(cache=True, nogil=True)
def lif_table(acc, table, low, zero_reset, reset, state, record, spikes, starts, pos, chan):
    """`lif_integer` on an integer accumulator by threshold tables (`latency.lif_tables.lif_table`,
    [blocks, 7, 4, lanes]).

    acc [T, P, C] (int16 or int32), table and state [P, C] (the stored levels) of acc's type; `reset` is the
    level a zero reset stores. Outputs as `lif_integer`; pos / chan need 16 spare slots (`_append`). The loops
    over levels and thresholds have fixed counts (the table is padded), so that each vector's update is
    straight-line code reading one contiguous block of thresholds.
    """
    steps, positions, channels = acc.shape
    width = 64 // acc.itemsize
    whole = channels - channels % width
    block = table.shape[1] * table.shape[2] * width
    flat_acc, flat_state, cells = acc.reshape(-1), state.reshape(-1), table.reshape(-1)
    n = starts[0] = 0
    for t in range(steps):
        for p in range(positions):
            for offset in range(0, whole, width):
                at = offset // width * block
                a = vload(flat_acc, (t * positions + p) * channels + offset)
                m = vload(flat_state, p * channels + offset)
                stored = (veq(m, vsplat(m, low + 1)), veq(m, vsplat(m, low + 2)), veq(m, vsplat(m, low + 3)))
                fired = vgt(a, _pick(cells, stored, at))
                after = _level(a, cells, stored, low, at + 4 * width)
                after = vselect(fired, vsplat(m, reset) if zero_reset else _level(
                    a, cells, stored, low, at + 16 * width), after)
                vstore(flat_state, p * channels + offset, after)
                bits = vbits(fired)
                if record:
                    for lane in range(width):
                        spikes[t, p * channels + offset + lane] = (bits >> np.uint64(lane)) & np.uint64(1)
                n = _append(bits, width, p, offset, pos, chan, n)
            for c in range(whole, channels):  # the channels past the last whole vector
                a, k, b, lane = acc[t, p, c], state[p, c] - low, c // width, c % width
                fired = a > table[b, 0, k, lane]
                after = low
                for j in range(1, 4):
                    after += a > table[b, j + (3 if fired and not zero_reset else 0), k, lane]
                state[p, c] = reset if fired and zero_reset else after
                if record:
                    spikes[t, p * channels + c] = fired
                if fired:
                    pos[n] = p
                    chan[n] = c
                    n += 1
        starts[t + 1] = n
    return n
