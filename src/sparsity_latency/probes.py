"""Hooks that record what a forward and backward pass did, without changing its results.

A `SparsityProbe` keeps each spiking layer's output spikes [T, B, …] and, once `backward` has run,
the gradient of the loss with respect to them (∂L/∂spikes, which arrives from the layers above and
has not yet passed through this layer's surrogate) and with respect to its membrane before firing
(∂L/∂membrane, which has: the surrogate's zeros show here); optionally the input of every weight
layer (for op counts). `layer_sparsity` turns one recorded pass into per-layer sparsity measures.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import nn

from sparsity_latency.metrics import GRAD_FORMS, grad_sparsity, spike_sparsity
from sparsity_latency.neurons import SpikingLayer

NET = "__net__"  # layer name of network-level rows
CHECK = "__check__"  # layer name of the gradient-masking check rows of the attack table
GRAD_TARGETS = ("weight_grad", "spike_grad", "membrane_grad", "input_grad")
GRAD_COLUMNS = tuple(f"{target}_{form}" for target in GRAD_TARGETS for form in GRAD_FORMS)


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's multi-step spiking layers by name (`lif1`, …), in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SpikingLayer)}


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's convolution and linear layers by name (`conv1`, …, `fc`), in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


class SparsityProbe:
    """Context manager that records spikes, spike gradients and (optionally) weight-layer inputs."""

    def __init__(self, model: nn.Module, record_inputs: bool = False) -> None:
        self.model = model
        self.record_inputs = record_inputs
        self.spikes: dict[str, torch.Tensor] = {}
        self.spike_grads: dict[str, torch.Tensor] = {}
        self.layer_inputs: dict[str, torch.Tensor] = {}
        self.membrane_grads: dict[str, torch.Tensor] = {}  # ∂L/∂membrane before firing [T, B, …], after backward
        self._handles: list = []

    def __enter__(self) -> SparsityProbe:
        for name, module in spiking_layers(self.model).items():
            self._handles.append(module.register_forward_hook(self._spike_hook(name)))
            self._handles.append(module.watch_membrane_grad(
                lambda grad, name=name: self.membrane_grads.__setitem__(name, grad)))
        if self.record_inputs:
            for name, module in weight_layers(self.model).items():
                self._handles.append(module.register_forward_hook(self._input_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _spike_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.spikes[name] = output.detach()
            if output.requires_grad:
                output.register_hook(lambda grad: self.spike_grads.__setitem__(name, grad.detach()))
        return hook

    def _input_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.layer_inputs[name] = args[0].detach()
        return hook


def _prefixed(target: str, measures: dict[str, float]) -> dict[str, float]:
    return {f"{target}_{form}": value for form, value in measures.items()}


def layer_sparsity(
    model: nn.Module, probe: SparsityProbe, input_grad: torch.Tensor | None, tau: float
) -> dict[str, dict[str, float]]:
    """Per-layer measures of the last recorded pass (after `backward`): layer → column → value.

    Weight layers get the sparsity of their weight gradient, spiking layers their spike sparsity
    and the sparsity of the gradients at their spikes and membranes, `__net__` that of the input
    gradient, and on a two-modality input `__input_<modality>__` that of each modality's part of it.
    """
    rows: dict[str, dict[str, float]] = {}
    for name, module in weight_layers(model).items():
        if module.weight.grad is not None:
            rows[name] = _prefixed("weight_grad", grad_sparsity(module.weight.grad, tau))
    membrane_grads = probe.membrane_grads
    for name in spiking_layers(model):
        row = {"spike_sparsity": spike_sparsity(probe.spikes[name])}
        if name in probe.spike_grads:
            row.update(_prefixed("spike_grad", grad_sparsity(probe.spike_grads[name], tau)))
        if name in membrane_grads:
            row.update(_prefixed("membrane_grad", grad_sparsity(membrane_grads[name], tau)))
        rows[name] = row
    rows[NET] = _prefixed("input_grad", grad_sparsity(input_grad, tau)) if input_grad is not None else {}
    if input_grad is not None and hasattr(model, "modality_names"):  # a fusion network: each modality's part too
        for name, part in zip(model.modality_names, model.split(input_grad), strict=True):
            rows[modality_row(name)] = _prefixed("input_grad", grad_sparsity(part, tau))
    return rows


def modality_row(modality: str) -> str:
    """Layer name of the rows holding the input-gradient sparsity of one modality of a fused input."""
    return f"__input_{modality}__"


class LayerMeans:
    """Averages per-layer measures over batches (each batch weighs the same)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, rows: dict[str, dict[str, float]]) -> None:
        for layer, row in rows.items():
            for column, value in row.items():
                self._values[layer, column].append(value)

    def state(self) -> list[list]:
        """The values so far as plain lists [[layer, column, values], …] (a checkpoint's part-done epoch)."""
        return [[layer, column, list(values)] for (layer, column), values in self._values.items()]

    def restore(self, state: list[list]) -> None:
        for layer, column, values in state:
            self._values[layer, column] = list(values)

    def rows(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (layer, column), values in self._values.items():
            out[layer][column] = float(np.mean(values))
        return dict(out)
