"""The multimodal study of experiments/ (events + intensity frames, three fusion heads) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_multimodal_study_runs_every_fusion_head_and_learns(tmp_path: Path) -> None:
    result = run_cli("study", ROOT / "experiments" / "multimodal.toml", "--out", tmp_path, "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    runs = sorted(path.parent for path in (tmp_path / "multimodal").glob("*/run.json"))
    assert len(runs) == 12  # 2 seeds × 2 methods × 3 fusion heads
    fusions, accuracies = [], []
    for run in runs:
        config = json.loads((run / "run.json").read_text())["config"]
        assert config["data"]["name"] == "synthetic-digits+frames"
        fusions.append(config["model"]["fusion"])
        train = pd.read_parquet(run / "train.parquet")
        accuracies.append(train.loc[train["layer"] == "__net__", "test_accuracy"].iloc[-1])
        attack = pd.read_parquet(run / "attack.parquet")
        per_modality = attack[attack["layer"].isin(["__input_dvs__", "__input_aps__"])]
        assert len(per_modality) == 2 * len(attack[attack["layer"] == "__net__"])  # both modalities, every eps
        assert per_modality["input_grad_hoyer"].notna().all()
        layers = set(pd.read_parquet(run / "profile.parquet")["layer"])
        if config["model"]["fusion"] == "early":  # one network reads both, channels concatenated
            assert {"joint.conv1", "joint.lif2"} <= layers
        else:  # one network per modality
            assert {"dvs.conv1", "dvs.lif2", "aps.conv1", "aps.lif2"} <= layers
    assert sorted(fusions) == ["attention"] * 4 + ["early"] * 4 + ["late"] * 4
    assert sum(accuracies) / len(accuracies) > 0.25  # ten classes: chance is 0.1
    correlations = pd.read_parquet(tmp_path / "multimodal" / "correlations.parquet")
    report = json.loads(result.stdout)
    assert len(correlations) == len(report["correlations"]) > 0
    assert {row["method"] for row in report["robustness"]} == {"standard", "pgd-at"}
    assert report["flagged"] == {}  # checks are off in this study
