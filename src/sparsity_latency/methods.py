"""Training methods, registered by name: each turns a clean batch into the pass the parameters learn from.

A method is called with the model in evaluation mode (BatchNorm statistics frozen) and returns a
`Step`: the inputs of the update pass and the objective on their logits. Whatever the method does to
find its inputs (an attack's forward and backward passes) happens before the update pass, outside
the training loop's sparsity probe, so the training sparsity statistics describe the update pass
alone. Methods that need two views of a sample in the update (trades: clean and adversarial;
grad-reg: x and x + h·v) concatenate them along the batch axis into one pass; the first B rows of
the logits are always the samples whose accuracy the training table reports.

Perturbations stay in the input range [0, 1] (attacks.gradients), except grad-reg's finite-difference
probe x + h·v, which is not clamped (see `finite_difference_step`). Random draws come from the
method's generator (drawn on the CPU), so a run is deterministic for its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks.gradients import BATCH_DIM, clamp_input, score_gradient
from sparsity_latency.attacks.pgd import default_step_size, pgd
from sparsity_latency.attacks.pgd import step as ascent_step
from sparsity_latency.config import TrainConfig

TRADES_START_SCALE = 0.001  # σ of the Gaussian start of TRADES' inner maximization (reference code)


@dataclass
class Step:
    """The update pass of one batch: its inputs [T, B', …] and its objective (logits [B', classes] → loss)."""

    inputs: torch.Tensor
    objective: Callable[[torch.Tensor], torch.Tensor]


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator], Step]
Objective = Callable[[torch.Tensor], torch.Tensor]


def cross_entropy(y: torch.Tensor) -> Objective:
    """The mean cross-entropy of logits against labels y."""
    return lambda logits: F.cross_entropy(logits, y)


def standard(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
             generator: torch.Generator) -> Step:
    """Standard training: the clean batch, cross-entropy."""
    return Step(x, cross_entropy(y))


def pgd_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
           generator: torch.Generator) -> Step:
    """PGD adversarial training (Madry et al. 2018): cross-entropy on L∞ PGD examples with a random start."""
    return Step(pgd_examples(model, x, y, config, generator), cross_entropy(y))


def pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                 generator: torch.Generator) -> torch.Tensor:
    """L∞ PGD examples at the training budget (eps, steps and step size of the train config)."""
    return pgd(model, x, y, config.eps, steps=config.pgd_steps, step_size=config.pgd_step_size,
               generator=generator)


# --- fgsm-at ---------------------------------------------------------------------------------------------------


def fgsm_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
            generator: torch.Generator) -> Step:
    """Fast adversarial training, FGSM with a random start (Wong, Rice & Kolter, ICLR 2020; locuslab/fast_adversarial,
    CIFAR10/train_fgsm.py): cross-entropy on

        x₀ = clip₍₀,₁₎(x + δ),  δ ~ U(−eps, eps)
        x_adv = clip₍₀,₁₎(x + clip₍−eps,eps₎(x₀ + α · sign ∇ₓ CE(f(x₀), y) − x)),

    α = `fgsm_step_size`, 0 meaning 1.25 · eps (their 10/255 at eps 8/255). This is one step of the
    project's PGD (same start, step and projection). Unlike the reference, the example is made with the
    model in evaluation mode (the project's rule for every method); their cyclic learning rate, mixed
    precision and early stopping belong to their training loop, not to the method.
    """
    step_size = config.fgsm_step_size or 1.25 * config.eps
    return Step(pgd(model, x, y, config.eps, steps=1, step_size=step_size, generator=generator), cross_entropy(y))


# --- trades ----------------------------------------------------------------------------------------------------


def trades(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
           generator: torch.Generator) -> Step:
    """TRADES (Zhang et al., ICML 2019; yaodongyu/TRADES, trades.py, `trades_loss` with distance 'l_inf').

    Inner maximization (`trades_examples`) of KL(f(x) ‖ f(x')) by L∞ PGD; objective on the update pass
    of [x; x_adv] (clean first, concatenated along the batch axis):

        CE(f(x), y) + β · (1/B) Σᵢ KL(softmax f(xᵢ) ‖ softmax f(x_adv,ᵢ)),   β = `trades_beta`

    the KL as the reference computes it (KLDivLoss of log-softmax(f(x_adv)) against softmax(f(x)),
    summed, / batch size), with gradients through both distributions. The reference runs three update
    forward passes (x twice, x_adv once), each with its own BatchNorm batch statistics; here x and
    x_adv share one pass, so they share them.
    """
    x_adv = trades_examples(model, x, config, generator)
    return Step(torch.cat([x, x_adv], dim=BATCH_DIM), trades_objective(y, config.trades_beta))


def trades_examples(model: nn.Module, x: torch.Tensor, config: TrainConfig,
                    generator: torch.Generator) -> torch.Tensor:
    """x_adv maximizing KL(f(x) ‖ f(x_adv)) in the L∞ eps ball ∩ [0, 1].

    As the reference: start at x + 0.001 · N(0, I), then `pgd_steps` steps x' ← Π(x' + α · sign ∇ KL),
    Π the projection onto the eps ball and the input range. The step α follows the project's rule
    (`train.pgd_step_size`, 0 → 2.5 · eps / steps) rather than the reference's fixed 0.007 at eps 0.031.
    """
    with torch.no_grad():
        clean = F.softmax(model(x), dim=1)
    noise = torch.empty(x.shape).normal_(generator=generator).to(x)
    x_adv = (x + TRADES_START_SCALE * noise).detach()
    step_size = default_step_size(config.eps, config.pgd_steps, config.pgd_step_size)
    for _ in range(config.pgd_steps):
        grad, _ = score_gradient(model, x_adv, kl_from(clean))
        x_adv = ascent_step(x_adv, x, grad, config.eps, step_size, "linf")
    return clamp_input(x_adv).detach()  # as the reference's final clamp (a no-op after any step)


def kl_from(clean: torch.Tensor) -> Objective:
    """Logits of x' → Σᵢ KL(clean ‖ softmax f(x')ᵢ), the reference's KLDivLoss(size_average=False)."""
    return lambda logits: F.kl_div(F.log_softmax(logits, dim=1), clean, reduction="sum")


