"""Per-step logits of every model and confidence-thresholded early exit (latency/early_exit.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.latency.early_exit import early_exit, exit_steps, running_mean, step_logits_of
from sparsity_latency.models import build_model
from sparsity_latency.models.fusion import FUSIONS, FusionSNN

VISION = ("dvs", (2, 8, 8))
AUDIO = ("audio", (1, 1, 20))
APS = ("aps", (1, 8, 8))
STEPS, BATCH = 5, 3


def frames_for(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, BATCH, *shape, generator=generator) < 0.5).float()


def excited(model: nn.Module) -> nn.Module:
    """The model in eval mode with its BatchNorm gains raised, so that spikes reach the readout."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.constant_(module.weight, 8.0)
    return model.eval()


def single(name: str, channels: tuple[int, ...], shape: tuple[int, int, int], gating: bool = False):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, channels=channels, gating=gating), shape, 4)
    return excited(model), frames_for(shape)


def fusion(kind: str, modalities):
    torch.manual_seed(0)
    config = ModelConfig(channels=(4, 8), fusion=kind)
    model = excited(FusionSNN(config, modalities, n_classes=4))
    size = sum(math.prod(shape) for _, shape in modalities)
    return model, frames_for((size,))  # packed frames [T, B, D₁ + D₂]


MODELS = {
    "tiny-conv": lambda: single("tiny-conv", (4, 8), (2, 16, 16)),
    "tiny-conv-gated": lambda: single("tiny-conv", (4, 8), (2, 16, 16), gating=True),
    "vgg9": lambda: single("vgg9", (2, 2, 4, 4, 4, 4, 8, 8), (2, 16, 16)),
    "mlp": lambda: single("mlp", (16, 8), (1, 1, 30)),
    **{f"{kind}-dvs+audio": (lambda kind=kind: fusion(kind, (VISION, AUDIO))) for kind in FUSIONS},
    "early-dvs+aps": lambda: fusion("early", (VISION, APS)),
}


@pytest.mark.parametrize("kind", MODELS)
def test_step_logits_average_to_the_output(kind: str) -> None:
    model, frames = MODELS[kind]()
    with torch.no_grad():
        steps = model.step_logits(frames)
        assert steps.shape == (STEPS, BATCH, 4)
        torch.testing.assert_close(steps.mean(0), model(frames))


@pytest.mark.parametrize("kind", MODELS)
def test_running_mean_of_step_logits_is_the_output_on_the_first_frames(kind: str) -> None:
    model, frames = MODELS[kind]()
    with torch.no_grad():
        means = running_mean(model.step_logits(frames))
        assert not torch.allclose(means[0], means[-1])  # the spikes change the output over time
        for t in range(1, STEPS + 1):
            torch.testing.assert_close(means[t - 1], model(frames[:t]))


def test_running_mean() -> None:
    logits = torch.tensor([[[2.0]], [[4.0]], [[0.0]]])  # [T=3, B=1, 1]
    torch.testing.assert_close(running_mean(logits).flatten(), torch.tensor([2.0, 3.0, 2.0]))


# Three classes, four steps. With logits [z, 0, 0] the confidence is e^z / (e^z + 2):
# z = 1 → 0.576, z = 4 → 0.965; values chosen away from the thresholds 0.5 and 0.9.
STEP_LOGITS = torch.tensor([
    # sample A (label 0): [4, 0, 0] every step → running mean z = 4 at once (0.965), class 0
    [[4.0, 0, 0], [4, 0, 0], [4, 0, 0], [4, 0, 0]],
    # sample B (label 1): class 1 gets 1, 1, 1, 13 → running means 1, 1, 1, 4 (0.576 ×3, then 0.965), class 1
    [[0.0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 13, 0]],
    # sample C (label 2): running means [2, 0, 0] (0.787, class 0: wrong), [1, 0, 2] (0.665), [2/3, 0, 4] (0.949),
    # [1/2, 0, 5] (0.982), class 2 from step 2 on
    [[2.0, 0, 0], [0, 0, 4], [0, 0, 8], [0, 0, 8]],
]).transpose(0, 1)  # [T=4, B=3, 3]
LABELS = torch.tensor([0, 1, 2])


def test_exit_steps_by_hand() -> None:
    assert exit_steps(STEP_LOGITS, 0.5).tolist() == [1, 1, 1]
    assert exit_steps(STEP_LOGITS, 0.9).tolist() == [1, 4, 3]  # B reaches 0.965 only at the last step
    assert exit_steps(STEP_LOGITS, 0.96).tolist() == [1, 4, 4]
    assert exit_steps(STEP_LOGITS, 1.0).tolist() == [4, 4, 4]


def test_early_exit_rows_by_hand() -> None:
    rows = early_exit(STEP_LOGITS, LABELS, [0.5, 0.9, 1.0])
    expected = [
        # θ 0.5: all exit at step 1, C is still read as class 0
        {"threshold": 0.5, "time_steps_mean": 1.0, "accuracy_at_exit": 2 / 3, "exit_fraction": 1.0},
        # θ 0.9: A at 1, B at 4 (= T, not early), C at 3 (class 2)
        {"threshold": 0.9, "time_steps_mean": 8 / 3, "accuracy_at_exit": 1.0, "exit_fraction": 2 / 3},
        # θ 1.0: no confidence reaches 1, everyone runs 4 steps
        {"threshold": 1.0, "time_steps_mean": 4.0, "accuracy_at_exit": 1.0, "exit_fraction": 0.0},
    ]
    assert rows == [pytest.approx(row) for row in expected]


def test_threshold_zero_exits_everyone_at_step_one_and_above_one_never() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 20, 5), torch.randint(0, 5, (20,))
    first, never = early_exit(logits, labels, [0.0, 1.5])
    assert first["time_steps_mean"] == 1.0 and first["exit_fraction"] == 1.0
    assert first["accuracy_at_exit"] == pytest.approx(float((logits[0].argmax(1) == labels).float().mean()))
    assert never["time_steps_mean"] == 6.0 and never["exit_fraction"] == 0.0
    assert never["accuracy_at_exit"] == pytest.approx(float((logits.mean(0).argmax(1) == labels).float().mean()))


def test_step_logits_of_a_test_set_in_batches() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="mlp", channels=(16, 8)), (1, 1, 30), 4)
    x = (torch.rand(7, STEPS, 1, 1, 30) < 0.5).float()  # samples [N, T, …]
    model.train()
    logits = step_logits_of(model, x, batch_size=3, device=torch.device("cpu"))
    assert model.training  # the mode is restored
    assert logits.shape == (STEPS, 7, 4) and not logits.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model.step_logits(x.transpose(0, 1)))

