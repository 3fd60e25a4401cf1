"""Compiled kernels (numba) of the event-driven engine (`event_engine`): scatter, pooling and membrane updates.

Every layer works on one sample's sequence (a window of at most 64 steps) at once. Maps are channels-last:
neuron (y, x, c) of an H × W × C map has flat index j = (y·W + x)·C + c. Accumulators are laid out
[position, step, channel] ([P, T, C]; a linear layer is P = 1): the C_out outputs a spike reaches at one
position and step are one contiguous vector, added with SIMD instructions, and the T rows of one position lie
together.

Events are neuron-major: `active[:n]` holds the neurons that fired at least once in the window (ascending),
`masks[e]` the steps they fired at (bit t: step t). A weight layer decodes an event's position and valid kernel
taps once and adds the weight vector of each tap into the rows of all its steps. Events fed by average pooling
also carry integer values `values[e, t]` (the spikes pooled there at step t; 0 where the mask bit is clear); the
layer's gain holds the 1/k². For a given step and output the contributions arrive in ascending neuron order,
as a step-by-step scan of the map would give them.

- `conv_scatter`: for each event at (y, x, c), for each kernel tap (ky, kx) whose output position
  oy = (y + pad − ky)/stride, ox = (x + pad − kx)/stride is whole and inside the map, for each step t of the
  event, add value × weight[c, ky, kx, :] to acc[oy·W_out + ox, t, :]. Work: events × valid taps × C_out
  accumulates (the SynOps, returned).
- `linear_scatter`: for each event i and step t, add value × weight[i, :] to acc[t, :].
- `pool_events`: k × k average pooling of spike events, one increment per spike into its window's counter;
  the windows touched become the output events (sorted), their counters the values; the counters are cleared
  through the event list, so the work is ∝ spikes, not ∝ map size.
- `lif_integer` / `lif_float`: the membrane update of `neurons.dynamics` over the accumulators, current
  x = acc·gain[c] + offset[c] (float64; the folded weight step and BatchNorm), lane-parallel over the channels
  of a position. The integer kernel is `neurons.integer`'s fixed-point update (quantized membranes with
  β = 2^−k); the float kernel repeats `neurons.kernels`' float32 (or float64) step operation for operation. Both
  leave the accumulator zero when asked (so the next run needs no clearing), optionally record the spikes
  [T, P·C], and write the next layer's events.
"""

from __future__ import annotations

import math

import numba
import numpy as np

INPUT_LIMIT = 2.0**40  # as `neurons.integer`: beyond this every decision is the one at the limit
MAX_STEPS = 64  # steps per window: one bit each in a uint64 mask


@numba.njit(cache=True, nogil=True, inline="always")
def _steps_of(mask, e, values, has_values, steps, ts, vs):
    """The steps of an event (into ts) and their values (into vs); returns how many."""
    k = 0
    for t in range(steps):
        if (mask >> np.uint64(t)) & np.uint64(1):
            ts[k] = t
            vs[k] = values[e, t] if has_values else 1
            k += 1
    return k


@numba.njit(cache=True, nogil=True, inline="always")
def _add_steps(block, w, ts, vs, k, plain, channels_out):
    """block[ts[i], :] += vs[i] · w for i < k."""
    if plain:
        for i in range(k):
            out = block[ts[i]]
            for o in range(channels_out):
                out[o] += w[o]
    else:
        for i in range(k):
            out = block[ts[i]]
            v = vs[i]
            for o in range(channels_out):
                out[o] += v * w[o]


