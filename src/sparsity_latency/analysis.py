"""`correlate`: gradient sparsity against latency, within training methods, across matched pairs, and between
the adversarial and the standard group, at network and at layer level (docs/analysis.md).

Each complete run gives observations (`observations`, `measures`): gradient sparsity from `attack.parquet` at
one attack and eps, latency from `profile.parquet`. An adversarial run pairs with the standard run of equal
`pair_key` (same seed, data, model, quantization and shared training settings); runs without a partner are
listed in the pairs table. Every row of the correlations table is one test with n, r, p, a bootstrap interval and the
Benjamini–Hochberg p over the whole table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sparsity_latency import runs
from sparsity_latency.config import STANDARD, CorrelateConfig
from sparsity_latency.errors import InputError
from sparsity_latency.measures import LAYER, NETWORK, POOLED, X_MEASURES, Y_MEASURES, layer_order
from sparsity_latency.observations import KEYS, observation_table, read_runs
from sparsity_latency.probes import NET
from sparsity_latency.statistics import (
    COEFFICIENTS,
    MIN_OBSERVATIONS,
    PEARSON,
    SPEARMAN,
    Estimate,
    Resampling,
    benjamini_hochberg,
    estimate_pairs,
    fisher_z_test,
    percentile_interval,
    permutation_differences,
    permutation_p,
    spearman_test,
)

WITHIN, PAIRED, DIFFERENCE = "within", "paired", "difference"


@dataclass
class Correlation:
    """What `correlate` produces: the tests, the points they were computed on, the pairing, flagged runs."""

    correlations: pd.DataFrame
    observations: pd.DataFrame
    pairs: pd.DataFrame
    flagged: dict[str, list[str]]

    @property
    def unmatched(self) -> list[str]:
        return sorted(self.pairs.loc[~self.pairs["matched"], "run_id"])


# --- pairing ---------------------------------------------------------------------------------------------------

def pair_runs(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """The pairs table: each run with the standard run of its pair_key; `matched` false for an adversarial run
    without one, and for a standard run that no adversarial run pairs with."""
    standard = runs_frame[runs_frame["method"] == STANDARD]
    by_key = dict(zip(standard["pair_key"], standard["run_id"], strict=True))
    adversarial_keys = set(runs_frame.loc[runs_frame["method"] != STANDARD, "pair_key"])
    frame = runs_frame[KEYS].copy()
    is_standard = frame["method"] == STANDARD
    frame["standard_run_id"] = [("" if s else by_key.get(k, "")) for s, k in zip(is_standard, frame["pair_key"],
                                                                                  strict=True)]
    frame["matched"] = np.where(is_standard, frame["pair_key"].isin(adversarial_keys), frame["standard_run_id"] != "")
    return frame


def paired_frame(wide: pd.DataFrame, method: str) -> pd.DataFrame:
    """For one adversarial method: x = adversarial − standard, y = (standard − adversarial) / standard, per pair
    and layer (the latency reduction of the pair)."""
    xs = [m for m in X_MEASURES[NETWORK] + X_MEASURES[LAYER] if m in wide.columns]
    ys = [m for m in Y_MEASURES[NETWORK] + Y_MEASURES[LAYER] if m in wide.columns]
    adversarial = wide[wide["method"] == method]
    standard = wide[wide["method"] == STANDARD]
    joined = adversarial.merge(standard, on=["pair_key", "layer"], suffixes=("", "_standard"))
    frame = joined[["run_id", "pair_key", "layer"]].copy()
    for x in xs:
        frame[x] = joined[x] - joined[f"{x}_standard"]
    with np.errstate(divide="ignore", invalid="ignore"):
        for y in ys:
            frame[y] = (joined[f"{y}_standard"] - joined[y]) / joined[f"{y}_standard"]
    return frame.replace([np.inf, -np.inf], np.nan)


# --- correlations ----------------------------------------------------------------------------------------------

def standardized_within_layer(frame: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """Each measure z-scored within its layer, so that pooled layers correlate within-layer variation, not size.

    A layer with fewer than 3 values of a measure is left out of it (NaN): z-scores of two points are ±1,
    whatever the data."""
    frame = frame.copy()
    grouped = frame.groupby("layer")[measures]
    with np.errstate(divide="ignore", invalid="ignore"):
        frame[measures] = (frame[measures] - grouped.transform("mean")) / grouped.transform("std", ddof=0)
    frame[measures] = frame[measures].where(grouped.transform("count") >= MIN_OBSERVATIONS)
    frame[measures] = frame[measures].replace([np.inf, -np.inf], np.nan)
    return frame


def _by_finite_rows(tables: list[np.ndarray], pairs: list[tuple[int, int]]) -> dict[bytes, list[tuple[int, int]]]:
    """Column pairs grouped by the rows where both are finite (the masks of all tables, concatenated as bytes), so
    pairs with the same rows share one draw and one pass of the compiled kernel."""
    finite = [np.isfinite(table) for table in tables]
    buckets: dict[bytes, list[tuple[int, int]]] = {}
    for i, j in pairs:
        buckets.setdefault(b"".join((f[:, i] & f[:, j]).tobytes() for f in finite), []).append((i, j))
    return buckets


def estimate_group(frame: pd.DataFrame, xs: list[str], ys: list[str], resampling: Resampling, *labels: str,
                   why_left_out: str = "lack a value", by_run: bool = False) -> dict[tuple[str, str, str], Estimate]:
    """Both coefficients of every x–y pair over the rows of frame where both are finite, with notes on dropped rows;
    `by_run`: the bootstrap draws whole runs (rows of one run are not independent)."""
    columns = [*xs, *ys]
    values = frame[columns].to_numpy(dtype=float) if len(frame) else np.empty((0, len(columns)))
    clusters = frame["run_id"].to_numpy() if by_run else None
    all_pairs = [(i, j) for i in range(len(xs)) for j in range(len(xs), len(columns))]
    estimates = {}
    for mask_bytes, pairs in _by_finite_rows([values], all_pairs).items():
        mask = np.frombuffer(mask_bytes, dtype=bool)
        dropped = len(mask) - int(mask.sum())
        found = estimate_pairs(values[mask], pairs, resampling, resampling.rng(*labels, mask_bytes.hex()),
                               None if clusters is None else clusters[mask])
        for (i, j, coefficient), estimate in found.items():
            if dropped:
                left_out = f"{dropped} of {len(mask)} observations {why_left_out}, left out"
                estimate.note = "; ".join(filter(None, [estimate.note, left_out]))
            estimates[columns[i], columns[j], coefficient] = estimate
    return estimates


def group_differences(first: pd.DataFrame, second: pd.DataFrame, estimates: tuple[dict, dict], xs: list[str],
                      ys: list[str], resampling: Resampling, *labels: str,
                      by_run: bool = False) -> dict[tuple[str, str, str], Estimate]:
    """r(first) − r(second) of every x–y pair and coefficient: Fisher z for Pearson, label permutation for
    Spearman (pairs with the same finite rows share one set of permutations); the interval is the percentile
    interval of the difference of the two groups' bootstrap replicates."""
    found: dict[tuple[str, str, str], Estimate] = {}
    columns = [*xs, *ys]
    values = [frame[columns].to_numpy(dtype=float).reshape(len(frame), len(columns)) for frame in (first, second)]
    permuted = []
    for i, x in enumerate(xs):
        for j, y in enumerate(ys, start=len(xs)):
            for coefficient in COEFFICIENTS:
                a, b = estimates[0][x, y, coefficient], estimates[1][x, y, coefficient]
                difference = Estimate(a.n, r=a.r - b.r, n_reference=b.n)
                if not (math.isfinite(a.r) and math.isfinite(b.r)):
                    difference.note = "a group's r is undefined"
                elif coefficient == PEARSON:
                    difference.p, difference.note = fisher_z_test(a.r, a.n, b.r, b.n)
                else:
                    permuted.append((i, j))
                if a.replicates.size and b.replicates.size:
                    difference.ci_low, difference.ci_high = percentile_interval(a.replicates - b.replicates,
                                                                                resampling.confidence)
                found[x, y, coefficient] = difference
    for key, pairs in _by_finite_rows(values, permuted).items():
        masks = np.frombuffer(key, dtype=bool)
        masks = masks[:len(first)], masks[len(first):]
        clusters = (np.concatenate([first["run_id"].to_numpy()[masks[0]], second["run_id"].to_numpy()[masks[1]]])
                    if by_run else None)
        null = permutation_differences(values[0][masks[0]], values[1][masks[1]], pairs, resampling.permutations,
                                       resampling.rng(*labels, key.hex()), clusters)
        for k, (i, j) in enumerate(pairs):
            difference = found[columns[i], columns[j], SPEARMAN]
            difference.p = permutation_p(difference.r, null[:, k])
    return found


