"""Sparsity measures (metrics.py) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sparsity_latency.metrics import (
    GRAD_FORMS,
    grad_small_fraction,
    grad_sparsity,
    grad_zero_fraction,
    hoyer_sparsity,
    spike_sparsity,
)


def test_spike_sparsity_three_spikes_in_twelve() -> None:
    spikes = torch.zeros(2, 2, 3)
    spikes[0, 0, 0] = spikes[0, 1, 2] = spikes[1, 1, 1] = 1.0
    # 3 spikes in 2·2·3 = 12 elements: 1 − 3/12 = 0.75
    assert spike_sparsity(spikes) == pytest.approx(0.75)


@pytest.mark.parametrize(("fill", "expected"), [(0.0, 1.0), (1.0, 0.0)])
def test_spike_sparsity_silent_and_saturated(fill: float, expected: float) -> None:
    # no spike at all: 1 − 0/n = 1; a spike everywhere: 1 − n/n = 0
    assert spike_sparsity(torch.full((4, 3, 5), fill)) == expected


def test_grad_zero_fraction_counts_only_exact_zeros() -> None:
    # 0 and −0 are zero; 1e-30 and −2 are not: 2 of 5 → 0.4
    grad = torch.tensor([0.0, -0.0, 1e-30, -2.0, 3.0])
    assert grad_zero_fraction(grad) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("values", "tau", "expected"),
    [
        # max|g| = 1, bound 0.01·1 = 0.01: |0| and |0.005| are ≤ 0.01 → 2/4
        ([0.0, 0.005, -0.5, 1.0], 0.01, 0.5),
        # bound 0.5·1 = 0.5: 0, 0.005 and |−0.5| (at the bound, ≤ counts) → 3/4
        ([0.0, 0.005, -0.5, 1.0], 0.5, 0.75),
        # the maximum is taken of |g|: max|g| = |−2| = 2, bound 0.02: 0.01 yes, 0.03 no → 1/3
        ([-2.0, 0.01, 0.03], 0.01, 1 / 3),
        # τ = 0: only exact zeros, 1 of 4
        ([0.0, 0.005, -0.5, 1.0], 0.0, 0.25),
        # τ = 1: every entry is ≤ max|g| → 1
        ([0.0, 0.005, -0.5, 1.0], 1.0, 1.0),
    ],
)
def test_grad_small_fraction_hand_values(values: list[float], tau: float, expected: float) -> None:
    grad = torch.tensor(values, dtype=torch.float64)
    assert grad_small_fraction(grad, tau) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # one-hot, n = 4: ‖g‖₁ = ‖g‖₂ = 1 → (2 − 1)/(2 − 1) = 1
        ([0.0, 0.0, 1.0, 0.0], 1.0),
        # sign does not matter: ‖g‖₁ = ‖g‖₂ = 5 → 1
        ([0.0, -5.0, 0.0, 0.0, 0.0], 1.0),
        # constant, n = 9: ‖g‖₁ = 9c, ‖g‖₂ = 3c → (3 − 3)/(3 − 1) = 0
        ([0.7] * 9, 0.0),
        # g = [3, 4]: ‖g‖₁ = 7, ‖g‖₂ = 5 → (√2 − 7/5)/(√2 − 1) = (√2 − 1.4)(√2 + 1) = 0.6 − 0.4·√2 ≈ 0.0343146
        ([3.0, 4.0], 0.6 - 0.4 * math.sqrt(2.0)),
        # g = [1, 1, 0, 0]: ‖g‖₁ = 2, ‖g‖₂ = √2 → (2 − √2)/(2 − 1) = 2 − √2
        ([1.0, 1.0, 0.0, 0.0], 2.0 - math.sqrt(2.0)),
        # a single entry is one-hot by definition → 1
        ([-3.0], 1.0),
    ],
)
def test_hoyer_hand_values(values: list[float], expected: float) -> None:
    assert hoyer_sparsity(torch.tensor(values)) == pytest.approx(expected, abs=1e-12)


def test_hoyer_reads_all_entries_of_a_multi_dim_tensor() -> None:
    # [2, 2] one-hot is the same as the flat n = 4 one-hot → 1; all-equal [2, 3] → 0
    assert hoyer_sparsity(torch.tensor([[0.0, 0.0], [0.0, 2.0]])) == pytest.approx(1.0)
    assert hoyer_sparsity(torch.full((2, 3), -1.5)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4, 5)])
def test_all_zero_gradient_is_fully_sparse_in_every_form(shape: tuple[int, ...]) -> None:
    grad = torch.zeros(shape)
    assert grad_zero_fraction(grad) == 1.0
    assert grad_small_fraction(grad, 0.01) == 1.0  # |0| ≤ 0.01·0
    assert hoyer_sparsity(grad) == 1.0
    assert grad_sparsity(grad, 0.01) == {"zero_fraction": 1.0, "small_fraction": 1.0, "hoyer": 1.0}


@pytest.mark.parametrize("scale", [0.5, 3.0, 1e3])
def test_gradient_forms_are_scale_invariant(scale: float) -> None:
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(6, 50, generator=generator, dtype=torch.float64)
    grad[grad.abs() < 0.3] = 0.0  # some exact zeros, so zero_fraction is not trivially 0
    base = grad_sparsity(grad, 0.05)
    scaled = grad_sparsity(grad * scale, 0.05)
    assert 0.0 < base["zero_fraction"] < 1.0
    assert 0.0 < base["hoyer"] < 1.0
    for form in GRAD_FORMS:
        assert scaled[form] == pytest.approx(base[form], abs=1e-12), form


def test_grad_sparsity_keys_and_values() -> None:
    grad = torch.tensor([0.0, 0.005, -0.5, 1.0])
    result = grad_sparsity(grad, 0.01)
    assert tuple(result) == GRAD_FORMS
    # exact zeros: 1 of 4; |g| ≤ 0.01: 2 of 4; Hoyer: ‖g‖₁ = 1.505, ‖g‖₂ = √(0.000025 + 0.25 + 1)
    l1, l2 = 1.505, math.sqrt(0.005**2 + 0.5**2 + 1.0)
    assert result["zero_fraction"] == pytest.approx(0.25)
    assert result["small_fraction"] == pytest.approx(0.5)
    assert result["hoyer"] == pytest.approx((2.0 - l1 / l2) / (2.0 - 1.0), rel=1e-6)


def test_grad_sparsity_accepts_a_tensor_that_requires_grad() -> None:
    grad = torch.tensor([0.0, 2.0], requires_grad=True)
    # one-hot of n = 2 → every form: zero 1/2, small (≤ 0.02) 1/2, Hoyer 1
    assert grad_sparsity(grad, 0.01) == {"zero_fraction": 0.5, "small_fraction": 0.5, "hoyer": 1.0}
