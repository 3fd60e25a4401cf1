"""Other backward passes through a model's spiking layers, for attacks built against gradient masking.

Within either block every spiking layer computes exactly what it computes outside it (same spikes,
same logits, bit for bit); only what autograd sends back through the layer changes. Both work on the
three neuron kinds of `models.layers.lif_layer` and restore the model on exit, also when the block
raises.

`swapped_surrogate(model, name, param)`: the surrogate-swap attack. Each LIF neuron's spike derivative
dS/du becomes the surrogate `name` (`neurons.surrogates`) with parameter `param` (0: its default) —
everywhere the surrogate enters the backward pass, also through a reset that keeps the spike's
gradient. A model trained with the triangle (zero for |h − θ| ≥ 1) can hide its gradients; atan or the
fast sigmoid are never zero. `MultiStepLIF` and `QuantLeaky` get `dataclasses.replace`d dynamics (and
`QuantLeaky` the matching spike function); snntorch's `Leaky` gets our Heaviside-with-surrogate as its
`spike_grad`, so it takes all four surrogates, with the same formulas as the other kinds. (snntorch's
own Heaviside returns float32 whatever the membrane's dtype, ours the membrane's: the same for the
float32 networks built here.)

`rate_gradients(model)`: RGA, the rate gradient approximation attack (Bu, Ding, Hao & Yu, CVPR 2023;
code github.com/putshua/SNN_attack_RGA, models/layers.py `RateBp`, used by its `bptr` attack mode).
Deep SNNs mostly pass rates between layers, so RGA backpropagates through a rate model of each LIF
layer instead of through time with the surrogate. With x̄ = (1/T)·Σ_t x_t the layer's mean input:

    ∂L/∂x_t = ∂L/∂s_t · f'(x̄),    f'(x̄) = R'(x̄ / θ) / θ,

    R'(z) = γ                         for 0 ≤ z < 1 − β         (γ = 0.2)
            (1 − γ·(1 − β)) / (β + e)  for 1 − β ≤ z ≤ 1 + e     (e = 1)
            0                         otherwise.

R' is the slope of a piecewise-linear rate curve R(z): R(0) = 0, a leaky slope γ up to the onset
z = 1 − β (a LIF neuron driven by a constant current x settles at x/(1 − β) and never fires below
x = (1 − β)·θ), then a linear ramp that reaches rate 1 at z = 1 + e. The exact rate curve reaches 1
already at z = 1 and is zero below the onset; the source's curve is a designed surrogate of it, with
a wider ramp and a leak below the onset so that silent neurons pass gradient too.

What the source does, and what we chose:
- The source's neuron has θ = 1, a hard reset and leak τ (our β); its backward is the formula above
  with θ = 1, γ = 0.2, e = 1. We scale the curve by θ: without quantization, scaling input, membrane
  and threshold together changes no spike, so the rate is a function of x̄/θ.
- For the subtract reset we use the same curve: the onset (1 − β)·θ and the saturation at θ (above it
  the neuron fires at every step) are the same for both resets, and between them the source's ramp is
  a designed one anyway. The quantized membrane is not modelled (the curve is the full-precision one).
- The source multiplies the gradient of each step's spike by f'(x̄), as written above, rather than
  giving every x_t the time average (1/T)·Σ_τ ∂L/∂s_τ · f'(x̄) of a literal rate model. The two agree
  whenever ∂L/∂s_t is the same at every step — in our networks without channel gates it is (the
  readout is averaged over time, every other layer acts on each step alike) — and they have the same
  sum over t always. With gates (a per-step mask on the current) they differ; we follow the source.
- At z = 1 − β the source adds both slopes; we take the ramp's (half-open intervals).

It is done with a forward hook on each spiking layer, run before any other hook: the layer's own
forward computes the spikes, and the hook returns them again as the output of an autograd function
whose backward is the formula above (the graph through time is dropped). The layer's membrane-gradient
watchers (`SpikingLayer.watch_membrane_grad`, used by `probes.SparsityProbe`) receive that ∂L/∂x_t,
which for these neurons is ∂L/∂h_t, as h_t = β·m_{t−1} + x_t.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import snntorch as snn
import torch
from torch import nn

from sparsity_latency.neurons import MultiStep, MultiStepLIF, QuantLeaky, SpikingLayer
from sparsity_latency.neurons.surrogates import DERIVATIVES, SURROGATES, surrogate_param

RGA_SUBTHRESHOLD_SLOPE = 0.2  # γ: slope of the rate curve below the onset (the source's `gamma`)
RGA_EXTENSION = 1.0  # e: the ramp reaches rate 1 at (1 + e)·θ (the source's `ext`)


def rate_slope(mean_input: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    """f'(x̄) = R'(x̄/θ)/θ, the slope of RGA's rate curve of a LIF neuron at its mean input x̄ (module docstring)."""
    z = mean_input / threshold
    onset = 1.0 - beta
    ramp = (1.0 - RGA_SUBTHRESHOLD_SLOPE * onset) / (beta + RGA_EXTENSION)
    below = (z >= 0) & (z < onset)
    on_ramp = (z >= onset) & (z <= 1.0 + RGA_EXTENSION)
    dtype = mean_input.dtype
    return (below.to(dtype) * RGA_SUBTHRESHOLD_SLOPE + on_ramp.to(dtype) * ramp) / threshold