def _rows(estimates: dict, level: str, layer: str, kind: str, group: str, resampling: Resampling) -> list[dict]:
    pooled = layer == POOLED
    ci_method = resampling.ci_method + (", whole runs drawn" if pooled else "")
    rows = []
    for (x, y, coefficient), estimate in estimates.items():
        if kind == DIFFERENCE and coefficient == SPEARMAN:
            test = (f"permutation of group labels{' of whole runs' if pooled else ''}, "
                    f"{resampling.permutations} permutations, seed {resampling.seed}")
        else:
            test = ("fisher z, independent groups" if kind == DIFFERENCE
                    else spearman_test(estimate.n) if coefficient == SPEARMAN else "pearson, exact t (scipy)")
            test += " (points taken as independent)" if pooled else ""
        rows.append({"level": level, "layer": layer, "kind": kind, "group": group, "x_measure": x, "y_measure": y,
                     "coefficient": coefficient, "n": estimate.n, "n_reference": estimate.n_reference, "r": estimate.r,
                     "p": estimate.p, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high, "test": test,
                     "ci_method": ci_method, "note": estimate.note})
    return rows


def correlate_level(wide: pd.DataFrame, level: str, layer: str, resampling: Resampling) -> list[dict]:
    """Every test at one level and layer (NET, a spiking layer, or POOLED): within each method, paired per
    adversarial method, and each adversarial group against the standard group."""
    xs, ys = list(X_MEASURES[level]), list(Y_MEASURES[level])
    pooled = layer == POOLED
    frame = wide if pooled else wide[wide["layer"] == layer]
    prepare = (lambda f: standardized_within_layer(f, xs + ys)) if pooled else (lambda f: f)
    why = "lack a value or are in a layer with fewer than 3 values" if pooled else "lack a value"

    def estimate(group_frame: pd.DataFrame, group: str) -> dict[tuple[str, str, str], Estimate]:
        return estimate_group(group_frame, xs, ys, resampling, level, layer, group, why_left_out=why, by_run=pooled)

    methods = sorted(set(wide["method"]), key=lambda m: (m != STANDARD, m))
    groups = {method: prepare(frame[frame["method"] == method]) for method in methods}
    within = {method: estimate(group_frame, method) for method, group_frame in groups.items()}
    rows = []
    for method in methods:
        rows += _rows(within[method], level, layer, WITHIN, method, resampling)
    for method in methods:
        if method == STANDARD:
            continue
        paired = prepare(paired_frame(frame, method))
        group = f"{method} − {STANDARD}"
        rows += _rows(estimate(paired, group), level, layer, PAIRED, group, resampling)
        if STANDARD in within:
            found = group_differences(groups[method], groups[STANDARD], (within[method], within[STANDARD]), xs, ys,
                                      resampling, level, layer, method, by_run=pooled)
            rows += _rows(found, level, layer, DIFFERENCE, f"{method} vs {STANDARD}", resampling)
    return rows


