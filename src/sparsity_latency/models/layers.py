"""Building blocks of the networks: LIF layers by neuron name, and weight layers at the configured precision."""

from __future__ import annotations

import snntorch as snn
from snntorch import surrogate as snn_surrogate
from torch import nn

from sparsity_latency.config import ModelConfig
from sparsity_latency.models.quantized import QuantConv2d, QuantLinear
from sparsity_latency.neurons import LIFDynamics, MultiStep, MultiStepLIF, QuantLeaky, SpikingLayer

NEURONS = ("spquant", "spquant-loop", "snntorch")
SNNTORCH_SURROGATES = ("atan", "fast-sigmoid")


def dynamics_of(config: ModelConfig) -> LIFDynamics:
    """The neuron settings of a model config."""
    return LIFDynamics(
        beta=config.beta,
        threshold=config.threshold,
        membrane_bits=config.membrane_bits,
        reset=config.reset,
        surrogate=config.surrogate,
        surrogate_param=config.surrogate_param,
        quant_grad=config.quant_grad,
        detach_reset=config.detach_reset,
    )


def lif_layer(config: ModelConfig) -> SpikingLayer:
    """A multi-step LIF layer [T, B, …] → spikes with the neuron `config.neuron`:

    - `spquant`: the fused multi-step quantized LIF (`MultiStepLIF`), the default;
    - `spquant-loop`: the same neuron stepped through time by autograd (`MultiStep(QuantLeaky)`), the reference;
    - `snntorch`: snntorch's own `Leaky` stepped through time, a full-precision baseline. It runs without
      snntorch's delayed reset (`reset_delay=False`), so it follows the same equations as a full-precision
      `spquant` neuron with the same surrogate. Only atan and fast-sigmoid have the same shape in snntorch,
      and its immediate reset keeps the spike's gradient, so it needs `detach_reset = false`.
    """
    d = dynamics_of(config)
    if config.neuron == "spquant":
        return MultiStepLIF(d)
    if config.neuron == "spquant-loop":
        return MultiStep(QuantLeaky.from_dynamics(d))
    if config.neuron == "snntorch":
        if d.detach_reset:
            raise ValueError("snntorch's Leaky (reset_delay=False) keeps the spike's gradient in its reset: "
                             "it needs detach_reset = false")
        return MultiStep(snn.Leaky(beta=d.beta, threshold=d.threshold, reset_mechanism=d.reset,
                                   spike_grad=snntorch_surrogate(d.surrogate, d.param), reset_delay=False))
    raise ValueError(f"unknown neuron '{config.neuron}' (known: {', '.join(NEURONS)})")


def snntorch_surrogate(name: str, param: float):
    """snntorch's surrogate of the same shape as ours, where it has one."""
    if name == "atan":
        return snn_surrogate.atan(alpha=param)
    if name == "fast-sigmoid":
        return snn_surrogate.fast_sigmoid(slope=param)
    raise ValueError(f"snntorch has no '{name}' surrogate of the same shape (it has: {', '.join(SNNTORCH_SURROGATES)})")


def conv3x3(channels_in: int, channels_out: int, stride: int, config: ModelConfig) -> QuantConv2d:
    """3×3 convolution, padding 1, no bias (BatchNorm follows), weights at `config.weight_bits`."""
    return QuantConv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False,
                       weight_bits=config.weight_bits, weight_rule=config.weight_quant)


def linear(features_in: int, features_out: int, config: ModelConfig, bias: bool = False) -> QuantLinear:
    """Linear layer with weights at `config.weight_bits`."""
    return QuantLinear(features_in, features_out, bias=bias, weight_bits=config.weight_bits,
                       weight_rule=config.weight_quant)


def readout(features_in: int, n_classes: int) -> nn.Linear:
    """The classifier: full precision, as SpQuant-SNN keeps it."""
    return nn.Linear(features_in, n_classes)

