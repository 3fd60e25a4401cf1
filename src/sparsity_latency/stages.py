"""The pipeline's stages — train, attack, profile — each reading and writing one run directory.

These are the library functions behind the `train`, `attack` and `profile` commands and `study`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from sparsity_latency import runs
from sparsity_latency.config import AttackConfig, Config, ProfileConfig, config_to_dict
from sparsity_latency.data import FramedData, load_data
from sparsity_latency.errors import InputError
from sparsity_latency.evaluation import evaluate_attacks
from sparsity_latency.interrupts import NEVER, StopRequest
from sparsity_latency.latency.profile import profile_model
from sparsity_latency.masking import describe_check
from sparsity_latency.models import build_for
from sparsity_latency.models.layers import dynamics_of
from sparsity_latency.probes import CHECK
from sparsity_latency.training import train

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when a GPU is present, else the CPU."""
    if name not in DEVICES:
        raise InputError(f"unknown device '{name}' (known: {', '.join(DEVICES)})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


def _run_columns(manifest: dict) -> dict:
    return {"run_id": manifest["run_id"], "method": manifest["method"], "seed": manifest["seed"]}


def train_stage(config: Config, out: str | Path, device: torch.device,
                on_epoch: Callable[[int], None] | None = None, stop: StopRequest = NEVER) -> Path:
    """Train one run into `out/<study>/<run_id>/` (run.json, checkpoint.pt, train.parquet).

    checkpoint.pt and train.parquet are rewritten at every epoch boundary (and at a stop signal), and training
    resumes from a checkpoint of the same run. run.json is written only once training is done: until then the
    run is not a run (`find_run`, `correlate` pass it by), and an earlier record stays as it was."""
    directory = runs.run_dir(out, config)
    with runs.run_lock(directory):
        manifest = runs.new_manifest(config)
        manifest["neuron"] = {"kind": config.model.neuron, **dynamics_of(config.model).describe()}
        checkpoint = directory / runs.CHECKPOINT

        def write_rows(rows: list[dict]) -> None:
            runs.write_table(directory / "train.parquet", [{**_run_columns(manifest), **row} for row in rows], "train")

        def save(state: dict) -> None:
            runs.save_checkpoint(checkpoint, {**state, "run_id": manifest["run_id"]})
            write_rows(state["rows"])

        result = train(config, device, on_epoch, runs.resumable(checkpoint, manifest["run_id"]), save, stop)
        write_rows(result.rows)  # again: a kill between the last checkpoint and its table left the table behind
        runs.write_json(directory / runs.MANIFEST, manifest)
        runs.mark_stage(directory, "train", runs.run_identity(config), device=str(device))
    return directory


def load_trained(directory: Path, device: torch.device) -> tuple[dict, Config, FramedData, torch.nn.Module]:
    """run.json, config, data and trained model of a run whose train stage is complete."""
    manifest = runs.read_manifest(directory)
    if "train" not in manifest["stages"]:
        raise InputError(f"run {directory} has not finished training")
    config = runs.manifest_config(manifest)
    data = load_data(config.data, config.seed)
    model = build_for(config, data)
    checkpoint = runs.load_checkpoint(directory / runs.CHECKPOINT)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, IndexError, RuntimeError):
        raise InputError(f"{directory / runs.CHECKPOINT}: weights do not fit the run's model") from None
    return manifest, config, data, model.to(device).eval()


def attack_stage(directory: Path, device: torch.device, attack: AttackConfig | None = None) -> Path:
    """Evaluate robustness of a trained run with `attack` settings (default: those in its run.json)."""
    with runs.run_lock(directory):
        return _attack(directory, device, attack)


def _attack(directory: Path, device: torch.device, attack: AttackConfig | None) -> Path:
    manifest, config, data, model = load_trained(directory, device)
    attack = attack or config.attack
    rows = evaluate_attacks(model, data.test_x, data.test_y, attack, config.train.grad_tau, config.seed,
                            device, n_classes=data.n_classes, event_unit=1.0 / config.data.frame_clip)
    runs.write_table(directory / "attack.parquet", [{**_run_columns(manifest), **r} for r in rows], "attack")
    failed = [describe_check(row) for row in rows if row["layer"] == CHECK and not row["check_passed"]]
    runs.mark_stage(directory, "attack", config_to_dict(attack), device=str(device), masking_failures=failed)
    return directory


def profile_stage(directory: Path, device: torch.device, profile: ProfileConfig | None = None) -> Path:
    """Measure op counts, energy and wall-clock latency of a trained run."""
    with runs.run_lock(directory):
        return _profile(directory, device, profile)


def _profile(directory: Path, device: torch.device, profile: ProfileConfig | None) -> Path:
    manifest, config, data, model = load_trained(directory, device)
    profile = profile or config.profile
    rows = profile_model(model, data.test_x, data.test_y, profile, config.model.membrane_bits, device)
    runs.write_table(directory / "profile.parquet", [{**_run_columns(manifest), **r} for r in rows],
                     "profile")
    runs.mark_stage(directory, "profile", config_to_dict(profile), device=str(device))
    return directory


