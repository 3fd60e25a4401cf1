"""Training methods (methods.py): each one's examples and objective, checked by hand on a linear model, and one
descending SGD step of each on a linear model and on tiny-conv.

The linear model maps [T, B, D] to the time-mean of W·x + b, so every input gradient is known in closed form:
∂f_c/∂x[t, b] = W_c / T.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.config import ModelConfig, TrainConfig
from sparsity_latency.methods import METHODS, Step
from sparsity_latency.models import build_model

T, B, D, C = 3, 5, 6, 4
EPS = 0.05
CONFIG = TrainConfig(eps=EPS, pgd_steps=3, trades_beta=6.0, grad_reg_h=0.01, grad_reg_lambda=0.5)


class TimeMeanLinear(nn.Module):
    """[T, B, D] → mean over T of W·x + b: [B, C]."""

    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        draw = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(D, C, dtype=dtype)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(C, D, generator=draw))
            self.fc.bias.copy_(torch.randn(C, generator=draw) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).mean(0)


def linear_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0.2, 0.8] (far enough from the bounds that neither eps nor h reaches them) and labels."""
    draw = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.6 * torch.rand(T, B, D, generator=draw, dtype=torch.float64)
    return x, torch.randint(0, C, (B,), generator=draw)


def tiny_conv() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """tiny-conv on [T, B, 2, 8, 8] event-like frames (mostly 0, some at 1) and labels of 4 classes."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny-conv", channels=(4, 8)), (2, 8, 8), C)
    draw = torch.Generator().manual_seed(2)
    events = torch.randint(0, 4, (4, 6, 2, 8, 8), generator=draw).float() / 3
    x = torch.where(torch.rand(events.shape, generator=draw) < 0.3, events, torch.zeros(()))
    return model, x, torch.randint(0, C, (6,), generator=draw)


def make_step(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig = CONFIG,
              seed: int = 7) -> Step:
    """The method as the training loop calls it: model in evaluation mode, a seeded generator."""
    model.eval()
    return METHODS[name](model, x, y, config, torch.Generator().manual_seed(seed))


def in_ball_and_range(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    return bool((x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1)


def rival_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """By hand: the highest non-true class."""
    return torch.tensor([max((c for c in range(C) if c != int(label)), key=lambda c: float(row[c]))
                         for row, label in zip(logits, y, strict=True)])


# ------------------------------------------------------------------------------------------------- all methods


def test_the_registry_holds_the_six_methods() -> None:
    assert set(METHODS) == {"standard", "pgd-at", "fgsm-at", "trades", "grad-reg", "pgd-at+grad-reg"}


def descends(model: nn.Module, step: Step, parameters: list[nn.Parameter], lr: float) -> tuple[float, float]:
    """The objective at the step's fixed inputs before and after one SGD step (training mode, as the loop)."""
    model.train()
    inputs = step.inputs.detach()
    optimizer = torch.optim.SGD(parameters, lr=lr)
    optimizer.zero_grad()
    before = step.objective(model(inputs))
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = step.objective(model(inputs))
    return before.item(), after.item()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_sgd_step_lowers_each_methods_objective_on_a_linear_model(name: str) -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    before, after = descends(model, make_step(name, model, x, y), list(model.parameters()), lr=0.05)
    assert after < before


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_sgd_step_of_the_readout_lowers_each_methods_objective_on_tiny_conv(name: str) -> None:
    # the readout is the one layer whose surrogate gradient is the true gradient (the spikes below it stay put)
    model, x, y = tiny_conv()
    step = make_step(name, model, x, y)
    assert step.inputs.dim() == x.dim() and step.inputs.shape[2:] == x.shape[2:]
    before, after = descends(model, step, list(model.fc.parameters()), lr=0.05)
    assert after < before


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_leave_no_parameter_gradients_behind(name: str) -> None:
    model, x, y = tiny_conv()
    make_step(name, model, x, y)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_same_seed_gives_the_same_step(name: str) -> None:
    model, x, y = tiny_conv()
    first, second = make_step(name, model, x, y, seed=3), make_step(name, model, x, y, seed=3)
    assert torch.equal(first.inputs, second.inputs)
    model.train()
    with torch.no_grad():
        assert torch.equal(first.objective(model(first.inputs)), second.objective(model(second.inputs)))


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-at", "trades", "pgd-at+grad-reg"])
def test_randomized_methods_draw_from_their_generator(name: str) -> None:
    model, x, y = tiny_conv()
    assert not torch.equal(make_step(name, model, x, y, seed=3).inputs, make_step(name, model, x, y, seed=4).inputs)


