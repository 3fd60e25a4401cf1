"""The ways of running one quantized LIF layer, each tested equal to another: the fused multi-step layer
(`MultiStepLIF`) against the step-by-step autograd loop (`MultiStep(QuantLeaky)`), the compiled CPU kernels
against the torch-operation path, the integer-only inference path against the fused one, snntorch's Leaky (via
`lif_layer`) against a full-precision layer, and the membrane gradients the two layers report to watchers.
"""

from __future__ import annotations

import itertools

import pytest
import snntorch as snn
import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.models.layers import lif_layer
from sparsity_latency.neurons import (
    QUANT_GRADS,
    RESETS,
    SURROGATES,
    LIFDynamics,
    MultiStep,
    MultiStepLIF,
    QuantLeaky,
    integer_membrane,
    kernels,
    multistep,
)
from sparsity_latency.neurons.integer import fixed_point_input, integer_spikes, state_dtype
from sparsity_latency.neurons.surrogates import DERIVATIVES

SURROGATE_NAMES = tuple(SURROGATES)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def loop_layer(d: LIFDynamics) -> MultiStep:
    """The reference: the same neuron stepped through time by autograd."""
    return MultiStep(QuantLeaky.from_dynamics(d))


def spikes_and_input_grad(layer: nn.Module, inputs: torch.Tensor,
                          weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes of `layer` and ∂L/∂inputs for the loss L = Σ weights·spikes (a weighted sum: non-trivial gradients)."""
    leaf = inputs.clone().requires_grad_()
    spikes = layer(leaf)
    (spikes * weights).sum().backward()
    return spikes.detach(), leaf.grad


def assert_some_spikes(spikes: torch.Tensor) -> None:
    assert 0 < spikes.sum() < spikes.numel()


# ---------------------------------------------------------------------------------------------- fused vs loop

BITS = (1.58, 2, 3, 4, 8, 32)
BETAS = (0.5, 0.25, 1.0, 0.9)
GRID = (BITS, RESETS, BETAS, SURROGATE_NAMES, QUANT_GRADS, (True, False))
# Every 11th setting of the full grid (6·2·4·4·2·2 = 768): 70 settings, among which every pair of values of any
# two factors occurs (checked by `test_settings_cover_every_pair`).
SETTINGS = list(itertools.product(*GRID))[::11]


def test_settings_cover_every_pair() -> None:
    for a, b in itertools.combinations(range(len(GRID)), 2):
        assert {(s[a], s[b]) for s in SETTINGS} == set(itertools.product(GRID[a], GRID[b]))


@pytest.mark.parametrize(("bits", "reset", "beta", "surrogate", "quant_grad", "detach_reset"), SETTINGS)
def test_fused_layer_equals_the_autograd_loop(bits: float, reset: str, beta: float, surrogate: str,
                                              quant_grad: str, detach_reset: bool) -> None:
    d = LIFDynamics(beta=beta, membrane_bits=bits, reset=reset, surrogate=surrogate, quant_grad=quant_grad,
                    detach_reset=detach_reset)
    inputs = randn(12, 3, 16, seed=0) * 1.2 + 0.3  # [T, B, N]
    weights = randn(12, 3, 16, seed=1)
    fused_spikes, fused_grad = spikes_and_input_grad(MultiStepLIF(d), inputs, weights)
    loop_spikes, loop_grad = spikes_and_input_grad(loop_layer(d), inputs, weights)
    assert_some_spikes(loop_spikes)
    assert torch.equal(fused_spikes, loop_spikes)
    assert loop_grad.abs().max() > 0.1
    # largest difference seen here: 9.5e-7 quantized, 2.4e-7 full precision (1.5e-6 over all 768 settings)
    torch.testing.assert_close(fused_grad, loop_grad, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- kernels vs torch

# (bits, β): input grid with the stacked-sigmoid table (1.58, 3, 8), no input grid (β = 0.9), the 8-bit window,
# full precision
KERNEL_NEURONS = ((1.58, 0.5), (3, 0.25), (8, 1.0), (4, 0.9), (8, 0.9), (32, 0.5), (32, 0.9))


def kernel_inputs(dtype: torch.dtype) -> torch.Tensor:
    """[T, B, N] currents: ordinary ones, large ones, and values on the ⅛ grid."""
    ordinary = randn(10, 2, 24, seed=2, dtype=dtype) * 1.2 + 0.3
    large = randn(10, 2, 4, seed=3, dtype=dtype) * 1e6
    on_grid = torch.randint(-16, 17, (10, 2, 4), generator=torch.Generator().manual_seed(4)).to(dtype) / 8
    return torch.cat([ordinary, large, on_grid], dim=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("quant_grad", QUANT_GRADS)
@pytest.mark.parametrize("detach_reset", [True, False])
def test_kernels_equal_the_torch_path(dtype: torch.dtype, surrogate: str, reset: str, quant_grad: str,
                                      detach_reset: bool) -> None:
    inputs = kernel_inputs(dtype)
    grad_spikes = randn(*inputs.shape, seed=5, dtype=dtype)
    assert kernels.supports(inputs)
    for bits, beta in KERNEL_NEURONS:
        d = LIFDynamics(beta=beta, membrane_bits=bits, reset=reset, surrogate=surrogate, quant_grad=quant_grad,
                        detach_reset=detach_reset)
        membranes, spikes = kernels.forward(inputs, d)
        torch_membranes, torch_spikes = multistep.membrane_sequence(inputs, d)
        assert torch.equal(membranes, torch_membranes)
        assert torch.equal(spikes, torch_spikes)
        assert_some_spikes(spikes)
        grad = kernels.backward(membranes, grad_spikes, d)
        # largest difference seen: 1.4e-6 in float32, 9e-16 in float64
        torch.testing.assert_close(grad, multistep._backward(membranes, grad_spikes, d), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bits", [1.58, 32])
def test_torch_backward_in_blocks_of_steps_equals_the_kernels(bits: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # blocks of 2 steps (CHUNK_ELEMENTS = 2 steps' worth): 7 steps run as blocks [5, 7), [3, 5), [1, 3), [0, 1)
    inputs = randn(7, 3, 8, seed=6) * 1.2 + 0.3
    grad_spikes = randn(7, 3, 8, seed=7)
    monkeypatch.setattr(multistep, "CHUNK_ELEMENTS", 2 * 3 * 8)
    d = LIFDynamics(membrane_bits=bits, detach_reset=False)
    membranes, _ = kernels.forward(inputs, d)
    expected = kernels.backward(membranes, grad_spikes, d)
    torch.testing.assert_close(multistep._backward(membranes, grad_spikes, d), expected, rtol=0, atol=1e-5)


def test_kernel_atan_slope_is_exact_in_float64() -> None:
    membranes = torch.linspace(-2.0, 4.0, 97, dtype=torch.float64)[None, :]  # one step: ∂L/∂h = σ'(h − θ)
    d = LIFDynamics(membrane_bits=32, surrogate="atan")
    grad = kernels.backward(membranes, torch.ones_like(membranes), d)
    torch.testing.assert_close(grad, DERIVATIVES["atan"](membranes - 1.0, 2.0), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------- integer path


def integer_inputs(frac_bits: int, dtype: torch.dtype) -> torch.Tensor:
    """[T, N] currents: ordinary, huge (±1e6 and beyond), on the 2^−f input grid, on half levels, and halfway
    between grid points (where rounding up matters)."""
    generator = torch.Generator().manual_seed(8)
    steps = 16
    scale = 2.0**frac_bits
    parts = [
        torch.randn(steps, 64, generator=generator, dtype=torch.float64) * 3,
        torch.randn(steps, 16, generator=generator, dtype=torch.float64) * 1e6,
        torch.tensor([1e6, -1e6, 1e9, -1e9], dtype=torch.float64).expand(steps, 4),
        torch.randint(-4 * 2**frac_bits, 4 * 2**frac_bits + 1, (steps, 32), generator=generator) / scale,
        torch.randint(-6, 6, (steps, 16), generator=generator) + 0.5,
        (torch.randint(-8 * 2**frac_bits, 8 * 2**frac_bits, (steps, 16), generator=generator) + 0.5) / scale,
    ]
    return torch.cat(parts, dim=1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [1.58, 2, 3, 4, 8])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("beta", [0.5, 0.25, 1.0])
def test_integer_path_gives_the_fused_spikes(dtype: torch.dtype, bits: float, reset: str, beta: float,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    d = LIFDynamics(beta=beta, membrane_bits=bits, reset=reset)
    inputs = integer_inputs(d.frac_bits, dtype)
    layer = MultiStepLIF(d)
    expected = layer(inputs)
    assert_some_spikes(expected)
    calls = []

    def spy(x: torch.Tensor, dynamics: LIFDynamics) -> torch.Tensor:
        calls.append(dynamics)
        return integer_spikes(x, dynamics)

    monkeypatch.setattr(multistep, "integer_spikes", spy)
    with torch.no_grad(), integer_membrane(nn.Sequential(layer)):
        got = layer(inputs)
    assert calls == [d]  # the integer path did run
    assert not layer.integer  # and is switched off after the block
    assert got.dtype == dtype
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [(1.58, torch.int8), (2, torch.int8), (3, torch.int8), (4, torch.int8), (7, torch.int8), (8, torch.int16)],
)
def test_integer_state_dtype(bits: float, dtype: torch.dtype) -> None:
    # lowest level 1 − (2^b − 1): −1, −2, −6, −14, −126 fit int8 (≥ −128); 8 bits reach −254
    assert state_dtype(LIFDynamics(membrane_bits=bits)) == dtype


def test_integer_path_hand_trace() -> None:
    # Ternary {−1, 0, 1}, β = ½ (k = 1), subtract reset, θ = 1; fixed point with f = k + 1 = 2: θ·2^f = 4, ½ = 2.
    # X = ⌈4x⌉ for x = [0.6, 0.7, 1.3, 0.7]: [⌈2.4⌉, ⌈2.8⌉, ⌈5.2⌉, ⌈2.8⌉] = [3, 3, 6, 3]
    #   H = ((M << 2) >> 1) + X;  s = [H > 4];  R = H − 4·s;  M = clamp(−((2 − R) >> 2), −1, 1)
    #   t1: H = 0 + 3 = 3, s = 0, R = 3, M = −((2 − 3) >> 2) = −(−1 >> 2) = 1      (¾ rounds up to 1)
    #   t2: H = (4 >> 1) + 3 = 5, s = 1, R = 1, M = −((2 − 1) >> 2) = −(1 >> 2) = 0   (¼ rounds to 0)
    #   t3: H = 0 + 6 = 6, s = 1, R = 2, M = −((2 − 2) >> 2) = 0                      (½: a tie, to the lower level)
    #   t4: H = 0 + 3 = 3, s = 0, R = 3, M = 1
    # Spikes [0, 1, 1, 0]: t2 fires only because ¾ was stored as 1, t4 stays silent only because the tie went down
    # (M = 1 would give H = 2 + 3 = 5 > 4).
    x = torch.tensor([0.6, 0.7, 1.3, 0.7])
    d = LIFDynamics(beta=0.5, membrane_bits=1.58, reset="subtract")
    assert fixed_point_input(x, 2).tolist() == [3, 3, 6, 3]
    assert integer_spikes(x[:, None], d).flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    # the floating-point neuron stores the same levels M·1
    lif, mem, stored = QuantLeaky(beta=0.5, membrane_bits=1.58, reset="subtract"), None, []
    for value in x:
        _, mem = lif(value[None], mem)
        stored.append(float(mem))
    assert stored == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("dynamics", [LIFDynamics(membrane_bits=32), LIFDynamics(beta=0.9)])
def test_integer_membrane_needs_a_quantized_membrane_and_a_shift_leak(dynamics: LIFDynamics) -> None:
    model = nn.Sequential(MultiStepLIF(LIFDynamics()), MultiStepLIF(dynamics))
    with pytest.raises(ValueError, match="integer"), integer_membrane(model):
        pass
    assert not any(layer.integer for layer in model)


def test_integer_membrane_refuses_gradients() -> None:
    layer = MultiStepLIF(LIFDynamics())
    with integer_membrane(layer), pytest.raises(RuntimeError, match="inference only"):
        layer(torch.zeros(4, 3, requires_grad=True))
    assert not layer.integer


def test_integer_path_refuses_membranes_wider_than_int16() -> None:
    # 16 bits: levels −65534 … 1 do not fit an int16 state
    with pytest.raises(ValueError, match="at most 8 bits"):
        integer_spikes(torch.zeros(3, 4), LIFDynamics(membrane_bits=16))


def test_integer_path_with_a_small_shift_leak_and_large_currents() -> None:
    d = LIFDynamics(beta=2.0**-10, membrane_bits=1.58)
    inputs = torch.tensor([[2e6], [-2e6]])  # one spike, then none
    layer = MultiStepLIF(d)
    assert layer(inputs).flatten().tolist() == [1.0, 0.0]
    with torch.no_grad(), integer_membrane(layer):
        assert layer(inputs).flatten().tolist() == [1.0, 0.0]


def test_integer_path_stays_on_the_input_device() -> None:
    inputs = torch.zeros(3, 4, device="meta")
    assert integer_spikes(inputs, LIFDynamics()).device == inputs.device


# ---------------------------------------------------------------------------------------------- snntorch via lif_layer


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("surrogate", ["atan", "fast-sigmoid"])
def test_lif_layer_snntorch_equals_a_full_precision_spquant_layer(reset: str, surrogate: str) -> None:
    # snntorch's Leaky without its delayed reset follows the same equations when its returned membrane never
    # exceeds θ (see test_neurons.py): inputs in [−1, 1.4]. With reset_delay=False snntorch's immediate reset
    # keeps the spike's gradient, so the gradients match those of detach_reset=False.
    common = {"membrane_bits": 32, "reset": reset, "surrogate": surrogate, "detach_reset": False}
    theirs = lif_layer(ModelConfig(neuron="snntorch", **common))
    ours = lif_layer(ModelConfig(neuron="spquant", **common))
    assert isinstance(theirs, MultiStep)
    assert isinstance(theirs.neuron, snn.Leaky)
    assert isinstance(ours, MultiStepLIF)
    inputs = torch.rand(40, 4, 25, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.0
    weights = randn(40, 4, 25, seed=9)
    their_spikes, their_grad = spikes_and_input_grad(theirs, inputs, weights)
    our_spikes, our_grad = spikes_and_input_grad(ours, inputs, weights)
    assert_some_spikes(our_spikes)
    assert torch.equal(their_spikes, our_spikes)
    torch.testing.assert_close(their_grad, our_grad, rtol=0, atol=1e-5)


def test_lif_layer_snntorch_refuses_a_detached_reset() -> None:
    # snntorch's immediate reset keeps the spike's gradient: asking for a detached one is refused, not ignored
    config = ModelConfig(neuron="snntorch", membrane_bits=32, reset="subtract", surrogate="atan", detach_reset=True)
    with pytest.raises(ValueError, match="detach_reset = false"):
        lif_layer(config)


# ---------------------------------------------------------------------------------------------- watching ∂L/∂membrane


@pytest.mark.parametrize("bits", [1.58, 32])
def test_watchers_get_the_same_membrane_gradient_from_both_layers(bits: float) -> None:
    d = LIFDynamics(membrane_bits=bits, detach_reset=False)
    inputs = randn(6, 2, 5, seed=10) + 0.5
    weights = randn(6, 2, 5, seed=11)
    watched = []
    for layer in (MultiStepLIF(d), loop_layer(d)):
        delivered = []
        handle = layer.watch_membrane_grad(delivered.append)
        _, input_grad = spikes_and_input_grad(layer, inputs, weights)
        assert len(delivered) == 1
        assert delivered[0].shape == (6, 2, 5)
        # ∂L/∂x_t = ∂L/∂h_t: h_t = β·m_{t−1} + x_t, and the input rounding passes gradients straight
        torch.testing.assert_close(delivered[0], input_grad, rtol=0, atol=1e-6)
        watched.append(delivered[0])
        handle.remove()
        spikes_and_input_grad(layer, inputs, weights)
        assert len(delivered) == 1  # removed: nothing more arrives
    assert watched[0].abs().max() > 0.1
    torch.testing.assert_close(watched[0], watched[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["fused", "loop"])
def test_a_second_backward_reports_the_membrane_gradient_once(kind: str) -> None:
    layer = MultiStepLIF(LIFDynamics()) if kind == "fused" else loop_layer(LIFDynamics())
    delivered = []
    layer.watch_membrane_grad(delivered.append)
    inputs = randn(6, 2, 5, seed=12) + 0.5
    loss = (layer(inputs.requires_grad_()) * randn(6, 2, 5, seed=13)).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert len(delivered) == 2


@pytest.mark.parametrize("kind", ["fused", "loop"])
def test_a_watched_gradient_is_not_rewritten_by_later_gradient_updates(kind: str) -> None:
    layer = MultiStepLIF(LIFDynamics()) if kind == "fused" else loop_layer(LIFDynamics())
    delivered = []
    layer.watch_membrane_grad(delivered.append)
    inputs = (randn(6, 2, 5, seed=12) + 0.5).requires_grad_()
    (layer(inputs) * randn(6, 2, 5, seed=13)).sum().backward()
    recorded = delivered[0].clone()
    assert recorded.abs().max() > 0
    inputs.grad.zero_()  # as an attack loop does between its steps
    torch.testing.assert_close(delivered[0], recorded, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- compact saved membranes


@pytest.mark.parametrize("surrogate", ["triangle", "atan"])
def test_compact_membranes_are_exact_int16_codes(surrogate: str) -> None:
    # ternary, β = 1/2: h lies on the grid of 1/4, so h·4 is a whole number and int16 holds it exactly
    d = LIFDynamics(membrane_bits=1.58, surrogate=surrogate, detach_reset=False)
    inputs = randn(9, 3, 40, seed=21) * 2.0 + 0.4
    grad_spikes = randn(9, 3, 40, seed=22)
    membranes, spikes = kernels.forward(inputs, d)
    codes, compact_spikes = kernels.forward(inputs, d, compact=True)
    assert codes.dtype == torch.int16
    assert torch.equal(codes.to(torch.float32) / 4, membranes)
    assert torch.equal(compact_spikes, spikes)
    assert torch.equal(kernels.backward(codes, grad_spikes, d), kernels.backward(membranes, grad_spikes, d))


def test_compact_membranes_fall_back_to_float_when_a_code_would_not_fit() -> None:
    d = LIFDynamics(membrane_bits=1.58)
    inputs = torch.tensor([[0.3, -9000.0], [0.9, 0.2]])  # −9000·4 = −36000 is below int16's −32768
    membranes, _ = kernels.forward(inputs, d, compact=True)
    assert membranes.dtype == torch.float32
    assert membranes[0, 1] == -9000.0
    full_precision, _ = kernels.forward(inputs, LIFDynamics(membrane_bits=32), compact=True)
    assert full_precision.dtype == torch.float32  # off the grid: never coded
