"""SpQuant-SNN's spatial-channel gate: per sample and time step, which output channels of a layer may fire.

A gate looks at the layer's input (detached, as SpQuant's "decoupled" predictor does): global average
pool → 1×1 convolution → sigmoid, binarized at 0.5 with a straight-through gradient. The binary mask
multiplies the LIF input current channel by channel, so a closed channel neither integrates nor fires
at that step; a conv layer need not compute it at all (`profile` counts it so).

Supervision: each channel of the current scores the spatial maximum of its magnitude; scores are
normalized to shares of their sum; ranked by share, channels are kept until the ones ranked above
them hold `mass` (85 %) of it — the smallest set that holds at least 85 %. The gate's logits are
trained towards that target with binary cross-entropy (mean over samples, steps and channels).
SpQuant's released code builds the target the same way but drops the channel that crosses 85 % and
never calls its gate loss; we keep the crossing channel and train the gate (docs/decisions.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OPEN_BIAS = 2.0  # initial predictor bias: σ(2) = 0.88, so every gate starts open


class _Binarize(torch.autograd.Function):
    """[p > 0.5] forward, identity backward (straight-through)."""

    @staticmethod
    def forward(ctx, probs: torch.Tensor) -> torch.Tensor:
        return (probs > 0.5).to(probs.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        return grad_out


def mass_target(current: torch.Tensor, mass: float) -> torch.Tensor:
    """Channels [N, C] (1 = keep) of the smallest set holding `mass` of the spatial-max activation of `current`."""
    score = current.abs().amax(dim=(2, 3))
    share = score / score.sum(dim=1, keepdim=True).clamp_min(torch.finfo(score.dtype).tiny)
    ranked, order = share.sort(dim=1, descending=True)
    held_above = ranked.cumsum(dim=1) - ranked
    keep = (held_above < mass - 1e-6).to(current.dtype)
    return torch.zeros_like(share).scatter_(1, order, keep)


class ChannelGate(nn.Module):
    """Gate of one layer: forward(layer input [N, C_in, H, W], current [N, C_out, H', W']) → gated current."""

    def __init__(self, channels_in: int, channels_out: int, mass: float) -> None:
        super().__init__()
        self.predictor = nn.Conv2d(channels_in, channels_out, 1)
        nn.init.constant_(self.predictor.bias, OPEN_BIAS)
        self.mass = mass
        self.mask: torch.Tensor | None = None  # [N, C_out] of the last forward pass
        self.loss: torch.Tensor | None = None  # its supervision loss

    def forward(self, layer_input: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        logits = self.predictor(F.adaptive_avg_pool2d(layer_input.detach(), 1)).flatten(1)
        mask = _Binarize.apply(torch.sigmoid(logits))
        self.mask = mask.detach()
        self.loss = F.binary_cross_entropy_with_logits(logits, mass_target(current.detach(), self.mass))
        return current * mask[:, :, None, None]


def gate_loss(model: nn.Module) -> torch.Tensor | None:
    """Mean supervision loss of the model's gates over its last forward pass; None without gates."""
    losses = [m.loss for m in model.modules() if isinstance(m, ChannelGate) and m.loss is not None]
    return torch.stack(losses).mean() if losses else None
