"""Evaluating a model: batching, accuracy, and robustness under attack with the gradient sparsity at the attacks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks import ATTACKS, AttackContext, budgets
from sparsity_latency.config import AttackConfig
from sparsity_latency.masking import (
    ADAPTIVE_ATTACK,
    CHANCE,
    CHECKED_ATTACK,
    MAIN,
    MORE_RESTARTS,
    MORE_STEPS,
    masking_checks,
)
from sparsity_latency.probes import CHECK, NET, LayerMeans, SparsityProbe, layer_sparsity


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
            generator: torch.Generator | None = None, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Time-major batches ([T, B, …], labels) from samples [N, T, …]; shuffled when given a generator; the first
    `skip` batches of the order left out (a resumed epoch)."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for start in range(skip * batch_size, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index].transpose(0, 1).to(device), y[index].to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device: torch.device) -> float:
    """Fraction of samples classified correctly."""
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches(x, y, batch_size, device))
    return correct / len(x)


@dataclass(frozen=True)
class Evaluation:
    """One attack at one budget: how it was run."""

    attack: str
    eps: float
    variant: str = MAIN
    steps: int = 0  # 0: the config's
    restarts: int = 0  # 0: the config's
    step_size: float | None = None  # None: the config's; 0: 2.5·eps/steps


def evaluations(config: AttackConfig) -> list[Evaluation]:
    """Every attack × budget of the config, then the extra PGD runs its gradient-masking checks need.

    The checks hold plain PGD to account against an adaptive attack, so with checks on PGD is evaluated
    whether listed or not, and APGD-CE too when no adaptive attack is listed.
    """
    names = list(config.attacks)
    if config.checks and CHECKED_ATTACK not in names:
        names.append(CHECKED_ATTACK)
    if config.checks and not any(ATTACKS[name].adaptive for name in names):
        names.append(ADAPTIVE_ATTACK)
    planned = [Evaluation(name, eps) for name in names for eps in budgets(config, name)]
    if config.checks:
        more_steps = config.pgd_steps * config.check_steps_factor
        for eps in (eps for eps in config.eps if eps > 0):  # at eps 0 every PGD run returns the clean input
            planned.append(Evaluation(CHECKED_ATTACK, eps, MORE_STEPS, steps=more_steps))
            planned.append(Evaluation(CHECKED_ATTACK, eps, MORE_RESTARTS, restarts=config.check_restarts))
        # at check_eps the default step (2.5·eps/steps) spans the ball whatever step size the config fixes
        planned.append(Evaluation(CHECKED_ATTACK, config.check_eps, CHANCE, steps=more_steps, step_size=0.0))
    return planned


def evaluate_attacks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig, tau: float,
                     seed: int, device: torch.device, *, n_classes: int, event_unit: float = 1.0) -> list[dict]:
    """Rows of the attack table (without run columns): evaluation × layer, then one row per masking check.

    For each evaluation: robust accuracy on the adversarial examples, and the per-layer and input
    gradient sparsity of the loss at those examples (eps = 0 gives the clean gradients). The model is in
    evaluation mode (BatchNorm statistics frozen); surrogate gradients stay live. Every evaluation draws
    its random numbers from a generator seeded with `seed`, so results do not depend on their order.
    """
    model.eval()
    if config.samples:
        x, y = x[:config.samples], y[:config.samples]
    clean = accuracy(model, x, y, config.batch_size, device)
    rows, accuracies, described = [], {}, {}
    for evaluation in evaluations(config):
        context = AttackContext(config, torch.Generator().manual_seed(seed), event_unit, evaluation.steps,
                                evaluation.restarts, evaluation.step_size)
        robust, layers = attack_once(model, x, y, evaluation, context, tau, device)
        key = evaluation.attack, evaluation.variant, evaluation.eps
        accuracies[key] = robust
        attack = ATTACKS[evaluation.attack]
        steps, restarts = attack.iterations(context)
        described[key] = {"attack": attack.name, "norm": attack.norm, "eps": evaluation.eps,
                          "variant": evaluation.variant, "steps": steps, "restarts": restarts}
        layers[NET].update(clean_accuracy=clean, robust_accuracy=robust)
        rows.extend({**described[key], "layer": layer, **values} for layer, values in layers.items())
    if config.checks:
        adaptive = tuple(dict.fromkeys(name for name, variant, _ in accuracies
                                       if variant == MAIN and ATTACKS[name].adaptive))
        for check in masking_checks(accuracies, clean, n_classes, adaptive, config.check_eps, config.check_tolerance,
                                    len(x)):
            rows.append({**described[check.attack, check.variant, check.eps], "layer": CHECK,
                         "clean_accuracy": clean, "robust_accuracy": check.accuracy, "check": check.check,
                         "check_reference": check.reference, "check_bound_accuracy": check.bound,
                         "check_passed": check.passed})
    return rows


def attack_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, evaluation: Evaluation,
                context: AttackContext, tau: float, device: torch.device) -> tuple[float, dict[str, dict]]:
    """Robust accuracy of one evaluation, and the per-layer sparsity measures at its adversarial examples."""
    attack = ATTACKS[evaluation.attack]
    means, correct = LayerMeans(), 0
    for xb, yb in batches(x, y, context.config.batch_size, device):
        x_adv = attack.run(model, xb, yb, evaluation.eps, context).requires_grad_(True)
        model.zero_grad(set_to_none=True)
        with SparsityProbe(model) as probe:
            logits = model(x_adv)
            F.cross_entropy(logits, yb).backward()
        means.add(layer_sparsity(model, probe, x_adv.grad, tau))
        correct += int((logits.argmax(1) == yb).sum())
    model.zero_grad(set_to_none=True)
    return correct / len(x), means.rows()