# ----------------------------------------------------------------------------------------------------- fgsm-at


@pytest.mark.parametrize("step_size", [0.0, 0.4 * EPS])
def test_fgsm_at_is_one_signed_step_from_a_uniform_start_projected_back(step_size: float) -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    config = dataclasses.replace(CONFIG, fgsm_step_size=step_size)
    x_adv = make_step("fgsm-at", model, x, y, config, seed=5).inputs
    # by hand: δ ~ U(−eps, eps) from the same generator, then x0 + α·sign(∂CE/∂x), α = 1.25·eps by default
    noise = torch.empty(x.shape).uniform_(-EPS, EPS, generator=torch.Generator().manual_seed(5))
    start = (x + noise).clamp(0, 1)
    logits = model(start)
    dlogits = F.softmax(logits, dim=1) - F.one_hot(y, C)  # ∂CE/∂logits, per sample
    grad = (dlogits @ model.fc.weight / T).expand(T, B, D)
    alpha = step_size or 1.25 * EPS
    expected = (x + (start + alpha * grad.sign() - x).clamp(-EPS, EPS)).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected)
    assert in_ball_and_range(x_adv, x, EPS)


def test_fgsm_at_examples_stay_in_the_eps_ball_and_the_input_range() -> None:
    model, x, y = tiny_conv()  # frames with many values at the bounds 0 and 1
    x_adv = make_step("fgsm-at", model, x, y).inputs
    assert x_adv.shape == x.shape and not torch.equal(x_adv, x)
    assert in_ball_and_range(x_adv, x, EPS)


# ------------------------------------------------------------------------------------------------------ trades


def test_trades_update_pass_is_clean_then_adversarial_inside_the_eps_ball() -> None:
    model, x, y = tiny_conv()
    inputs = make_step("trades", model, x, y).inputs
    assert inputs.shape == (x.shape[0], 2 * x.shape[1], *x.shape[2:])
    clean, adversarial = inputs[:, :x.shape[1]], inputs[:, x.shape[1]:]
    assert torch.equal(clean, x)
    assert in_ball_and_range(adversarial, x, EPS) and not torch.equal(adversarial, x)


def test_trades_objective_is_clean_cross_entropy_plus_beta_times_batch_mean_kl() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    step = make_step("trades", model, x, y)
    logits = model(step.inputs)
    clean, adversarial = logits[:B], logits[B:]
    p_clean = F.softmax(clean, dim=1)
    kl = (p_clean * (p_clean.log() - F.log_softmax(adversarial, dim=1))).sum() / B
    expected = F.cross_entropy(clean, y) + CONFIG.trades_beta * kl
    torch.testing.assert_close(step.objective(logits), expected)
    assert kl > 0


@pytest.mark.parametrize(("name", "weight"), [("trades", "trades_beta"), ("grad-reg", "grad_reg_lambda")])
def test_a_zero_weight_leaves_the_clean_cross_entropy(name: str, weight: str) -> None:
    """trades with β = 0 and grad-reg with λ = 0 are standard training on their first (clean) half."""
    model = TimeMeanLinear()
    x, y = linear_batch()
    step = make_step(name, model, x, y, dataclasses.replace(CONFIG, **{weight: 0.0}))
    logits = model(step.inputs)
    torch.testing.assert_close(step.objective(logits), F.cross_entropy(logits[:B], y))


def test_trades_inner_maximization_raises_the_kl_above_its_gaussian_start() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    x_adv = make_step("trades", model, x, y, seed=9).inputs[:, B:]
    start = x + 0.001 * torch.empty(x.shape).normal_(generator=torch.Generator().manual_seed(9))

    def kl_from_clean(x_other: torch.Tensor) -> float:
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(model(x_other), 1), F.softmax(model(x), 1), reduction="sum"))

    assert kl_from_clean(x_adv) > 100 * kl_from_clean(start)
    assert in_ball_and_range(x_adv, x, EPS)


# ---------------------------------------------------------------------------------------------------- grad-reg


