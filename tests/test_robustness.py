"""Accuracy under attack across a study's runs, and the runs flagged for gradient masking."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from conftest import run_cli
from sparsity_latency.robustness import flagged_runs, robustness_table


def _runs(study: Path) -> list[Path]:
    return sorted(path.parent for path in study.glob("*/run.json"))


def test_table_is_the_mean_over_seeds_of_each_methods_main_evaluations(tiny_study: Path) -> None:
    table = robustness_table(_runs(tiny_study))
    frames = pd.concat([pd.read_parquet(d / "attack.parquet") for d in _runs(tiny_study)])
    main = frames[(frames["layer"] == "__net__") & (frames["variant"] == "main")]
    for row in table.to_dict("records"):
        chosen = main[(main["method"] == row["method"]) & (main["attack"] == row["attack"])
                      & (main["eps"] == row["eps"])]
        assert row["runs"] == len(chosen) == 3  # three seeds
        assert row["robust_accuracy"] == chosen["robust_accuracy"].mean()
        assert row["clean_accuracy"] == chosen["clean_accuracy"].mean()
    assert set(table["attack"]) == {"fgsm", "pgd", "apgd-ce"}  # apgd-ce: the checks add an adaptive attack
    assert set(table["method"]) == {"standard", "pgd-at"}


def test_a_failed_check_flags_its_run_in_the_table_and_the_study_output(tiny_config: Path, study_copy: Path) -> None:
    directory = _runs(study_copy)[0]
    path = directory / "attack.parquet"
    frame = pd.read_parquet(path)
    first_check = frame.index[frame["layer"] == "__check__"][0]
    frame.loc[first_check, "check_passed"] = False
    frame.to_parquet(path)
    flagged = flagged_runs(_runs(study_copy))
    assert list(flagged) == [directory.name] and len(flagged[directory.name]) == 1
    method = frame["method"].iloc[0]
    table = robustness_table(_runs(study_copy))
    assert (table.loc[table["method"] == method, "flagged_runs"] == 1).all()
    assert (table.loc[table["method"] != method, "flagged_runs"] == 0).all()
    result = run_cli("study", tiny_config, "--out", study_copy.parent)
    assert result.returncode == 0, result.stderr
    assert "mean accuracy under attack" in result.stdout
    assert f"gradient masking suspected in {directory.name}: {flagged[directory.name][0]}" in " ".join(
        result.stdout.split())
    as_json = run_cli("study", tiny_config, "--out", study_copy.parent, "--json")
    report = json.loads(as_json.stdout)
    assert report["flagged"] == flagged and len(report["robustness"]) == len(table) and report["correlations"]
    correlated = run_cli("correlate", study_copy, "--out", study_copy.parent / "corr")
    assert correlated.returncode == 0, correlated.stderr
    assert f"note: 1 of 6 runs failed gradient-masking checks; their gradients may mislead: {directory.name}" in (
        " ".join(correlated.stdout.split()))
