"""`data list`, `data simulate`, `data inspect` and runs on a real dataset, through the console script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tonic

from conftest import TINY_TOML, run_cli
from sparsity_latency.data import DATASETS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def simulated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synthetic-digits written as N-MNIST files by `data simulate` (12 train, 6 test samples)."""
    root = tmp_path_factory.mktemp("datasets")
    result = run_cli("data", "simulate", root, "--set", "data.train_samples=12", "--set", "data.test_samples=6")
    assert result.returncode == 0, result.stderr
    assert "wrote 12 train files" in result.stdout and "6 test files" in result.stdout
    return root


def test_data_list_shows_every_dataset_with_sensor_and_classes() -> None:
    result = run_cli("data", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(DATASETS)
    assert rows["nmnist"]["sensor"] == "34×34×2" and rows["nmnist"]["classes"] == 10
    assert rows["shd"]["sensor"] == "700×1×1" and rows["shd"]["classes"] == 20
    assert rows["dvsgesture"]["files"].startswith("DVSGesture/")
    table = run_cli("data", "list")
    assert all(name in table.stdout for name in DATASETS)


def test_simulated_files_are_read_by_tonic_and_by_inspect(simulated_root: Path) -> None:
    files = sorted((simulated_root / "NMNIST" / "Train").rglob("*.bin"))
    assert len(files) == 12
    events = tonic.io.read_mnist_file(str(files[0]), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    assert len(events) > 1000 and events["x"].max() < 34 and events["y"].max() < 34
    result = run_cli("data", "inspect", simulated_root, "--json")
    assert result.returncode == 0, result.stderr
    samples = json.loads(result.stdout)
    assert len(samples) == 18 and {s["split"] for s in samples} == {"train", "test"}
    first = next(s for s in samples if s["source"] == str(files[0]))
    assert first["events"] == len(events)
    assert first["label"] == int(files[0].parent.name)
    assert first["on_fraction"] == pytest.approx(float(np.mean(events["p"] == 1)))
    text = run_cli("data", "inspect", simulated_root / "NMNIST", "--show", "2")
    assert text.returncode == 0 and "nmnist" in text.stdout and "18 samples read" in text.stdout


def test_inspect_names_a_truncated_file_and_exits_2(simulated_root: Path, tmp_path: Path) -> None:
    for part, cut in (("Train", 2), ("Test", 0)):  # only the train file is truncated
        source = next((simulated_root / "NMNIST" / part).rglob("*.bin"))
        target = tmp_path / "NMNIST" / part / source.parent.name / source.name
        target.parent.mkdir(parents=True)
        target.write_bytes(source.read_bytes()[:len(source.read_bytes()) - cut])
    truncated = next((tmp_path / "NMNIST" / "Train").rglob("*.bin"))
    result = run_cli("data", "inspect", tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "5-byte" in result.stderr and str(truncated) in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("data", "inspect", "/no/such/folder"), "no such folder"),
    (("data", "simulate", "{tmp}", "--format", "avi"), "unknown format"),
    (("data", "simulate", "{tmp}", "--set", "data.train_samples=5000"), "1797 images"),
    (("data", "simulate", "{tmp}", "--set", "data.background=2"), "data.background"),
])
def test_bad_data_commands_give_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result = run_cli(*(arg.format(tmp=tmp_path) for arg in args))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_a_run_trains_on_real_nmnist_files(simulated_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "nmnist.toml"
    config.write_text(TINY_TOML.replace("[data]\n", f'[data]\nname = "nmnist"\nroot = "{simulated_root}"\n')
                      .replace("train_samples = 48", "train_samples = 12").replace("test_samples = 24",
                                                                                "test_samples = 6"))
    result = run_cli("train", config, "--out", tmp_path / "results")
    assert result.returncode == 0, result.stderr
    run_json = json.loads(next((tmp_path / "results").rglob("run.json")).read_text())
    assert run_json["config"]["data"]["name"] == "nmnist"
    missing = run_cli("train", config, "--out", tmp_path / "results", "--set", f"data.root='{tmp_path / 'empty'}'")
    assert missing.returncode == 2 and "NMNIST" in missing.stderr and missing.stderr.count("\n") == 1


@pytest.mark.parametrize(("override", "message"), [
    ("data.name=nmnist+shd+dvsgesture", "at most two"),
    ("data.name=nmnist+frames", "no intensity frames"),
    ("data.name=mnist", "unknown dataset 'mnist'"),
    ("model.fusion=middle", "unknown fusion"),
    ("data.downsample=0", "data.downsample"),
    ("data.test_fraction=1.5", "data.test_fraction"),
])
def test_bad_data_config_is_refused(override: str, message: str, tiny_config: Path, tmp_path: Path) -> None:
    result = run_cli("train", tiny_config, "--out", tmp_path, "--set", override)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())
