"""Correlations between gradient sparsity and latency, within training groups and across pairs.

Each complete run is summarized by nine gradient-sparsity measures (x) — the input gradient, and the
means over spiking layers of the spike and of the membrane gradient, each as exact-zero fraction,
small fraction and Hoyer — taken from `attack.parquet` at one attack and eps, and by four latency measures (y) from
`profile.parquet`: SynOps and energy per sample, and dense wall-clock p50 per sample at batch 1 and
at the largest batch profiled. The observation unit is the run.

Groups: each training method alone; all runs together; and for each adversarial method, the paired
differences (adversarial − standard) of runs that share everything but the method (same seed, data,
model and training settings). A correlation needs at least 3 observations with some spread;
otherwise r and p are NaN and `n` says why.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sparsity_latency import runs
from sparsity_latency.errors import InputError
from sparsity_latency.latency.backends import BACKEND_DENSE
from sparsity_latency.masking import MAIN
from sparsity_latency.metrics import GRAD_FORMS
from sparsity_latency.probes import NET

SPIKING_TARGETS = ("spike_grad", "membrane_grad")
X_MEASURES = tuple(f"{target}_{form}" for target in ("input_grad", *SPIKING_TARGETS) for form in GRAD_FORMS)
Y_MEASURES = ("synops", "energy_pj", "wall_ms_p50_b1", "wall_ms_p50_bmax")
STANDARD = "standard"
ALL = "all"
MIN_OBSERVATIONS = 3


def run_summary(directory: Path, attack: str, eps: float) -> dict:
    """One run's x and y measures (see module docstring)."""
    manifest = runs.read_manifest(directory)
    attacks = runs.read_table(directory / "attack.parquet", "attack")
    profile = runs.read_table(directory / "profile.parquet", "profile")
    chosen = attacks[(attacks["attack"] == attack) & np.isclose(attacks["eps"], eps) & (attacks["variant"] == MAIN)]
    if chosen.empty:
        raise InputError(f"{directory / 'attack.parquet'}: no rows for attack '{attack}' at eps {eps}")
    net_rows = chosen[chosen["layer"] == NET]
    if net_rows.empty:
        raise InputError(f"{directory / 'attack.parquet'}: no '{NET}' row for attack '{attack}' at eps {eps}")
    net = net_rows.iloc[0]
    spiking = chosen[chosen["spike_grad_hoyer"].notna()]
    summary = {"run_id": manifest["run_id"], "method": manifest["method"], "seed": manifest["seed"],
               "pair_key": manifest["pair_key"]}
    for form in GRAD_FORMS:
        summary[f"input_grad_{form}"] = float(net[f"input_grad_{form}"])
        for target in SPIKING_TARGETS:
            summary[f"{target}_{form}"] = float(spiking[f"{target}_{form}"].mean())
    dense = profile[(profile["backend"] == BACKEND_DENSE) & (profile["layer"] == NET)]
    if dense.empty:
        raise InputError(f"{directory / 'profile.parquet'}: no network-level rows of the dense backend")
    summary["synops"] = float(dense["synops"].iloc[0])
    summary["energy_pj"] = float(dense["energy_pj"].iloc[0])
    dense = dense.sort_values("batch_size")
    batch_one = dense.loc[dense["batch_size"] == 1, "wall_ms_p50"]
    summary["wall_ms_p50_b1"] = float(batch_one.iloc[0]) if len(batch_one) else math.nan
    summary["wall_ms_p50_bmax"] = float(dense["wall_ms_p50"].iloc[-1])
    return summary


def paired_differences(summaries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """For each adversarial method: its measures minus those of the standard run it pairs with."""
    measures = [*X_MEASURES, *Y_MEASURES]
    standard = summaries[summaries["method"] == STANDARD].set_index("pair_key")[measures]
    groups = {}
    for method in sorted(set(summaries["method"]) - {STANDARD}):
        adversarial = summaries[summaries["method"] == method].set_index("pair_key")[measures]
        common = adversarial.index.intersection(standard.index)
        groups[f"{method} − {STANDARD}"] = adversarial.loc[common] - standard.loc[common]
    return groups


def correlation(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray) -> dict[str, float]:
    """n, Spearman and Pearson (r, two-sided p) over the pairs where both values are finite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    result = {"n": int(finite.sum()), "spearman_r": math.nan, "spearman_p": math.nan,
              "pearson_r": math.nan, "pearson_p": math.nan}
    if len(x) < MIN_OBSERVATIONS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spearman = stats.spearmanr(x, y)
        pearson = stats.pearsonr(x, y)
    result.update(spearman_r=float(spearman.statistic), spearman_p=float(spearman.pvalue),
                  pearson_r=float(pearson.statistic), pearson_p=float(pearson.pvalue))
    return result


def correlate(results: Path, attack: str | None = None, eps: float | None = None,
              run_ids: list[str] | None = None) -> pd.DataFrame:
    """Rows of the correlations table for the complete runs of a study directory.

    `run_ids` limits the runs to those (a study passes its own grid, so that runs left in the folder by
    other settings are not mixed in); by default every complete run in the folder counts.
    `attack` and `eps` default to the `[correlate]` section of the runs' config.
    """
    directories = runs.complete_runs(Path(results))
    if run_ids is not None:
        directories = [d for d in directories if d.name in set(run_ids)]
        if len(directories) < len(run_ids):
            raise InputError(f"{results}: {len(run_ids) - len(directories)} runs of the study are not complete")
    defaults = runs.manifest_config(runs.read_manifest(directories[0])).correlate
    attack = attack or defaults.attack
    eps = defaults.eps if eps is None else eps
    summaries = pd.DataFrame([run_summary(d, attack, eps) for d in directories])
    groups = {method: frame for method, frame in summaries.groupby("method", sort=True)}
    groups[ALL] = summaries
    groups.update(paired_differences(summaries))
    rows = [{"group": group, "x_measure": x, "y_measure": y, **correlation(frame[x], frame[y])}
            for group, frame in groups.items() for x in X_MEASURES for y in Y_MEASURES]
    return pd.DataFrame(rows)
