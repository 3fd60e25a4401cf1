"""`correlate`'s tables on hand-built observations: blocks, pairing, paired values, groups, notes, BH."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sparsity_latency.analysis import correlations_table, fisher_z_test, pair_runs, paired_frame
from sparsity_latency.measures import LAYER, NETWORK, POOLED, X_MEASURES, Y_MEASURES
from sparsity_latency.observations import blocks, layer_measures
from sparsity_latency.probes import NET
from sparsity_latency.statistics import Resampling

RESAMPLING = Resampling(resamples=200, permutations=200, seed=0)
NAN = math.nan


def _profile(rows: list[tuple]) -> pd.DataFrame:
    """Profile rows (layer, spike_sparsity, weight_memory_bits, synops, energy_pj, layer_ms_p50) of one backend."""
    frame = pd.DataFrame(rows, columns=["layer", "spike_sparsity", "weight_memory_bits", "synops", "energy_pj",
                                        "layer_ms_p50"])
    frame["run_id"], frame["backend"], frame["batch_size"] = "r", "dense", 1
    return frame


VGG_LIKE = _profile([
    ("conv1", NAN, 100, NAN, 50.0, 1.0), ("bn1", NAN, NAN, NAN, NAN, 0.5), ("gate1", NAN, 10, 5.0, 4.0, 0.25),
    ("lif1", 0.9, NAN, NAN, 2.0, 0.5), ("pool1", NAN, NAN, 7.0, 6.0, 0.125), ("conv2", NAN, 200, 30.0, 27.0, 2.0),
    ("lif2", 0.8, NAN, NAN, 1.0, 0.5), ("fc", NAN, 30, 3.0, 2.7, 0.1), (NET, NAN, 330, 45.0, 92.7, NAN),
])


def test_blocks_run_from_the_feeding_weight_layer_through_pooling() -> None:
    assert blocks(VGG_LIKE) == {"lif1": ["conv1", "bn1", "gate1", "lif1", "pool1"], "lif2": ["conv2", "lif2"]}


def test_blocks_stay_inside_each_sub_network() -> None:
    late_fusion = _profile([(f"{net}.{layer}", s, w, NAN, NAN, NAN)
                            for net in ("dvs", "aps")
                            for layer, s, w in (("conv1", NAN, 1), ("lif1", 0.5, NAN), ("fc", NAN, 1))])
    assert blocks(late_fusion) == {"dvs.lif1": ["dvs.conv1", "dvs.lif1"], "aps.lif1": ["aps.conv1", "aps.lif1"]}


def test_layer_measures_sum_latency_over_the_block() -> None:
    evaluation = pd.DataFrame({"run_id": "r", "layer": ["conv1", "gate1", "lif1", "conv2", "lif2"]})
    for form in ("zero_fraction", "small_fraction", "hoyer"):  # rows: conv1, gate1, lif1, conv2, lif2
        evaluation[f"spike_grad_{form}"] = [NAN, NAN, 0.5, NAN, 0.125]
        evaluation[f"membrane_grad_{form}"] = [NAN, NAN, 0.25, NAN, 0.375]
        evaluation[f"weight_grad_{form}"] = [0.75, 0.75, NAN, NAN, NAN]
    evaluation.loc[1, "weight_grad_hoyer"] = 0.25  # the block's weight layers are averaged: (0.75 + 0.25)/2
    found = layer_measures(evaluation, VGG_LIKE).loc["r"]
    assert list(found.index) == ["lif1", "lif2"]
    assert found.loc["lif1", "synops"] == 12.0 and found.loc["lif1", "energy_pj"] == 62.0  # gate + pool; conv1: MACs
    assert found.loc["lif1", "dense_layer_ms_b1"] == 2.375 and math.isnan(found.loc["lif1", "event_layer_ms_b1"])
    assert found.loc["lif2", "synops"] == 30.0 and found.loc["lif2", "dense_layer_ms_b1"] == 2.5
    assert found.loc["lif1", "weight_grad_hoyer"] == 0.5 and found.loc["lif1", "weight_grad_zero_fraction"] == 0.75
    assert found.loc["lif1", "spike_grad_hoyer"] == 0.5 and found.loc["lif2", "membrane_grad_small_fraction"] == 0.375
    assert math.isnan(found.loc["lif2", "weight_grad_hoyer"])  # conv2 has no row in this evaluation


def _runs(*specs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": f"{m}-{k}", "method": m, "seed": i, "pair_key": k}
                         for i, (m, k) in enumerate(specs)])


def test_pairing_lists_unmatched_runs_of_both_kinds() -> None:
    pairs = pair_runs(_runs(("standard", "a"), ("pgd-at", "a"), ("trades", "a"), ("pgd-at", "c"),
                            ("standard", "d"))).set_index("run_id")
    assert pairs.loc["pgd-at-a", "standard_run_id"] == "standard-a" and pairs.loc["trades-a", "matched"]
    assert not pairs.loc["pgd-at-c", "matched"] and pairs.loc["pgd-at-c", "standard_run_id"] == ""
    assert pairs.loc["standard-a", "matched"] and not pairs.loc["standard-d", "matched"]


def test_paired_values_are_differences_and_relative_reductions() -> None:
    wide = pd.DataFrame([
        {"run_id": "s", "method": "standard", "pair_key": "a", "layer": NET, "input_grad_hoyer": 0.25, "synops": 200.0},
        {"run_id": "p", "method": "pgd-at", "pair_key": "a", "layer": NET, "input_grad_hoyer": 0.75, "synops": 150.0},
        {"run_id": "q", "method": "pgd-at", "pair_key": "z", "layer": NET, "input_grad_hoyer": 0.5, "synops": 1.0},
    ])
    paired = paired_frame(wide, "pgd-at")
    assert list(paired["run_id"]) == ["p"]  # "q" has no standard run
    assert paired["input_grad_hoyer"].iloc[0] == 0.5 and paired["synops"].iloc[0] == 0.25  # (200 − 150)/200


def _observations(n_runs: int, layers: tuple[str, ...] = ("lif1", "lif2"), seed: int = 0) -> pd.DataFrame:
    """Runs of two methods with a shared latent: gradient sparsity up, latency down; the adversarial runs more so."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_runs):
        for method, slope in (("standard", -0.5), ("pgd-at", -2.0)):
            keys = {"run_id": f"{method}-{i}", "method": method, "seed": i, "pair_key": f"k{i}"}
            latent = rng.normal()
            for level, layer_names in ((NETWORK, (NET,)), (LAYER, layers)):
                for scale, layer in enumerate(layer_names, start=1):
                    for measure in X_MEASURES[level]:
                        rows.append({**keys, "level": level, "layer": layer, "measure": measure,
                                     "value": 0.5 + 0.1 * latent + 0.02 * rng.normal()})
                    for measure in Y_MEASURES[level]:
                        rows.append({**keys, "level": level, "layer": layer, "measure": measure,
                                     "value": 100.0 * scale * (10 + slope * latent + 0.3 * rng.normal())})
    return pd.DataFrame(rows)


