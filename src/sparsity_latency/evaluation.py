"""Evaluating a model: batching, accuracy, and robustness with gradient sparsity under attack."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks import ATTACKS
from sparsity_latency.config import AttackConfig
from sparsity_latency.probes import NET, LayerMeans, SparsityProbe, layer_sparsity


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Time-major batches ([T, B, …], labels) from samples [N, T, …]; shuffled when given a generator."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index].transpose(0, 1).to(device), y[index].to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device) -> float:
    """Fraction of samples classified correctly."""
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches(x, y, batch_size, device))
    return correct / len(x)


def evaluate_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig,
                     tau: float, seed: int, device: torch.device) -> list[dict]:
    """Rows of the attack table (without run columns): attack × eps × layer.

    For each attack and eps: robust accuracy on the adversarial examples, and the per-layer and
    input gradient sparsity of the loss at those examples (eps = 0 gives the clean gradients).
    The model is in evaluation mode (BatchNorm statistics frozen); surrogate gradients stay live.
    """
    model.eval()
    if config.samples:
        x, y = x[:config.samples], y[:config.samples]
    n_samples = len(x)
    clean = accuracy(model, x, y, config.batch_size, device)
    rows = []
    for name in config.attacks:
        for eps in config.eps:
            generator = torch.Generator().manual_seed(seed)
            means, correct = LayerMeans(), 0
            for xb, yb in batches(x, y, config.batch_size, device):
                x_adv = ATTACKS[name](model, xb, yb, eps, steps=config.pgd_steps,
                                      step_size=config.pgd_step_size, generator=generator)
                x_adv.requires_grad_(True)
                model.zero_grad(set_to_none=True)
                with SparsityProbe(model) as probe:
                    logits = model(x_adv)
                    F.cross_entropy(logits, yb).backward()
                means.add(layer_sparsity(model, probe, x_adv.grad, tau))
                correct += int((logits.argmax(1) == yb).sum())
            layers = means.rows()
            layers[NET].update(clean_accuracy=clean, robust_accuracy=correct / n_samples)
            rows.extend({"attack": name, "eps": eps, "layer": layer, **values} for layer, values in layers.items())
    model.zero_grad(set_to_none=True)
    return rows
