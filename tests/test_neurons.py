"""Quantized-membrane LIF neurons (neurons/): quantizer, hand-traced steps, surrogates, snntorch parity."""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch

from sparsity_latency.neurons import SURROGATES, MultiStep, QuantLeaky, membrane_levels, quantize_membrane

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


def test_quantize_membrane_clamps_and_rounds() -> None:
    mem = torch.tensor([-3.0, -0.6, -0.4, 0.3, 0.7, 2.0])
    # clamp to [−1, 1]: [−1, −0.6, −0.4, 0.3, 0.7, 1] → round: [−1, −1, 0, 0, 1, 1]
    torch.testing.assert_close(quantize_membrane(mem, -1.0, 1.0), torch.tensor([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]))
    # wider grid [−6, 1]: −3 stays, 2 → 1
    torch.testing.assert_close(quantize_membrane(mem, -6.0, 1.0), torch.tensor([-3.0, -1.0, 0.0, 0.0, 1.0, 1.0]))


def test_quantize_membrane_straight_through_gradient() -> None:
    mem = torch.tensor([-3.0, -0.6, -0.4, 0.3, 0.7, 2.0], requires_grad=True)
    quantize_membrane(mem, -1.0, 1.0).sum().backward()
    # rounding passes the gradient unchanged (1); clamping stops it outside [−1, 1] (0)
    torch.testing.assert_close(mem.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


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
        # ternary, hard reset. mem = 0.5·mem + x; spike if mem > 1; reset to 0; clamp to [−1, 1]; round
        #   t1: 0.8 → no spike → round(0.8) = 1
        #   t2: 0.5·1 + 0.8 = 1.3 → spike → 0
        #   t3: 0 + 1.8 = 1.8 → spike → 0
        #   t4: 0 − 3 = −3 → no spike → clamp −1
        (1.58, "zero", [0, 1, 1, 0], [1, 0, 0, -1]),
        # ternary, subtract reset (mem − 1 on a spike)
        #   t1: 0.8 → 1;  t2: 1.3 → spike → 0.3 → 0;  t3: 1.8 → spike → 0.8 → 1;  t4: 0.5 − 3 = −2.5 → −1
        (1.58, "subtract", [0, 1, 1, 0], [1, 0, 1, -1]),
        # full precision, hard reset: 0.8;  0.4 + 0.8 = 1.2 → spike → 0;  1.8 → spike → 0;  −3
        (32, "zero", [0, 1, 1, 0], [0.8, 0, 0, -3.0]),
        # full precision, subtract: 0.8;  1.2 → 0.2;  0.1 + 1.8 = 1.9 → 0.9;  0.45 − 3 = −2.55
        (32, "subtract", [0, 1, 1, 0], [0.8, 0.2, 0.9, -2.55]),
        # 4 levels {−2, …, 1}, hard reset: 0.8 → 1;  1.3 → 0;  1.8 → 0;  −3 → clamp −2
        (2, "zero", [0, 1, 1, 0], [1, 0, 0, -2]),
    ],
)
def test_quant_leaky_hand_trace(bits: float, reset: str, spikes: list[float], mems: list[float]) -> None:
    lif = QuantLeaky(beta=0.5, threshold=1.0, membrane_bits=bits, reset=reset)
    got_spikes, got_mems = trace(lif, X)
    assert got_spikes == spikes
    assert got_mems == pytest.approx(mems, abs=1e-6)


def test_rounding_of_the_stored_membrane_can_make_a_spike() -> None:
    # x = [0.6, 0.6]. Ternary: t1 0.6 → round 1; t2 0.5·1 + 0.6 = 1.1 > 1 → spike.
    # Full precision: t1 0.6; t2 0.3 + 0.6 = 0.9 → no spike.
    assert trace(QuantLeaky(membrane_bits=1.58), [0.6, 0.6])[0] == [0, 1]
    assert trace(QuantLeaky(membrane_bits=32), [0.6, 0.6]) == ([0, 0], [pytest.approx(0.6), pytest.approx(0.9)])


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
        # u = x − 1 = [0.25, 1.5, −0.5, −0.25, 0]; triangle max(0, γ − |u|)/γ²
        (1.0, [0.75, 0.0, 0.5, 0.75, 1.0]),  # γ = 1: 1 − |u|, 0 beyond |u| = 1
        (2.0, [0.4375, 0.125, 0.375, 0.4375, 0.5]),  # γ = 2: (2 − |u|)/4
    ],
)
def test_triangle_surrogate_gradient(width: float, expected: list[float]) -> None:
    x = torch.tensor([1.25, 2.5, 0.5, 0.75, 1.0], requires_grad=True)
    spk, _ = QuantLeaky(threshold=1.0, surrogate="triangle", surrogate_width=width)(x)
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


def test_gradient_through_time_hand_trace() -> None:
    # Ternary, hard reset, triangle γ = 1, x = [0.6, 0.6]:
    #   t1: m1 = x1 = 0.6, no spike, stored q(m1) = 1 with straight-through gradient 1
    #   t2: m2 = 0.5·q(m1) + x2 = 1.1, u = 0.1 → spike, surrogate 1 − 0.1 = 0.9
    #   d spk2/d x2 = 0.9;  d spk2/d x1 = 0.9 · 0.5 · 1 = 0.45
    x = torch.tensor([0.6, 0.6], requires_grad=True)
    lif = QuantLeaky(membrane_bits=1.58, reset="zero")
    _, mem = lif(x[0:1])
    spk2, _ = lif(x[1:2], mem)
    spk2.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.45, 0.9]))


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
                      surrogate_width=2.0)


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
