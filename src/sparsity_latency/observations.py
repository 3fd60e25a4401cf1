"""The observations `correlate` relates, read from all runs of a study at once (docs/analysis.md).

Gradient sparsity comes from `attack.parquet` at one attack and eps, latency from `profile.parquet`; both
tables of every run are read column-wise in one pass and the measures are taken with group-bys over all
runs, so a study of a thousand runs reads in about a second rather than a minute of per-run pandas work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sparsity_latency import runs
from sparsity_latency.config import CorrelateConfig
from sparsity_latency.errors import InputError
from sparsity_latency.latency.backends import BACKEND_DENSE, BACKEND_EVENT
from sparsity_latency.latency.profile import EXIT
from sparsity_latency.masking import MAIN
from sparsity_latency.measures import LAYER, NETWORK
from sparsity_latency.metrics import GRAD_FORMS
from sparsity_latency.probes import CHECK, NET
from sparsity_latency.robustness import CHECK_COLUMNS, failed_checks

KEYS = ["run_id", "method", "seed", "pair_key"]
SPIKING_GRADS = [f"{target}_grad_{form}" for target in ("spike", "membrane") for form in GRAD_FORMS]
WEIGHT_GRADS = [f"weight_grad_{form}" for form in GRAD_FORMS]
INPUT_GRADS = [f"input_grad_{form}" for form in GRAD_FORMS]
ATTACK_COLUMNS = list(dict.fromkeys([*CHECK_COLUMNS, *INPUT_GRADS, *SPIKING_GRADS, *WEIGHT_GRADS]))
PROFILE_COLUMNS = ["run_id", "backend", "batch_size", "layer", "spike_sparsity", "weight_memory_bits", "synops",
                   "energy_pj", "wall_ms_p50", "layer_ms_p50", "exit_threshold", "decision_time_steps"]
COUNTS = ["synops", "energy_pj"]


def blocks(profile: pd.DataFrame) -> dict[str, list[str]]:
    """Spiking layer → the layers of its block, in module order: from the weight layer that feeds it through
    the spiking layer and the weightless layers (pooling) after it. Layers after a network's last spiking
    layer (its readout) belong to no block; a block never spans two sub-networks (`dvs.*`, `aps.*`).

    `profile`: one run's layer rows (layer, spike_sparsity — set on spiking layers —, weight_memory_bits)."""
    layers = profile[~profile["layer"].isin([NET, EXIT])].drop_duplicates("layer")
    found: dict[str, list[str]] = {}
    current: list[str] = []
    spiking = None
    for layer, sparsity, weights in zip(layers["layer"], layers["spike_sparsity"], layers["weight_memory_bits"],
                                        strict=True):
        new_network = bool(current) and layer.rpartition(".")[0] != current[0].rpartition(".")[0]
        if new_network or (spiking is not None and (pd.notna(sparsity) or pd.notna(weights))):
            if spiking is not None:
                found[spiking] = current
            current, spiking = [], None
        current.append(layer)
        if pd.notna(sparsity):
            spiking = layer
    if spiking is not None:
        found[spiking] = current
    return found


