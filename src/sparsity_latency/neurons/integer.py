"""Integer-only inference of the quantized LIF: the membrane is an int8 tensor, updated with adds and shifts.

The input current arrives in fixed point with f = k + 1 fractional bits, X = ⌈x·2^f⌉ (int64; the same
rounding as the training path, see `dynamics`), where β = 2^−k. One step, all in integers:
    H = ((M << f) >> k) + X            membrane before firing, fixed point (M: stored level, int8)
    s = H > θ·2^f                      spike
    R = s ? 0 : H   or   R = H − s·θ·2^f          hard or soft reset
    M = clamp(−((2^(f−1) − R) >> f), low, θ)      nearest level, ties down: ⌈R/2^f − ½⌉
The spikes equal the floating-point path's exactly (tested). Grids wider than int8 (8-bit membranes,
levels down to −254) are kept in int16; wider membranes and leaks below 2^−20 have no integer path.
"""

from __future__ import annotations

import torch

from sparsity_latency.neurons.dynamics import LIFDynamics

INPUT_LIMIT = 2.0**40  # |x| beyond this makes the same decisions as at the limit (levels are within ±2^8)
MAX_FRAC_BITS = 21  # with |x| ≤ 2^40, ⌈x·2^f⌉ stays far inside int64


def state_dtype(dynamics: LIFDynamics) -> torch.dtype:
    """int8 when every membrane level fits in it, else int16; ValueError when not even int16 holds them."""
    low, high = dynamics.levels
    for dtype in (torch.int8, torch.int16):
        if low >= torch.iinfo(dtype).min and high <= torch.iinfo(dtype).max:
            return dtype
    raise ValueError(f"no integer membrane path for a {dynamics.membrane_bits}-bit membrane (at most 8 bits)")


def fixed_point_input(inputs: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """⌈x·2^f⌉ as int64, x clamped to ±INPUT_LIMIT first."""
    return torch.ceil(inputs.clamp(-INPUT_LIMIT, INPUT_LIMIT) * 2.0**frac_bits).to(torch.int64)


def integer_spikes(inputs: torch.Tensor, dynamics: LIFDynamics) -> torch.Tensor:
    """Spikes [T, …] of the neuron at rest driven by `inputs` [T, …], computed on an integer membrane."""
    frac, shift = dynamics.frac_bits, dynamics.leak_shift
    if frac is None or shift is None or frac > MAX_FRAC_BITS:
        raise ValueError("the integer path needs a quantized membrane and a leak β = 2^-k with k < 21")
    low, high = (int(level) for level in dynamics.levels)
    threshold = int(dynamics.threshold) << frac
    half = 1 << (frac - 1)
    current = fixed_point_input(inputs, frac)
    stored = torch.zeros(inputs.shape[1:], dtype=state_dtype(dynamics), device=inputs.device)
    spikes = torch.empty(inputs.shape, dtype=torch.bool, device=inputs.device)
    for t in range(len(inputs)):
        membrane = ((stored.to(torch.int64) << frac) >> shift) + current[t]
        fired = torch.gt(membrane, threshold, out=spikes[t])
        if dynamics.reset == "zero":
            membrane = membrane.masked_fill_(fired, 0)
        else:
            membrane = membrane.sub_(fired.to(torch.int64) * threshold)
        stored = (half - membrane).bitwise_right_shift_(frac).neg_().clamp_(low, high).to(stored.dtype)
    return spikes.to(inputs.dtype)