def correlations_table(observations: pd.DataFrame, resampling: Resampling) -> pd.DataFrame:
    """Every test at network level and at layer level (each spiking layer, and all pooled), with BH p-values."""
    rows = []
    for level in (NETWORK, LAYER):
        at_level = observations[observations["level"] == level]
        if at_level.empty:
            continue
        wide = at_level.set_index([*KEYS, "layer", "measure"])["value"].unstack("measure").reset_index()
        wide = wide.reindex(columns=[*KEYS, "layer", *X_MEASURES[level], *Y_MEASURES[level]])
        layers = [NET] if level == NETWORK else [*layer_order(wide["layer"]), POOLED]
        for layer in layers:
            rows += correlate_level(wide, level, layer, resampling)
    frame = pd.DataFrame(rows)
    frame["p_bh"] = benjamini_hochberg(frame["p"].to_numpy())
    return frame


def resampling_of(settings: CorrelateConfig) -> Resampling:
    return Resampling(settings.bootstrap_resamples, settings.permutations, settings.seed)


def correlate(results: Path, settings: CorrelateConfig | None = None, run_ids: list[str] | None = None) -> Correlation:
    """Correlate the complete runs of a study directory.

    `run_ids` limits the runs to those (a study passes its own grid, so that runs left in the folder by other
    settings are not mixed in); by default every complete run in the folder counts. `settings` defaults to the
    `[correlate]` section of the first run's config.
    """
    directories = runs.complete_runs(Path(results))
    if run_ids is not None:
        directories = [d for d in directories if d.name in set(run_ids)]
        if len(directories) < len(run_ids):
            raise InputError(f"{results}: {len(run_ids) - len(directories)} runs of the study are not complete")
    settings = settings or runs.manifest_config(runs.read_manifest(directories[0])).correlate
    run_frame, attack, profile, flagged = read_runs(directories)
    table = observation_table(run_frame, attack, profile, settings)
    return Correlation(correlations_table(table, resampling_of(settings)), table, pair_runs(run_frame), flagged)
