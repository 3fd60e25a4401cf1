"""A real SLURM: a tiny study sent as one submitit job array, one job preempted (USR2) and requeued, one killed
mid-run, the study completed by running `study` again, with the results of a study that ran in one process.

Needs a running cluster (`scripts/slurm-single-node.sh start`, which `.ci/run` does). Skipped where there is
none, unless SPARSITY_LATENCY_SLURM=1 says one must be there (CI), which makes a missing cluster a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_cli
from sparsity_latency import runs
from test_resume import CLUSTER_SMOKE, CPU_ONLY, _results


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and any(s in result.stdout for s in ("idle", "mixed", "allocated"))


REQUIRED = os.environ.get("SPARSITY_LATENCY_SLURM") == "1"
pytestmark = pytest.mark.skipif(not REQUIRED and not _cluster_up(), reason="no SLURM cluster is running here")

def _states(config: Path, out: Path, *options: str) -> dict[str, dict]:
    result = run_cli("study", config, *options, "--out", out, "--status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["run_id"]: row for row in json.loads(result.stdout)}


def _until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _requeued(job_id: str) -> bool:
    """Whether submitit's log of the job says it was requeued after a checkpoint."""
    cache = Path(os.environ["SPARSITY_LATENCY_CACHE"])  # the test session's own (conftest)
    return any("Requeued job" in path.read_text(errors="replace") for path in
               (cache / "submitit").glob(f"*/{job_id}_*_log.*"))


def test_job_array_survives_a_preempted_and_a_killed_job(tmp_path: Path) -> None:
    """Run 0's job is killed (SIGKILL): `study` resubmits it. Run 1's job gets USR2, what SLURM sends before a
    time limit or preemption: training checkpoints, submitit requeues the job and the requeued job resumes."""
    assert _cluster_up(), "SPARSITY_LATENCY_SLURM=1 but no SLURM cluster answers (scripts/slurm-single-node.sh)"
    config, longer = CLUSTER_SMOKE, ("--set", "train.epochs=10")  # still training when the signals come
    reference = run_cli("study", config, *longer, "--out", tmp_path / "inline", "--quiet", *CPU_ONLY)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "slurm"
    submitted = run_cli("study", config, *longer, "--out", out, "--executor", "slurm", "--quiet", *CPU_ONLY)
    assert submitted.returncode == 0, submitted.stderr
    assert "as a SLURM job array" in submitted.stdout
    jobs = json.loads((out / "cluster-smoke" / "jobs.json").read_text())
    assert len(jobs) == 2 and len({job["job_id"].split("_")[0] for job in jobs.values()}) == 1  # one array
    killed, preempted = sorted(jobs)
    for run in (killed, preempted):
        _until(lambda run=run: (out / "cluster-smoke" / run / runs.CHECKPOINT).is_file(), 240, f"{run} to train")
    subprocess.run(["scancel", "--signal=USR2", jobs[preempted]["job_id"]], check=True, timeout=30)
    subprocess.run(["scancel", "--signal=KILL", "--full", jobs[killed]["job_id"]], check=True, timeout=30)
    _until(lambda: _states(config, out, *longer)[killed]["state"] == "failed", 120, f"{killed} to be seen failed")
    assert _states(config, out, *longer)[killed]["detail"] in ("CANCELLED", "FAILED")
    _until(lambda: _states(config, out, *longer)[preempted]["state"] == "done", 240, f"{preempted} to finish")
    assert _requeued(jobs[preempted]["job_id"])
    finished = run_cli("study", config, *longer, "--out", out, "--executor", "slurm", "--wait", "--quiet",
                       *CPU_ONLY)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (out / "cluster-smoke" / "correlations.parquet").is_file()
    again = json.loads((out / "cluster-smoke" / "jobs.json").read_text())
    assert again[killed]["job_id"] != jobs[killed]["job_id"]  # resubmitted
    assert again[preempted]["job_id"] == jobs[preempted]["job_id"]  # requeued by submitit, not resubmitted
    assert {row["state"] for row in _states(config, out, *longer).values()} == {"done"}
    assert _results(out / "cluster-smoke") == _results(tmp_path / "inline" / "cluster-smoke")
    assert not list(out.rglob("*.pkl"))  # submitit's pickles stay out of the results tree
