"""`correlate`: gradient sparsity against latency, within training methods, across matched pairs, and between
the adversarial and the standard group, at network and at layer level (docs/analysis.md).

Each complete run gives observations (`measures`): gradient sparsity from `attack.parquet` at one attack and
eps, latency from `profile.parquet`. An adversarial run pairs with the standard run of equal `pair_key` (same
seed, data, model, quantization and shared training settings); runs without a partner are listed in the
pairs table. Every row of the correlations table is one test with n, r, p, a bootstrap interval and the
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
from sparsity_latency.latency.backends import BACKEND_DENSE, BACKEND_EVENT
from sparsity_latency.latency.profile import EXIT
from sparsity_latency.masking import MAIN
from sparsity_latency.measures import LAYER, NETWORK, POOLED, X_MEASURES, Y_MEASURES, layer_order
from sparsity_latency.metrics import GRAD_FORMS
from sparsity_latency.probes import CHECK, NET
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
KEYS = ["run_id", "method", "seed", "pair_key"]


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


# --- observations of one run ----------------------------------------------------------------------------------

def blocks(profile: pd.DataFrame) -> dict[str, list[str]]:
    """Spiking layer → the layers of its block, in module order: from the weight layer that feeds it through
    the spiking layer and the weightless layers (pooling) after it. Layers after a network's last spiking
    layer (its readout) belong to no block; a block never spans two sub-networks (`dvs.*`, `aps.*`)."""
    layers = profile[~profile["layer"].isin([NET, EXIT])].drop_duplicates("layer")
    found: dict[str, list[str]] = {}
    current: list[str] = []
    spiking = None
    for row in layers.itertuples(index=False):
        is_spiking = not math.isnan(row.spike_sparsity)
        new_network = bool(current) and row.layer.rpartition(".")[0] != current[0].rpartition(".")[0]
        if new_network or (spiking is not None and (is_spiking or not math.isnan(row.weight_memory_bits))):
            if spiking is not None:
                found[spiking] = current
            current, spiking = [], None
        current.append(row.layer)
        if is_spiking:
            spiking = row.layer
    if spiking is not None:
        found[spiking] = current
    return found


def _evaluation(directory: Path, attack: pd.DataFrame, selection: CorrelateConfig) -> pd.DataFrame:
    chosen = attack[(attack["attack"] == selection.attack) & np.isclose(attack["eps"], selection.eps)
                    & (attack["variant"] == MAIN) & (attack["layer"] != CHECK)]
    if chosen.empty:
        raise InputError(f"{directory / 'attack.parquet'}: no rows for attack '{selection.attack}' "
                         f"at eps {selection.eps}")
    if not (chosen["layer"] == NET).any():
        raise InputError(f"{directory / 'attack.parquet'}: no '{NET}' row for attack '{selection.attack}' "
                         f"at eps {selection.eps}")
    return chosen.set_index("layer")


def _wall(profile: pd.DataFrame, backend: str, column: str, batch: str) -> pd.Series:
    """A backend's column by layer at batch 1 ("b1") or at its largest batch ("bmax"); empty if not profiled."""
    rows = profile[(profile["backend"] == backend) & (profile["batch_size"] > 0)]
    if rows.empty:
        return pd.Series(dtype=float)
    size = 1 if batch == "b1" else rows["batch_size"].max()
    return rows[rows["batch_size"] == size].set_index("layer")[column]


