"""Executors and run states: submitit's local executor (parallel processes) and debug executor (in process)
through the real `study` command; `study --status` from the runs' manifests, locks and job records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli
from sparsity_latency import runs
from sparsity_latency.config import load_config
from sparsity_latency.executors import JOBS_FILE, run_states
from sparsity_latency.study import expand_grid
from test_resume import CLUSTER_SMOKE, CPU_ONLY, _results


def _status(config: Path, out: Path, *options: str) -> dict[str, dict]:
    result = run_cli("study", config, *options, "--out", out, "--status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["run_id"]: row for row in json.loads(result.stdout)}


def test_local_and_debug_executors_complete_the_study_and_status_follows(tmp_path: Path) -> None:
    config = CLUSTER_SMOKE
    out = tmp_path / "local"
    one_epoch = ("--set", "train.epochs=1", *CPU_ONLY)
    before = _status(config, out, *one_epoch)
    assert len(before) == 2 and {row["state"] for row in before.values()} == {"not submitted"}
    local = run_cli("study", config, *one_epoch, "--out", out, "--executor", "local", "--jobs", "2", "--quiet")
    assert local.returncode == 0, local.stderr
    assert "executor local" in local.stdout and (out / "cluster-smoke" / "correlations.parquet").is_file()
    after = _status(config, out, *one_epoch)
    assert {row["state"] for row in after.values()} == {"done"}
    jobs = json.loads((out / "cluster-smoke" / JOBS_FILE).read_text())
    assert set(jobs) == set(after) and all(job["executor"] == "local" for job in jobs.values())
    assert not list(out.rglob("*.pkl"))  # submitit's pickles stay out of the results tree
    debug = run_cli("study", config, *one_epoch, "--out", tmp_path / "debug", "--executor", "debug", "--quiet")
    assert debug.returncode == 0, debug.stderr
    assert _results(tmp_path / "debug" / "cluster-smoke") == _results(out / "cluster-smoke")
    again = run_cli("study", config, *one_epoch, "--out", out, "--executor", "local", "--quiet")  # nothing to run
    assert again.returncode == 0 and set(json.loads((out / "cluster-smoke" / JOBS_FILE).read_text())) == set(jobs)


def test_run_states_from_locks_and_job_records(tmp_path: Path) -> None:
    config = load_config(CLUSTER_SMOKE)
    grid = expand_grid(config)
    first, second = (runs.run_dir(tmp_path, c) for c in grid)
    first.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; h = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(h, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), str(first / runs.LOCK)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        record = {runs.run_id(grid[1]): {"executor": "local", "job_id": "1"}}
        runs.write_json(tmp_path / "cluster-smoke" / JOBS_FILE, record)
        states = {s.run_id: s.state for s in run_states(grid, tmp_path)}
        assert states == {runs.run_id(grid[0]): "running", runs.run_id(grid[1]): "failed"}
        busy = run_cli("train", CLUSTER_SMOKE, "--out", tmp_path, "--quiet")
        assert busy.returncode == 2 and "being run by another process" in busy.stderr
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while runs.is_running(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runs.is_running(first) and not second.exists()