@numba.njit(cache=True, nogil=True)
def conv_scatter(active, n_active, masks, values, has_values, in_width, in_channels, weight, stride, pad,
                 out_height, out_width, acc):
    """acc[oy·W_out + ox, t, o] += value · weight[c, ky, kx, o] for every event step; returns accumulates done.

    The innermost loop adds one contiguous weight vector to one contiguous output vector, both taken as views
    with a non-negative range index, a form LLVM vectorizes (a flat index expression is not: 5-10× slower).
    """
    kernel = weight.shape[1]
    channels_out = weight.shape[3]
    steps = acc.shape[1]
    ts = np.empty(steps, dtype=np.int64)
    vs = np.empty(steps, dtype=np.int64)
    ops = 0
    for e in range(n_active):
        k = _steps_of(masks[e], e, values, has_values, steps, ts, vs)
        j = active[e]
        c = j % in_channels
        p = j // in_channels
        y = p // in_width
        x = p - y * in_width
        plain = True
        if has_values:
            for i in range(k):
                if vs[i] != 1:
                    plain = False
        taps = 0
        if stride == 1:  # the valid taps form one rectangle: no per-tap division or test
            ky_lo, ky_hi = max(0, y + pad - out_height + 1), min(kernel, y + pad + 1)
            kx_lo, kx_hi = max(0, x + pad - out_width + 1), min(kernel, x + pad + 1)
            for ky in range(ky_lo, ky_hi):
                row_base = (y + pad - ky) * out_width + x + pad
                for kx in range(kx_lo, kx_hi):
                    _add_steps(acc[row_base - kx], weight[c, ky, kx], ts, vs, k, plain, channels_out)
            taps = max(0, ky_hi - ky_lo) * max(0, kx_hi - kx_lo)
        else:
            for ky in range(kernel):
                oy_scaled = y + pad - ky
                if oy_scaled < 0 or oy_scaled % stride != 0:
                    continue
                oy = oy_scaled // stride
                if oy >= out_height:
                    continue
                for kx in range(kernel):
                    ox_scaled = x + pad - kx
                    if ox_scaled < 0 or ox_scaled % stride != 0:
                        continue
                    ox = ox_scaled // stride
                    if ox >= out_width:
                        continue
                    _add_steps(acc[oy * out_width + ox], weight[c, ky, kx], ts, vs, k, plain, channels_out)
                    taps += 1
        ops += taps * k * channels_out
    return ops


@numba.njit(cache=True, nogil=True)
def linear_scatter(active, n_active, masks, values, has_values, weight, acc):
    """acc[t, o] += value · weight[i, o] for every event i and its steps t; returns accumulates done."""
    features_out = weight.shape[1]
    steps = acc.shape[0]
    ts = np.empty(steps, dtype=np.int64)
    vs = np.empty(steps, dtype=np.int64)
    ops = 0
    for e in range(n_active):
        k = _steps_of(masks[e], e, values, has_values, steps, ts, vs)
        w = weight[active[e]]
        for i in range(k):
            row = acc[ts[i]]
            v = vs[i]
            if v == 1:
                for o in range(features_out):
                    row[o] += w[o]
            else:
                for o in range(features_out):
                    row[o] += v * w[o]
        ops += k * features_out
    return ops


@numba.njit(cache=True, nogil=True)
def pool_events(active, n_active, masks, steps, in_width, channels, kernel, out_height, out_width, grid, touched,
                out_active, out_masks, out_values):
    """k × k average pooling (stride k) of spike events into events with values = spikes per window and step.

    `grid` [out_height·out_width·C, steps] (int32) and `touched` [out_height·out_width·C] (uint8) must be zero
    and are left zero; `out_values` rows are written in full. The output events come out ascending from one
    scan of `touched` (a byte per output neuron, ∝ map size / k², far below the LIF layer's cost), the rest
    is ∝ spikes. Returns (output events, accumulates done: spikes inside a window).
    """
    ops = 0
    for e in range(n_active):
        j = active[e]
        c = j % channels
        p = j // channels
        y = p // in_width
        oy = y // kernel
        ox = (p - y * in_width) // kernel
        if oy >= out_height or ox >= out_width:
            continue  # the rows/columns no window covers
        q = (oy * out_width + ox) * channels + c
        cell = grid[q]
        m = masks[e]
        touched[q] = 1
        for t in range(steps):
            bit = (m >> np.uint64(t)) & np.uint64(1)
            cell[t] += np.int32(bit)
            ops += np.int64(bit)
    n = 0
    for q in range(touched.size):
        if touched[q]:
            touched[q] = 0
            cell = grid[q]
            row = out_values[n]
            m = np.uint64(0)
            for t in range(steps):
                row[t] = cell[t]
                m |= np.uint64(cell[t] != 0) << np.uint64(t)
                cell[t] = 0
            out_active[n] = q
            out_masks[n] = m
            n += 1
    return n, ops


