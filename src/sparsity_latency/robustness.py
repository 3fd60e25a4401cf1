"""Robustness across the runs of a study: accuracy under each attack per training method, and flagged runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sparsity_latency import runs
from sparsity_latency.masking import MAIN, describe_check
from sparsity_latency.probes import CHECK, NET


def robustness_table(directories: list[Path]) -> pd.DataFrame:
    """Mean (and spread) over runs of clean and robust accuracy per method × attack × budget.

    Columns: method, attack, norm, eps, runs, clean_accuracy, robust_accuracy (means), robust_accuracy_std
    (over runs; NaN for one run), flagged_runs (runs of this method whose gradient-masking checks failed).
    """
    frames = [runs.read_table(d / "attack.parquet", "attack") for d in directories]
    if not frames:
        return pd.DataFrame(columns=["method", "attack", "norm", "eps", "runs", "clean_accuracy",
                                     "robust_accuracy", "robust_accuracy_std", "flagged_runs"])
    rows = pd.concat(frames, ignore_index=True)
    checks = rows[rows["layer"] == CHECK]
    flagged = checks[~checks["check_passed"].astype(bool)].groupby("method")["run_id"].nunique()
    net = rows[(rows["layer"] == NET) & (rows["variant"] == MAIN)]
    table = (net.groupby(["method", "attack", "norm", "eps"], sort=True)
             .agg(runs=("run_id", "nunique"), clean_accuracy=("clean_accuracy", "mean"),
                  robust_accuracy=("robust_accuracy", "mean"), robust_accuracy_std=("robust_accuracy", "std"))
             .reset_index())
    table["flagged_runs"] = table["method"].map(flagged).fillna(0).astype(int)
    return table


CHECK_COLUMNS = ["run_id", "layer", "check", "attack", "variant", "eps", "robust_accuracy", "check_bound_accuracy",
                 "check_reference", "check_passed"]


def failed_checks(attack: pd.DataFrame) -> dict[str, list[str]]:
    """Run id → one line per gradient-masking check it failed, from attack rows of any number of runs."""
    checks = attack[attack["layer"] == CHECK]
    failed = checks[~checks["check_passed"].astype(bool)]
    return {run_id: [describe_check(row) for row in rows.to_dict("records")]
            for run_id, rows in failed.groupby("run_id", sort=False)}


def flagged_runs(directories: list[Path]) -> dict[str, list[str]]:
    """Run id → one line per gradient-masking check it failed, for the runs that failed any."""
    return failed_checks(runs.read_columns([d / "attack.parquet" for d in directories], "attack", CHECK_COLUMNS))
