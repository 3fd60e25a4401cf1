"""A study: the grid of runs (seeds × variants × methods) through every stage, then `correlate`.

Resumable: a stage whose output exists with the same settings is skipped, so a study that was
interrupted picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from sparsity_latency import runs
from sparsity_latency.analysis import Correlation, correlate
from sparsity_latency.config import Config, CorrelateConfig, check_study, config_to_dict, with_changes
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
    return grid


@dataclass
class StudyResult:
    directory: Path
    run_ids: list[str]
    stages_run: int
    stages_skipped: int
    correlation: Correlation


def run_study(config: Config, out: str | Path, device: torch.device,
              on_stage: StageCallback | None = None) -> StudyResult:
    """Run every stage of every run of the grid that is not complete, then correlate."""
    grid = expand_grid(config)
    for run_config in grid:
        check_study(run_config)
    run_ids = [runs.run_id(c) for c in grid]
    done = skipped = 0
    for run_config, run_id in zip(grid, run_ids, strict=True):
        directory = runs.run_dir(out, run_config)
        steps = (
            ("train", runs.run_identity(run_config), partial(train_stage, run_config, out, device)),
            ("attack", config_to_dict(run_config.attack),
             partial(attack_stage, directory, device, run_config.attack)),
            ("profile", config_to_dict(run_config.profile),
             partial(profile_stage, directory, device, run_config.profile)),
        )
        for stage, stage_settings, run_stage in steps:
            complete = runs.stage_complete(directory, stage, stage_settings)
            if complete:
                skipped += 1
            else:
                run_stage()
                done += 1
            if on_stage is not None:
                on_stage(run_id, stage, complete)
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
