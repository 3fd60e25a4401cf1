"""Attacks against closed-form optima on a linear model, and the integrity of attack evaluation on SNNs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsity_latency.attacks import ATTACKS, AttackContext
from sparsity_latency.attacks.event_flip import event_flip
from sparsity_latency.attacks.gradients import input_gradient
from sparsity_latency.attacks.pgd import fgsm, pgd
from sparsity_latency.config import AttackConfig, ModelConfig
from sparsity_latency.evaluation import evaluate_attacks
from sparsity_latency.models import build_model
from sparsity_latency.probes import CHECK, NET

CPU = torch.device("cpu")


class TimeMeanLinear(nn.Module):
    """logits = mean over time of W·x_t + b, for x [T, B, D]: the input gradient is known in closed form."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.T + self.bias).mean(0)


def _linear_problem(steps: int = 3, batch: int = 5, features: int = 12, seed: int = 0):
    """Two classes; x in [0.3, 0.7] so that a perturbation of up to 0.1 never meets the input bounds."""
    g = torch.Generator().manual_seed(seed)
    model = TimeMeanLinear(torch.randn(2, features, generator=g), torch.zeros(2))
    x = 0.3 + 0.4 * torch.rand(steps, batch, features, generator=g)
    y = torch.randint(0, 2, (batch,), generator=g)
    # direction that lowers the true class's margin: w_other − w_true, per sample [B, D]
    direction = (model.weight[1 - y] - model.weight[y]).detach()
    return model, x, y, direction


def test_fgsm_is_the_closed_form_linf_optimum_of_a_linear_model() -> None:
    model, x, y, direction = _linear_problem()
    x_adv = fgsm(model, x, y, 0.05)
    assert torch.allclose(x_adv, x + 0.05 * direction.sign().expand_as(x), atol=1e-7)