class _RateGradient(torch.autograd.Function):
    """Forward: the layer's spikes as they are. Backward: ∂L/∂x_t = ∂L/∂s_t · f'(x̄)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float,
                notify: Callable[[torch.Tensor], None]) -> torch.Tensor:
        ctx.save_for_backward(rate_slope(inputs.mean(0), beta, threshold))
        ctx.notify = notify
        return spikes.clone()

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (slope,) = ctx.saved_tensors
        grad = grad_spikes * slope
        ctx.notify(grad)
        return grad, None, None, None, None


def _layers(model: nn.Module) -> list[SpikingLayer]:
    return [m for m in model.modules() if isinstance(m, SpikingLayer)]


def _unknown(layer: nn.Module) -> TypeError:
    return TypeError(f"no other backward pass for the spiking layer {layer!r}: it needs a MultiStepLIF, or a "
                     "MultiStep of a QuantLeaky or of snntorch's Leaky")


def _scalar(value: torch.Tensor | float, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"RGA needs one {what} per layer, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach())
    return float(value)


def leak_and_threshold(layer: nn.Module) -> tuple[float, float]:
    """(β, θ) of a spiking layer's neuron; TypeError for a layer of another kind."""
    if isinstance(layer, MultiStepLIF):
        return layer.dynamics.beta, layer.dynamics.threshold
    neuron = layer.neuron if isinstance(layer, MultiStep) else None
    if isinstance(neuron, QuantLeaky):
        return neuron.dynamics.beta, neuron.dynamics.threshold
    if isinstance(neuron, snn.Leaky):  # snntorch clamps β to [0, 1] in its step
        return _scalar(neuron.beta.clamp(0, 1), "leak"), _scalar(neuron.threshold, "threshold")
    raise _unknown(layer)


def _rate_hook(layer: nn.Module, args: tuple, spikes: torch.Tensor) -> torch.Tensor | None:
    inputs = args[0]
    if not (torch.is_grad_enabled() and inputs.requires_grad):
        return None  # nothing to backpropagate: keep the layer's output
    beta, threshold = leak_and_threshold(layer)
    return _RateGradient.apply(inputs, spikes.detach(), beta, threshold, layer._notify)


@contextmanager
def rate_gradients(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, gradients pass every spiking layer of `model` through RGA's rate model.

    ∂L/∂x_t = ∂L/∂s_t · f'(x̄) with x̄ the layer's input averaged over time and f' the slope of the rate
    curve (`rate_slope`, module docstring); forward values are unchanged. TypeError for a spiking layer
    of an unknown kind (before anything is changed).
    """
    layers = _layers(model)
    for layer in layers:
        leak_and_threshold(layer)
    handles = []
    try:
        for layer in layers:
            handles.append(layer.register_forward_hook(_rate_hook, prepend=True))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _snntorch_spike(surrogate: str, param: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `spike_grad` for snntorch's Leaky (called on u = mem − θ): our Heaviside with `surrogate`'s derivative."""
    return functools.partial(SURROGATES[surrogate], param=surrogate_param(surrogate, param))


def _surrogate_swaps(layer: nn.Module, surrogate: str, param: float) -> list[tuple[object, str, object]]:
    """(object, attribute, new value) that give `layer`'s neuron the surrogate `surrogate`(`param`)."""
    def swapped(dynamics):
        return dataclasses.replace(dynamics, surrogate=surrogate, surrogate_param=param)

    if isinstance(layer, MultiStepLIF):
        return [(layer, "dynamics", swapped(layer.dynamics))]
    neuron = layer.neuron if isinstance(layer, MultiStep) else None
    if isinstance(neuron, QuantLeaky):
        return [(neuron, "dynamics", swapped(neuron.dynamics)), (neuron, "_spike", SURROGATES[surrogate])]
    if isinstance(neuron, snn.Leaky):
        return [(neuron, "spike_grad", _snntorch_spike(surrogate, param))]
    raise _unknown(layer)


@contextmanager
def swapped_surrogate(model: nn.Module, surrogate: str, param: float = 0.0) -> Iterator[nn.Module]:
    """Within the block, every spiking layer of `model` backpropagates with the surrogate `surrogate`.

    dS/du = DERIVATIVES[surrogate](u, p) with u = h − θ and p = `param` (0: the surrogate's default);
    forward values are unchanged. ValueError for an unknown surrogate, TypeError for a spiking layer
    of an unknown kind (both before anything is changed).
    """
    if surrogate not in DERIVATIVES:
        raise ValueError(f"unknown surrogate '{surrogate}' (known: {', '.join(DERIVATIVES)})")
    swaps = [swap for layer in _layers(model) for swap in _surrogate_swaps(layer, surrogate, param)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in swaps]
    try:
        for owner, name, value in swaps:
            setattr(owner, name, value)
        yield model
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
