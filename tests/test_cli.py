"""Every command through the installed console script, as a user runs it."""

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from sparsity_latency.probes import NET


def _run_dirs(study: Path) -> list[Path]:
    return sorted(p.parent for p in study.glob("*/run.json"))


def _one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["train", "attack", "profile", "correlate", "report", "study"])
def test_help_has_an_example(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "Example: sparsity-latency" in result.stdout


def test_study_writes_complete_runs_and_correlations(tiny_study: Path) -> None:
    directories = _run_dirs(tiny_study)
    assert len(directories) == 6
    for directory in directories:
        manifest = json.loads((directory / "run.json").read_text())
        assert manifest["status"] == "complete"
        assert set(manifest["stages"]) == {"train", "attack", "profile"}
        assert manifest["versions"]["torch"] and "snntorch" in manifest["versions"]
        for name in ("checkpoint.pt", "train.parquet", "attack.parquet", "profile.parquet"):
            assert (directory / name).is_file()
    correlations = pd.read_parquet(tiny_study / "correlations.parquet")
    assert set(correlations["group"]) == {"standard", "pgd-at", "pgd-at − standard", "pgd-at vs standard"}
    network = correlations[correlations["level"] == "network"]
    assert (network["n"] == 3).all()
    assert (network.loc[network["kind"] == "difference", "n_reference"] == 3).all()
    pairs = pd.read_parquet(tiny_study / "pairs.parquet")
    assert pairs["matched"].all() and len(pairs) == 6
    adversarial = pairs[pairs["method"] == "pgd-at"]
    standard = pairs[pairs["method"] == "standard"].set_index("seed")["run_id"]
    assert (adversarial["standard_run_id"].to_numpy() == standard.loc[adversarial["seed"]].to_numpy()).all()


def test_study_leaves_a_report_of_its_runs(tiny_study: Path) -> None:
    page = (tiny_study / "report" / "index.html").read_text(encoding="utf-8")
    pngs = sorted((tiny_study / "report").glob("*.png"))
    assert {"robustness.png", "training.png", "scatter-synops.png", "heatmap-synops.png"} <= {p.name for p in pngs}
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "standard: 3 runs" in page and "pgd-at − standard" in page


def test_report_command(study_copy: Path, tmp_path: Path) -> None:
    result = run_cli("report", study_copy, "--out", tmp_path / "page")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "page" / "index.html").is_file() and "index.html" in result.stdout
    (study_copy / "correlations.parquet").unlink()
    assert "run `sparsity-latency correlate" in _one_line_error(run_cli("report", study_copy))
    assert run_cli("correlate", study_copy).returncode == 0  # writes all three tables again
    (study_copy / "observations.parquet").write_bytes(b"PAR1 not really")
    before = (study_copy / "report" / "index.html").read_bytes()
    assert "not a readable parquet file" in _one_line_error(run_cli("report", study_copy))
    assert (study_copy / "report" / "index.html").read_bytes() == before  # the earlier report is untouched
    assert "results folder not found" in _one_line_error(run_cli("report", tmp_path / "absent"))


