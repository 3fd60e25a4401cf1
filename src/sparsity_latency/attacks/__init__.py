"""Attacks on the input frames, registered by name (docs/attacks.md).

Each attack is a small named unit: its norm says what its budget means (`linf` and `l2`: a radius in
input units, inputs in [0, 1]; `events`: a number of flipped events), `adaptive` marks the attacks
built to get through vanishing or misleading surrogate gradients, which the gradient-masking checks
hold plain PGD against. All run on the model in evaluation mode with surrogate gradients live; every
forward pass starts the SNN at rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsity_latency.attacks.apgd import apgd
from sparsity_latency.attacks.backward import rate_gradients, swapped_surrogate
from sparsity_latency.attacks.event_flip import event_flip
from sparsity_latency.attacks.gradients import INPUT_MAX, INPUT_MIN, input_gradient
from sparsity_latency.attacks.pgd import fgsm, pgd
from sparsity_latency.config import AttackConfig

__all__ = [
    "ATTACKS", "BUDGET_KEYS", "INPUT_MAX", "INPUT_MIN", "Attack", "AttackContext", "budgets", "fgsm",
    "input_gradient", "pgd",
]


@dataclass(frozen=True)
class AttackContext:
    """What an attack needs besides model, batch and budget."""

    config: AttackConfig
    generator: torch.Generator
    event_unit: float = 1.0  # input value of one event in a frame bin (1 / data.frame_clip)
    steps: int = 0  # PGD steps of this evaluation (0 = config.pgd_steps); the checks run more
    restarts: int = 0  # random restarts (0 = config.restarts)
    step_size: float | None = None  # PGD step (None = config.pgd_step_size; 0 = 2.5·eps/steps)

    @property
    def pgd_steps(self) -> int:
        return self.steps or self.config.pgd_steps

    @property
    def pgd_step_size(self) -> float:
        return self.config.pgd_step_size if self.step_size is None else self.step_size

    @property
    def pgd_restarts(self) -> int:
        return self.restarts or self.config.restarts


BUDGET_KEYS = {"linf": "eps", "l2": "l2_eps", "events": "flip_budgets"}  # norm → its budgets in AttackConfig


def budgets(config: AttackConfig, name: str) -> tuple[float, ...]:
    """The budgets attack `name` is evaluated at (eps, l2_eps or flip_budgets, by its norm)."""
    return tuple(float(b) for b in getattr(config, BUDGET_KEYS[ATTACKS[name].norm]))


Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, AttackContext], torch.Tensor]


def _pgd_iterations(ctx: AttackContext) -> tuple[int, int]:
    return ctx.pgd_steps, ctx.pgd_restarts


@dataclass(frozen=True)
class Attack:
    name: str
    norm: str  # "linf" | "l2" | "events": the unit of its budget
    adaptive: bool  # built against gradient masking (the checks compare PGD with it)
    run: Runner
    summary: str
    iterations: Callable[[AttackContext], tuple[int, int]] = _pgd_iterations  # (steps, restarts) it runs with


def _pgd(norm: str) -> Runner:
    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: AttackContext) -> torch.Tensor:
        return pgd(model, x, y, eps, steps=ctx.pgd_steps, step_size=ctx.pgd_step_size, norm=norm,
                   restarts=ctx.pgd_restarts, generator=ctx.generator)
    return run


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: AttackContext) -> torch.Tensor:
    return fgsm(model, x, y, eps)


def _apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: AttackContext) -> torch.Tensor:
    return apgd(model, x, y, eps, steps=ctx.config.apgd_steps, restarts=ctx.pgd_restarts, generator=ctx.generator)


def _rga(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: AttackContext) -> torch.Tensor:
    with rate_gradients(model):
        return _pgd("linf")(model, x, y, eps, ctx)


def _surrogate_swap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    ctx: AttackContext) -> torch.Tensor:
    with swapped_surrogate(model, ctx.config.swap_surrogate, ctx.config.swap_param):
        return _pgd("linf")(model, x, y, eps, ctx)


def _event_flip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: AttackContext) -> torch.Tensor:
    return event_flip(model, x, y, int(eps), unit=ctx.event_unit, steps=ctx.config.flip_steps)


ATTACKS: dict[str, Attack] = {attack.name: attack for attack in (
    Attack("fgsm", "linf", False, _fgsm, "fast gradient sign method, one step of eps", lambda ctx: (1, 1)),
    Attack("pgd", "linf", False, _pgd("linf"), "L∞ projected gradient descent with random start (and restarts)"),
    Attack("pgd-l2", "l2", False, _pgd("l2"), "L2 projected gradient descent with random start (and restarts)"),
    Attack("apgd-ce", "linf", True, _apgd, "auto-PGD on the cross-entropy (Croce & Hein 2020)",
           lambda ctx: (ctx.config.apgd_steps, ctx.pgd_restarts)),
    Attack("rga", "linf", True, _rga, "PGD through a rate model of every LIF layer (Bu et al. 2023)"),
    Attack("surrogate-swap", "linf", True, _surrogate_swap,
           "PGD with a smoother surrogate gradient than the model was trained with"),
    Attack("event-flip", "events", False, _event_flip,
           "greedy gradient-guided flips of single events; budget in events per sample",
           lambda ctx: (ctx.config.flip_steps, 1)),
)}
