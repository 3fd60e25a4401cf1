"""Integer-only inference of the quantized LIF: the membrane is an int8 tensor, updated with adds and shifts.

The input current arrives in fixed point with f = k + 1 fractional bits, X = ⌈x·2^f⌉ (int32; the same
rounding as the training path, see `dynamics`), where β = 2^−k. One step, all in integers:
    H = ((M << f) >> k) + X            membrane before firing, fixed point (M: stored level, int8)
    s = H > θ·2^f                      spike
    R = s ? 0 : H   or   R = H − s·θ·2^f          hard or soft reset
    M = clamp(−((2^(f−1) − R) >> f), low, θ)      nearest level, ties down: ⌈R/2^f − ½⌉
The spikes equal the floating-point path's exactly (tested). Grids wider than int8 (8-bit membranes,
levels down to −254) are kept in int16.
"""

from __future__ import annotations

import torch

from sparsity_latency.neurons.dynamics import LIFDynamics

INPUT_LIMIT = 2.0**20  # |x| beyond this makes the same decisions as at the limit (levels are within ±2^8)


def state_dtype(dynamics: LIFDynamics) -> torch.dtype:
    """int8 when every membrane level fits in it, else int16."""
    low, high = dynamics.levels
    return torch.int8 if low >= -128 and high <= 127 else torch.int16


def fixed_point_input(inputs: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """⌈x·2^f⌉ as int32, x clamped to ±INPUT_LIMIT first."""
    return torch.ceil(inputs.clamp(-INPUT_LIMIT, INPUT_LIMIT) * 2.0**frac_bits).to(torch.int32)


def integer_spikes(inputs: torch.Tensor, dynamics: LIFDynamics) -> torch.Tensor:
    """Spikes [T, …] of the neuron at rest driven by `inputs` [T, …], computed on an integer membrane."""
    frac, shift = dynamics.frac_bits, dynamics.leak_shift
    if frac is None or shift is None:
        raise ValueError("the integer path needs a quantized membrane and a leak β = 2^-k")
    low, high = (int(level) for level in dynamics.levels)
    threshold = int(dynamics.threshold) << frac
    half = 1 << (frac - 1)
    current = fixed_point_input(inputs, frac)
    stored = torch.zeros(inputs.shape[1:], dtype=state_dtype(dynamics))
    spikes = torch.empty(inputs.shape, dtype=torch.bool)
    for t in range(len(inputs)):
        membrane = ((stored.to(torch.int32) << frac) >> shift) + current[t]
        fired = torch.gt(membrane, threshold, out=spikes[t])
        if dynamics.reset == "zero":
            membrane = membrane.masked_fill_(fired, 0)
        else:
            membrane = membrane.sub_(fired.to(torch.int32) * threshold)
        stored = (half - membrane).bitwise_right_shift_(frac).neg_().clamp_(low, high).to(stored.dtype)
    return spikes.to(inputs.dtype)
