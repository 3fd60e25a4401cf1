"""The backends `profile` measures latency on, by name (docs/latency.md)."""

BACKEND_DENSE = "dense"  # the model's own torch forward pass: dense kernels, work independent of sparsity
BACKEND_EVENT = "event"  # the event-driven CPU engine: work proportional to the spikes that occur
BACKENDS = (BACKEND_DENSE, BACKEND_EVENT)


def event_backend_problem(model_name: str, neuron: str, gating: bool, dataset: str) -> str | None:
    """Why the event engine cannot run a network of these settings, or None (latency/event_engine.py)."""
    if "+" in dataset:
        return "it runs single-modality networks, not fusion networks"
    if gating:
        return "it does not run channel-gated networks (model.gating = true)"
    if neuron != "spquant":
        return f"it runs the fused 'spquant' neuron, not '{neuron}'"
    if model_name not in ("tiny-conv", "vgg9", "mlp"):
        return f"it does not run '{model_name}' networks"
    return None