def network_measures(evaluation: pd.DataFrame, profile: pd.DataFrame, exit_threshold: float) -> dict[str, float]:
    """The network-level x and y measures of one run (measures.X_MEASURES / Y_MEASURES)."""
    spiking = evaluation[evaluation["spike_grad_hoyer"].notna()]
    values = {f"input_grad_{form}": float(evaluation.loc[NET, f"input_grad_{form}"]) for form in GRAD_FORMS}
    for target in ("spike", "membrane"):
        values.update({f"{target}_grad_{f}": float(spiking[f"{target}_grad_{f}"].mean()) for f in GRAD_FORMS})
    dense = profile[(profile["backend"] == BACKEND_DENSE) & (profile["layer"] == NET)]
    exits = profile[(profile["layer"] == EXIT) & np.isclose(profile["exit_threshold"], exit_threshold)]
    values.update(
        synops=float(dense["synops"].iloc[0]) if len(dense) else math.nan,
        energy_pj=float(dense["energy_pj"].iloc[0]) if len(dense) else math.nan,
        dense_wall_ms_b1=float(_wall(profile, BACKEND_DENSE, "wall_ms_p50", "b1").get(NET, math.nan)),
        dense_wall_ms_bmax=float(_wall(profile, BACKEND_DENSE, "wall_ms_p50", "bmax").get(NET, math.nan)),
        event_wall_ms_b1=float(_wall(profile, BACKEND_EVENT, "wall_ms_p50", "b1").get(NET, math.nan)),
        decision_time_steps=float(exits["decision_time_steps"].iloc[0]) if len(exits) else math.nan,
    )
    return values