def test_pgd_reaches_the_linf_corner_from_its_random_start() -> None:
    model, x, y, direction = _linear_problem()
    x_adv = pgd(model, x, y, 0.05, steps=10, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(x_adv, x + 0.05 * direction.sign().expand_as(x), atol=1e-6)


@pytest.mark.parametrize("name", [name for name, attack in sorted(ATTACKS.items()) if attack.norm == "linf"])
def test_every_linf_attack_finds_the_closed_form_optimum_of_a_linear_model(name: str) -> None:
    """Without spiking layers RGA's and the surrogate swap's backward is the true gradient: all reach the corner."""
    model, x, y, direction = _linear_problem()
    context = AttackContext(AttackConfig(pgd_steps=10, apgd_steps=10), torch.Generator().manual_seed(0))
    x_adv = ATTACKS[name].run(model, x, y, 0.05, context)
    assert torch.allclose(x_adv, x + 0.05 * direction.sign().expand_as(x), atol=1e-6)


def test_pgd_l2_converges_to_the_scaled_gradient_direction() -> None:
    model, x, y, direction = _linear_problem()
    eps = 0.1
    x_adv = pgd(model, x, y, eps, steps=40, step_size=0.05, norm="l2", generator=torch.Generator().manual_seed(3))
    optimum = direction.expand_as(x)  # the same direction at every time step, normalized over all T·D entries
    optimum = eps * optimum / optimum.transpose(0, 1).flatten(1).norm(dim=1)[None, :, None]
    delta = x_adv - x
    assert torch.allclose(delta.transpose(0, 1).flatten(1).norm(dim=1), torch.full((5,), eps), atol=1e-5)
    assert torch.allclose(delta, optimum, atol=1e-4)


def test_restarts_keep_per_sample_the_stronger_example() -> None:
    model, x, y, _ = _linear_problem(batch=8)
    one = pgd(model, x, y, 0.05, steps=1, step_size=0.01, generator=torch.Generator().manual_seed(1))
    three = pgd(model, x, y, 0.05, steps=1, step_size=0.01, restarts=3, generator=torch.Generator().manual_seed(1))
    loss = lambda x_adv: F.cross_entropy(model(x_adv), y, reduction="none")  # noqa: E731
    assert bool((loss(three) >= loss(one) - 1e-6).all())  # the first restart is the single run, kept unless beaten
    assert bool((loss(three) > loss(one) + 1e-6).any())


def _flip_gains(x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Margin-lowering gain of flipping each bin of binary x [T, B, D]: +w where 0 → 1, −w where 1 → 0."""
    return torch.where(x == 0, 1.0, -1.0) * direction.expand_as(x)


@pytest.mark.parametrize("steps", [1, 4])
def test_event_flip_finds_the_best_flips_on_a_linear_model(steps: int) -> None:
    model, x, y, direction = _linear_problem(batch=4, features=10)
    x = (x > 0.5).float()  # binary event frames
    budget = 7
    x_adv = event_flip(model, x, y, budget, unit=1.0, steps=steps, stop_when_fooled=False)
    changed = (x_adv != x)
    assert set(torch.unique(x_adv).tolist()) <= {0.0, 1.0}
    assert changed.transpose(0, 1).flatten(1).sum(1).tolist() == [budget] * 4
    gains = _flip_gains(x, direction).transpose(0, 1).flatten(1)
    best = gains.topk(budget, dim=1).values.clamp(min=0).sum(1)  # all top gains are positive here
    achieved = (gains * changed.transpose(0, 1).flatten(1)).sum(1)
    assert torch.allclose(achieved, best, atol=1e-5)


def test_event_flip_keeps_counts_on_the_event_grid_and_within_budget() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="mlp", channels=(16,), membrane_bits=32, surrogate="atan",
                                    detach_reset=False), (2, 4, 4), 3).eval()
    unit = 1 / 3
    x = torch.randint(0, 4, (4, 6, 2, 4, 4)).float() * unit  # counts 0..3 events → 0, 1/3, 2/3, 1
    y = torch.randint(0, 3, (6,))
    for budget, steps in ((0, 3), (1, 3), (5, 3), (40, 3), (1000, 1)):  # 1000 > the 128 bins of a sample
        x_adv = event_flip(model, x, y, budget, unit=unit, steps=steps)
        events_changed = ((x_adv - x).abs() / unit).round()
        assert torch.allclose((x_adv - x).abs(), events_changed * unit, atol=1e-6)  # whole events only
        assert events_changed.max() <= 1  # each bin changed by at most one event
        per_sample = events_changed.transpose(0, 1).flatten(1).sum(1)
        assert bool((per_sample <= budget).all())
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def _snn(seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    settings = {"name": "tiny-conv", "channels": (4, 8), "membrane_bits": 32, "surrogate": "atan",
                "detach_reset": False, **changes}
    model = build_model(ModelConfig(**settings), (2, 8, 8), 4)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # running statistics = the plain average over the batches below
    model.train()
    with torch.no_grad():  # BatchNorm's statistics of the input distribution, so that neurons fire
        for _ in range(3):
            model(torch.rand(4, 16, 2, 8, 8))
    return model.eval()


def _snn_batch(seed: int = 1, batch: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, batch, 2, 8, 8, generator=g), torch.randint(0, 4, (batch,), generator=g)


def test_pgd_reaches_at_least_fgsm_loss_on_an_snn() -> None:
    model = _snn()
    x, y = _snn_batch()
    loss = lambda x_adv: float(input_gradient(model, x_adv, y)[1].sum())  # noqa: E731
    fgsm_loss = loss(fgsm(model, x, y, 0.05))
    pgd_loss = loss(pgd(model, x, y, 0.05, steps=10, generator=torch.Generator().manual_seed(0)))
    assert loss(x) < fgsm_loss <= pgd_loss


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_zero_budget_leaves_the_input_unchanged(name: str) -> None:
    model = _snn()
    x, y = _snn_batch()
    context = AttackContext(AttackConfig(pgd_steps=3, apgd_steps=4), torch.Generator().manual_seed(0), 1 / 3)
    assert torch.equal(ATTACKS[name].run(model, x, y, 0.0, context), x)


def test_attacking_a_batch_equals_attacking_each_sample_alone() -> None:
    model = _snn()
    x, y = _snn_batch(batch=5)
    runs = {
        "fgsm": lambda xb, yb: fgsm(model, xb, yb, 0.05),
        "pgd": lambda xb, yb: pgd(model, xb, yb, 0.05, steps=3, random_init=False),
        "event-flip": lambda xb, yb: event_flip(model, xb, yb, 6, unit=1 / 3, steps=2),
    }
    for name, run in runs.items():
        together = run(x, y)
        alone = torch.cat([run(x[:, i:i + 1], y[i:i + 1]) for i in range(5)], dim=1)
        assert torch.allclose(together, alone, atol=1e-6), name


def test_snn_state_starts_at_rest_in_every_forward_pass() -> None:
    for neuron in ("spquant", "spquant-loop", "snntorch"):
        model = _snn(neuron=neuron)
        a, _ = _snn_batch(seed=5)
        b, _ = _snn_batch(seed=6)
        fresh = model(b)
        model(a)
        assert torch.equal(model(b), fresh), neuron


def _small_attack_config(**changes) -> AttackConfig:
    settings = {"attacks": ("fgsm", "pgd", "pgd-l2", "event-flip"), "eps": (0.0, 0.05), "l2_eps": (0.5,),
                "flip_budgets": (4,), "pgd_steps": 2, "check_steps_factor": 2, "check_restarts": 2,
                "batch_size": 8, **changes}
    return AttackConfig(**settings)


def test_evaluation_freezes_batchnorm_keeps_surrogate_gradients_and_is_deterministic() -> None:
    model = _snn()
    x, y = _snn_batch(batch=12)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = _small_attack_config()
    first = evaluate_attacks(model, x, y, config, 0.01, 7, CPU, n_classes=4, event_unit=1 / 3)
    second = evaluate_attacks(model, x, y, config, 0.01, 7, CPU, n_classes=4, event_unit=1 / 3)
    assert first == second
    assert not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # no BatchNorm statistic moved
    net = [r for r in first if r["layer"] == NET]
    assert all(r["input_grad_zero_fraction"] < 1 for r in net)  # surrogate gradients are live in eval mode
    clean = net[0]["clean_accuracy"]
    zero_eps = [r for r in net if r["eps"] == 0.0 and r["norm"] == "linf"]
    assert zero_eps and all(r["robust_accuracy"] == clean for r in zero_eps)


def test_evaluation_rows_carry_each_run_and_its_checks() -> None:
    model = _snn()
    x, y = _snn_batch(batch=12)
    rows = evaluate_attacks(model, x, y, _small_attack_config(), 0.01, 0, CPU, n_classes=4)
    net = {(r["attack"], r["variant"], r["eps"]): r for r in rows if r["layer"] == NET}
    assert set(net) == {("fgsm", "main", 0.0), ("fgsm", "main", 0.05), ("pgd", "main", 0.0), ("pgd", "main", 0.05),
                        ("pgd-l2", "main", 0.5), ("event-flip", "main", 4.0),
                        ("apgd-ce", "main", 0.0), ("apgd-ce", "main", 0.05),  # no adaptive attack listed: added
                        ("pgd", "more-steps", 0.05), ("pgd", "more-restarts", 0.05), ("pgd", "chance", 1.0)}
    assert net["pgd", "more-steps", 0.05]["steps"] == 4 and net["pgd", "more-restarts", 0.05]["restarts"] == 2
    assert net["event-flip", "main", 4.0]["norm"] == "events"
    checks = [r for r in rows if r["layer"] == CHECK]
    assert {r["check"] for r in checks} == {"more-steps", "more-restarts", "adaptive", "eps-monotone", "chance",
                                            "below-clean"}
    assert {r["check_reference"] for r in checks if r["check"] == "adaptive"} == {"apgd-ce"}
    for r in checks:  # each check row repeats the accuracy it checked
        assert r["robust_accuracy"] == net[r["attack"], r["variant"], r["eps"]]["robust_accuracy"]
        tolerance = max(0.02, 1 / 12)
        assert r["check_passed"] == (r["robust_accuracy"] <= r["check_bound_accuracy"] + tolerance)
    chance = next(r for r in checks if r["check"] == "chance")
    assert chance["check_bound_accuracy"] == 0.25


def test_checks_off_and_pgd_and_an_adaptive_attack_added_only_for_them() -> None:
    model = _snn()
    x, y = _snn_batch(batch=8)
    rows = evaluate_attacks(model, x, y, _small_attack_config(attacks=("fgsm",), checks=False), 0.01, 0, CPU,
                            n_classes=4)
    assert {r["attack"] for r in rows} == {"fgsm"} and not any(r["layer"] == CHECK for r in rows)
    rows = evaluate_attacks(model, x, y, _small_attack_config(attacks=("fgsm",)), 0.01, 0, CPU, n_classes=4)
    assert {r["attack"] for r in rows} == {"fgsm", "pgd", "apgd-ce"}
    rows = evaluate_attacks(model, x, y, _small_attack_config(attacks=("fgsm", "rga")), 0.01, 0, CPU, n_classes=4)
    assert {r["attack"] for r in rows} == {"fgsm", "rga", "pgd"}  # an adaptive attack is listed: no apgd-ce added
