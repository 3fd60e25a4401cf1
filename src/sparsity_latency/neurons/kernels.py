"""Compiled CPU kernels (numba) for `MultiStepLIF`: the whole time loop in one pass over memory.

They compute exactly what `dynamics.LIFDynamics` describes — the same floating-point operations in
the same order in the forward pass (so the spikes are bit-identical to the torch paths'), the same
derivatives in the backward pass (equal to rounding) — without the temporaries a sequence of torch
operations allocates for every step. They serve float32 and float64 tensors on the CPU; everything
else (CUDA tensors) takes the torch path in `multistep`. Tests check the two against each other for
every surrogate, reset and quantizer gradient.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch

from sparsity_latency.neurons.dynamics import LIFDynamics
from sparsity_latency.neurons.quantizer import BUMP_WINDOW, SIGMOID_TEMPERATURE, STACKED_SIGMOID_EXACT_UP_TO

DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def supports(tensor: torch.Tensor) -> bool:
    """Whether the kernels can run on `tensor` (CPU, float32 or float64)."""
    return tensor.device.type == "cpu" and tensor.dtype in DTYPES


# Surrogate dS/du, one compiled function each (the formulas of `surrogates`).


@numba.njit(cache=True, nogil=True, inline="always")
def _triangle(u, p, one, zero, half_pi):
    return max(p - abs(u), zero) / (p * p)


@numba.njit(cache=True, nogil=True, inline="always")
def _atan(u, p, one, zero, half_pi):
    z = u * (p * half_pi)
    return (p / 2) / (one + z * z)


@numba.njit(cache=True, nogil=True, inline="always")
def _fast_sigmoid(u, p, one, zero, half_pi):
    d = one + p * abs(u)
    return one / (d * d)


@numba.njit(cache=True, nogil=True, inline="always")
def _rectangle(u, p, one, zero, half_pi):
    return one / p if abs(u) < p / 2 else zero


SLOPES = {"triangle": _triangle, "atan": _atan, "fast-sigmoid": _fast_sigmoid, "rectangle": _rectangle}


@numba.njit(cache=True, nogil=True)
def _bump(distance: float) -> float:
    s = 1 / (1 + math.exp(-SIGMOID_TEMPERATURE * distance))
    return SIGMOID_TEMPERATURE * s * (1 - s)


@numba.njit(cache=True, nogil=True)
def _clamp(v: float, low: float, high: float) -> float:
    """v clamped to [low, high]; NaN gives `low`, so that a NaN membrane never becomes an index out of range."""
    if v > low:
        return v if v < high else high
    return low


@numba.njit(cache=True, nogil=True)
def _stacked_sigmoid(r: float, low: float, high: float) -> float:
    """`quantizer.stacked_sigmoid_derivative` at one point."""
    n_boundaries = int(high - low)
    if n_boundaries <= STACKED_SIGMOID_EXACT_UP_TO:
        first, last = 0, n_boundaries - 1
    else:
        nearest = _clamp(np.rint(r - low - 0.5), 0, n_boundaries - 1)
        first, last = max(int(nearest) - BUMP_WINDOW, 0), min(int(nearest) + BUMP_WINDOW, n_boundaries - 1)
    total = 0.0
    for k in range(first, last + 1):
        total += _bump(r - (low + 0.5 + k))
    return total


@numba.njit(cache=True, nogil=True)
def _stacked_sigmoid_table(low: float, high: float, start: float, scale: float, size: int) -> np.ndarray:
    table = np.empty(size)
    for i in range(size):
        table[i] = _stacked_sigmoid(start + i / scale, low, high)
    return table


# The kernels are built per combination of settings (and cached on disk by numba): the settings are
# constants inside them, so numba drops the branches not taken and the inner loops are branch-free
# arithmetic that LLVM vectorizes. (Settings passed as arguments cost a factor of 3–5 in speed.)


@functools.cache
def _forward_kernel(quantized: bool, zero_reset: bool, dyadic: bool):
    @numba.njit(cache=True, nogil=True)
    def forward(inputs, membranes, spikes, beta, threshold, low, high, frac_scale, encode, limit):
        steps, width = inputs.shape
        zero, one, half = inputs.dtype.type(0), inputs.dtype.type(1), inputs.dtype.type(0.5)
        store = membranes.dtype.type
        state = np.zeros(width, dtype=inputs.dtype)
        fits = True  # every |h| ≤ limit (false for NaN)
        for t in range(steps):
            x_row, h_row, s_row = inputs[t], membranes[t], spikes[t]
            for j in range(width):
                current = x_row[j]
                if dyadic:
                    current = np.ceil(current * frac_scale) / frac_scale
                h = state[j] * beta + current
                h_row[j] = store(h * encode)
                fits &= abs(h) <= limit
                fired = h > threshold
                s_row[j] = one if fired else zero
                r = (zero if fired else h) if zero_reset else (h - threshold if fired else h)
                if quantized:
                    r = min(max(np.ceil(r - half), low), high)
                state[j] = r
        return fits

    return forward


@functools.cache
def _backward_kernel(surrogate: str, quant_grad: str, quantized: bool, zero_reset: bool, detach_reset: bool,
                     lookup: bool):
    slope_of = SLOPES[surrogate]
    ste = quant_grad == "ste"

    @numba.njit(cache=True, nogil=True)
    def backward(membranes, decode, grad_spikes, grad, beta, threshold, low, high, param, half_pi, table,
                 table_start, table_scale):
        steps, width = membranes.shape
        value = grad.dtype.type  # membranes are h itself (decode = 1) or integer codes h·2^f (decode = 2^−f)
        zero, one = value(0), value(1)
        last = value(table.size - 1)
        index = np.zeros(width if lookup else 0, dtype=np.int32)  # table positions of one step, own loop
        h_row, gs_row, g_row = membranes[steps - 1], grad_spikes[steps - 1], grad[steps - 1]
        for j in range(width):
            g_row[j] = gs_row[j] * slope_of(value(h_row[j]) * decode - threshold, param, one, zero, half_pi)
        for t in range(steps - 2, -1, -1):
            h_row, gs_row, g_row, g_next = membranes[t], grad_spikes[t], grad[t], grad[t + 1]
            if lookup:
                for j in range(width):
                    h = value(h_row[j]) * decode
                    fired = h > threshold
                    r = (zero if fired else h) if zero_reset else (h - threshold if fired else h)
                    index[j] = np.int32(_clamp((r - table_start) * table_scale, zero, last))
            for j in range(width):
                h = value(h_row[j]) * decode
                slope = slope_of(h - threshold, param, one, zero, half_pi)
                fired = h > threshold
                if zero_reset:
                    r = zero if fired else h
                    through = zero if fired else one
                    if not detach_reset:
                        through -= h * slope
                else:
                    r = h - threshold if fired else h
                    through = one
                    if not detach_reset:
                        through -= threshold * slope
                if quantized:
                    if ste:  # straight through inside the range
                        through *= one if (r >= low) & (r <= high) else zero
                    elif lookup:  # r lies on the input grid: the derivative is in the table
                        through *= table[index[j]]
                    else:
                        through *= _stacked_sigmoid(r, low, high)
                g_row[j] = gs_row[j] * slope + beta * through * g_next[j]

    return backward


TABLE_MARGIN = 12  # levels beyond the grid covered by the lookup table; further out the derivative is < 1e-9


def _stacked_table(dynamics: LIFDynamics, dtype: type) -> tuple[np.ndarray, float, float]:
    """Stacked-sigmoid derivative on the 2^−f grid the reset membrane lives on (empty when it has none)."""
    if dynamics.frac_bits is None or dynamics.quant_grad != "stacked-sigmoid":
        return np.empty(0, dtype=dtype), 0.0, 1.0
    return _cached_table(*dynamics.levels, dynamics.frac_bits, dtype)


@functools.lru_cache(maxsize=32)
def _cached_table(low: float, high: float, frac_bits: int, dtype: type) -> tuple[np.ndarray, float, float]:
    scale = float(2**frac_bits)
    start = low - TABLE_MARGIN
    size = int((high - low + 2 * TABLE_MARGIN) * scale) + 1
    return _stacked_sigmoid_table(low, high, start, scale, size).astype(dtype), start, scale


def _scalars(dynamics: LIFDynamics, dtype: type) -> tuple:
    low, high = dynamics.levels if dynamics.quantized else (0.0, 0.0)
    return dtype(dynamics.beta), dtype(dynamics.threshold), dtype(low), dtype(high)


CODE_LIMIT = torch.iinfo(torch.int16).max


def forward(inputs: torch.Tensor, dynamics: LIFDynamics, compact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Membranes before firing h and spikes, both [T, …], of a neuron at rest driven by `inputs`.

    With `compact`, membranes on the fixed-point input grid (quantized, β = 2^−k) come back as int16 codes
    h·2^(k+1) — exact, half the memory of float32 — whenever every |h| fits; `backward` takes either.
    """
    dtype = DTYPES[inputs.dtype]
    inputs = inputs.detach().contiguous()
    frac = dynamics.frac_bits
    scale = dtype(0 if frac is None else 2**frac)
    spikes = torch.empty_like(inputs)
    for membranes in _membrane_buffers(inputs, compact and frac is not None):
        coded = membranes.dtype == torch.int16
        encode = scale if coded else dtype(1)
        flat = [tensor.view(len(inputs), -1).numpy() for tensor in (inputs, membranes, spikes)]
        kernel = _forward_kernel(dynamics.quantized, dynamics.reset == "zero", frac is not None)
        if kernel(*flat, *_scalars(dynamics, dtype), scale, encode, dtype(CODE_LIMIT / scale if coded else np.inf)):
            break
    return membranes, spikes