def _wide(observations: pd.DataFrame, level: str, layer: str) -> pd.DataFrame:
    rows = observations[(observations["level"] == level) & (observations["layer"] == layer)]
    return rows.pivot(index=["run_id", "method", "pair_key"], columns="measure", values="value").reset_index()


def _row(table: pd.DataFrame, **where: str) -> pd.Series:
    mask = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


def test_within_group_rows_equal_scipy() -> None:
    observations = _observations(12)
    table = correlations_table(observations, RESAMPLING)
    wide = _wide(observations, NETWORK, NET)
    standard = wide[wide["method"] == "standard"]
    row = _row(table, level=NETWORK, kind="within", group="standard", x_measure="input_grad_hoyer",
               y_measure="synops", coefficient="spearman")
    expected = stats.spearmanr(standard["input_grad_hoyer"], standard["synops"])
    assert (row["r"], row["p"], row["n"]) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue), 12)
    assert row["r"] < 0 and row["ci_low"] <= row["r"] <= row["ci_high"] and row["note"] == ""
    layer = _wide(observations, LAYER, "lif2")
    adversarial = layer[layer["method"] == "pgd-at"]
    row = _row(table, level=LAYER, layer="lif2", kind="within", group="pgd-at", x_measure="spike_grad_zero_fraction",
               y_measure="event_layer_ms_b1", coefficient="pearson")
    assert row["r"] == pytest.approx(stats.pearsonr(adversarial["spike_grad_zero_fraction"],
                                                    adversarial["event_layer_ms_b1"]).statistic)


