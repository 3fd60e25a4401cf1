"""Where a study's runs execute, and what state each run is in.

- `inline` (default): this process, one run after another.
- `local`: submitit's local executor, each run a process of its own, at most `jobs` at once; waits for them.
- `debug`: submitit's debug executor: in this process, with a post-mortem debugger on a failure.
- `slurm`: submitit's SLURM executor: the runs not complete go out as one job array with the resources of the
  config's `[slurm]` section; `study` returns at once (or waits, with `wait`). Run `study` again to see which
  finished, resubmit the failed or missing ones, and correlate once all are complete.

Each run's job (`RunJob`) runs its pipeline holding the run's lock and resumes from the run's checkpoints. On
SLURM, submitit sends USR2 before the time limit and on preemption: training writes its checkpoint, submitit
requeues the job (`RunJob.checkpoint`), and the requeued job resumes there. The study folder keeps
`jobs.json` (run id → executor and job id); submitit's own files (pickles) are kept outside the results tree
(`jobs_folder`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparsity_latency import runs
from sparsity_latency.config import Config, config_from_dict, config_to_dict
from sparsity_latency.data.cache import cache_dir
from sparsity_latency.errors import InputError
from sparsity_latency.interrupts import stop_on_signals

EXECUTORS = ("inline", "local", "debug", "slurm")
JOBS_FILE = "jobs.json"
SUBMITIT_FOLDER = "submitit"
POLL_SECONDS = 0.5
SACCT_GRACE_SECONDS = 120  # how long a just-submitted job may be missing from sacct
STATES = ("pending", "running", "done", "failed", "not submitted")
# sacct states of a job that will still run, or runs; everything else has ended
SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "CONFIGURING"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


class RunJob:
    """One run's pipeline as a picklable submitit job."""

    def __init__(self, config: Config, out: str | Path, device: str) -> None:
        self.config = config_to_dict(config)
        self.out = str(out)
        self.device = device

    def __call__(self) -> tuple[int, int]:
        from sparsity_latency.stages import resolve_device
        from sparsity_latency.study import run_pipeline

        with stop_on_signals() as stop:
            return run_pipeline(config_from_dict(self.config), self.out, resolve_device(self.device), stop=stop)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook at preemption or near the time limit: the same job again (it resumes from disk)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@dataclass
class RunState:
    run_id: str
    state: str  # one of STATES
    job_id: str | None
    detail: str  # the scheduler's own word, or why the run failed


def jobs_folder(config: Config, out: str | Path) -> Path:
    """submitit's folder for a study (each job's pickled call and result, stdout, stderr): outside the results
    tree, which holds no pickle, under the cache folder (`data.cache_dir`, $SPARSITY_LATENCY_CACHE or
    ~/.cache/sparsity-latency), one per study folder. On a cluster it must be on a file system the nodes share."""
    study = runs.study_dir(out, config).resolve()
    digest = hashlib.sha256(str(study).encode()).hexdigest()[:10]
    return cache_dir(config.data) / SUBMITIT_FOLDER / f"{config.study.name}-{digest}"


def _executor(kind: str, folder: Path, config: Config) -> Any:
    try:
        import submitit
    except ImportError:
        raise InputError(f"--executor {kind} needs submitit (pip install submitit)") from None
    if kind == "local":
        return submitit.LocalExecutor(folder)
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    executor = submitit.SlurmExecutor(folder)
    slurm = config.slurm
    options: dict[str, Any] = {"time": slurm.time_min, "cpus_per_task": slurm.cpus_per_task,
                               "mem": f"{int(slurm.mem_gb * 1024)}M", "array_parallelism": slurm.array_parallelism,
                               "job_name": f"sparsity-latency-{config.study.name}", "setup": list(slurm.setup)}
    if slurm.partition:
        options["partition"] = slurm.partition
    if slurm.gpus_per_node:
        options["gpus_per_node"] = slurm.gpus_per_node
    executor.update_parameters(**options)
    return executor


def read_jobs(study: Path) -> dict[str, dict]:
    path = study / JOBS_FILE
    if not path.is_file():
        return {}
    try:
        jobs = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: corrupt jobs file (remove it to forget the submitted jobs)") from None
    if not isinstance(jobs, dict) or not all(isinstance(v, dict) for v in jobs.values()):
        raise InputError(f"{path}: wrong schema: expected run id → job record")
    return jobs


