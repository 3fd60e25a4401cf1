"""Spiking layers that take a whole sequence [T, B, …] at once and return its spikes [T, B, …].

- `MultiStepLIF` runs the quantized LIF over time inside one autograd function: the forward loop
  keeps only the membrane before firing h_t; the backward is written by hand. With g_h the gradient
  at h and c_t = ∂L/∂s_t · σ'(h_t − θ) (σ' the surrogate), backpropagation through time is
      g_h[T] = c_T,    g_h[t] = c_t + β · ∂m_t/∂h_t · g_h[t+1],
  with ∂m_t/∂h_t through reset and quantizer (`LIFDynamics.carry`); ∂L/∂x_t = g_h[t] (the input
  rounding passes gradients straight). On the CPU both loops are compiled kernels (`kernels`); on
  other devices they are torch operations, the backward working on blocks of steps that stay in
  cache, with one fused multiply-add per step left in its loop. Under `integer_membrane` the layer
  runs the integer inference path (`integer`) instead.
- `MultiStep` loops any snntorch-style single-step neuron (`QuantLeaky`, `snntorch.Leaky`) over time
  through autograd: the reference the fused layer is tested against, and the way to run snntorch's
  own neurons as full-precision baselines.

Both let a probe watch ∂L/∂h (`watch_membrane_grad`); `MultiStep` can do so only for neurons with a
`membrane_tap`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from sparsity_latency.neurons import kernels
from sparsity_latency.neurons.dynamics import LIFDynamics
from sparsity_latency.neurons.integer import integer_spikes
from sparsity_latency.neurons.quantizer import dyadic_ceil

Watcher = Callable[[torch.Tensor], None]


class SpikingLayer(nn.Module):
    """A layer [T, B, …] → spikes [T, B, …] that can report ∂L/∂membrane [T, B, …] after backward."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: OrderedDict[int, Watcher] = OrderedDict()  # weak-referenceable, for RemovableHandle

    def watch_membrane_grad(self, watcher: Watcher) -> RemovableHandle:
        """Call `watcher(grad)` with ∂L/∂membrane-before-firing of each backward pass through this layer."""
        handle = RemovableHandle(self._watchers)
        self._watchers[handle.id] = watcher
        return handle

    def _notify(self, grad: torch.Tensor) -> None:
        for watcher in list(self._watchers.values()):
            watcher(grad.detach().clone())  # its own copy: autograd may later change the tensor in place


CHUNK_ELEMENTS = 1 << 17  # elements per block of time steps worked on at once: small enough to stay in cache


def membrane_sequence(inputs: torch.Tensor, dynamics: LIFDynamics) -> tuple[torch.Tensor, torch.Tensor]:
    """Membranes before firing h [T, …] and spikes [T, …] of a neuron at rest driven by `inputs` (no autograd)."""
    membranes = torch.empty_like(inputs)
    spikes = torch.empty_like(inputs)
    frac = dynamics.frac_bits
    for t in range(len(inputs)):
        current = inputs[t] if frac is None else dyadic_ceil(inputs[t], frac)
        if t == 0:
            membranes[0] = current
        else:
            membranes[t] = dynamics.integrate(dynamics.next_state(membranes[t - 1]), current)
        torch.gt(membranes[t], dynamics.threshold, out=spikes[t])
    return membranes, spikes


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, dynamics: LIFDynamics, watch: Watcher | None) -> torch.Tensor:
        compiled = kernels.supports(inputs)
        membranes, spikes = (kernels.forward(inputs, dynamics, compact=True) if compiled
                             else membrane_sequence(inputs, dynamics))
        ctx.compiled = compiled
        ctx.save_for_backward(membranes)
        ctx.dynamics, ctx.watch = dynamics, watch
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (membranes,) = ctx.saved_tensors
        dynamics: LIFDynamics = ctx.dynamics
        grad = kernels.backward(membranes, grad_spikes, dynamics) if ctx.compiled else _backward(
            membranes, grad_spikes, dynamics)
        if ctx.watch is not None:
            ctx.watch(grad)
        return grad, None, None


def _backward(membranes: torch.Tensor, grad_spikes: torch.Tensor, dynamics: LIFDynamics) -> torch.Tensor:
    """∂L/∂h [T, …] with torch operations, a block of steps at a time (for tensors the kernels do not take)."""
    steps = len(membranes)
    chunk = max(1, CHUNK_ELEMENTS // max(1, membranes[0].numel()))
    grad = torch.empty_like(membranes)
    for end in range(steps, 0, -chunk):  # blocks of steps, last block first
        start = max(0, end - chunk)
        block = membranes[start:end]
        torch.mul(grad_spikes[start:end], dynamics.spike_derivative(block - dynamics.threshold),
                  out=grad[start:end])
        stop = min(end, steps - 1)  # steps that have a successor
        if stop > start:
            carry = dynamics.carry(block[:stop - start])
            for t in range(stop - 1, start - 1, -1):
                grad[t].addcmul_(carry[t - start], grad[t + 1])
    return grad


class MultiStepLIF(SpikingLayer):
    """Quantized-membrane LIF layer over a whole sequence, with a hand-written backward through time."""

    def __init__(self, dynamics: LIFDynamics) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.integer = False  # set by `integer_membrane`

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.integer:
            if torch.is_grad_enabled() and inputs.requires_grad:
                raise RuntimeError("the integer membrane path is for inference only (no gradients)")
            return integer_spikes(inputs, self.dynamics)
        return _LIFSequence.apply(inputs, self.dynamics, self._notify if self._watchers else None)

    def extra_repr(self) -> str:
        return repr(self.dynamics)


class MultiStep(SpikingLayer):
    """Runs a single-step neuron (`spk, mem = neuron(x, mem)`) over the leading time axis."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        tap = getattr(self.neuron, "membrane_tap", None)
        handle = tap.register_forward_hook(self._membrane_recorder(len(inputs))) if (
            tap is not None and self._watchers) else None
        try:
            mem = self.neuron.init_leaky()
            spikes = []
            for x_t in inputs:
                spk, mem = self.neuron(x_t, mem)
                spikes.append(spk)
        finally:
            if handle is not None:
                handle.remove()
        return torch.stack(spikes)

    def _membrane_recorder(self, steps: int):
        """A tap hook that gathers ∂L/∂h of every step and reports them together once all have arrived."""
        grads: dict[int, torch.Tensor] = {}
        count = [0]

        def record(step: int, grad: torch.Tensor) -> None:
            grads[step] = grad
            if len(grads) == steps:
                self._notify(torch.stack([grads[t] for t in range(steps)]))
                grads.clear()  # a second backward through the same graph reports afresh

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            step = count[0]
            count[0] += 1
            if output.requires_grad:
                output.register_hook(lambda grad: record(step, grad))

        return hook


@contextmanager
def integer_membrane(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every `MultiStepLIF` of `model` keeps its membrane as integers (inference only).

    Raises ValueError when a layer's neuron has no integer form (full precision, or β not a power of two).
    """
    layers = [m for m in model.modules() if isinstance(m, MultiStepLIF)]
    for layer in layers:
        if layer.dynamics.frac_bits is None:
            raise ValueError(f"no integer membrane path for {layer.dynamics}: it needs a quantized membrane "
                             "and a leak β = 2^-k")
    for layer in layers:
        layer.integer = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.integer = False
