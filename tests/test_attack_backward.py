"""The attacks' other backward passes (`attacks.backward`): the surrogate swap and RGA's rate gradients.

Each is checked on all three neuron kinds of `lif_layer`: forward values unchanged inside the block,
backward equal to the hand-computed one, gradients where the model's own surrogate gives none, and the
model restored afterwards, also when the block raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import torch
from torch import nn

from sparsity_latency.attacks.backward import rate_gradients, rate_slope, swapped_surrogate
from sparsity_latency.config import ModelConfig
from sparsity_latency.models import build_model
from sparsity_latency.models.layers import NEURONS, dynamics_of, lif_layer
from sparsity_latency.neurons import MultiStep, MultiStepLIF
from sparsity_latency.neurons.surrogates import DERIVATIVES
from sparsity_latency.probes import SparsityProbe, spiking_layers

Context = Callable[[nn.Module], AbstractContextManager]
CONTEXTS: dict[str, Context] = {
    "rga": rate_gradients,
    "swap-fast-sigmoid": lambda model: swapped_surrogate(model, "fast-sigmoid", 4.0),
}


def config(neuron: str, **fields) -> ModelConfig:
    """A model config with the neuron kind `neuron`; snntorch's Leaky needs full precision, atan, no detach."""
    if neuron == "snntorch":
        fields = {"membrane_bits": 32.0, "surrogate": "atan", "detach_reset": False, **fields}
    return ModelConfig(channels=(4, 8), neuron=neuron, **fields)


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def tiny_conv(neuron: str, gating: bool = False) -> nn.Module:
    """tiny-conv on 2×8×8 frames, 3 classes, BatchNorm scaled up so that both layers spike."""
    torch.manual_seed(0)
    model = build_model(config(neuron, gating=gating), (2, 8, 8), 3).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(4.0)
    return model


def record(model: nn.Module, x: torch.Tensor, weights: torch.Tensor):
    """(output, spikes by layer, ∂L/∂x) for L = Σ weights·output."""
    with SparsityProbe(model) as probe:
        leaf = x.clone().requires_grad_()
        output = model(leaf)
        (output * weights).sum().backward()
    return output.detach(), probe.spikes, leaf.grad


# ------------------------------------------------------------------------------------------ forward unchanged


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(("neuron", "gating"), [(n, False) for n in NEURONS] + [("spquant", True)])
def test_forward_unchanged_backward_changed(neuron: str, gating: bool, context: str) -> None:
    model = tiny_conv(neuron, gating)
    x, weights = rand(3, 2, 2, 8, 8, seed=1), rand(2, 3, seed=2) - 0.5
    logits, spikes, grad = record(model, x, weights)
    for layer_spikes in spikes.values():
        assert 0.02 < layer_spikes.mean() < 0.9
    with CONTEXTS[context](model):
        logits_inside, spikes_inside, grad_inside = record(model, x, weights)
    assert torch.equal(logits_inside, logits)
    assert spikes_inside.keys() == spikes.keys()
    assert all(torch.equal(spikes_inside[name], spikes[name]) for name in spikes)
    assert not torch.allclose(grad_inside, grad)  # the block does change the backward pass


# ------------------------------------------------------------------------------------------ surrogate swap


