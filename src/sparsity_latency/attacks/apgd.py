"""APGD-CE: auto-PGD on the cross-entropy (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", Algorithm 1).

PGD with momentum whose step size adapts itself, so there is nothing to tune but the number of steps N:

- start at a random point x⁽⁰⁾ of the eps ball (uniform, see pgd.random_start) with step size η = 2·eps;
- step: z = P(x⁽ᵏ⁾ + η·s(∇f)), then x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α·(z − x⁽ᵏ⁾) + (1 − α)·(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)) with momentum
  α = 0.75 (α = 1 on the first step), s the norm's steepest direction (sign for L∞, ∇/‖∇‖₂ for L2) and P
  the projection onto the eps ball and the input range;
- at the checkpoints w_j = ⌈p_j·N⌉ (p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) a
  sample halves its step size and resumes from its best point (the highest loss so far) when
  1. fewer than a fraction ρ of its steps since the last checkpoint raised the loss, or
  2. its step size was not halved at the last checkpoint and its best loss has not risen since.

Each sample keeps its best point; a sample that is misclassified at some iterate (or at the clean input, as
APGD leaves such samples alone in the authors' code) keeps its misclassifying point of highest loss instead.
Inputs are time-major [T, B, …] in [0, 1]; every quantity of the algorithm (step size, best loss, checkpoint
conditions) is per sample. With restarts, `pgd.keep_stronger` keeps per sample a misclassifying result of any
restart, else the one of highest loss.

Where the authors' code (fra31/auto-attack, and torchattacks' copy of it) departs from the paper, this follows
the paper: checkpoints ⌈p_j·N⌉ (the code rounds the intervals down: for N = 10 it checks after every step from
the 2nd on), condition 1 strict (< ρ), condition 2 also at the first checkpoint, and the loss of an iterate
replaced by the best point counted as the best loss. The random start is PGD's (uniform in the ball; the code
scales a random direction out to the boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks.gradients import cross_entropy_gradient, per_sample_shape, project_l2, project_linf
from sparsity_latency.attacks.pgd import NORMS, keep_stronger, random_start, step

MOMENTUM = 0.75  # α: the weight of the new step against the last one


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j in (0, steps) after which APGD checks its progress (the paper's W, rounded up)."""
    points: list[int] = []
    p_before, p = 0.0, 0.22
    while p < 1.0:
        w = math.ceil(round(p * steps, 6))  # round first: 0.41·100 is 41.000000000000007 in floating point
        if 0 < w < steps and (not points or w > points[-1]):
            points.append(w)
        p_before, p = p, p + max(p - p_before - 0.03, 0.06)
    return points


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int, restarts: int = 1,
         norm: str = "linf", generator: torch.Generator | None = None, rho: float = 0.75) -> torch.Tensor:
    """APGD-CE (module docstring) with `steps` gradient steps per restart, each restart from a random start."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}' (known: {', '.join(NORMS)})")
    if eps <= 0:
        return x.detach()
    best: torch.Tensor | None = None
    for _ in range(max(restarts, 1)):
        x_adv = _single_run(model, x.detach(), y, eps, steps, norm, generator, rho)
        best = x_adv if best is None else keep_stronger(model, best, x_adv, y)
    return best


def _single_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, norm: str,
                generator: torch.Generator | None, rho: float) -> torch.Tensor:
    """One run of APGD from a random start: per sample its misclassifying point, else its point of highest loss."""
    fooling = _Fooling.at_clean_input(model, x, y)
    x_adv = random_start(x, eps, norm, generator)
    grad, loss, wrong = _gradient(model, x_adv, y)
    fooling.update(x_adv, wrong, loss)
    step_size = torch.full_like(loss, 2.0 * eps)
    history = loss.new_zeros(steps + 1, loss.numel())  # f(x⁽ᵏ⁾) per iterate and sample
    history[0] = loss
    best, best_loss, best_grad = x_adv, loss, grad  # the highest loss so far, where a halving resumes

    previous = x_adv
    checks = set(checkpoints(steps))
    last_check, best_loss_at_last_check = 0, best_loss
    halved_at_last_check = torch.zeros_like(fooling.fooled)
    for k in range(steps):
        alpha = 1.0 if k == 0 else MOMENTUM
        z = step(x_adv, x, grad, eps, per_sample_shape(step_size, x), norm)
        moved = x_adv + alpha * (z - x_adv) + (1.0 - alpha) * (x_adv - previous)
        previous, x_adv = x_adv, _project(moved, x, eps, norm)

        grad, loss, wrong = _gradient(model, x_adv, y)
        fooling.update(x_adv, wrong, loss)
        history[k + 1] = loss
        improved = loss > best_loss
        best, best_grad = _where(improved, x_adv, best), _where(improved, grad, best_grad)
        best_loss = torch.where(improved, loss, best_loss)

        w = k + 1
        if w in checks:
            raised = (history[last_check + 1:w + 1] > history[last_check:w]).sum(0)
            oscillating = raised < rho * (w - last_check)  # condition 1
            stalled = ~halved_at_last_check & (best_loss <= best_loss_at_last_check)  # condition 2
            halve = oscillating | stalled
            step_size = torch.where(halve, step_size / 2, step_size)
            x_adv, grad = _where(halve, best, x_adv), _where(halve, best_grad, grad)
            history[w] = torch.where(halve, best_loss, history[w])  # x⁽ʷ⁾ is now the best point
            last_check, best_loss_at_last_check, halved_at_last_check = w, best_loss, halve
    return _where(fooling.fooled, fooling.x, best)


@dataclass
class _Fooling:
    """Per sample: whether some point was misclassified, and the misclassifying point of highest loss."""

    fooled: torch.Tensor  # [B] bool
    x: torch.Tensor  # [T, B, …]
    loss: torch.Tensor  # [B]

    @classmethod
    @torch.no_grad()
    def at_clean_input(cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> _Fooling:
        """A sample the model gets wrong without an attack counts as fooled already (by x itself)."""
        logits = model(x)
        return cls(logits.argmax(1) != y, x, F.cross_entropy(logits, y, reduction="none"))

    def update(self, x_adv: torch.Tensor, wrong: torch.Tensor, loss: torch.Tensor) -> None:
        take = wrong & (~self.fooled | (loss > self.loss))
        self.x, self.loss = _where(take, x_adv, self.x), torch.where(take, loss, self.loss)
        self.fooled = self.fooled | wrong


def _gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """∂L/∂x, per-sample cross-entropy and whether each sample is misclassified, from one forward pass."""
    grad, loss, logits = cross_entropy_gradient(model, x_adv, y)
    return grad, loss, logits.argmax(1) != y


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    return project_linf(x_adv, x, eps) if norm == "linf" else project_l2(x_adv, x, eps)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample: a where mask [B], else b (time-major [T, B, …])."""
    return torch.where(per_sample_shape(mask, a), a, b)