def hand_grad_reg(model: TimeMeanLinear, x: torch.Tensor, y: torch.Tensor,
                  h: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x + h·v, d, ‖∇ₓp‖₁) in closed form on the linear model.

    p = σ(f_y − f_k) with k the strongest rival, w = W_y − W_k: ∇ₓ p = σ'(m)·w/T at every step, so
    v = sign(w), the margin moves by h·‖w‖₁ exactly, and ‖∇ₓ p‖₁ = σ'(m)·‖w‖₁.
    """
    logits = model(x).detach()
    rival = rival_of(logits, y)
    w = model.fc.weight[y] - model.fc.weight[rival]  # [B, D]
    margin = logits.gather(1, y[:, None]).squeeze(1) - logits.gather(1, rival[:, None]).squeeze(1)
    l1 = w.abs().sum(1)
    probe = x + h * w.sign().expand(T, B, D)
    d = (torch.sigmoid(margin + h * l1) - torch.sigmoid(margin)) / h
    slope = torch.sigmoid(margin) * (1 - torch.sigmoid(margin))
    return probe.detach(), d.detach(), (slope * l1).detach()


def test_grad_reg_probes_along_the_sign_of_the_true_probability_gradient() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    inputs = make_step("grad-reg", model, x, y).inputs
    probe, _, _ = hand_grad_reg(model, x, y, CONFIG.grad_reg_h)
    assert torch.equal(inputs[:, :B], x)
    torch.testing.assert_close(inputs[:, B:], probe)


def test_grad_reg_penalty_is_lambda_times_mean_squared_finite_difference() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    step = make_step("grad-reg", model, x, y)
    logits = model(step.inputs)
    _, d, _ = hand_grad_reg(model, x, y, CONFIG.grad_reg_h)
    expected = F.cross_entropy(logits[:B], y) + CONFIG.grad_reg_lambda * d.pow(2).mean()
    torch.testing.assert_close(step.objective(logits), expected)


def test_grad_reg_finite_difference_tends_to_the_l1_norm_of_the_gradient() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    h = 1e-6
    step = make_step("grad-reg", model, x, y, dataclasses.replace(CONFIG, grad_reg_h=h, grad_reg_lambda=1.0))
    logits = model(step.inputs)
    _, _, l1 = hand_grad_reg(model, x, y, h)
    penalty = step.objective(logits) - F.cross_entropy(logits[:B], y)
    torch.testing.assert_close(penalty, l1.pow(2).mean(), rtol=1e-4, atol=0)


def test_pgd_at_grad_reg_takes_cross_entropy_and_regularizer_at_the_pgd_examples() -> None:
    model = TimeMeanLinear()
    x, y = linear_batch()
    x_adv = make_step("pgd-at", model, x, y, seed=4).inputs
    step = make_step("pgd-at+grad-reg", model, x, y, seed=4)
    probe, d, _ = hand_grad_reg(model, x_adv, y, CONFIG.grad_reg_h)
    torch.testing.assert_close(step.inputs, torch.cat([x_adv, probe], dim=1))
    logits = model(step.inputs)
    expected = F.cross_entropy(logits[:B], y) + CONFIG.grad_reg_lambda * d.pow(2).mean()
    torch.testing.assert_close(step.objective(logits), expected)
    assert in_ball_and_range(x_adv, x, EPS) and not torch.equal(x_adv, x)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_probes_only_the_update_pass(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The method's own attack passes happen outside the probe: each probed context sees one forward."""
    from sparsity_latency import training
    from sparsity_latency.config import Config, with_changes
    from sparsity_latency.probes import spiking_layers

    forwards: list[int] = []

    class CountingProbe(training.SparsityProbe):
        def __enter__(self):
            probe = super().__enter__()
            layer = next(iter(spiking_layers(self.model).values()))
            self._handles.append(layer.register_forward_hook(lambda *_: forwards.__setitem__(-1, forwards[-1] + 1)))
            forwards.append(0)
            return probe

    monkeypatch.setattr(training, "SparsityProbe", CountingProbe)
    config = with_changes(Config(), {"data.train_samples": 16, "data.test_samples": 8, "data.time_steps": 3,
                                     "model.channels": [4, 8], "train.epochs": 1, "train.batch_size": 8,
                                     "train.method": name, "train.pgd_steps": 2})
    result = training.train(config, torch.device("cpu"))
    assert forwards == [1, 1]  # two batches, one probed forward each
    net = [row for row in result.rows if row["layer"] == "__net__"]
    assert len(net) == 1 and net[0]["loss"] > 0