def layer_measures(evaluation: pd.DataFrame, profile: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Spiking layer → its layer-level x and y measures (y summed over its block, see `blocks`)."""
    counts = profile[profile["backend"] == profile["backend"].iloc[0]].drop_duplicates("layer").set_index("layer")
    dense_ms = _wall(profile, BACKEND_DENSE, "layer_ms_p50", "b1")
    event_ms = _wall(profile, BACKEND_EVENT, "layer_ms_p50", "b1")
    found = {}
    for spiking, members in blocks(profile).items():
        values = {}
        for target, rows in (("spike", [spiking]), ("membrane", [spiking]), ("weight", members)):
            present = evaluation.reindex(rows)
            values.update({f"{target}_grad_{f}": float(present[f"{target}_grad_{f}"].mean()) for f in GRAD_FORMS})
        values.update(
            synops=float(counts.loc[members, "synops"].sum(min_count=1)),
            energy_pj=float(counts.loc[members, "energy_pj"].sum(min_count=1)),
            dense_layer_ms_b1=float(dense_ms.reindex(members).sum(min_count=1)),
            event_layer_ms_b1=float(event_ms.reindex(members).sum(min_count=1)),
        )
        found[spiking] = values
    return found


def run_observations(directory: Path, selection: CorrelateConfig) -> tuple[list[dict], list[str]]:
    """One run's observations in long form (level, layer, measure, value), and its failed masking checks."""
    from sparsity_latency.robustness import describe_check

    manifest = runs.read_manifest(directory)
    attack = runs.read_table(directory / "attack.parquet", "attack")
    profile = runs.read_table(directory / "profile.parquet", "profile")
    evaluation = _evaluation(directory, attack, selection)
    keys = {key: manifest[key] for key in KEYS}
    rows = [{**keys, "level": NETWORK, "layer": NET, "measure": measure, "value": value}
            for measure, value in network_measures(evaluation, profile, selection.exit_threshold).items()]
    for layer, values in layer_measures(evaluation, profile).items():
        rows += [{**keys, "level": LAYER, "layer": layer, "measure": m, "value": v} for m, v in values.items()]
    checks = attack[attack["layer"] == CHECK]
    failed = [describe_check(row) for row in checks[~checks["check_passed"].astype(bool)].to_dict("records")]
    return rows, failed


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


def estimate_group(frame: pd.DataFrame, xs: list[str], ys: list[str], resampling: Resampling, *labels: str,
                   why_left_out: str = "lack a value") -> dict[tuple[str, str, str], Estimate]:
    """Both coefficients of every x–y pair over the rows of frame where both are finite, with notes on dropped rows.

    Pairs with the same finite rows share one bootstrap draw and one pass of the compiled kernel."""
    columns = [*xs, *ys]
    values = frame[columns].to_numpy(dtype=float) if len(frame) else np.empty((0, len(columns)))
    finite = np.isfinite(values)
    buckets: dict[bytes, list[tuple[int, int]]] = {}
    for i in range(len(xs)):
        for j in range(len(xs), len(columns)):
            buckets.setdefault((finite[:, i] & finite[:, j]).tobytes(), []).append((i, j))
    estimates = {}
    for mask_bytes, pairs in buckets.items():
        mask = np.frombuffer(mask_bytes, dtype=bool)
        dropped = len(mask) - int(mask.sum())
        found = estimate_pairs(values[mask], pairs, resampling, resampling.rng(*labels, mask_bytes.hex()))
        for (i, j, coefficient), estimate in found.items():
            if dropped:
                left_out = f"{dropped} of {len(mask)} observations {why_left_out}, left out"
                estimate.note = "; ".join(filter(None, [estimate.note, left_out]))
            estimates[columns[i], columns[j], coefficient] = estimate
    return estimates


def group_differences(first: pd.DataFrame, second: pd.DataFrame, estimates: tuple[dict, dict], xs: list[str],
                      ys: list[str], resampling: Resampling, *labels: str) -> dict[tuple[str, str, str], Estimate]:
    """r(first) − r(second) of every x–y pair and coefficient: Fisher z for Pearson, label permutation for
    Spearman (pairs with the same finite rows share one set of permutations); the interval is the percentile
    interval of the difference of the two groups' bootstrap replicates."""
    found: dict[tuple[str, str, str], Estimate] = {}
    columns = [*xs, *ys]
    values = [frame[columns].to_numpy(dtype=float).reshape(len(frame), len(columns)) for frame in (first, second)]
    finite = [np.isfinite(v) for v in values]
    buckets: dict[bytes, list[tuple[int, int]]] = {}
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
                    masks = [f[:, i] & f[:, j] for f in finite]
                    buckets.setdefault(masks[0].tobytes() + masks[1].tobytes(), []).append((i, j))
                if a.replicates.size and b.replicates.size:
                    difference.ci_low, difference.ci_high = percentile_interval(a.replicates - b.replicates,
                                                                                resampling.confidence)
                found[x, y, coefficient] = difference
    for key, pairs in buckets.items():
        masks = np.frombuffer(key, dtype=bool)
        masks = masks[:len(first)], masks[len(first):]
        null = permutation_differences(values[0][masks[0]], values[1][masks[1]], pairs, resampling.permutations,
                                       resampling.rng(*labels, key.hex()))
        for k, (i, j) in enumerate(pairs):
            difference = found[columns[i], columns[j], SPEARMAN]
            difference.p = permutation_p(difference.r, null[:, k])
    return found


def _rows(estimates: dict, level: str, layer: str, kind: str, group: str, resampling: Resampling) -> list[dict]:
    rows = []
    for key, estimate in estimates.items():
        (x, y, coefficient) = key
        if kind == DIFFERENCE:
            test = (f"permutation of group labels, {resampling.permutations} permutations, seed {resampling.seed}"
                    if coefficient == SPEARMAN else "fisher z, independent groups")
        else:
            test = spearman_test(estimate.n) if coefficient == SPEARMAN else "pearson, exact t (scipy)"
        rows.append({"level": level, "layer": layer, "kind": kind, "group": group, "x_measure": x, "y_measure": y,
                     "coefficient": coefficient, "n": estimate.n, "n_reference": estimate.n_reference, "r": estimate.r,
                     "p": estimate.p, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high, "test": test,
                     "ci_method": resampling.ci_method, "note": estimate.note})
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
        return estimate_group(group_frame, xs, ys, resampling, level, layer, group, why_left_out=why)

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
                                      resampling, level, layer, method)
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
    rows, flagged = [], {}
    for directory in directories:
        run_rows, failed = run_observations(directory, settings)
        rows += run_rows
        if failed:
            flagged[run_rows[0]["run_id"]] = failed
    observations = pd.DataFrame(rows)
    pairs = pair_runs(observations.drop_duplicates("run_id"))
    return Correlation(correlations_table(observations, resampling_of(settings)), observations, pairs, flagged)
