"""Quantized-membrane LIF neurons, their quantizer and spike surrogates."""

from sparsity_latency.neurons.lif import RESETS, MultiStep, QuantLeaky
from sparsity_latency.neurons.quantizer import membrane_levels, quantize_membrane
from sparsity_latency.neurons.surrogates import SURROGATES

__all__ = ["RESETS", "SURROGATES", "MultiStep", "QuantLeaky", "membrane_levels", "quantize_membrane"]
