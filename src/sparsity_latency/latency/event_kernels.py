"""Compiled kernels (numba) of the event-driven engine (`event_engine`): gathers, pooling and membrane updates.

Every layer works on one sample's window of steps at once, one step after another. Maps are channels-last:
neuron (y, x, c) of an H × W × C map sits at position p = y·W + x, flat index p·C + c.

Events are step-major lists: the events of step t are the (position, channel) pairs
`pos[i], chan[i]` for starts[t] ≤ i < starts[t + 1], ascending by position (every kernel writing events keeps
that order; `conv_gather` relies on it), with integer `values` when they come from average pooling (the spikes
pooled there; the layer's gain holds the 1/k²) or count frames, else value 1.

- `conv_gather` / `linear_gather`: output-stationary. For each step and output neuron, the weight rows of the
  events that reach it are summed in up to four 512-bit registers (`latency.simd`: 128 int16 outputs at once;
  int8 weights are widened as they load) and stored once; the sum visits exactly the events × true fan-out
  (the SynOps, returned). A step's events come in position order, so one kernel row's inputs form one
  contiguous stretch (see `conv_gather`), found by one pass over the events (`_by_position`). A scatter (each
  event adding into memory) was measured 2-4× slower: every add was a load and a store waiting on the one
  before. Pooled inputs (values 1…4) add a pre-scaled copy of the weight row (`fold`: the copies for values
  1, 2, … follow one another) instead of multiplying.
- `conv_scatter`: the same sums input-stationary (each event adds into the outputs it reaches, its taps looked
  up per position: no division per event or tap), for a layer whose output neurons receive too few events to pay
  for visiting their kernel rows (the frame-fed first layer).
- `conv_lookup`: the same sums for binary inputs of few channels by table look-up: one table row per output neuron
  and kernel row, indexed by that row's input pattern; the engine takes it over the scatter when the events are
  many (its work ∝ output neurons, the scatter's ∝ events).
- `frame_events`: the nonzero pixels of count frames (the first layer's input) as events, counts as values.
- `pool_grid`: k × k average pooling (stride k) of one layer's spikes. The LIF kernels of a layer that pools add
  each neuron's spike into its window's count (`cell_of` [H·W]: the window of each position, −1 where none covers
  it; `grid` [T, windows·C]: zero), in the same pass as the membrane update (one vector add per 32 neurons on the
  table path), instead of writing spike events; `pool_grid` then turns the nonzero counts into the pool's events,
  512 bits at a time, and clears the grid. Its work is ∝ windows / 32 plus the pooled events.
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
    load_word,
    popcount,
    trailing_zeros,
    vadd,
    vbits,
    vcompress,
    veq,
    vgt,
    vload,
    vload_as,
    vscale,
    vselect,
    vsplat,
    vstore,
    vsub,
    vwidth,
    vzero,
)

INPUT_LIMIT = 2.0**40  # as `neurons.integer`: beyond this every decision is the one at the limit
PACK = np.uint64(0x0102040810204080)  # w·PACK >> 56 packs the eight 0/1 bytes of w into one byte, lowest first


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled(w, v, has_values):
    """v · w for pooled events; spikes (value 1) need no multiply."""
    return vscale(w, v) if has_values else w


@numba.njit(cache=True, nogil=True, inline="always")
def _accumulate(a, weight, at, values, multiply, lo, hi, shift, vectors, out):
    """a (4 vectors of `out`'s type; the first `vectors` used) += value_i · weight[at[i] + shift …] (one vector each,
    consecutive; int8 weights sign-extended to the accumulator's type as they load), for lo ≤ i < hi: `at` holds
    each event's flat offset into `weight` (its row times the columns); values multiply only when `multiply` (else
    every event counts once, its value already folded into `at`)."""
    a0, a1, a2, a3 = a
    width = vwidth(out)
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wraparound per event
        base = at[i] + shift
        v = values[i] if multiply else 1
        a0 = vadd(a0, _scaled(vload_as(weight, base, out), v, multiply))
        if vectors > 1:
            a1 = vadd(a1, _scaled(vload_as(weight, base + width, out), v, multiply))
        if vectors > 2:
            a2 = vadd(a2, _scaled(vload_as(weight, base + 2 * width, out), v, multiply))
        if vectors > 3:
            a3 = vadd(a3, _scaled(vload_as(weight, base + 3 * width, out), v, multiply))
    return a0, a1, a2, a3


@numba.njit(cache=True, nogil=True, inline="always")
def _store(out, at, a, vectors) -> None:
    width = vwidth(out)
    vstore(out, at, a[0])
    if vectors > 1:
        vstore(out, at + width, a[1])
    if vectors > 2:
        vstore(out, at + 2 * width, a[2])
    if vectors > 3:
        vstore(out, at + 3 * width, a[3])


@numba.njit(cache=True, nogil=True, inline="always")
def _tail(weight, at, values, multiply, lo, hi, shift, total):
    """total + Σ value_i · weight[at[i] + shift] (weight flat: one column past the last whole vector)."""
    for i in range(np.uint64(lo), np.uint64(hi)):
        w = weight[at[i] + shift]
        total += values[i] * w if multiply else w
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _offset(c, v, columns, fold, multiply):
    """The flat weight offset of channel (row) c's event with value v past its position's: v's scaled copy of the
    weights when values are folded (`fold` > 0: the copies follow `fold` elements apart, the first for value 1)."""
    return c * columns + (v - 1) * fold if fold > 0 and not multiply else c * columns


@numba.njit(cache=True, nogil=True)
def _by_position(starts, pos, chan, values, has_values, fold, columns, t, key_of, first, key, value):
    """The events (p, c) of step t by position: position q's are key[first[q]:first[q + 1]] (and value[…]),
    key = key_of[p] + `_offset(c, …)`. `first` has one entry per position plus one. The events come ascending by
    position (every producer writes them so): each event writes its position's end (the last one's stays), and a
    running max carries the ends across the positions without events. No branch per event."""
    multiply = has_values and fold == 0
    lo, hi = np.uint64(starts[t]), np.uint64(starts[t + 1])
    first[:] = 0
    for e in range(lo, hi):  # unsigned: no negative-index wraparound per event
        p = np.uint64(pos[e])
        first[p + np.uint64(1)] = e + np.uint64(1) - lo
        key[e - lo] = key_of[p] + _offset(chan[e], values[e] if has_values else 1, columns, fold, multiply)
        if multiply:
            value[e - lo] = values[e]
    for q in range(1, len(first)):
        first[q] = max(first[q], first[q - 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _copy(source, lo, n, target, at):
    """target[at:at + n] = source[lo:lo + n], whole vectors at a time (up to a vector past both ends)."""
    width = vwidth(source)
    vstore(target, at, vload(source, lo))
    if n > width:  # rare when events are sparse: one branch, predictable
        for j in range(width, n, width):
            vstore(target, at + j, vload(source, lo + j))


@numba.njit(cache=True, nogil=True, inline="always")
def _inside(start, kernel, size):
    """The kernel's rows (columns) start … start + kernel that lie inside a map of `size`: lo, hi with lo ≤ hi (an
    empty range where the padding reaches past the kernel)."""
    lo = max(start, 0)
    return lo, max(min(start + kernel, size), lo)


@numba.njit(cache=True, nogil=True)
def conv_gather(starts, pos, chan, values, has_values, fold, in_height, in_width, in_channels, kernel, stride, pad,
                weight, acc, key_of, first, key, value, band, band_value, band_first):
    """acc[t, oy, ox, :] = Σ value · weight[ky, kx, c, :] over the events (y, x, c) of step t with
    y = oy·stride − pad + ky, x = ox·stride − pad + kx, for every output neuron (written in full, zero where no
    event arrives). Returns the accumulates (SynOps).

    weight [k·k·C_in, C_out] has rows (ky·k + kx)·C_in + c; with `fold` > 0 it is [V·k·k·C_in, C_out], the
    weights times 1, 2, … V one after another (`fold` = k·k·C_in·C_out elements apart), and an event of value v
    adds its row of copy v (no multiply). Each event carries key = ((y·k + x)·C_in + c)·C_out (+ its copy's
    offset) (key_of [H·W] holds (y·k + x)·C_in·C_out), so its row for output (oy, ox) starts at flat offset
    key − ((oy·s − pad)·k + ox·s − pad)·C_in·C_out, whatever its kernel row and column.

    Per output row, the events of the input rows its kernel covers (its band) are copied into one list ordered by
    column (`band`, `band_value`; column x's from band_first[x] on): an output neuron's inputs are then one
    contiguous stretch of it, summed in one loop (three loops per neuron, one per kernel row, ended in as many
    mispredicted branches when a row holds a few events). first [H·W + 1], key / value [H·W·C_in + 16] and
    band / band_value [k·W·C_in + 16], band_first [W + 1] are scratch.
    """
    columns = weight.shape[1]
    width = vwidth(acc)
    whole = columns - columns % width
    multiply = has_values and fold == 0
    steps, out_height, out_width = acc.shape[0], acc.shape[1], acc.shape[2]
    flat, cells = acc.reshape(-1), weight.reshape(-1)
    ops = 0
    for t in range(steps):
        _by_position(starts, pos, chan, values, has_values, fold, columns, t, key_of, first, key, value)
        for oy in range(out_height):
            y0 = oy * stride - pad
            y_lo, y_hi = _inside(y0, kernel, in_height)
            n = 0
            for x in range(in_width):
                band_first[x] = n
                for y in range(y_lo, y_hi):
                    lo = first[y * in_width + x]
                    count = first[y * in_width + x + 1] - lo
                    _copy(key, lo, count, band, n)
                    if multiply:
                        _copy(value, lo, count, band_value, n)
                    n += count
            band_first[in_width] = n
            for offset in range(0, columns, 4 * width):  # one pass per 4 vectors of columns (the last: a partial one)
                vectors = min(4, (whole - offset) // width)
                for ox in range(out_width):
                    x0 = ox * stride - pad
                    x_lo, x_hi = _inside(x0, kernel, in_width)
                    lo, hi = band_first[x_lo], band_first[x_hi]
                    if offset == 0:  # the SynOps: the events reaching this neuron, times the columns
                        ops += hi - lo
                    origin = -(y0 * kernel + x0) * in_channels * columns
                    at = ((t * out_height + oy) * out_width + ox) * columns
                    if vectors > 0:
                        a = vzero(flat), vzero(flat), vzero(flat), vzero(flat)
                        a = _accumulate(a, cells, band, band_value, multiply, lo, hi, origin + offset, vectors, flat)
                        _store(flat, at + offset, a, vectors)
                    for column in range(max(offset + vectors * width, whole), min(offset + 4 * width, columns)):
                        flat[at + column] = _tail(cells, band, band_value, multiply, lo, hi, origin + column,
                                                  acc.dtype.type(0))
    return ops * columns


@numba.njit(cache=True, nogil=True)
def conv_scatter(starts, pos, chan, values, has_values, fold, in_channels, kernel, stride, weight, acc, taps):
    """`conv_gather`'s accumulator by the other loop order, input-stationary: each event adds its weight rows
    into the outputs it reaches, one vector load, add and store each (acc is zeroed step by step). Returns the
    SynOps.

    For a map whose positions receive few events (a frame-fed layer: one or two polarity channels), visiting
    every output neuron's kernel rows costs more than the adds. taps [H_in·W_in, 4] hold, per input position: how
    many kernel rows and columns reach an output, the flat weight offset of the first tap (its kernel row and
    column the smallest) and the flat acc offset of the output it reaches (the largest output row and column); each
    further kernel row (column) moves the weight by stride rows (columns) and the output back by one. Weights and
    values as `conv_gather`'s (fold: copies per value; else multiply).
    """
    columns = weight.shape[1]
    width = vwidth(acc)
    whole = columns - columns % width
    multiply = has_values and fold == 0
    out_width = acc.shape[2]
    size = acc.shape[1] * out_width * columns
    flat, cells = acc.reshape(-1), weight.reshape(-1)
    next_x, next_y = stride * in_channels * columns, stride * kernel * in_channels * columns
    back_x, back_y = columns, out_width * columns
    ops = 0
    for t in range(acc.shape[0]):
        flat[t * size:(t + 1) * size] = 0  # step by step: the step's outputs stay in cache for the adds
        for e in range(starts[t], starts[t + 1]):
            p = pos[e]
            v = values[e] if has_values else 1
            rows, cols = taps[p, 0], taps[p, 1]
            ops += rows * cols
            first = taps[p, 2] + _offset(chan[e], v, columns, fold, multiply)
            out = t * size + taps[p, 3]
            for j in range(rows):
                for i in range(cols):
                    row = first + j * next_y + i * next_x
                    at = out - j * back_y - i * back_x
                    for column in range(0, whole, width):
                        vstore(flat, at + column, vadd(vload(flat, at + column),
                                                       _scaled(vload_as(cells, row + column, flat), v, multiply)))
                    for column in range(whole, columns):
                        w = cells[row + column]
                        flat[at + column] += v * w if multiply else w
    return ops * columns


@numba.njit(cache=True, nogil=True, inline="always")
def _table_row(word, keep, ky, rows_apart, columns):
    """The flat table offset of kernel row ky's pattern: the 0/1 bytes of `word` that `keep` keeps, packed into bits."""
    return ky * rows_apart + (((word & keep) * PACK) >> np.uint64(56)) * np.uint64(columns)


@numba.njit(cache=True, nogil=True)
def conv_lookup(starts, pos, chan, in_height, in_channels, kernel, stride, pad, byte_of, reach, table, acc, lines):
    """`conv_scatter`'s accumulator for events of value 1 whose kernel rows span at most 8 inputs (k·C_in), by table
    look-up. Returns the SynOps.

    Step by step, the events mark their bytes in `lines` [H_in, B] (uint8, zero elsewhere): input row y's pixel
    (x, c) at byte (x + pad)·C_in + c of line y (byte_of[p]: position p's channel 0, flat), B leaving 8 bytes past
    the last. Each output neuron then sums, over the kernel rows inside the map, one table row: the one of that
    kernel row's pattern, its k·C_in inputs (bytes (ox·s + kx)·C_in + c, read as one word) packed into bits
    kx·C_in + c. table [k, 2^(k·C_in), C_out] holds the sum of the weight rows (ky, kx, c) of each pattern's set
    bits. Work ∝ output neurons × kernel rows (plus the events), whatever the events' count: no load-add-store per
    tap as in the scatter. The SynOps are the scatter's, each event reaching reach[p] outputs.
    """
    columns, patterns = table.shape[2], table.shape[1]
    width = vwidth(acc)
    whole = columns - columns % width
    steps, out_height, out_width = acc.shape[0], acc.shape[1], acc.shape[2]
    flat, cells, bytes_ = acc.reshape(-1), table.reshape(-1), lines.reshape(-1)
    line, rows_apart = np.uint64(lines.shape[1]), np.uint64(patterns * columns)
    keep = np.uint64(-1) >> np.uint64(64 - 8 * kernel * in_channels)  # the pattern's bytes of the word
    ops = 0
    for t in range(steps):
        bytes_[:] = 0
        for e in range(starts[t], starts[t + 1]):
            bytes_[byte_of[pos[e]] + chan[e]] = 1
            ops += reach[pos[e]]
        for oy in range(out_height):
            y0 = oy * stride - pad
            y_lo, y_hi = _inside(y0, kernel, in_height)
            y_lo, y_hi = np.uint64(y_lo), np.uint64(y_hi)
            for ox in range(out_width):
                first = np.uint64(ox * stride * in_channels)
                out = ((t * out_height + oy) * out_width + ox) * columns
                for column in range(0, whole, width):  # (one pass per vector: the patterns are recomputed, cheaply)
                    a = vzero(flat)
                    for y in range(y_lo, y_hi):
                        row = _table_row(load_word(bytes_, y * line + first), keep, y - np.uint64(y0), rows_apart,
                                         columns)
                        a = vadd(a, vload_as(cells, row + np.uint64(column), flat))
                    vstore(flat, out + column, a)
                for column in range(whole, columns):
                    total = acc.dtype.type(0)
                    for y in range(y_lo, y_hi):
                        row = _table_row(load_word(bytes_, y * line + first), keep, y - np.uint64(y0), rows_apart,
                                         columns)
                        total += cells[row + np.uint64(column)]
                    flat[out + column] = total
    return ops * columns


@numba.njit(cache=True, nogil=True)
def linear_gather(starts, pos, chan, values, has_values, fold, channels, weight, acc, rows):
    """acc[t, :] = Σ value · weight[p·C + c, :] over the events (p, c) of step t (C = `channels`: the input map's
    channels-last order); weight [F_in, F_out] ([V·F_in, F_out] with `fold` > 0, as `conv_gather`), acc
    [T, F_out], rows [events of a step] scratch. Returns the accumulates."""
    columns = weight.shape[1]
    width = vwidth(acc)
    whole = columns - columns % width
    multiply = has_values and fold == 0
    flat, cells = acc.reshape(-1), weight.reshape(-1)
    ops = 0
    for t in range(acc.shape[0]):
        lo, hi = starts[t], starts[t + 1]
        for e in range(lo, hi):
            rows[e - lo] = pos[e] * channels * columns + _offset(chan[e], values[e] if has_values else 1, columns,
                                                                 fold, multiply)
        step_values = values[lo:hi] if multiply else values
        for offset in range(0, whole, 4 * width):
            vectors = min(4, (whole - offset) // width)
            a = _accumulate((vzero(flat), vzero(flat), vzero(flat), vzero(flat)), cells, rows, step_values,
                            multiply, 0, hi - lo, offset, vectors, flat)
            _store(flat, t * columns + offset, a, vectors)
        for column in range(whole, columns):
            flat[t * columns + column] = _tail(cells, rows, step_values, multiply, 0, hi - lo, column,
                                               acc.dtype.type(0))
        ops += hi - lo
    return ops * columns


@numba.njit(cache=True, nogil=True)
def pool_grid(grid, channels, starts, pos, chan, values):
    """The events of a k × k average pool (stride k) from the spike counts its LIF layer left in `grid`
    [T, windows·C] (the LIF kernels add each spike to its window's count when given the pool's `cell_of`): step
    by step, window by window, the channels whose count is nonzero, as events with the counts as values, found
    512 bits at a time and compressed like the LIF's spikes (`_append`: pos / chan / values need 16 spare
    slots); the grid is left zero. (The pooling's accumulates, the spikes inside a window, are what the LIF
    kernel returns when it pools.)"""
    steps, cells = grid.shape[0], grid.shape[1] // channels
    width = vwidth(grid)
    whole = channels - channels % width
    flat = grid.reshape(-1)
    zero = vzero(grid)
    n = starts[0] = 0
    for t in range(steps):
        for cell in range(cells):
            base = (t * cells + cell) * channels
            for offset in range(0, whole, width):
                n = _append(vbits(vgt(vload(flat, base + offset), zero)), width, cell, offset, pos, chan, n, values,
                            flat, base + offset)
                vstore(flat, base + offset, zero)
            for c in range(whole, channels):
                count = flat[base + c]
                if count != 0:
                    pos[n], chan[n], values[n] = cell, c, count
                    n += 1
                    flat[base + c] = 0
        starts[t + 1] = n


@numba.njit(cache=True, nogil=True, inline="always")
def _count(frame, scale):
    return np.int32(np.floor(np.float64(frame) * scale + 0.5))


@numba.njit(cache=True, nogil=True)
def count_scale(values, scale):
    """The largest count of a flat float array whose every value is exactly count / `scale` (a whole count ≥ 0,
    divided in the array's type: how frames are normalized), else −1."""
    dtype = values.dtype.type
    top = 0
    for v in values:
        count = _count(v, scale)
        if count < 0 or dtype(count) / dtype(scale) != v:
            return -1
        top = max(top, count)
    return top


@numba.njit(cache=True, nogil=True)
def smallest_positive(values):
    """The smallest value > 0 of a flat float array (∞ when none)."""
    low = np.inf
    for v in values:
        if v > 0:
            low = min(low, v)
    return low


@numba.njit(cache=True, nogil=True)
def frame_events(frames, bits, scale, counted, by_position, starts, pos, chan, values):
    """The nonzero pixels of frames [T, C, P] of counts / `scale` (`count_scale`) as step-major events, their counts
    as values when `counted` (else every count is 1 and `values` is left alone). `bits` is the same memory as
    signed integers of the frames' width: a count is nonzero exactly when its bit pattern is > 0.

    Channel by channel (c, then p, within a step: what `conv_scatter` wants, and it ignores order), 16 positions
    at a time, compressed as `_append` does (pos / chan need 16 spare slots); or, `by_position`, position by
    position (p, then c), the order the gathers rely on, one pixel at a time."""
    steps, channels, positions = frames.shape
    width = vwidth(bits)
    whole = positions - positions % 16
    flat = bits.reshape(-1)
    zero = vzero(bits)
    n = starts[0] = 0
    for t in range(steps):
        if by_position:
            for p in range(positions):
                for c in range(channels):
                    if bits[t, c, p] > 0:
                        pos[n], chan[n] = p, c
                        values[n] = _count(frames[t, c, p], scale) if counted else 1
                        n += 1
        else:
            for c in range(channels):
                base = (t * channels + c) * positions
                for p in range(0, whole, 16):
                    mask = np.uint64(0)
                    for half in range(0, 16, width):
                        mask |= vbits(vgt(vload(flat, base + p + half), zero)) << np.uint64(half)
                    vcompress(pos, n, vadd(vload(LANE, 0), vsplat(pos, p)), mask)
                    vstore(chan, n, vsplat(chan, c))
                    if counted:
                        rest = mask
                        for k in range(n, n + popcount(mask)):
                            values[k] = _count(frames[t, c, p + np.int64(trailing_zeros(rest))], scale)
                            rest &= rest - np.uint64(1)
                    n += popcount(mask)
                for p in range(whole, positions):
                    if bits[t, c, p] > 0:
                        pos[n], chan[n] = p, c
                        values[n] = _count(frames[t, c, p], scale) if counted else 1
                        n += 1
        starts[t + 1] = n


@numba.njit(cache=True, nogil=True)
def count_range(values, bits):
    """(smallest, largest bit pattern, whether every value is a whole number) of a flat float array `values`,
    `bits` being the same memory as signed integers of its width. The patterns of floats without a sign bit
    (NaN and ∞ included) are ≥ 0 and ordered as the values are, so the smallest is ≥ 0 exactly when no value
    carries a sign bit (−0 does), and the largest is the largest value's. NaN is not whole. Integer min / max
    and one compare per value, so the loop vectorizes (a float min / max reduction does not)."""
    low, high = bits[0], bits[0]
    broken = False
    for i in range(len(values)):
        low = min(low, bits[i])
        high = max(high, bits[i])
        broken |= values[i] != np.floor(values[i])
    return low, high, not broken



@numba.njit(cache=True, nogil=True, inline="always")
def _emit(fired, words, channels, t, p, record, spikes, pos, chan, n, cell_of, grid):
    """Record a position's spikes in spikes[t] (if asked) and append its channels that fired to the event list,
    or add them to their window's counts in `grid` when the layer pools (`pool_grid`); new length.

    `fired` holds one 0/1 byte per channel, zero-padded to a multiple of 64; `words` is the same memory as
    uint64. The channels are taken 64 at a time as a bit mask (eight bytes packed by one multiply) whose set
    bits are visited lowest first, so the work is ∝ spikes, not ∝ channels."""
    if record:
        for c in range(channels):
            spikes[t, p * channels + c] = fired[c]
    if len(cell_of) > 0:  # n counts the spikes put in a window
        cell = cell_of[p]
        if cell >= 0:
            for c in range(channels):
                grid[t, cell * channels + c] += fired[c]
                n += fired[c]
        return n
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
                chan, cell_of, grid):
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
            n = _emit(fired, words, channels, t, p, record, spikes, pos, chan, n, cell_of, grid)
        starts[t + 1] = n
    if len(cell_of) > 0:  # no events: the spikes went to the pool's grid, and n counted them
        starts[:] = 0
    return n


@numba.njit(cache=True, nogil=True)
def lif_float(acc, gain, offset, beta, threshold, quantized, low, high, zero_reset, state, record, spikes, starts,
              pos, chan, cell_of, grid):
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
            n = _emit(fired, words, channels, t, p, record, spikes, pos, chan, n, cell_of, grid)
        starts[t + 1] = n
    if len(cell_of) > 0:  # no events: the spikes went to the pool's grid, and n counted them
        starts[:] = 0
    return n


LANE = np.arange(16, dtype=np.int32)  # lane numbers of one int32 vector
_NO_VALUES = np.zeros(0, dtype=np.int32)
_NO_COUNTS = np.zeros(0, dtype=np.int16)


@numba.njit(cache=True, nogil=True, inline="always")
def _append(bits, width, p, offset, pos, chan, n, values, counts, at):
    """Append the events (p, offset + i) for the set bits i of `bits` (`width` lanes) to pos / chan at n, 16 lanes
    at a time without a branch per spike: the channels by one compress-store, the position by a full vector
    store (pos needs 16 spare slots past the last event); with `values` (nonempty), each event's value
    counts[at + i] too.
    New length."""
    for half in range(0, width, 16):
        chunk = (bits >> np.uint64(half)) & np.uint64(0xFFFF)
        vstore(pos, n, vsplat(pos, p))
        vcompress(chan, n, vadd(vload(LANE, 0), vsplat(chan, offset + half)), chunk)
        if len(values) > 0:
            vcompress(values, n, vload_as(counts, at + half, values), chunk)
        n += popcount(chunk)
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _append_across(bits, width, p, lane_pos, lane_chan, pos, chan, n):
    """`_append` for a vector spanning positions: lane i is the event (p + lane_pos[i], lane_chan[i])."""
    for half in range(0, width, 16):
        chunk = (bits >> np.uint64(half)) & np.uint64(0xFFFF)
        vcompress(pos, n, vadd(vload(lane_pos, half), vsplat(pos, p)), chunk)
        vcompress(chan, n, vload(lane_chan, half), chunk)
        n += popcount(chunk)
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _pick(table, m, low, levels, at):
    """The threshold at flat offset `at` of the tables (level `low`), of each lane's stored level m: the levels
    follow one vector apart."""
    width = vwidth(table)
    bound = vload(table, at)
    for k in range(1, levels):
        bound = vselect(veq(m, vsplat(m, low + k)), vload(table, at + k * width), bound)
    return bound


@numba.njit(cache=True, nogil=True, inline="always")
def _level(a, table, m, low, levels, at):
    """The level low + #{j : a > threshold j} over the levels − 1 thresholds from flat offset `at` on, 4 vectors
    apart (one per level of the padded table)."""
    width = vwidth(table)
    level = vsplat(a, low)
    for j in range(levels - 1):
        level = vsub(level, vgt(a, _pick(table, m, low, levels, at + 4 * j * width)))  # a true mask is −1
    return level


@numba.njit(cache=True, nogil=True, inline="always")
def _table_step(a, m, table, low, levels, zero_reset, reset, at):
    """One step of one vector of neurons (accumulators a, stored levels m) by the thresholds of the block at flat
    offset `at`: (spike mask, next levels). Only the `levels` stored levels and their thresholds are read, so
    that with a constant `levels` (the caller branches on it) the selects are straight-line code."""
    width = vwidth(table)
    fired = vgt(a, _pick(table, m, low, levels, at))
    after = _level(a, table, m, low, levels, at + 4 * width)
    after = vselect(fired, vsplat(m, reset) if zero_reset else _level(a, table, m, low, levels, at + 16 * width),
                    after)
    return fired, after


@numba.njit(cache=True, nogil=True, inline="always")
def _table_levels(a, m, bounds, low, levels, zero_reset, reset, at):
    """`_table_step` for `levels` levels: one branch per count, so that each is straight-line code. (Loading and
    storing the vectors here as well, in one inlined function, made the LIF layers 4× slower.)"""
    if levels == 2:
        return _table_step(a, m, bounds, low, 2, zero_reset, reset, at)
    if levels == 3:
        return _table_step(a, m, bounds, low, 3, zero_reset, reset, at)
    return _table_step(a, m, bounds, low, 4, zero_reset, reset, at)


@numba.njit(cache=True, nogil=True, inline="always")
def _table_neuron(a, stored, table, block, lane, low, zero_reset, reset):
    """One neuron's step by its thresholds table[block, ·, ·, lane]: (spiked, next level)."""
    k = stored - low
    fired = a > table[block, 0, k, lane]
    after = low
    for j in range(1, 4):
        after += a > table[block, j + (3 if fired and not zero_reset else 0), k, lane]
    return fired, reset if fired and zero_reset else after


@numba.njit(cache=True, nogil=True, inline="always")
def _record_bits(spikes, t, at, bits, width):
    for lane in range(width):
        spikes[t, at + lane] = (bits >> np.uint64(lane)) & np.uint64(1)


@numba.njit(cache=True, nogil=True)
def lif_table(acc, table, low, levels, zero_reset, reset, state, record, spikes, starts, pos, chan, cell_of, grid):
    """`lif_integer` on an integer accumulator by threshold tables (`latency.lif_tables.lif_table`,
    [blocks, 7, 4, lanes]).

    acc [T, P, C] (int16 or int32), table and state [P, C] (the stored levels) of acc's type; `reset` is the
    level a zero reset stores; `levels` (2…4) the membrane's. Outputs as `lif_integer` (a pooling layer's counts
    into `grid`, `pool_grid`); pos / chan need 16 spare slots (`_append`). The loops over levels and thresholds
    have fixed counts (a branch per count: `_table_step`), so that each vector's update is straight-line code
    reading one contiguous block of thresholds (the table is padded to 4 levels).

    With fewer channels than a vector's lanes, dividing them (8 or 16 of 32 int16 lanes), the table's one block
    holds the channels repeated, and a layer that does not pool takes its neurons a vector at a time across
    positions (`_append_across`) instead of one neuron at a time.
    """
    steps, positions, channels = acc.shape
    width = vwidth(acc)
    whole = channels - channels % width
    block = table.shape[1] * table.shape[2] * width
    flat_acc, flat_state, bounds, flat_grid = acc.reshape(-1), state.reshape(-1), table.reshape(-1), grid.reshape(-1)
    pooled, windows = len(cell_of) > 0, grid.shape[1] // channels
    n = starts[0] = counted = 0
    if channels < width and width % channels == 0 and not pooled:  # vectors across positions
        span = positions * channels
        across = span - span % width
        lane = np.arange(width)
        lane_pos, lane_chan = (lane // channels).astype(np.int32), (lane % channels).astype(np.int32)
        for t in range(steps):
            for at in range(0, across, width):
                a, m = vload(flat_acc, t * span + at), vload(flat_state, at)
                fired, after = _table_levels(a, m, bounds, low, levels, zero_reset, reset, 0)
                vstore(flat_state, at, after)
                bits = vbits(fired)
                if record:
                    _record_bits(spikes, t, at, bits, width)
                n = _append_across(bits, width, at // channels, lane_pos, lane_chan, pos, chan, n)
            for i in range(across, span):
                p, c = i // channels, i % channels
                fired, state[p, c] = _table_neuron(acc[t, p, c], state[p, c], table, 0, c, low, zero_reset, reset)
                if record:
                    spikes[t, i] = fired
                if fired:
                    pos[n], chan[n] = p, c
                    n += 1
            starts[t + 1] = n
        return n
    for t in range(steps):
        for p in range(positions):
            cell = cell_of[p] if pooled else -1
            for offset in range(0, whole, width):
                a = vload(flat_acc, (t * positions + p) * channels + offset)
                m = vload(flat_state, p * channels + offset)
                fired, after = _table_levels(a, m, bounds, low, levels, zero_reset, reset, offset // width * block)
                vstore(flat_state, p * channels + offset, after)
                bits = vbits(fired)
                if record:
                    _record_bits(spikes, t, p * channels + offset, bits, width)
                if not pooled:
                    n = _append(bits, width, p, offset, pos, chan, n, _NO_VALUES, _NO_COUNTS, 0)
                elif cell >= 0:  # the pool's count of each channel: a fired lane's mask is −1
                    count = (t * windows + cell) * channels + offset
                    vstore(flat_grid, count, vsub(vload(flat_grid, count), fired))
                    counted += popcount(bits)
            for c in range(whole, channels):  # the channels past the last whole vector
                fired, state[p, c] = _table_neuron(acc[t, p, c], state[p, c], table, c // width, c % width, low,
                                                   zero_reset, reset)
                if record:
                    spikes[t, p * channels + c] = fired
                if pooled:
                    if cell >= 0:
                        grid[t, cell * channels + c] += fired
                        counted += fired
                elif fired:
                    pos[n] = p
                    chan[n] = c
                    n += 1
        starts[t + 1] = n
    return counted if pooled else n
