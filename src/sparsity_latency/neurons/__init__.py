"""Quantized-membrane LIF neurons, their quantizer and spike surrogates."""

from sparsity_latency.neurons.dynamics import RESETS, LIFDynamics
from sparsity_latency.neurons.lif import QuantLeaky
from sparsity_latency.neurons.multistep import MultiStep, MultiStepLIF, SpikingLayer, integer_membrane
from sparsity_latency.neurons.quantizer import QUANT_GRADS, membrane_levels, quantize_membrane, storage_bits
from sparsity_latency.neurons.surrogates import SURROGATES

__all__ = [
    "QUANT_GRADS",
    "RESETS",
    "SURROGATES",
    "LIFDynamics",
    "MultiStep",
    "MultiStepLIF",
    "QuantLeaky",
    "SpikingLayer",
    "integer_membrane",
    "membrane_levels",
    "quantize_membrane",
    "storage_bits",
]
