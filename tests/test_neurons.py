"""Quantized-membrane LIF neurons (neurons/): quantizer, hand-traced steps, surrogates, snntorch parity and
compatibility. The ways of running a whole layer are compared with each other in test_neuron_paths.py."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import weakref

import pytest
import snntorch as snn
import torch
from torch import nn

from sparsity_latency.neurons import (
    SURROGATES,
    MultiStep,
    QuantLeaky,
    membrane_levels,
    quantize_membrane,
    storage_bits,
)
from sparsity_latency.neurons.quantizer import STACKED_SIGMOID_EXACT_UP_TO, stacked_sigmoid_derivative, ste_derivative

# ---------------------------------------------------------------------------------------------- quantizer


@pytest.mark.parametrize(
    ("bits", "top", "expected"),
    [
        (1.58, 1.0, (-1, 1)),  # 2^1.58 = 2.99 → 3 levels {−1, 0, 1}
        (2, 1.0, (-2, 1)),  # 4 levels {−2, …, 1}
        (math.log2(5), 1.0, (-3, 1)),  # 5 levels {−3, …, 1}
        (3, 1.0, (-6, 1)),  # 8 levels {−6, …, 1}
        (1.58, 2.0, (0, 2)),  # 3 levels whose top is 2: {0, 1, 2}
    ],
)
def test_membrane_levels(bits: float, top: float, expected: tuple[int, int]) -> None:
    assert membrane_levels(bits, top=top) == expected


@pytest.mark.parametrize(
    ("bits", "expected"),
    [(1.58, 2), (math.log2(3), 2), (2, 2), (math.log2(5), 3), (3, 3), (8, 8), (32, 32), (64, 32)],
)
def test_storage_bits(bits: float, expected: int) -> None:
    # ⌈b⌉ bits per neuron (a ternary membrane takes 2, five levels take 3); 32 at full precision (b ≥ 32)
    assert storage_bits(bits) == expected


def test_quantize_membrane_clamps_and_rounds() -> None:
    mem = torch.tensor([-3.0, -0.6, -0.4, 0.3, 0.7, 2.0])
    # nearest level ⌈x − ½⌉, then clamp to [−1, 1]: −3 → −3 → −1;  −0.6 → ⌈−1.1⌉ = −1;  −0.4 → ⌈−0.9⌉ = 0;
    # 0.3 → ⌈−0.2⌉ = 0;  0.7 → ⌈0.2⌉ = 1;  2 → ⌈1.5⌉ = 2 → 1
    torch.testing.assert_close(quantize_membrane(mem, -1.0, 1.0), torch.tensor([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]))
    # wider grid [−6, 1]: −3 stays, 2 → 1
    torch.testing.assert_close(quantize_membrane(mem, -6.0, 1.0), torch.tensor([-3.0, -1.0, 0.0, 0.0, 1.0, 1.0]))


def test_quantize_membrane_ties_go_to_the_lower_level() -> None:
    mem = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    # ⌈x − ½⌉: −2.5 → −3, −1.5 → −2, −0.5 → −1, 0.5 → 0, 1.5 → 1, 2.5 → 2 (torch.round, half to even, would
    # give −2, −2, 0, 0, 2, 2).  Ternary [−1, 1] clamps: [−1, −1, −1, 0, 1, 1]
    torch.testing.assert_close(quantize_membrane(mem, -1.0, 1.0), torch.tensor([-1.0, -1.0, -1.0, 0.0, 1.0, 1.0]))
    # [−6, 1]: only 2.5 → 2 is clamped, to 1
    torch.testing.assert_close(quantize_membrane(mem, -6.0, 1.0), torch.tensor([-3.0, -2.0, -1.0, 0.0, 1.0, 1.0]))
    # ternary with top 2, {0, 1, 2}: 1.5 → 1 unclamped (torch.round: 2)
    torch.testing.assert_close(quantize_membrane(mem, 0.0, 2.0), torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 2.0]))


def test_quantize_membrane_straight_through_gradient() -> None:
    mem = torch.tensor([-3.0, -0.6, -0.4, 0.3, 0.7, 2.0], requires_grad=True)
    quantize_membrane(mem, -1.0, 1.0, grad="ste").sum().backward()
    # rounding passes the gradient unchanged (1); clamping stops it outside [−1, 1] (0)
    torch.testing.assert_close(mem.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


def test_ste_derivative_is_one_exactly_on_the_closed_clamp_range() -> None:
    x = torch.tensor([-1.5, -1.0, -0.2, 0.5, 1.0, 1.01, 3.0])
    torch.testing.assert_close(ste_derivative(x, -1.0, 1.0), torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]))


# bump(d) = τ·σ(τd)·(1 − σ(τd)) with τ = 2, d = x − c for a level boundary c (bump(−d) = bump(d)):
#   bump(0) = 2·½·½ = 0.5
#   bump(½) = 2·σ(1)·(1 − σ(1)) = 2·0.731059·0.268941 = 0.393224
#   bump(1) = 2·σ(2)·(1 − σ(2)) = 2·0.880797·0.119203 = 0.209987
#   bump(1.5) = 2·σ(3)·(1 − σ(3)) = 2·0.952574·0.047426 = 0.090353
#   bump(2) = 2·σ(4)·(1 − σ(4)) = 2·0.982014·0.017986 = 0.035325
#   bump(2.5) = 2·σ(5)·(1 − σ(5)) = 2·0.993307·0.006693 = 0.013296
@pytest.mark.parametrize(
    ("low", "high", "x", "expected"),
    [
        (-1.0, 1.0, 0.0, 0.786448),  # ternary, boundaries ±½: bump(½) + bump(−½) = 2·0.393224
        (-1.0, 1.0, 0.5, 0.709987),  # bump(0) + bump(1) = 0.5 + 0.209987
        (-1.0, 1.0, -0.5, 0.709987),  # bump(1) + bump(0), the mirror image
        (-1.0, 1.0, 2.0, 0.103649),  # bump(1.5) + bump(2.5): no clamp mask, so not 0 outside the grid
        (-2.0, 1.0, 0.5, 0.745313),  # 2 bits, boundaries −1.5, −½, ½: bump(2) + bump(1) + bump(0)
    ],
)
def test_stacked_sigmoid_gradient_by_hand(low: float, high: float, x: float, expected: float) -> None:
    mem = torch.tensor([x], requires_grad=True)
    quantize_membrane(mem, low, high, grad="stacked-sigmoid").sum().backward()
    torch.testing.assert_close(mem.grad, torch.tensor([expected]), rtol=0, atol=1e-6)


def test_stacked_sigmoid_window_equals_the_full_sum_for_8_bits() -> None:
    low, high = membrane_levels(8)  # {−254, …, 1}: 255 boundaries, more than are summed one by one
    boundaries = torch.arange(low + 0.5, high, 1.0, dtype=torch.float64)
    assert len(boundaries) == 255 > STACKED_SIGMOID_EXACT_UP_TO
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([
        torch.arange(-300.0, 30.0, 0.125),  # levels, boundaries and points between, inside and outside the grid
        torch.rand(2000, generator=generator) * 330 - 300,
        torch.tensor([-1e4, 1e4]),
    ])
    sig = torch.sigmoid(2 * (x.double()[:, None] - boundaries))
    full = (2 * sig * (1 - sig)).sum(dim=1)
    error = (stacked_sigmoid_derivative(x, low, high).double() - full).abs().max()
    assert error < 1e-5


# ---------------------------------------------------------------------------------------------- hand traces

X = [0.8, 0.8, 1.8, -3.0]


def trace(lif: QuantLeaky, inputs: list[float]) -> tuple[list[float], list[float]]:
    """Spikes and stored membranes of one neuron stepped from rest."""
    mem = lif.init_leaky()
    spikes, mems = [], []
    for value in inputs:
        spk, mem = lif(torch.tensor([value]), mem)
        spikes.append(float(spk))
        mems.append(float(mem))
    return spikes, mems


@pytest.mark.parametrize(
    ("bits", "reset", "spikes", "mems"),
    [
        # Quantized, β = ½: the current is first rounded up to the ¼ grid, x = [0.8, 0.8, 1.8, −3] → [1, 1, 2, −3].
        # ternary, hard reset. mem = 0.5·mem + x; spike if mem > 1; reset to 0; then ⌈mem − ½⌉ clamped to [−1, 1]
        #   t1: 1.0 is not > 1 → no spike → ⌈0.5⌉ = 1
        #   t2: 0.5·1 + 1 = 1.5 → spike → 0
        #   t3: 0 + 2 = 2 → spike → 0
        #   t4: 0 − 3 = −3 → no spike → clamp −1
        (1.58, "zero", [0, 1, 1, 0], [1, 0, 0, -1]),
        # ternary, subtract reset (mem − 1 on a spike)
        #   t1: 1 → 1;  t2: 1.5 → spike → 0.5 → ⌈0⌉ = 0 (a tie, to the lower level);  t3: 2 → spike → 1 → 1;
        #   t4: 0.5 − 3 = −2.5 → −1
        (1.58, "subtract", [0, 1, 1, 0], [1, 0, 1, -1]),
        # full precision (no rounding), hard reset: 0.8;  0.4 + 0.8 = 1.2 → spike → 0;  1.8 → spike → 0;  −3
        (32, "zero", [0, 1, 1, 0], [0.8, 0, 0, -3.0]),
        # full precision, subtract: 0.8;  1.2 → 0.2;  0.1 + 1.8 = 1.9 → 0.9;  0.45 − 3 = −2.55
        (32, "subtract", [0, 1, 1, 0], [0.8, 0.2, 0.9, -2.55]),
        # 4 levels {−2, …, 1}, hard reset: 1 → 1;  1.5 → 0;  2 → 0;  −3 → clamp −2
        (2, "zero", [0, 1, 1, 0], [1, 0, 0, -2]),
    ],
)
def test_quant_leaky_hand_trace(bits: float, reset: str, spikes: list[float], mems: list[float]) -> None:
    lif = QuantLeaky(beta=0.5, threshold=1.0, membrane_bits=bits, reset=reset)
    got_spikes, got_mems = trace(lif, X)
    assert got_spikes == spikes
    assert got_mems == pytest.approx(mems, abs=1e-6)


def test_rounding_can_make_a_spike() -> None:
    # x = [0.6, 0.6]. Ternary: the current rounds up to the ¼ grid, 0.75; t1 0.75 → stored ⌈0.25⌉ = 1;
    # t2 0.5·1 + 0.75 = 1.25 > 1 → spike.  Full precision: t1 0.6; t2 0.3 + 0.6 = 0.9 → no spike.
    assert trace(QuantLeaky(membrane_bits=1.58), [0.6, 0.6]) == ([0, 1], [1, 0])
    assert trace(QuantLeaky(membrane_bits=32), [0.6, 0.6]) == ([0, 0], [pytest.approx(0.6), pytest.approx(0.9)])


def test_a_tie_rounded_down_can_remove_a_spike() -> None:
    # x = [0.5, 1.0], already on the ¼ grid. Ternary: t1 0.5 → stored ⌈0⌉ = 0 (a tie goes down);
    # t2 0 + 1 = 1, not > 1 → no spike.  Full precision: t2 0.25 + 1 = 1.25 → spike.
    assert trace(QuantLeaky(membrane_bits=1.58), [0.5, 1.0]) == ([0, 0], [0, 1])
    assert trace(QuantLeaky(membrane_bits=32), [0.5, 1.0])[0] == [0, 1]


def test_spike_needs_strictly_more_than_threshold() -> None:
    # mem = 1 exactly is not > 1: no spike
    spk, _ = QuantLeaky(membrane_bits=32)(torch.tensor([1.0]))
    assert float(spk) == 0.0


def test_unknown_reset_is_rejected() -> None:
    with pytest.raises(ValueError, match="reset"):
        QuantLeaky(reset="none")


# ---------------------------------------------------------------------------------------------- surrogates


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        # x lies on the ¼ grid, so the input rounding of the (ternary, β = ½) neuron leaves it as it is.
        # u = x − 1 = [0.25, 1.5, −0.5, −0.25, 0]; triangle max(0, γ − |u|)/γ²
        (1.0, [0.75, 0.0, 0.5, 0.75, 1.0]),  # γ = 1: 1 − |u|, 0 beyond |u| = 1
        (2.0, [0.4375, 0.125, 0.375, 0.4375, 0.5]),  # γ = 2: (2 − |u|)/4
    ],
)
def test_triangle_surrogate_gradient(width: float, expected: list[float]) -> None:
    x = torch.tensor([1.25, 2.5, 0.5, 0.75, 1.0], requires_grad=True)
    spk, _ = QuantLeaky(threshold=1.0, surrogate="triangle", surrogate_param=width)(x)
    torch.testing.assert_close(spk.detach(), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    spk.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor(expected))


def test_atan_surrogate_gradient_is_never_zero() -> None:
    u = torch.tensor([-100.0, -1.0, 0.0, 1.0, 100.0], requires_grad=True)
    SURROGATES["atan"](u, 1.0).sum().backward()
    # (α/2)/(1 + (π/2·α·u)²), α = 1: 0.5 at u = 0, 0.5/(1 + π²/4) at |u| = 1, 0.5/(1 + (50π)²) ≈ 2e-5 at |u| = 100
    far, near = 0.5 / (1 + (50 * math.pi) ** 2), 0.5 / (1 + math.pi**2 / 4)
    torch.testing.assert_close(u.grad, torch.tensor([far, near, 0.5, near, far]))
    assert (u.grad > 0).all()


@pytest.mark.parametrize(
    ("name", "param", "u", "expected"),
    [
        # fast sigmoid 1/(1 + k·|u|)²;  k = 25: (1 + 0)², (1 + 1)², (1 + 5)², (1 + 25)²
        ("fast-sigmoid", 25.0, [0.0, 0.04, -0.2, 1.0], [1.0, 1 / 4, 1 / 36, 1 / 676]),
        ("fast-sigmoid", 10.0, [0.1, -0.3], [1 / 4, 1 / 16]),  # k = 10: (1 + 1)², (1 + 3)²
        # rectangle [|u| < a/2]/a, open at the edges;  a = 1: 1 inside |u| < ½
        ("rectangle", 1.0, [0.0, 0.49, -0.49, 0.5, -0.5, 2.0], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
        ("rectangle", 0.5, [0.2, -0.2, 0.25, 0.3], [2.0, 2.0, 0.0, 0.0]),  # a = ½: 2 inside |u| < ¼
    ],
)
def test_surrogate_derivative_by_hand(name: str, param: float, u: list[float], expected: list[float]) -> None:
    leaf = torch.tensor(u, requires_grad=True)
    SURROGATES[name](leaf, param).sum().backward()
    torch.testing.assert_close(leaf.grad, torch.tensor(expected))


@pytest.mark.parametrize(
    ("name", "default", "slope"),
    [
        # the slope at u = x − θ = ¼ with the default parameter
        ("triangle", 1.0, 0.75),  # γ = 1: 1 − ¼
        ("atan", 2.0, 0.618486),  # α = 2: 1/(1 + (π/2·2·¼)²) = 1/(1 + 0.616850)
        ("fast-sigmoid", 25.0, 0.019025),  # k = 25: 1/(1 + 6.25)² = 1/52.5625
        ("rectangle", 1.0, 1.0),  # a = 1: |¼| < ½ → 1/1
    ],
)
def test_surrogate_param_zero_means_the_default(name: str, default: float, slope: float) -> None:
    lif = QuantLeaky(membrane_bits=32, surrogate=name, surrogate_param=0)
    assert lif.dynamics.param == default
    assert QuantLeaky(surrogate=name, surrogate_param=0.3).dynamics.param == 0.3
    x = torch.tensor([1.25], requires_grad=True)
    spk, _ = lif(x)
    spk.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([slope]), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "exact_zeros"), [("triangle", True), ("rectangle", True), ("atan", False),
                                                  ("fast-sigmoid", False)])
def test_only_triangle_and_rectangle_give_exact_zero_gradients(name: str, exact_zeros: bool) -> None:
    # |u| ≥ 1: outside the triangle (γ = 1) and the rectangle (|u| < ½); the slope of atan (α = 2) at u = 1000 is
    # 1/(1 + (1000π)²) ≈ 1e-7, of the fast sigmoid (k = 25) 1/25001² ≈ 1.6e-9: small, yet above 0 in float32
    u = torch.tensor([-1000.0, -3.0, -1.0, 1.0, 3.0, 1000.0], requires_grad=True)
    SURROGATES[name](u, QuantLeaky(surrogate=name).dynamics.param).sum().backward()
    if exact_zeros:
        assert (u.grad == 0).all()
    else:
        assert (u.grad > 0).all()


@pytest.mark.parametrize(
    ("quant_grad", "expected"),
    [
        # Ternary, hard reset, triangle γ = 1, x = [0.6, 0.6], both rounded up to 0.75 (gradient passed straight):
        #   t1: m1 = 0.75, no spike, stored q(m1) = ⌈0.25⌉ = 1
        #   t2: m2 = 0.5·q(m1) + 0.75 = 1.25, u = 0.25 → spike, surrogate 1 − 0.25 = 0.75
        #   d spk2/d x2 = 0.75;  d spk2/d x1 = 0.75 · 0.5 · q'(0.75)
        ("ste", [0.375, 0.75]),  # q' = 1 inside [−1, 1]: 0.75·0.5·1 = 0.375
        # q'(0.75) = bump(0.75 − ½) + bump(0.75 + ½) = 2·σ(0.5)·(1 − σ(0.5)) + 2·σ(2.5)·(1 − σ(2.5))
        #          = 2·0.622459·0.377541 + 2·0.924142·0.075858 = 0.470007 + 0.140207 = 0.610215
        ("stacked-sigmoid", [0.228830, 0.75]),  # 0.75·0.5·0.610215 = 0.228830
    ],
)
def test_gradient_through_time_hand_trace(quant_grad: str, expected: list[float]) -> None:
    x = torch.tensor([0.6, 0.6], requires_grad=True)
    lif = QuantLeaky(membrane_bits=1.58, reset="zero", quant_grad=quant_grad)
    _, mem = lif(x[0:1])
    spk2, _ = lif(x[1:2], mem)
    assert float(spk2.detach()) == 1.0
    spk2.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor(expected), rtol=0, atol=1e-6)


def test_hard_reset_uses_the_spike_without_its_gradient() -> None:
    # t1: x1 = 1.2 spikes, mem reset to (1 − spk)·mem with spk detached → 0·m1: no path from x1 to the membrane
    x = torch.tensor([1.2, 0.9], requires_grad=True)
    lif = QuantLeaky(membrane_bits=32, reset="zero")
    _, mem = lif(x[0:1])
    mem.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.0]))


# ---------------------------------------------------------------------------------------------- multi-step


@pytest.mark.parametrize(("bits", "reset"), [(1.58, "zero"), (3, "subtract"), (32, "zero")])
def test_multistep_equals_the_manual_loop(bits: float, reset: str) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(7, 3, 5, generator=generator) * 1.5  # [T, B, N]
    neuron = QuantLeaky(membrane_bits=bits, reset=reset)
    spikes = MultiStep(neuron)(inputs)
    assert spikes.shape == inputs.shape
    mem, expected = None, []
    for x_t in inputs:
        spk, mem = neuron(x_t, mem)
        expected.append(spk)
    torch.testing.assert_close(spikes, torch.stack(expected))
    assert 0 < spikes.sum() < spikes.numel()


# ---------------------------------------------------------------------------------------------- snntorch parity
# snntorch 1.0's Leaky computes reset = [mem_prev > θ] (detached) from the membrane it returned last step, then
# mem = β·mem_prev + x − reset·θ and spk = [mem > θ]. With reset_delay=True (its default) the returned membrane is
# *not* reset after a spike: the θ is subtracted one step later, undecayed. With reset_delay=False it also
# subtracts (spk − reset)·θ at once, so the returned membrane is β·mem_prev + x − spk·θ, exactly QuantLeaky's
# subtract reset — as long as that returned membrane never exceeds θ (then `reset` stays 0). With β = 0.5, θ = 1
# and inputs x ≤ 1.5 it cannot: from mem_prev ≤ 1, β·mem_prev + x ≤ 2, and after subtracting θ on a spike ≤ 1.


def run_loop(lif: torch.nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same snntorch-style loop for either neuron: spikes and returned membranes, [T, …]."""
    mem = lif.init_leaky()
    spikes, mems = [], []
    for x_t in inputs:
        spk, mem = lif(x_t, mem)
        spikes.append(spk.detach().clone())
        mems.append(mem.detach().clone())
    return torch.stack(spikes), torch.stack(mems)