def layer_gradient(layer: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, ∂L/∂x) of one spiking layer for L = Σ weights·spikes."""
    leaf = x.clone().requires_grad_()
    spikes = layer(leaf)
    (spikes * weights).sum().backward()
    return spikes.detach(), leaf.grad


@pytest.mark.parametrize("neuron", NEURONS)
def test_swap_one_step_is_new_derivative_times_upstream(neuron: str) -> None:
    # T = 1: ∂L/∂x = w · σ'(x − θ); atan with α = 2: σ'(u) = 1 / (1 + (π·u)²).
    layer = lif_layer(config(neuron, surrogate="fast-sigmoid" if neuron == "snntorch" else "triangle"))
    x = torch.tensor([[0.25, 0.75, 1.25, 2.5, -1.5]])  # on the quantized neuron's input grid of ¼
    weights = torch.tensor([[1.0, 2.0, -1.0, 0.5, 3.0]])
    with swapped_surrogate(layer, "atan"):
        spikes, grad = layer_gradient(layer, x, weights)
    u = x - 1.0
    assert torch.equal(spikes, torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(grad, weights / (1 + (math.pi * u) ** 2))


@pytest.mark.parametrize(("surrogate", "param"), [(name, 0.0) for name in DERIVATIVES] + [("atan", 4.0),
                                                                                        ("triangle", 0.5)])
@pytest.mark.parametrize("neuron", NEURONS)
def test_swap_equals_layer_built_with_that_surrogate(neuron: str, surrogate: str, param: float) -> None:
    """Backward through time with the swapped surrogate = a `MultiStepLIF` built with it (the reference)."""
    model_config = config(neuron, reset="subtract")
    layer = lif_layer(model_config)
    reference = MultiStepLIF(dataclasses.replace(dynamics_of(model_config), surrogate=surrogate,
                                                 surrogate_param=param))
    x, weights = 2.2 * rand(5, 3, 7, seed=3) - 0.6, rand(5, 3, 7, seed=4) - 0.5
    with swapped_surrogate(layer, surrogate, param):
        spikes, grad = layer_gradient(layer, x, weights)
    spikes_ref, grad_ref = layer_gradient(reference, x, weights)
    assert torch.equal(spikes, spikes_ref)
    assert grad.count_nonzero() > 0
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ RGA

STEP_OFFSETS = torch.tensor([0.5, -0.5, 0.25, -0.25])  # sum 0: the mean input of x̄ + offsets is x̄ exactly

# (β, θ, mean inputs x̄, RGA slopes f'(x̄) by hand): f' = γ = 0.2 on [0, (1 − β)θ), (1 − γ(1 − β)) / (β + 1) / θ
# on [(1 − β)θ, 2θ], 0 elsewhere.
RGA_CASES = [
    # β = ½, θ = 1: onset ½, ramp (1 − 0.1) / 1.5 = 0.6
    (0.5, 1.0, [-0.25, 0.25, 0.5, 0.75, 1.5, 2.0, 2.5], [0.0, 0.2, 0.6, 0.6, 0.6, 0.6, 0.0]),
    # β = ¼, θ = 1: onset ¾, ramp (1 − 0.15) / 1.25 = 0.68
    (0.25, 1.0, [0.5, 0.75, 1.75, 2.25], [0.2, 0.68, 0.68, 0.0]),
    # β = 1 (IF), θ = 2: no leaky part, ramp 1/2 over [0, 4], divided by θ: 0.25
    (1.0, 2.0, [-0.25, 0.25, 3.5, 4.0, 4.5], [0.0, 0.25, 0.25, 0.25, 0.0]),
]


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize(("beta", "threshold", "means", "slopes"), RGA_CASES)
def test_rga_is_upstream_gradient_times_rate_slope(neuron: str, reset: str, beta: float, threshold: float,
                                                   means: list[float], slopes: list[float]) -> None:
    layer = lif_layer(config(neuron, beta=beta, threshold=threshold, reset=reset))
    x = torch.tensor(means)[None, None, :] + STEP_OFFSETS[:, None, None]  # [T=4, B=1, neurons]
    weights = rand(*x.shape, seed=5) - 0.5
    with rate_gradients(layer):
        _, grad = layer_gradient(layer, x, weights)
    expected = weights * torch.tensor(slopes)
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(rate_slope(torch.tensor(means), beta, threshold), torch.tensor(slopes))


@pytest.mark.parametrize("neuron", ["spquant", "spquant-loop"])
def test_rga_and_atan_reach_through_a_triangle_that_gives_no_gradient(neuron: str) -> None:
    """mlp with two hidden neurons whose membranes stay ≥ 1 from the threshold: the triangle's gradient is 0."""
    model = build_model(ModelConfig(name="mlp", channels=(2,), neuron=neuron), (1, 1, 2), 3).eval()
    gain = 6.0 / math.sqrt(1 + model.bn1.eps)  # fc1 = 6·I, then BatchNorm at rest (mean 0, var 1) with bias −2.5
    with torch.no_grad():
        model.fc1.weight.copy_(6.0 * torch.eye(2))
        model.bn1.bias.fill_(-2.5)
    x = torch.tensor([[1.0, 0.9], [0.1, 0.0]]).view(2, 1, 1, 1, 2)  # currents ≈ (3.5, 2.9), (−1.9, −2.5)
    weights = torch.tensor([[1.0, 0.0, 0.0]])  # L = logit 0: ∂L/∂s_t = fc.weight[0] / T
    with SparsityProbe(model) as probe:
        _, _, grad = record(model, x, weights)
    assert torch.equal(probe.spikes["lif1"].flatten(), torch.tensor([1.0, 1.0, 0.0, 0.0]))  # u ≥ 1.9, then ≤ −2.9
    assert grad.count_nonzero() == 0

    with rate_gradients(model):
        _, _, grad_rga = record(model, x, weights)
    # x̄ = (3.5 − 1.9)/2 = 0.8 (on the ramp: 0.6) and (2.9 − 2.5)/2 = 0.2 (below the onset ½: 0.2)
    slopes = torch.tensor([0.6, 0.2])
    expected = (model.fc.weight[0].detach() / 2 * slopes * gain).expand(2, 2).reshape(x.shape)
    torch.testing.assert_close(grad_rga, expected)

    with swapped_surrogate(model, "atan"):
        _, _, grad_atan = record(model, x, weights)
    assert grad_atan.count_nonzero() == grad_atan.numel()