def test_train_command(tiny_config: Path, tmp_path: Path) -> None:
    result = run_cli("train", tiny_config, "--method", "pgd-at", "--set", "seed=5", "--out", tmp_path,
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    [directory] = _run_dirs(tmp_path / "tiny")
    assert directory.name.startswith("pgd-at-s5-")
    frame = pd.read_parquet(directory / "train.parquet")
    assert set(frame["layer"]) == {"conv1", "conv2", "fc", "lif1", "lif2", NET}
    manifest = json.loads((directory / "run.json").read_text())
    assert manifest["config"]["train"]["method"] == "pgd-at"
    assert manifest["status"] == "incomplete"  # attack and profile not run yet
    # the neuron as it ran, defaults resolved: triangle γ = 1 for surrogate_param 0, ternary levels −1 … 1
    assert manifest["neuron"]["kind"] == "spquant"
    assert manifest["neuron"]["surrogate"] == "triangle" and manifest["neuron"]["surrogate_param"] == 1.0
    assert manifest["neuron"]["level_range"] == [-1.0, 1.0] and manifest["neuron"]["storage_bits"] == 2
    assert manifest["neuron"]["quant_grad"] == "stacked-sigmoid"


def test_attack_command_with_options(study_copy: Path) -> None:
    directory = _run_dirs(study_copy)[0]
    result = run_cli("attack", directory, "--attack", "fgsm,event-flip", "--eps", "0,0.02,0.2", "--set",
                     "attack.checks=false", "--set", "attack.flip_budgets=[3]", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    frame = pd.read_parquet(directory / "attack.parquet")
    assert set(frame["attack"]) == {"fgsm", "event-flip"}
    assert sorted(set(frame.loc[frame["attack"] == "fgsm", "eps"])) == [0.0, 0.02, 0.2]
    assert set(frame.loc[frame["attack"] == "event-flip", "eps"]) == {3.0}
    assert "robust_accuracy" in result.stdout and "checks: off" in result.stdout
    assert "masking_failures" in json.loads((directory / "run.json").read_text())["stages"]["attack"]


def test_attack_command_reports_masking_checks(study_copy: Path) -> None:
    # the run most accurate on clean data; at eps 0.001 PGD cannot bring it down to chance (0.1 for 10 classes),
    # so the chance check must fail (its tolerance: one of the 24 test samples, 0.042)
    clean = {d: pd.read_parquet(d / "attack.parquet")["clean_accuracy"].max() for d in _run_dirs(study_copy)}
    directory = max(clean, key=clean.get)
    assert clean[directory] >= 0.15
    result = run_cli("attack", directory, "--attack", "pgd", "--eps", "0.03", "--set", "attack.check_eps=0.001",
                     "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert {"more-steps", "more-restarts", "chance", "below-clean"} <= set(checks)
    assert checks["chance"]["eps"] == 0.001 and checks["chance"]["check_bound_accuracy"] == 0.1
    assert report["flagged"] == (not all(c["check_passed"] for c in report["checks"]))
    assert report["flagged"]
    failures = json.loads((directory / "run.json").read_text())["stages"]["attack"]["masking_failures"]
    assert any(f.startswith("chance: pgd (chance) at eps 0.001") for f in failures)
    strict = run_cli("attack", directory, "--attack", "pgd", "--eps", "0.03", "--set", "attack.check_eps=0.001",
                     "--strict", "--device", "cpu")
    assert strict.returncode == 1 and "gradient masking suspected" in strict.stdout
    bad = run_cli("attack", directory, "--set", "train.epochs=5")
    assert bad.returncode == 2 and "attack.* keys only here" in bad.stderr
    unchecked = run_cli("attack", directory, "--set", "attack.checks=false", "--strict")
    assert unchecked.returncode == 2 and "--strict needs the gradient-masking checks" in unchecked.stderr


def test_attack_and_profile_find_a_run_by_id(study_copy: Path) -> None:
    directory = _run_dirs(study_copy)[-1]
    result = run_cli("profile", directory.name, "--out", study_copy.parent, "--json", "--set",
                     "profile.exit_thresholds=[0.0, 0.5]")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["latency"]
    assert {row["batch_size"] for row in rows} == {1, 8}
    assert all(row["wall_ms_p95"] >= row["wall_ms_p50"] > 0 and row["wall_repeats"] >= 3 for row in rows)
    exits = {row["exit_threshold"]: row for row in report["early_exit"]}
    assert set(exits) == {0.0, 0.5}
    assert exits[0.0]["decision_time_steps"] == 1.0 and exits[0.0]["exit_fraction"] == 1.0  # θ 0: decide at once
    assert 1.0 <= exits[0.5]["decision_time_steps"] <= 4.0  # T = 4
    bad = run_cli("profile", directory, "--set", "attack.eps=[0.1]")
    assert bad.returncode == 2 and "profile.* keys only" in bad.stderr


def test_correlate_command_writes_elsewhere_when_asked(study_copy: Path, tmp_path: Path) -> None:
    result = run_cli("correlate", study_copy, "--out", tmp_path / "corr", "--attack", "fgsm", "--eps", "0.03")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "corr" / "correlations.parquet").is_file()
    assert "Spearman" in result.stdout


def test_study_resumes_without_redoing_anything(tiny_config: Path, study_copy: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in study_copy.glob("*/*.parquet")}
    result = run_cli("study", tiny_config, "--out", study_copy.parent)
    assert result.returncode == 0, result.stderr
    assert "0 stages run, 18 already complete" in result.stdout
    assert before == {p: p.stat().st_mtime_ns for p in study_copy.glob("*/*.parquet")}


def test_usage_errors_are_one_line(tiny_config: Path) -> None:
    assert "No such option: --bogus" in _one_line_error(run_cli("train", tiny_config, "--bogus"))
    assert "Missing argument" in _one_line_error(run_cli("study"))
    assert "--eps" in _one_line_error(run_cli("correlate", ".", "--eps", "abc"))


def test_missing_config(tmp_path: Path) -> None:
    line = _one_line_error(run_cli("study", tmp_path / "nope.toml", "--out", tmp_path))
    assert "config file not found" in line
    assert list(tmp_path.iterdir()) == []


def test_malformed_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    assert "malformed TOML" in _one_line_error(run_cli("train", bad, "--out", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_and_method(tiny_config: Path, tmp_path: Path) -> None:
    line = _one_line_error(run_cli("train", tiny_config, "--set", "data.name=mnist-dvs", "--out", tmp_path))
    assert "unknown dataset 'mnist-dvs'" in line
    line = _one_line_error(run_cli("study", tiny_config, "--set", 'study.methods=["standard", "trades2"]',
                                   "--out", tmp_path))
    assert "unknown training method 'trades2'" in line
    assert list(tmp_path.iterdir()) == []


def test_negative_eps_keeps_earlier_results(study_copy: Path) -> None:
    directory = _run_dirs(study_copy)[0]
    before = (directory / "attack.parquet").read_bytes()
    assert "'attack.eps' must all be >= 0" in _one_line_error(run_cli("attack", directory, "--eps", "-0.1"))
    assert "'correlate.eps' must be >= 0" in _one_line_error(run_cli("correlate", study_copy, "--eps", "-1"))
    assert (directory / "attack.parquet").read_bytes() == before


def test_results_folder_without_runs(tmp_path: Path) -> None:
    assert "no complete runs" in _one_line_error(run_cli("correlate", tmp_path))
    assert "results folder not found" in _one_line_error(run_cli("correlate", tmp_path / "absent"))


def test_corrupt_and_wrong_schema_tables(study_copy: Path) -> None:
    directory = _run_dirs(study_copy)[0]
    frame = pd.read_parquet(directory / "profile.parquet")
    frame.drop(columns=["synops"]).to_parquet(directory / "profile.parquet")
    assert "missing column 'synops'" in _one_line_error(run_cli("correlate", study_copy))
    (directory / "attack.parquet").write_bytes(b"PAR1 truncated")
    assert "not a readable parquet file" in _one_line_error(run_cli("correlate", study_copy))
    assert not (study_copy / "correlations.parquet.tmp").exists()


def test_unknown_run_and_cuda_without_gpu(study_copy: Path) -> None:
    assert "no run found" in _one_line_error(run_cli("profile", "no-such-run", "--out", study_copy.parent))
    directory = _run_dirs(study_copy)[0]
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _one_line_error(run_cli("profile", directory, "--device", "cuda"))