def full_precision_subtract() -> QuantLeaky:
    # snntorch's default surrogate is atan with α = 2
    return QuantLeaky(beta=0.5, threshold=1.0, membrane_bits=32, reset="subtract", surrogate="atan",
                      surrogate_param=2.0)


def test_snntorch_leaky_without_reset_delay_gives_identical_spikes_and_membranes() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(40, 4, 25, generator=generator) * 2.4 - 1.0  # uniform in [−1, 1.4], below 1.5
    ours = run_loop(full_precision_subtract(), inputs)
    theirs = run_loop(snn.Leaky(beta=0.5, threshold=1.0, reset_delay=False), inputs)
    assert theirs[1].max() <= 1.0  # the premise above: snntorch's own reset signal never fires
    assert 0 < ours[0].sum() < ours[0].numel()
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=0)
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=0)


def test_snntorch_first_step_surrogate_gradient_matches() -> None:
    # from rest both compute spk = atan_surrogate(x − θ) with α = 2: the same d spk/d x
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, generator=generator) + 1.0
    grads = []
    for lif in (full_precision_subtract(), snn.Leaky(beta=0.5, threshold=1.0, reset_delay=False)):
        leaf = x.clone().requires_grad_()
        spk, _ = lif(leaf, lif.init_leaky())
        spk.sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_snntorch_default_reset_delay_differs_by_a_delayed_undecayed_reset() -> None:
    # x = [1.5, 1.0]
    # QuantLeaky subtract: t1 1.5 → spike, stored 0.5;  t2 0.25 + 1.0 = 1.25 → spike, stored 0.25
    # snntorch (reset_delay=True): t1 1.5 → spike, returned 1.5 (no reset yet);
    #   t2 reset = [1.5 > 1] = 1: 0.75 + 1.0 − 1 = 0.75 → no spike
    inputs = torch.tensor([[1.5], [1.0]])
    ours = run_loop(full_precision_subtract(), inputs)
    theirs = run_loop(snn.Leaky(beta=0.5, threshold=1.0), inputs)
    torch.testing.assert_close(ours[0].flatten(), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(ours[1].flatten(), torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(theirs[0].flatten(), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(theirs[1].flatten(), torch.tensor([1.5, 0.75]))


def test_snntorch_default_follows_the_delayed_reset_recursion() -> None:
    # snntorch default: u_t = β·u_{t−1} + x_t − θ·[u_{t−1} > θ], spk_t = [u_t > θ], u returned as is
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand(30, 3, 10, generator=generator) * 3.0 - 1.0
    spikes, mems = run_loop(snn.Leaky(beta=0.5, threshold=1.0), inputs)
    u = torch.zeros(3, 10)
    for t, x_t in enumerate(inputs):
        u = 0.5 * u + x_t - 1.0 * (u > 1.0).float()
        torch.testing.assert_close(mems[t], u)
        torch.testing.assert_close(spikes[t], (u > 1.0).float())


def test_snntorch_without_reset_delay_differs_when_the_reset_membrane_stays_above_threshold() -> None:
    # x = [3.0, 0.2]: after the first spike the membrane is 3 − 1 = 2 > θ.
    # QuantLeaky: t2 0.5·2 + 0.2 = 1.2 → spike, stored 0.2.
    # snntorch (reset_delay=False): t2 reset = [2 > 1] = 1 → 1.0 + 0.2 − 1 = 0.2 → no spike;
    #   then mem − (spk − reset)·θ = 0.2 + 1 = 1.2 returned.
    inputs = torch.tensor([[3.0], [0.2]])
    ours = run_loop(full_precision_subtract(), inputs)
    theirs = run_loop(snn.Leaky(beta=0.5, threshold=1.0, reset_delay=False), inputs)
    torch.testing.assert_close(ours[0].flatten(), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(ours[1].flatten(), torch.tensor([2.0, 0.2]))
    torch.testing.assert_close(theirs[0].flatten(), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(theirs[1].flatten(), torch.tensor([2.0, 1.2]))


# ---------------------------------------------------------------------------------------------- snntorch compatibility


class SnntorchStyleNet(nn.Module):
    """A user's own network: QuantLeaky beside an snntorch Leaky, stepped in the usual snntorch loop."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.lif1 = QuantLeaky(membrane_bits=1.58)
        self.fc2 = nn.Linear(16, 2)
        self.lif2 = snn.Leaky(beta=0.5, reset_delay=False)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        counts = torch.zeros(())
        for x_t in xs:
            spk1, mem1 = self.lif1(self.fc1(x_t), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            counts = counts + spk2
        return counts  # output spike counts [B, 2]


def test_quant_leaky_trains_in_an_snntorch_style_loop() -> None:
    torch.manual_seed(0)
    net = SnntorchStyleNet()
    generator = torch.Generator().manual_seed(0)
    xs = torch.rand(8, 16, 6, generator=generator) * 2  # [T, B, features]
    labels = torch.arange(16) % 2
    xs[:, labels == 1, :3] += 1.0  # class 1 drives the first three features harder
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(net(xs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert net.fc1.weight.grad.abs().sum() > 0  # the gradient reached the layer below QuantLeaky
    assert losses[-1] < 0.5 * losses[0]


def test_quant_leaky_keeps_no_registry_of_instances() -> None:
    assert not hasattr(QuantLeaky, "instances")
    lif = QuantLeaky()
    MultiStep(lif)(torch.randn(3, 2, 4))
    alive = weakref.ref(lif)
    del lif
    gc.collect()
    assert alive() is None
    # the same check catches snntorch's class-level list of live neurons
    leaky = snn.Leaky(beta=0.5)
    kept = weakref.ref(leaky)
    del leaky
    gc.collect()
    assert kept() is not None


def test_backward_through_nan_membranes_gives_nan_not_a_crash() -> None:
    """The compiled backward indexes a table by the membrane; a NaN membrane once read out of bounds (segfault).

    Run in a child process, so that a crash fails this test instead of killing the test session.
    """
    script = (
        "import torch\n"
        "from sparsity_latency.config import ModelConfig\n"
        "from sparsity_latency.models import build_model\n"
        "for bits in (1.58, 4.0):\n"
        "    model = build_model(ModelConfig(name='tiny-conv', channels=(4, 8), membrane_bits=bits), (2, 8, 8), 4)\n"
        "    x = torch.full((3, 2, 2, 8, 8), float('nan'), requires_grad=True)\n"
        "    model(x).sum().backward()\n"
        "    assert torch.isnan(x.grad).all()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
