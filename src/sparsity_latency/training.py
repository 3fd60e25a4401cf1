"""The training loop: one method (`methods`) per run, per-layer sparsity of every update pass logged per epoch.

The method prepares each batch with the model in evaluation mode; only the update pass — forward,
objective, backward — runs in training mode inside the sparsity probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsity_latency.config import Config
from sparsity_latency.data import load_data
from sparsity_latency.evaluation import accuracy, batches
from sparsity_latency.methods import METHODS
from sparsity_latency.models import build_for
from sparsity_latency.models.gating import gate_loss
from sparsity_latency.probes import NET, LayerMeans, SparsityProbe, layer_sparsity


@dataclass
class TrainResult:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    rows: list[dict]  # one per epoch × layer, columns of the train table (without run columns)


def train(config: Config, device: torch.device, on_epoch: Callable[[int], None] | None = None) -> TrainResult:
    """Train one run; deterministic for `config.seed` on the CPU (CUDA kernels may not be)."""
    torch.manual_seed(config.seed)
    data = load_data(config.data, config.seed)
    model = build_for(config, data).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    method = METHODS[config.train.method]
    shuffle = torch.Generator().manual_seed(config.seed)
    perturb = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict] = []
    for epoch in range(1, config.train.epochs + 1):
        model.train()
        means = LayerMeans()
        loss_sum = correct = 0.0
        for xb, yb in batches(data.train_x, data.train_y, config.train.batch_size, device, shuffle):
            model.eval()  # adversarial examples are made with frozen BatchNorm statistics
            step = method(model, xb, yb, config.train, perturb)
            x_train = step.inputs.detach().requires_grad_(True)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with SparsityProbe(model) as probe:
                logits = model(x_train)
                loss = step.objective(logits)
                gates = gate_loss(model)
                (loss if gates is None else loss + config.model.gate_loss_weight * gates).backward()
            means.add(layer_sparsity(model, probe, x_train.grad, config.train.grad_tau))
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += float((logits[:len(yb)].argmax(1) == yb).sum())
        model.eval()
        layers = means.rows()
        layers[NET].update(
            loss=loss_sum / len(data.train_x),
            accuracy=correct / len(data.train_x),
            test_accuracy=accuracy(model, data.test_x, data.test_y, config.train.batch_size, device),
        )
        rows.extend({"epoch": epoch, "layer": layer, **values} for layer, values in layers.items())
        if on_epoch is not None:
            on_epoch(epoch)
    return TrainResult(model, optimizer, rows)
