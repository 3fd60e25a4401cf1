"""Training methods, registered by name, and the training loop that logs per-layer sparsity.

A method turns a clean batch into the batch the parameters are trained on: `standard` leaves it as
it is, `pgd-at` replaces it with PGD adversarial examples (Madry et al. 2018). The attack's own
forward and backward passes run outside the probe, so the sparsity statistics describe the update
pass alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks import pgd
from sparsity_latency.config import Config, TrainConfig
from sparsity_latency.data import load_data
from sparsity_latency.evaluation import accuracy, batches
from sparsity_latency.models import build_for
from sparsity_latency.models.gating import gate_loss
from sparsity_latency.probes import NET, LayerMeans, SparsityProbe, layer_sparsity

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator], torch.Tensor]


def standard(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
             generator: torch.Generator) -> torch.Tensor:
    """Standard training: the clean batch."""
    return x


def pgd_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
           generator: torch.Generator) -> torch.Tensor:
    """PGD adversarial training: L∞ PGD examples with random start, eps and steps from the config."""
    return pgd(model, x, y, config.eps, steps=config.pgd_steps, step_size=config.pgd_step_size,
               generator=generator)


METHODS: dict[str, Method] = {
    "standard": standard,
    "pgd-at": pgd_at,
}


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
            x_train = method(model, xb, yb, config.train, perturb).detach().requires_grad_(True)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with SparsityProbe(model) as probe:
                logits = model(x_train)
                loss = F.cross_entropy(logits, yb)
                gates = gate_loss(model)
                (loss if gates is None else loss + config.model.gate_loss_weight * gates).backward()
            means.add(layer_sparsity(model, probe, x_train.grad, config.train.grad_tau))
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += float((logits.argmax(1) == yb).sum())
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
