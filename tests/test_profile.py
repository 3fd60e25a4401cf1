"""The profile stage's rows on both backends: op counts, network and per-layer wall-clock, early exit."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from sparsity_latency.config import ModelConfig, ProfileConfig
from sparsity_latency.latency.early_exit import early_exit, step_logits_of
from sparsity_latency.latency.profile import EXIT, profile_model
from sparsity_latency.models import build_model
from sparsity_latency.probes import NET


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=(4, 8)), (2, 12, 12), 3)
    with torch.no_grad():  # BatchNorm statistics of the inputs, larger gains: layers that spike
        model.train()
        model(torch.rand(3, 16, 2, 12, 12))
        for bn in (model.bn1, model.bn2):
            bn.weight.fill_(3.0)
    return model.eval()


def test_both_backends_report_the_same_counts_and_their_own_timings() -> None:
    model = _model()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(10, 3, 2, 12, 12, generator=g), torch.randint(0, 3, (10,), generator=g)
    config = ProfileConfig(backends=("dense", "event"), batch_sizes=(1, 4), warmup=1, repeats=3, max_repeats=9,
                           samples=10, exit_thresholds=(0.0, 0.6, 1.0))
    frame = pd.DataFrame(profile_model(model, x, y, config, 1.58, torch.device("cpu")))
    timed = frame[frame["layer"] != EXIT]
    assert set(zip(timed["backend"], timed["batch_size"], strict=True)) == {
        ("dense", 1), ("dense", 4), ("event", 1), ("event", 4)}
    counts = timed.set_index(["backend", "batch_size", "layer"])["synops"].unstack(["backend", "batch_size"])
    assert counts.nunique(axis=1, dropna=False).le(1).all()  # op counts do not depend on backend or batch
    assert timed.loc[timed["layer"] == "conv2", "synops"].iloc[0] > 0
    net = timed[timed["layer"] == NET]
    assert (net["wall_ms_p95"] >= net["wall_ms_p50"]).all() and (net["wall_ms_p50"] > 0).all()
    assert net["wall_repeats"].between(3, 9).all()
    for backend in ("dense", "event"):  # every computing layer has its own latency on both backends
        rows = timed[(timed["backend"] == backend) & timed["layer"].isin(["conv1", "lif1", "conv2", "lif2", "fc"])]
        assert len(rows) == 10 and (rows["layer_ms_p50"] > 0).all(), backend
    exits = frame[frame["layer"] == EXIT].set_index("exit_threshold")
    expected = early_exit(step_logits_of(model, x, 4, torch.device("cpu")), y, (0.0, 0.6, 1.0))
    for row in expected:
        got = exits.loc[row["threshold"]]
        assert got["decision_time_steps"] == row["time_steps_mean"] and got["exit_accuracy"] == row["accuracy_at_exit"]
    assert exits.loc[0.0, "decision_time_steps"] == 1.0 and exits.loc[1.0, "decision_time_steps"] <= 3.0
