"""The measures `correlate` relates, by level: gradient sparsity (x) and latency (y) (docs/analysis.md).

Network level: one observation per run. Layer level: one observation per run × spiking layer, where a
spiking layer `lifK` stands for its block — the layers from the weight layer that feeds it through
`lifK` and the pooling after it — so the block's latency sits beside the gradients at `lifK`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sparsity_latency.metrics import GRAD_FORMS

NETWORK, LAYER = "network", "layer"
POOLED = "__pooled__"  # layer-level correlations over all layers, each measure standardized within its layer


def _grad_measures(*targets: str) -> tuple[str, ...]:
    return tuple(f"{target}_grad_{form}" for target in targets for form in GRAD_FORMS)


X_MEASURES = {
    NETWORK: _grad_measures("input", "spike", "membrane"),  # spike, membrane: mean over spiking layers
    LAYER: _grad_measures("spike", "membrane", "weight"),  # weight: the block's conv or linear layer
}
Y_MEASURES = {
    NETWORK: ("synops", "energy_pj", "dense_wall_ms_b1", "dense_wall_ms_bmax", "event_wall_ms_b1",
              "decision_time_steps"),
    LAYER: ("synops", "energy_pj", "dense_layer_ms_b1", "event_layer_ms_b1"),
}


def layer_order(layers: Iterable[str]) -> list[str]:
    """The distinct layer names in natural order, so that lif2 comes before lif10."""
    return sorted(set(layers), key=lambda name: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)])
