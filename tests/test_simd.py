"""`latency.simd` register vectors and the event kernels' bit tricks against plain numpy."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from sparsity_latency.latency.event_kernels import PACK
from sparsity_latency.latency.simd import (
    lanes,
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


@numba.njit(cache=True)
def _sum_rows(weight, rows, values, scaled, out):
    """out[:lanes] = Σ_i (values[i] ·) weight[rows[i], :lanes] through one register vector of out's type (weights
    of a narrower integer type widened as they load); returns the lanes (`vwidth`)."""
    a = vzero(out)
    for i in range(len(rows)):
        v = vload_as(weight, rows[i] * weight.shape[1], out)
        a = vadd(a, vscale(v, values[i]) if scaled else v)
    vstore(out, 0, a)
    return vwidth(out)


@numba.njit(cache=True)
def _lowest_bits(word):
    out = []
    while word:
        out.append(trailing_zeros(word))
        word &= word - np.uint64(1)
    return out


@pytest.mark.parametrize(("dtype", "stored"), [(np.int16, np.int16), (np.int16, np.int8), (np.int32, np.int8),
                                               (np.int32, np.int32), (np.float64, np.float64)])
@pytest.mark.parametrize("scaled", [False, True])
def test_register_sum_equals_numpy(dtype: type, stored: type, scaled: bool) -> None:
    rng = np.random.default_rng(0)
    width = lanes(dtype)
    weight = rng.integers(-3, 4, size=(9, width + 5)).astype(stored)  # rows longer than one vector
    if dtype == np.float64:
        weight = weight + rng.random(weight.shape)
    rows = np.array([4, 0, 8, 4, 2], dtype=np.int64)
    values = np.array([1, 2, 3, 4, 1], dtype=np.int32)
    out = np.full(width + 3, 7, dtype=dtype)  # the elements past one vector stay untouched
    assert _sum_rows(weight, rows, values, scaled, out) == width
    expected = ((values[:, None] if scaled else 1) * weight[rows, :width].astype(dtype)).sum(axis=0)
    np.testing.assert_allclose(out[:width], expected, rtol=0, atol=1e-12)
    assert (out[width:] == 7).all()
    assert width * np.dtype(dtype).itemsize == 64


def test_trailing_zeros_visits_set_bits_lowest_first() -> None:
    for word in (1, 2**63, 0b1011000, 2**64 - 1, 0x8000_0001_0000_0010):
        assert list(_lowest_bits(np.uint64(word))) == [i for i in range(64) if word >> i & 1]
    assert list(_lowest_bits(np.uint64(0))) == []


def test_pack_puts_each_byte_flag_on_its_bit() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        flags = (rng.random(8) < 0.5).astype(np.uint8)
        word = int(flags.view(np.uint64)[0])
        packed = (word * int(PACK) % 2**64) >> 56
        assert packed == sum(int(bit) << i for i, bit in enumerate(flags))


@numba.njit(cache=True)
def _lane_ops(a, b, out, packed, fill):
    x, y = vload(a, 0), vload(b, 0)
    greater, equal = vgt(x, y), veq(x, y)
    vstore(out, 0, vselect(greater, vsub(x, y), vsplat(a, fill)))
    vcompress(packed, 1, x, vbits(greater))
    return vbits(greater), vbits(equal), popcount(vbits(greater))


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_compares_selects_and_compress_equal_numpy(dtype: type) -> None:
    rng = np.random.default_rng(2)
    width = lanes(dtype)
    a, b = (rng.integers(-3, 4, size=width).astype(dtype) for _ in range(2))
    out = np.zeros(width, dtype=dtype)
    packed = np.full(width + 2, 9, dtype=dtype)
    greater, equal, count = _lane_ops(a, b, out, packed, -7)
    assert greater == sum(1 << i for i in range(width) if a[i] > b[i])
    assert equal == sum(1 << i for i in range(width) if a[i] == b[i])
    assert count == (a > b).sum()
    np.testing.assert_array_equal(out, np.where(a > b, a - b, -7))
    np.testing.assert_array_equal(packed[1:1 + count], a[a > b])  # the kept lanes in order, then a whole vector
    assert packed[0] == 9 and packed[-1] == 9