def test_paired_rows_correlate_differences_with_reductions() -> None:
    observations = _observations(10)
    table = correlations_table(observations, RESAMPLING)
    wide = _wide(observations, NETWORK, NET).set_index("pair_key")
    adversarial, standard = wide[wide["method"] == "pgd-at"], wide[wide["method"] == "standard"]
    x = adversarial["membrane_grad_hoyer"] - standard.loc[adversarial.index, "membrane_grad_hoyer"]
    y = (standard.loc[adversarial.index, "energy_pj"] - adversarial["energy_pj"]) / standard.loc[
        adversarial.index, "energy_pj"]
    row = _row(table, level=NETWORK, kind="paired", group="pgd-at − standard", x_measure="membrane_grad_hoyer",
               y_measure="energy_pj", coefficient="pearson")
    assert row["r"] == pytest.approx(stats.pearsonr(x, y).statistic) and row["n"] == 10


def test_group_difference_rows() -> None:
    table = correlations_table(_observations(15), RESAMPLING)
    where = {"level": NETWORK, "x_measure": "spike_grad_hoyer", "y_measure": "dense_wall_ms_b1"}
    pearson = {kind: _row(table, kind="within", group=kind, coefficient="pearson", **where)
               for kind in ("standard", "pgd-at")}
    difference = _row(table, kind="difference", group="pgd-at vs standard", coefficient="pearson", **where)
    assert difference["r"] == pytest.approx(pearson["pgd-at"]["r"] - pearson["standard"]["r"])
    assert difference["p"] == pytest.approx(fisher_z_test(pearson["pgd-at"]["r"], 15, pearson["standard"]["r"], 15)[0])
    assert difference["n"] == 15 and difference["n_reference"] == 15
    spearman = _row(table, kind="difference", group="pgd-at vs standard", coefficient="spearman", **where)
    assert spearman["test"].startswith("permutation of group labels, 200 permutations")
    assert 1 / 201 <= spearman["p"] <= 1 and spearman["ci_low"] <= spearman["r"] <= spearman["ci_high"]


def test_pooled_layers_correlate_within_layer_variation() -> None:
    observations = _observations(8, layers=("lif1", "lif2", "lif3"))
    table = correlations_table(observations, RESAMPLING)
    frames = []
    for layer in ("lif1", "lif2", "lif3"):
        wide = _wide(observations, LAYER, layer)
        wide = wide[wide["method"] == "standard"][["spike_grad_hoyer", "synops"]]
        frames.append((wide - wide.mean()) / wide.std(ddof=0))
    z = pd.concat(frames)
    row = _row(table, level=LAYER, layer=POOLED, kind="within", group="standard", x_measure="spike_grad_hoyer",
               y_measure="synops", coefficient="pearson")
    assert row["n"] == 24 and row["r"] == pytest.approx(stats.pearsonr(z["spike_grad_hoyer"], z["synops"]).statistic)
    assert row["ci_method"].endswith("whole runs drawn") and "independent" in row["test"]


def test_nan_missing_layers_and_small_groups_give_notes_not_crashes() -> None:
    observations = _observations(5)
    drop = (observations["run_id"] == "standard-0") & (observations["layer"] == "lif2")  # a missing layer
    observations = observations[~drop].copy()
    hole = (observations["run_id"] == "standard-1") & (observations["measure"] == "synops") & (
        observations["level"] == NETWORK)
    observations.loc[hole, "value"] = np.nan
    table = correlations_table(observations, RESAMPLING)
    row = _row(table, level=NETWORK, kind="within", group="standard", x_measure="input_grad_hoyer",
               y_measure="synops", coefficient="spearman")
    assert row["n"] == 4 and row["note"] == "1 of 5 observations lack a value, left out" and math.isfinite(row["r"])
    row = _row(table, level=LAYER, layer="lif2", kind="within", group="standard", x_measure="spike_grad_hoyer",
               y_measure="synops", coefficient="spearman")
    assert row["n"] == 4 and math.isfinite(row["r"])
    small = correlations_table(_observations(2), RESAMPLING)
    assert small["r"].isna().all() and small["p_bh"].isna().all()
    per_layer = small[(small["kind"] != "difference") & (small["layer"] != POOLED)]
    assert set(per_layer["note"]) == {"n = 2 < 3"}
    pooled = small[(small["kind"] != "difference") & (small["layer"] == POOLED)]
    assert set(pooled["note"]) == {"n = 0 < 3; 4 of 4 observations lack a value or are in a layer with fewer than 3 "
                                   "values, left out"}
    assert set(small.loc[small["kind"] == "difference", "note"]) == {"a group's r is undefined"}