def _record(study: Path, kind: str, submitted: dict[str, str]) -> None:
    jobs = read_jobs(study)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for run_id, job_id in submitted.items():
        jobs[run_id] = {"executor": kind, "job_id": job_id, "submitted": now}
    runs.write_json(study / JOBS_FILE, jobs)


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's state of each job (array tasks as <array>_<task>); a job sacct does not know is left out."""
    import subprocess

    if not job_ids:
        return {}
    try:
        result = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot ask SLURM for the jobs' states (sacct: {exc})") from None
    if result.returncode != 0:
        raise InputError(f"sacct failed: {result.stderr.strip().splitlines()[-1] if result.stderr else ''}")
    states = {}
    for line in result.stdout.splitlines():
        job, _, state = line.partition("|")
        if job:
            states[job.strip()] = state.split()[0] if state.split() else "UNKNOWN"
    return states


def _slurm_word(sacct: dict[str, str], job_id: str, submitted: str) -> str:
    """A job's sacct state. A queued array task can still be listed as its array (`123_[0-3]`) or not at all for
    a moment after submission: PENDING then, for up to `SACCT_GRACE_SECONDS`; later a job sacct does not know
    is lost (UNKNOWN, counted as failed)."""
    if job_id in sacct:
        return sacct[job_id]
    array, _, _ = job_id.partition("_")
    for listed, word in sacct.items():
        if listed.startswith(f"{array}_[") or listed == array:
            return word
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(submitted)).total_seconds()
    except ValueError:
        age = math.inf
    return "PENDING" if age < SACCT_GRACE_SECONDS else "UNKNOWN"


def run_states(grid: list[Config], out: str | Path) -> list[RunState]:
    """Each run's state: done (run.json complete), running (its lock is held, or SLURM runs it), pending
    (queued), failed (its job ended without completing it), or not submitted."""
    if not grid:
        return []
    study = runs.study_dir(out, grid[0])
    jobs = read_jobs(study)
    slurm_ids = [jobs[r]["job_id"] for r in (runs.run_id(c) for c in grid)
                 if r in jobs and jobs[r].get("executor") == "slurm"]
    sacct = _slurm_states(slurm_ids)
    states = []
    for config in grid:
        run_id = runs.run_id(config)
        directory = study / run_id
        job = jobs.get(run_id, {})
        job_id = job.get("job_id")
        if all(runs.stage_complete(directory, stage, settings) for stage, settings in runs.stage_settings(config)):
            states.append(RunState(run_id, "done", job_id, ""))
        elif runs.is_running(directory):
            states.append(RunState(run_id, "running", job_id, "lock held"))
        elif job.get("executor") == "slurm":
            word = _slurm_word(sacct, str(job_id), job.get("submitted", ""))
            state = "pending" if word in SLURM_WAITING else "running" if word in SLURM_RUNNING else "failed"
            states.append(RunState(run_id, state, job_id, word))
        elif job:
            states.append(RunState(run_id, "failed", job_id, f"its {job.get('executor')} job ended"))
        else:
            states.append(RunState(run_id, "not submitted", None, ""))
    return states


def execute(kind: str, grid: list[Config], out: str | Path, device: str, jobs: int = 1,
            on_run: Any = None) -> dict[str, str]:
    """Run (local, debug) or submit (slurm) every run of `grid` through submitit; returns run id → failure
    message for the runs that failed (local, debug) — empty when all succeeded or were submitted."""
    if kind not in EXECUTORS or kind == "inline":
        raise InputError(f"unknown executor '{kind}' for submitit (known: local, debug, slurm)")
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    study = runs.study_dir(out, grid[0])
    executor = _executor(kind, jobs_folder(grid[0], out), grid[0])
    if kind == "slurm":
        with executor.batch():
            submitted = [(runs.run_id(c), executor.submit(RunJob(c, out, device))) for c in grid]
        _record(study, kind, {run_id: str(job.job_id) for run_id, job in submitted})
        return {}
    failures: dict[str, str] = {}
    waiting = list(grid)
    running: list[tuple[str, Any]] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            config = waiting.pop(0)
            job = executor.submit(RunJob(config, out, device))
            _record(study, kind, {runs.run_id(config): str(job.job_id)})
            running.append((runs.run_id(config), job))
        for run_id, job in [item for item in running if item[1].done()]:
            running.remove((run_id, job))
            error = job.exception()
            if error is not None:
                failures[run_id] = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            if on_run is not None:
                on_run(run_id, error is None)
        if running:
            time.sleep(POLL_SECONDS)
    return failures