@numba.njit(cache=True, nogil=True)
def _finish_step(fired_mask, bit, row, spike_row, record, clear) -> None:
    """After step `bit` of one position: write its spikes (if recording) and clear its accumulator row (if asked)."""
    if record:
        for c in range(len(spike_row)):
            spike_row[c] = (fired_mask[c] >> bit) & np.uint64(1)
    if clear:
        row[:] = 0


@numba.njit(cache=True, nogil=True)
def _emit_active(fired_mask, p, active, masks, n: int) -> int:
    """Append the neurons of position p that fired at some step (index, step mask) to the event list; new length."""
    channels = len(fired_mask)
    for c in range(channels):
        if fired_mask[c] != 0:
            active[n] = p * channels + c
            masks[n] = fired_mask[c]
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def lif_integer(acc, gain, offset, frac, shift, threshold, low, high, zero_reset, state, clear, record, spikes,
                active, masks):
    """`neurons.integer`'s fixed-point LIF over x = acc·gain[c] + offset[c]; threshold given as θ·2^f.

    acc [P, T, C]; state [P, C] (the stored levels, carried between windows); spikes [T, P·C] (uint8) written
    when `record`; returns the number of events written to active / masks. acc is zeroed when `clear`.
    """
    positions, steps, channels = acc.shape
    scale = 2.0**frac
    half = np.int64(1) << (frac - 1)
    fired_mask = np.zeros(channels, dtype=np.uint64)
    n = 0
    for p in range(positions):
        level = state[p]
        fired_mask[:] = 0
        for t in range(steps):
            row = acc[p, t]
            bit = np.uint64(t)
            for c in range(channels):
                x = row[c] * gain[c] + offset[c]
                x = min(max(x, -INPUT_LIMIT), INPUT_LIMIT)
                h = ((np.int64(level[c]) << frac) >> shift) + np.int64(math.ceil(x * scale))
                fired = h > threshold
                h = (0 if fired else h) if zero_reset else (h - threshold if fired else h)
                level[c] = min(max(-((half - h) >> frac), low), high)
                fired_mask[c] |= np.uint64(fired) << bit
            _finish_step(fired_mask, bit, row, spikes[t, p * channels:(p + 1) * channels], record, clear)
        n = _emit_active(fired_mask, p, active, masks, n)
    return n


@numba.njit(cache=True, nogil=True)
def lif_float(acc, gain, offset, beta, threshold, quantized, low, high, zero_reset, state, clear, record, spikes,
              active, masks):
    """`neurons.kernels`' LIF step (no input rounding) in the float type of `state` ([P, C], the model's float32
    or float64, zeros at the start; the scalars of that type too), over x = acc·gain[c] + offset[c] rounded to
    that type. Layout and outputs as `lif_integer`."""
    positions, steps, channels = acc.shape
    value = state.dtype.type
    zero, half = value(0), value(0.5)
    fired_mask = np.zeros(channels, dtype=np.uint64)
    n = 0
    for p in range(positions):
        membrane = state[p]
        fired_mask[:] = 0
        for t in range(steps):
            row = acc[p, t]
            bit = np.uint64(t)
            for c in range(channels):
                current = value(row[c] * gain[c] + offset[c])
                h = membrane[c] * beta + current
                fired = h > threshold
                r = (zero if fired else h) if zero_reset else (h - threshold if fired else h)
                if quantized:
                    r = min(max(np.ceil(r - half), low), high)
                membrane[c] = r
                fired_mask[c] |= np.uint64(fired) << bit
            _finish_step(fired_mask, bit, row, spikes[t, p * channels:(p + 1) * channels], record, clear)
        n = _emit_active(fired_mask, p, active, masks, n)
    return n