def test_benjamini_hochberg_runs_over_the_whole_table_and_seed_fixes_the_intervals() -> None:
    observations = _observations(6)
    table = correlations_table(observations, RESAMPLING)
    finite = table["p"].notna()
    assert (table.loc[finite, "p_bh"] >= table.loc[finite, "p"] - 1e-15).all()
    assert table.loc[finite, "p_bh"].to_numpy() == pytest.approx(stats.false_discovery_control(table.loc[finite, "p"]))
    again = correlations_table(observations, RESAMPLING)
    pd.testing.assert_frame_equal(table, again)
    other = correlations_table(observations, Resampling(resamples=200, permutations=200, seed=1))
    assert not np.allclose(other["ci_low"].fillna(0), table["ci_low"].fillna(0))
    assert (other["r"].fillna(9) == table["r"].fillna(9)).all()


def test_observations_of_a_real_study_equal_a_direct_reading_of_each_run(tiny_study: Path) -> None:
    observations = pd.read_parquet(tiny_study / "observations.parquet").set_index(["run_id", "layer", "measure"])
    for directory in sorted(p for p in tiny_study.iterdir() if (p / "run.json").is_file()):
        attack = pd.read_parquet(directory / "attack.parquet")
        attack = attack[(attack["attack"] == "pgd") & (attack["eps"] == 0.03) & (attack["variant"] == "main")]
        profile = pd.read_parquet(directory / "profile.parquet")
        dense_one = profile[(profile["backend"] == "dense") & (profile["batch_size"] == 1)].set_index("layer")
        event_one = profile[(profile["backend"] == "event") & (profile["batch_size"] == 1)].set_index("layer")
        seen = observations.loc[directory.name]
        assert seen.loc[(NET, "input_grad_hoyer"), "value"] == attack.set_index("layer").loc[NET, "input_grad_hoyer"]
        lif = attack[attack["layer"].str.startswith("lif")]
        assert seen.loc[(NET, "membrane_grad_zero_fraction"), "value"] == pytest.approx(
            lif["membrane_grad_zero_fraction"].mean())
        assert seen.loc[(NET, "synops"), "value"] == dense_one.loc[NET, "synops"]
        assert seen.loc[(NET, "event_wall_ms_b1"), "value"] == event_one.loc[NET, "wall_ms_p50"]
        largest = profile.loc[(profile["backend"] == "dense") & (profile["layer"] == NET)].sort_values("batch_size")
        assert seen.loc[(NET, "dense_wall_ms_bmax"), "value"] == largest["wall_ms_p50"].iloc[-1]
        exits = profile[(profile["layer"] == "__exit__") & (profile["exit_threshold"] == 0.9)]
        assert seen.loc[(NET, "decision_time_steps"), "value"] == exits["decision_time_steps"].iloc[0]
        # tiny-conv: conv1 bn1 lif1 | conv2 bn2 lif2 | fc
        assert seen.loc[("lif2", "synops"), "value"] == dense_one.loc["conv2", "synops"]
        assert seen.loc[("lif2", "dense_layer_ms_b1"), "value"] == pytest.approx(
            dense_one.loc[["conv2", "bn2", "lif2"], "layer_ms_p50"].sum())
        assert seen.loc[("lif1", "event_layer_ms_b1"), "value"] == pytest.approx(
            event_one.loc[["conv1", "lif1"], "layer_ms_p50"].sum())  # the event engine folds BatchNorm into conv
        assert seen.loc[("lif1", "weight_grad_hoyer"), "value"] == attack.set_index("layer").loc["conv1",
                                                                                                   "weight_grad_hoyer"]