def trades_objective(y: torch.Tensor, beta: float) -> Objective:
    """Logits [2B, classes] of [x; x_adv] → CE(clean half, y) + β · batch-mean KL(clean ‖ adversarial)."""
    def objective(logits: torch.Tensor) -> torch.Tensor:
        clean, adversarial = logits[:len(y)], logits[len(y):]
        robust = F.kl_div(F.log_softmax(adversarial, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
        return F.cross_entropy(clean, y) + beta * robust
    return objective


# --- grad-reg --------------------------------------------------------------------------------------------------


def grad_reg(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
             generator: torch.Generator) -> Step:
    """Gradient sparsity regularization (Liu et al., ICML 2024, arXiv 2405.20355; putshua/gradient_reg_defense,
    utils.py `train_reg`, as released in v1.0.0): CE on the clean batch plus λ · mean(d²), d the finite
    difference of the true class's probability along the sign of its input gradient (an estimate of
    the L1 norm of that gradient). See `finite_difference_step`.
    """
    return finite_difference_step(model, x, y, config)


def pgd_at_grad_reg(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                    generator: torch.Generator) -> Step:
    """PGD-AT combined with grad-reg as Liu et al.'s code does it (`train_reg` with `atk` = PGD): the batch
    is first replaced by its PGD examples (`pgd_examples`), and grad-reg then runs on them — the
    cross-entropy and the regularizer are both taken at x_adv, nothing at the clean x.
    """
    return finite_difference_step(model, pgd_examples(model, x, y, config, generator), y, config)


def finite_difference_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> Step:
    """The update pass of grad-reg at x: inputs [x; x + h·v], objective CE(f(x), y) + λ · mean(d²) with

        p(x)  = exp f_y(x) / (exp f_y(x) + exp f_k(x))   (f the time-averaged logits, k the strongest rival)
        v     = sign ∇ₓ p(x)
        d     = (p(x + h·v) − p(x)) / h  ≈ ‖∇ₓ p(x)‖₁,      h = `grad_reg_h`, λ = `grad_reg_lambda`.

    Following the released code (the paper bounds the robustness gap by the sparsity of the gradient of
    the true label's probability and estimates its L1 norm by this finite difference): p is the
    two-class softmax of the true class against the highest other logit, k is chosen once and kept for
    x + h·v, v is the sign of g (the repository's first, 2023 ANN prototype used the logit f_y, v =
    g/‖g‖₂ and mean(d²)/2 — an L2 estimate — which the released SNN code replaced), the penalty is
    mean(d²) without a ½, and both p(x) and p(x + h·v) carry gradients. g is taken without a graph
    through it (no double backprop). x + h·v is not clamped to [0, 1], as in the code (clamping would
    bend the direction the difference is taken along; on event frames the probe may dip to −h).
    Differences: g and k come from a pass in evaluation mode (the code takes them from the training-
    mode update pass itself), and x and x + h·v share one update pass (the code runs two).
    """
    x = x.detach()
    grad, logits = score_gradient(model, x, lambda z: true_probability(z, y, strongest_rival(z, y)))
    rival = strongest_rival(logits, y)
    probe = x + config.grad_reg_h * grad.sign()
    return Step(torch.cat([x, probe], dim=BATCH_DIM),
                grad_reg_objective(y, rival, config.grad_reg_h, config.grad_reg_lambda))


def strongest_rival(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The class with the highest logit other than the true one, per sample [B]."""
    return logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)


def true_probability(logits: torch.Tensor, y: torch.Tensor, rival: torch.Tensor) -> torch.Tensor:
    """exp f_y / (exp f_y + exp f_k) = σ(f_y − f_k) per sample [B]."""
    return torch.sigmoid((logits.gather(1, y[:, None]) - logits.gather(1, rival[:, None])).squeeze(1))


def finite_differences(logits: torch.Tensor, y: torch.Tensor, rival: torch.Tensor, h: float) -> torch.Tensor:
    """d = (p(x + h·v) − p(x)) / h per sample [B], from the logits [2B, classes] of [x; x + h·v]."""
    at_x, at_probe = logits[:len(y)], logits[len(y):]
    return (true_probability(at_probe, y, rival) - true_probability(at_x, y, rival)) / h


def grad_reg_objective(y: torch.Tensor, rival: torch.Tensor, h: float, lam: float) -> Objective:
    """Logits [2B, classes] of [x; x + h·v] → CE(f(x), y) + λ · mean(d²)."""
    def objective(logits: torch.Tensor) -> torch.Tensor:
        penalty = finite_differences(logits, y, rival, h).pow(2).mean()
        return F.cross_entropy(logits[:len(y)], y) + lam * penalty
    return objective


METHODS: dict[str, Method] = {
    "standard": standard,
    "pgd-at": pgd_at,
    "fgsm-at": fgsm_at,
    "trades": trades,
    "grad-reg": grad_reg,
    "pgd-at+grad-reg": pgd_at_grad_reg,
}