@pytest.mark.parametrize("neuron", NEURONS)
def test_probe_entered_first_sees_rga_gradients(neuron: str) -> None:
    """Our hook runs before the probe's: it records the spike gradient, and the membrane gradient RGA sends on."""
    layer = lif_layer(config(neuron))
    x, weights = 2 * rand(4, 2, 5, seed=6), rand(4, 2, 5, seed=7) - 0.5
    with SparsityProbe(layer) as probe, rate_gradients(layer):
        spikes, grad = layer_gradient(layer, x, weights)
    assert torch.equal(probe.spikes[""], spikes)
    torch.testing.assert_close(probe.spike_grads[""], weights)
    torch.testing.assert_close(probe.membrane_grads[""], grad)
    torch.testing.assert_close(grad, weights * rate_slope(x.mean(0), 0.5, 1.0))


# ------------------------------------------------------------------------------------------ restoring the model


def neuron_state(model: nn.Module) -> list[tuple]:
    """What the contexts touch, per spiking layer: dynamics, spike functions, hooks."""
    state = []
    for layer in spiking_layers(model).values():
        owner = layer.neuron if isinstance(layer, MultiStep) else layer
        state.append((layer.__dict__.get("dynamics"), owner.__dict__.get("dynamics"), owner.__dict__.get("_spike"),
                      owner.__dict__.get("spike_grad"), list(layer._forward_hooks.items()),
                      list(layer._forward_pre_hooks.items()), list(layer._watchers.items())))
    return state


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("neuron", NEURONS)
def test_model_restored_after_block_and_after_exception(neuron: str, context: str) -> None:
    model = tiny_conv(neuron)
    x, weights = rand(2, 2, 2, 8, 8, seed=8), rand(2, 3, seed=9) - 0.5
    hook = model.lif1.register_forward_hook(lambda module, args, output: None)  # someone else's hook stays
    before = neuron_state(model)
    _, _, grad = record(model, x, weights)

    with CONTEXTS[context](model):
        assert neuron_state(model) != before
    assert neuron_state(model) == before
    torch.testing.assert_close(record(model, x, weights)[2], grad, rtol=0, atol=0)

    with pytest.raises(RuntimeError, match="inside"), CONTEXTS[context](model):
        record(model, x, weights)
        raise RuntimeError("inside the block")
    assert neuron_state(model) == before
    torch.testing.assert_close(record(model, x, weights)[2], grad, rtol=0, atol=0)
    hook.remove()


class _Neuron(nn.Module):
    def init_leaky(self) -> None:
        return None

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return (x > 1).float(), x


def test_unknown_surrogate_or_layer_changes_nothing() -> None:
    model = nn.Sequential(lif_layer(config("spquant")), MultiStep(_Neuron()))
    before = neuron_state(model)
    with pytest.raises(ValueError, match="unknown surrogate"), swapped_surrogate(model, "sigmoid"):
        pass
    for context in CONTEXTS.values():
        with pytest.raises(TypeError, match="no other backward"), context(model):
            pass
        assert neuron_state(model) == before
