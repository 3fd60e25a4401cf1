"""Time steps to decision: confidence-thresholded early exit over the steps of an SNN (SEENN-I).

Our networks are causal and read out at every step (`model.step_logits(frames)` → [T, B, classes]), so
the output after the first t frames is the running mean of the first t step logits. A sample exits at the
first step t (1-based) where the largest softmax probability of that running mean reaches the threshold
θ (≥ θ), else at the last step T; it is classified by the argmax of the running mean at its exit step.
θ = 0 exits every sample at step 1; θ > 1 never exits early (everyone runs all T steps).

Source: SEENN (Li, Geller, Kim, Panda, NeurIPS 2023), "SEENN-I": confidence-score thresholding of the
accumulated output, confidence = max softmax probability. Their released code
(Intelligent-Computing-Lab-Yale/SEENN, test_snn.py, `test`) takes the softmax of the *sum* of the first t
step outputs and exits when the confidence is strictly greater than the threshold. We take the softmax of
the *mean*, which is exactly what the model outputs on the first t frames (`forward`), so a threshold
reads as a confidence of the deployed classifier whatever t is (the sum's softmax is the mean's at
temperature 1/t, so it grows sharper with t on its own); and we exit at ≥ θ so that θ = 0 means "always
exit at step 1". The prediction (argmax) is the same for sum and mean; only the exit steps differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def running_mean(step_logits: torch.Tensor) -> torch.Tensor:
    """[T, B, classes] → the mean of the first t step logits at every t, [T, B, classes]."""
    steps = torch.arange(1, step_logits.shape[0] + 1, dtype=step_logits.dtype, device=step_logits.device)
    return step_logits.cumsum(0) / steps.view(-1, *([1] * (step_logits.dim() - 1)))


def exit_steps(step_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Each sample's exit step (1-based, [B]): the first t where max softmax of the running mean ≥ threshold, else T."""
    return _exit_steps(_confidence(running_mean(step_logits)), threshold)


def _confidence(means: torch.Tensor) -> torch.Tensor:
    """Largest softmax probability [T, B] of running means [T, B, classes]."""
    return torch.softmax(means, dim=-1).amax(-1)


def _exit_steps(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    confident = confidence >= threshold  # [T, B]
    confident[-1] = True  # every sample has decided by the last step
    return confident.int().argmax(0) + 1  # argmax gives the first of equal maxima


def early_exit(step_logits: torch.Tensor, labels: torch.Tensor, thresholds: Sequence[float]) -> list[dict]:
    """One row per threshold: `threshold`, `time_steps_mean`, `accuracy_at_exit`, `exit_fraction`.

    `step_logits` [T, B, classes] are the per-step readouts of B samples, `labels` [B] their classes;
    `time_steps_mean` is the mean exit step (1…T), `exit_fraction` the share of samples that exited before T.
    """
    steps, n_samples = step_logits.shape[:2]
    means = running_mean(step_logits.detach().float())
    confidence = _confidence(means)
    predictions = means.argmax(-1)  # [T, B]
    correct = predictions == labels.to(means.device)
    samples = torch.arange(n_samples, device=means.device)
    rows = []
    for threshold in thresholds:
        exits = _exit_steps(confidence, threshold)
        rows.append({
            "threshold": float(threshold),
            "time_steps_mean": float(exits.float().mean()),
            "accuracy_at_exit": float(correct[exits - 1, samples].float().mean()),
            "exit_fraction": float((exits < steps).float().mean()),
        })
    return rows


def step_logits_of(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Step logits [T, N, classes] (on the CPU) of samples x [N, T, …], in batches, in eval and inference mode.

    The model's training mode is restored afterwards.
    """
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model.step_logits(x[start:start + batch_size].transpose(0, 1).to(device)).cpu()
                     for start in range(0, len(x), batch_size)]
    finally:
        model.train(training)
    return torch.cat(parts, dim=1)