def _membrane_buffers(inputs: torch.Tensor, compact: bool):
    """int16 codes first where they may do, then the input's own float type."""
    if compact:
        yield torch.empty(inputs.shape, dtype=torch.int16)
    yield torch.empty_like(inputs)


def backward(membranes: torch.Tensor, grad_spikes: torch.Tensor, dynamics: LIFDynamics) -> torch.Tensor:
    """∂L/∂h [T, …] from the saved membranes (float, or int16 codes) and ∂L/∂spikes (recursion in `multistep`)."""
    grad_spikes = grad_spikes.contiguous()
    dtype = DTYPES[grad_spikes.dtype]
    decode = dtype(2.0 ** -dynamics.frac_bits) if membranes.dtype == torch.int16 else dtype(1)
    grad = torch.empty_like(grad_spikes)
    table, start, scale = _stacked_table(dynamics, dtype)
    flat = [tensor.view(len(membranes), -1).numpy() for tensor in (membranes, grad_spikes, grad)]
    kernel = _backward_kernel(dynamics.surrogate, dynamics.quant_grad, dynamics.quantized, dynamics.reset == "zero",
                              dynamics.detach_reset, table.size > 0)
    kernel(flat[0], decode, *flat[1:], *_scalars(dynamics, dtype), dtype(dynamics.param), dtype(math.pi / 2), table,
           dtype(start), dtype(scale))
    return grad