def read_runs(directories: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """The runs (KEYS), their attack and profile rows (the columns correlate needs), and their failed
    gradient-masking checks (run id → lines)."""
    manifests = [runs.read_manifest(directory) for directory in directories]
    frame = pd.DataFrame([{key: m[key] for key in KEYS} for m in manifests], columns=KEYS)
    attack = runs.read_columns([d / "attack.parquet" for d in directories], "attack", ATTACK_COLUMNS)
    profile = runs.read_columns([d / "profile.parquet" for d in directories], "profile", PROFILE_COLUMNS)
    return frame, attack, profile, failed_checks(attack)


def evaluation_rows(attack: pd.DataFrame, settings: CorrelateConfig, run_ids: pd.Series) -> pd.DataFrame:
    """The layer rows of the evaluation correlate reads (attack and eps of `settings`, the configured run, not the
    masking checks'); InputError naming the first run without its network row."""
    chosen = attack[(attack["attack"] == settings.attack) & np.isclose(attack["eps"], settings.eps)
                    & (attack["variant"] == MAIN) & (attack["layer"] != CHECK)]
    missing = sorted(set(run_ids) - set(chosen.loc[chosen["layer"] == NET, "run_id"]))
    if missing:
        raise InputError(f"run {missing[0]}: attack.parquet has no '{NET}' row for attack '{settings.attack}' at eps "
                         f"{settings.eps} (correlate.attack / correlate.eps)")
    return chosen


def _timed(profile: pd.DataFrame, backend: str, column: str, largest: bool = False) -> pd.DataFrame:
    """A backend's timed rows (run_id, layer, column) at batch 1, or at each run's largest batch."""
    rows = profile[(profile["backend"] == backend) & (profile["batch_size"] > 0)]
    if largest:
        rows = rows[rows["batch_size"] == rows.groupby("run_id")["batch_size"].transform("max")]
    else:
        rows = rows[rows["batch_size"] == 1]
    return rows[["run_id", "layer", column]]


def network_measures(evaluation: pd.DataFrame, profile: pd.DataFrame, exit_threshold: float) -> pd.DataFrame:
    """One row per run: the network-level x and y measures (measures.X_MEASURES / Y_MEASURES)."""
    net = evaluation[evaluation["layer"] == NET].drop_duplicates("run_id").set_index("run_id")[INPUT_GRADS]
    spiking = evaluation[evaluation["spike_grad_hoyer"].notna()].groupby("run_id")[SPIKING_GRADS].mean()
    parts = [net, spiking]
    dense = profile[(profile["backend"] == BACKEND_DENSE) & (profile["layer"] == NET)]
    parts.append(dense.groupby("run_id")[COUNTS].first())
    for name, backend, largest in (("dense_wall_ms_b1", BACKEND_DENSE, False),
                                   ("dense_wall_ms_bmax", BACKEND_DENSE, True),
                                   ("event_wall_ms_b1", BACKEND_EVENT, False)):
        rows = _timed(profile, backend, "wall_ms_p50", largest)
        parts.append(rows[rows["layer"] == NET].groupby("run_id")["wall_ms_p50"].first().rename(name))
    exits = profile[(profile["layer"] == EXIT) & np.isclose(profile["exit_threshold"], exit_threshold)]
    parts.append(exits.groupby("run_id")["decision_time_steps"].first())
    return pd.concat(parts, axis=1).reindex(net.index)


def block_of(profile: pd.DataFrame) -> pd.DataFrame:
    """(run_id, layer) → block: the spiking layer whose block holds the layer (see `blocks`), for every run.

    Runs of one study mostly share a network, so blocks are found once per distinct sequence of layers."""
    layers = profile[~profile["layer"].isin([NET, EXIT])].drop_duplicates(["run_id", "layer"])
    found: dict[tuple, dict[str, str]] = {}
    mapping = []
    for run_id, run_layers in layers.groupby("run_id", sort=False):
        signature = (tuple(run_layers["layer"]), tuple(run_layers["spike_sparsity"].notna()),
                     tuple(run_layers["weight_memory_bits"].notna()))
        if signature not in found:
            found[signature] = {layer: block for block, members in blocks(run_layers).items() for layer in members}
        mapping += [(run_id, layer, block) for layer, block in found[signature].items()]
    return pd.DataFrame(mapping, columns=["run_id", "layer", "block"])


def layer_measures(evaluation: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
    """One row per run × block (run_id, layer = the block's spiking layer): the layer-level x and y measures,
    latency summed over the block's layers, weight gradients averaged over its weight layers."""
    blocks_frame = block_of(profile)
    keys = ["run_id", "block"]

    def per_block(rows: pd.DataFrame, columns: list[str], how: str) -> pd.DataFrame:
        joined = rows.merge(blocks_frame, on=["run_id", "layer"])
        grouped = joined.groupby(keys)[columns]
        return grouped.sum(min_count=1) if how == "sum" else grouped.mean()

    counts = profile[~profile["layer"].isin([NET, EXIT])].drop_duplicates(["run_id", "layer"])
    parts = [
        evaluation.rename(columns={"layer": "block"}).drop_duplicates(keys).set_index(keys)[SPIKING_GRADS],
        per_block(evaluation, WEIGHT_GRADS, "mean"),
        per_block(counts, COUNTS, "sum"),
    ]
    for name, backend in (("dense_layer_ms_b1", BACKEND_DENSE), ("event_layer_ms_b1", BACKEND_EVENT)):
        parts.append(per_block(_timed(profile, backend, "layer_ms_p50"), ["layer_ms_p50"], "sum")
                     ["layer_ms_p50"].rename(name))
    index = pd.MultiIndex.from_frame(blocks_frame[keys].drop_duplicates())
    return pd.concat(parts, axis=1).reindex(index).rename_axis(["run_id", "layer"])


def observation_table(run_frame: pd.DataFrame, attack: pd.DataFrame, profile: pd.DataFrame,
                 settings: CorrelateConfig) -> pd.DataFrame:
    """The observations table in long form: KEYS, level, layer, measure, value."""
    evaluation = evaluation_rows(attack, settings, run_frame["run_id"])
    network = network_measures(evaluation, profile, settings.exit_threshold)
    network["layer"] = NET
    network = network.set_index("layer", append=True)
    parts = []
    for level, wide in ((NETWORK, network), (LAYER, layer_measures(evaluation, profile))):
        long = wide.rename_axis(columns="measure").stack(future_stack=True).rename("value").reset_index()
        long.insert(0, "level", level)
        parts.append(long)
    frame = run_frame.merge(pd.concat(parts, ignore_index=True), on="run_id")
    return frame[[*KEYS, "level", "layer", "measure", "value"]]
