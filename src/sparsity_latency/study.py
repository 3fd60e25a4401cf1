"""A study: the grid of runs (seeds × variants × methods) through every stage, then `correlate`.

Resumable: a stage whose output exists with the same settings is skipped, and training resumes from its last
checkpoint, so a study that was interrupted or killed picks up where it stopped. Where the runs execute is the
executor's business (`executors`): this process, submitit's local processes, its debug executor, or SLURM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from sparsity_latency import runs
from sparsity_latency.analysis import Correlation, correlate
from sparsity_latency.config import Config, CorrelateConfig, check_study, with_changes
from sparsity_latency.interrupts import NEVER, StopRequest
from sparsity_latency.stages import attack_stage, profile_stage, train_stage

# Called after each stage of each run: (run id, stage, whether it was skipped as already complete).
StageCallback = Callable[[str, str, bool], None]


def expand_grid(config: Config) -> list[Config]:
    """One config per run: for each seed, each variant, each method."""
    grid = []
    for seed in config.study.seeds:
        for variant in config.study.variants:
            for method in config.study.methods:
                grid.append(with_changes(config, {**variant, "seed": seed, "train.method": method}))
    for run_config in grid:
        check_study(run_config)
    return grid


@dataclass
class StudyResult:
    directory: Path
    run_ids: list[str]
    stages_run: int
    stages_skipped: int
    correlation: Correlation


def run_pipeline(config: Config, out: str | Path, device: torch.device, on_stage: StageCallback | None = None,
                 stop: StopRequest = NEVER) -> tuple[int, int]:
    """Every stage of one run that is not complete, holding the run's lock; (stages run, stages skipped).
    A stop signal ends training at a checkpoint, or the run between two stages."""
    directory = runs.run_dir(out, config)
    done = skipped = 0
    with runs.run_lock(directory):
        stages = {"train": partial(train_stage, config, out, device, stop=stop),
                  "attack": partial(attack_stage, directory, device, config.attack),
                  "profile": partial(profile_stage, directory, device, config.profile)}
        for stage, stage_settings in runs.stage_settings(config):
            run_stage = stages[stage]
            complete = runs.stage_complete(directory, stage, stage_settings)
            if complete:
                skipped += 1
            else:
                if stop.requested:
                    stop.stop(f"before {stage}")
                run_stage()
                done += 1
            if on_stage is not None:
                on_stage(runs.run_id(config), stage, complete)
    return done, skipped


def run_study(config: Config, out: str | Path, device: torch.device,
              on_stage: StageCallback | None = None, stop: StopRequest = NEVER) -> StudyResult:
    """Run every stage of every run of the grid that is not complete, in this process, then correlate."""
    grid = expand_grid(config)
    done = skipped = 0
    for run_config in grid:
        run_done, run_skipped = run_pipeline(run_config, out, device, on_stage, stop)
        done, skipped = done + run_done, skipped + run_skipped
    return finish_study(config, out, grid, done, skipped)


def finish_study(config: Config, out: str | Path, grid: list[Config], done: int, skipped: int) -> StudyResult:
    """Correlate a study whose runs are all complete."""
    run_ids = [runs.run_id(c) for c in grid]
    directory = runs.study_dir(out, config)
    correlation = correlate_into(directory, settings=config.correlate, run_ids=run_ids)
    return StudyResult(directory, run_ids, done, skipped, correlation)


def correlate_into(results: Path, out: Path | None = None, settings: CorrelateConfig | None = None,
                   run_ids: list[str] | None = None) -> Correlation:
    """Correlate a study directory and write its three tables (into `out`, default the study folder):
    correlations.parquet, observations.parquet (the points) and pairs.parquet (the pairing)."""
    result = correlate(results, settings, run_ids)
    folder = Path(out or results)
    for table in ("observations", "pairs", "correlations"):
        frame = runs.write_table(folder / f"{table}.parquet", getattr(result, table).to_dict("records"), table)
        setattr(result, table, frame)
    return result
