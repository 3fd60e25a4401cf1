"""Checkpoints and resume: training stopped anywhere and resumed equals training that never stopped (bitwise, on
the CPU); SIGTERM through the real `train` command checkpoints and exits cleanly; SIGKILL at several moments of a
real `study` and a restart end with the results of an uninterrupted study; the same config gives the same files (also
tests/test_executors.py: inline, local and debug executors)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import SCRIPT, run_cli
from sparsity_latency import runs
from sparsity_latency.config import Config, with_changes
from sparsity_latency.interrupts import StopRequest, StopSignalError
from sparsity_latency.training import train

CPU = torch.device("cpu")
CLUSTER_SMOKE = Path(__file__).parents[1] / "experiments" / "cluster-smoke.toml"
CPU_ONLY = ("--device", "cpu")  # bitwise determinism is a CPU property: CUDA kernels may not be deterministic
SMALL = {"study.name": "cluster-smoke", "data.train_samples": 48, "data.test_samples": 16, "data.time_steps": 4,
         "model.channels": [4, 8], "train.epochs": 3, "train.batch_size": 16, "train.method": "pgd-at",
         "train.pgd_steps": 2}


class StopAfter(StopRequest):
    """A stop signal that 'arrives' during batch `batches` (counted over the whole run)."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.left = batches

    @property
    def requested(self) -> bool:
        self.left -= 1
        if self.left == 0:
            self.signum = signal.SIGTERM
        return self.signum is not None


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _equal_rows(a: list[dict], b: list[dict]) -> bool:
    return pd.DataFrame(a).equals(pd.DataFrame(b))  # NaN equals NaN here


@pytest.mark.parametrize("stop_batch", [1, 3, 4, 8])  # 3 batches per epoch: inside epoch 1, at its end, epoch 2, 3
def test_training_resumed_anywhere_equals_training_that_never_stopped(stop_batch: int, tmp_path: Path) -> None:
    config = with_changes(Config(), SMALL)
    whole = train(config, CPU)
    saved: list[dict] = []
    path = tmp_path / "checkpoint.pt"

    def save(state: dict) -> None:
        runs.save_checkpoint(path, {**state, "run_id": "x"})
        saved.append(state)

    with pytest.raises(StopSignalError, match="SIGTERM"):
        train(config, CPU, save=save, stop=StopAfter(stop_batch))
    state = runs.resumable(path, "x")  # through torch.load(weights_only=True)
    assert state is not None and not state["complete"]
    resumed = train(config, CPU, resume=state, save=save)
    assert saved[-1]["complete"]
    assert _equal_states(resumed.model.state_dict(), whole.model.state_dict())
    assert _equal_rows(resumed.rows, whole.rows)
    assert runs.resumable(path, "another run") is None


def test_sigterm_writes_a_checkpoint_and_the_same_command_resumes(tmp_path: Path, reference_study: dict) -> None:
    args = ["train", str(reference_study["config"]), "--method", "pgd-at", "--quiet", *CPU_ONLY]
    out = tmp_path / "stopped"
    process = subprocess.Popen([str(SCRIPT), *args, "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("cluster-smoke/*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)  # during epoch 2 of 2
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted by SIGTERM: checkpoint written" in stderr
    [directory] = list(out.glob("cluster-smoke/*"))
    assert not (directory / runs.MANIFEST).exists()  # not a run until training is done
    state = runs.load_checkpoint(directory / runs.CHECKPOINT)
    assert not state["complete"]
    resumed = run_cli(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    expected = reference_study["folder"] / "reference" / "cluster-smoke" / directory.name / "train.parquet"
    assert (directory / "train.parquet").read_bytes() == expected.read_bytes()  # bitwise


def _results(study: Path) -> dict[str, str]:
    found = runs.fingerprint(study)
    assert {runs.read_manifest(p.parent)["status"] for p in study.glob(f"*/{runs.MANIFEST}")} == {"complete"}
    return found


KILL_POINTS = [("*/checkpoint.pt", 1), ("*/attack.parquet", 1), ("*/profile.parquet", 2)]


@pytest.mark.parametrize(("pattern", "count"), KILL_POINTS)
def test_sigkill_then_restart_gives_the_uninterrupted_results(pattern: str, count: int, tmp_path: Path,
                                                               reference_study: dict[str, str]) -> None:
    """SIGKILL as soon as the study has written `count` files matching `pattern` (in the first run's training,
    between its stages, before correlating); a restart ends with the uninterrupted study's results."""
    out = tmp_path / "killed"
    process = subprocess.Popen([str(SCRIPT), "study", str(reference_study["config"]), "--out", str(out),
                                "--quiet", *CPU_ONLY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list((out / "cluster-smoke").glob(pattern))) < count and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.kill()  # SIGKILL: no handler runs
    process.wait()
    assert not (out / "cluster-smoke" / "correlations.parquet").exists(), "killed after the study had finished"
    finished = run_cli("study", reference_study["config"], "--out", out, "--quiet", *CPU_ONLY)
    assert finished.returncode == 0, finished.stderr
    assert _results(out / "cluster-smoke") == reference_study["results"]


@pytest.fixture(scope="module")
def reference_study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("reference")
    config = CLUSTER_SMOKE
    reference = run_cli("study", config, "--out", folder / "reference", "--quiet", *CPU_ONLY)
    assert reference.returncode == 0, reference.stderr
    results = _results(folder / "reference" / "cluster-smoke")
    assert len(results) == 8
    return {"config": config, "results": results, "folder": folder}


def test_a_kill_between_the_last_checkpoint_and_its_table_is_repaired(tmp_path: Path) -> None:
    """Killed after the final checkpoint but before train.parquet caught up (and before run.json): the stage
    run again trains no further and writes the whole table."""
    from sparsity_latency.stages import train_stage

    config = with_changes(Config(), {**SMALL, "train.epochs": 2})
    directory = train_stage(config, tmp_path, CPU)
    table = directory / "train.parquet"
    whole = table.read_bytes()
    frame = pd.read_parquet(table)
    frame[frame["epoch"] == 1].to_parquet(table, index=False)  # the table of the epoch before
    (directory / runs.MANIFEST).unlink()
    train_stage(config, tmp_path, CPU)
    assert table.read_bytes() == whole and runs.read_manifest(directory)["stages"]["train"]
