"""sparsity-latency: gradient sparsity vs inference latency of membrane-quantized SNNs."""

__version__ = "0.1.0"
