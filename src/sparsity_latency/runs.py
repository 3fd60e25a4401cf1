"""The run store: run ids, run directories, manifests (run.json), atomic files, checkpoints.

    <out>/<study>/<run_id>/run.json, checkpoint.pt, train.parquet, attack.parquet, profile.parquet

A run id is `<method>-s<seed>-<hash>`, the hash taken over everything that defines the trained model
(seed, data, model, train). Each stage records in run.json the settings it ran with; a stage counts
as complete only while those settings are unchanged. Every file is written to a temporary name in
the same folder and renamed into place, so a killed process never leaves half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow
import pyarrow.parquet
import torch

from sparsity_latency.config import METHOD_SETTINGS, STANDARD, Config, config_from_dict, config_to_dict, with_changes
from sparsity_latency.errors import InputError
from sparsity_latency.schema import SCHEMA_VERSION, TIMING_COLUMNS, check_arrow_schema, check_table, to_table

STAGES = ("train", "attack", "profile")
MANIFEST = "run.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
IDENTITY_SECTIONS = ("seed", "data", "model", "train")
READ_THREADS = 4  # parquet reads release the GIL; a few threads hide file-system latency
MANIFEST_KEYS = {"run_id": str, "pair_key": str, "method": str, "seed": int, "config": dict, "stages": dict,
                 "status": str}


def _digest(value: Any, length: int = 10) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_identity(config: Config) -> dict:
    """The part of the config that defines a trained model: training settings the method does not read are left out."""
    plain = config_to_dict(config)
    identity = {key: plain[key] for key in IDENTITY_SECTIONS}
    unread = set().union(*METHOD_SETTINGS.values()) - set(METHOD_SETTINGS[config.train.method])
    identity["train"] = {k: v for k, v in identity["train"].items() if k not in unread}
    return identity


def run_id(config: Config) -> str:
    """Readable prefix plus a short hash of the run's identity; stable for a config."""
    return f"{config.train.method}-s{config.seed}-{_digest(run_identity(config))}"


def pair_key(config: Config) -> str:
    """The identity of the standard run trained like this one (same seed, data, model, shared training settings):
    how an adversarial run finds its standard run."""
    return _digest(run_identity(with_changes(config, {"train.method": STANDARD})))


def study_dir(out: str | Path, config: Config) -> Path:
    return Path(out) / config.study.name


def run_dir(out: str | Path, config: Config) -> Path:
    return study_dir(out, config) / run_id(config)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary path)`, then rename into `path`; nothing is left behind on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n"))


def write_table(path: Path, rows: list[dict], table: str) -> pd.DataFrame:
    """Write rows as the parquet table `table` (columns and types from `schema`), atomically."""
    frame = to_table(rows, table)
    check_table(frame, table, str(path))
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def read_table(path: Path, table: str) -> pd.DataFrame:
    """Read and schema-check a parquet table; InputError if it is missing, corrupt or of another schema."""
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise InputError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    check_table(frame, table, str(path))
    return frame


def read_columns(paths: list[Path], table: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of many files of one table, concatenated: each file's schema checked as in `read_table`,
    files read in parallel threads (what `correlate` does over a study of many runs)."""
    def read(path: Path) -> pyarrow.Table:
        if not path.is_file():
            raise InputError(f"missing file: {path}")
        try:
            file = pyarrow.parquet.ParquetFile(path)
            check_arrow_schema(file.schema_arrow, table, str(path))
            return file.read(columns=columns)
        except (OSError, ValueError, pyarrow.ArrowException) as exc:
            raise InputError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        tables = list(pool.map(read, paths))
    return pyarrow.concat_tables(tables, promote_options="permissive").to_pandas() if tables else pd.DataFrame(
        columns=columns)


def save_checkpoint(path: Path, state: dict) -> None:
    """A training state (`training.train`'s: weights, optimizer, random generators, rows so far), atomically;
    it holds only tensors and plain values, so it loads with `weights_only=True`."""
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def resumable(path: Path, run: str) -> dict | None:
    """The training state in `path` if it is a checkpoint of run `run` in the current format, else None (train
    from the start: no checkpoint yet, one of another run or format, or an unreadable one)."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
    except InputError:
        return None
    from sparsity_latency.training import STATE_FORMAT

    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("run_id") != run:
        return None
    return state


_held: dict[Path, tuple[int, int]] = {}  # run directory → (lock file descriptor, depth), in this process


class RunBusyError(InputError):
    """Another process is running this run (it holds the run's lock)."""


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the run's lock (`<run>/.lock`, an flock: released when the process ends, however it ends) while
    its stages run, so that two processes never write the same run's files. Reentrant within a process;
    RunBusyError if another process holds it."""
    key = directory.resolve()
    if key in _held:
        handle, depth = _held[key]
        _held[key] = (handle, depth + 1)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        handle = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise RunBusyError(f"run {directory.name} is being run by another process (its lock {directory / LOCK} "
                          f"is held)") from None
        _held[key] = (handle, 1)
    try:
        yield
    finally:
        handle, depth = _held.pop(key)
        if depth > 1:
            _held[key] = (handle, depth - 1)
        else:
            os.close(handle)


def is_running(directory: Path) -> bool:
    """Whether some process holds the run's lock (this process's own locks excepted)."""
    if directory.resolve() in _held or not (directory / LOCK).is_file():
        return False
    handle = os.open(directory / LOCK, os.O_RDWR)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"missing checkpoint: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise InputError(f"{path}: corrupt checkpoint ({type(exc).__name__})") from None


def _git_sha() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def new_manifest(config: Config) -> dict:
    """run.json of a run that has not run a stage yet."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(config),
        "pair_key": pair_key(config),
        "method": config.train.method,
        "seed": config.seed,
        "config": config_to_dict(config),
        "status": "incomplete",
        "stages": {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "git_sha": _git_sha(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "snntorch": _version("snntorch"), "tonic": _version("tonic"), "numba": _version("numba"),
                     "sparsity_latency": _version("sparsity-latency")},
        "command": sys.argv,
    }


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise InputError(f"not a run directory (no {MANIFEST}): {directory}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: corrupt run manifest") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        age = "an older" if version < SCHEMA_VERSION else "a newer"
        raise InputError(f"{path}: results of {age} schema (version {version}; this version of sparsity-latency "
                         f"reads {SCHEMA_VERSION}): run the study again into a new --out folder")
    if version != SCHEMA_VERSION:
        raise InputError(f"{path}: unknown run manifest schema (expected version {SCHEMA_VERSION})")
    for key, kind in MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise InputError(f"{path}: wrong schema: '{key}' missing or not a {kind.__name__}")
    return manifest


def manifest_config(manifest: dict) -> Config:
    return config_from_dict(manifest["config"])


def stage_settings(config: Config) -> list[tuple[str, dict]]:
    """Each stage with the settings run.json records for it: what makes a finished stage count as complete."""
    return [("train", run_identity(config)), ("attack", config_to_dict(config.attack)),
            ("profile", config_to_dict(config.profile))]


def stage_complete(directory: Path, stage: str, settings: dict) -> bool:
    """True if run.json says `stage` finished with exactly these settings."""
    try:
        manifest = read_manifest(directory)
    except InputError:
        return False
    record = manifest["stages"].get(stage)
    return bool(record) and record.get("settings") == settings and (directory / f"{stage}.parquet").is_file()


def mark_stage(directory: Path, stage: str, settings: dict, **facts: Any) -> dict:
    """Record a finished stage (and its settings) in run.json; the run is complete once all stages are.

    run.json is read again here, so that a stage that finished meanwhile in another process is kept.
    """
    manifest = read_manifest(directory)
    manifest["stages"][stage] = {"settings": settings, "finished": datetime.now(UTC).isoformat(
        timespec="seconds"), **facts}
    manifest["status"] = "complete" if all(s in manifest["stages"] for s in STAGES) else "incomplete"
    write_json(directory / MANIFEST, manifest)
    return manifest


def find_run(ref: str | Path, out: str | Path) -> Path:
    """A run directory from a path, or from a run id searched under `out/<study>/`."""
    path = Path(ref)
    if (path / MANIFEST).is_file():
        return path
    matches = sorted(Path(out).glob(f"*/{ref}/{MANIFEST}"))
    if len(matches) == 1:
        return matches[0].parent
    if len(matches) > 1:
        raise InputError(f"run id '{ref}' is ambiguous under {out}: give the run directory")
    raise InputError(f"no run found at '{ref}' (nor a run of that id under {out}/)")


def complete_runs(results: Path) -> list[Path]:
    """Run directories under a study directory whose run.json says complete."""
    if not results.is_dir():
        raise InputError(f"results folder not found: {results}")
    runs = []
    for manifest_path in sorted(results.glob(f"*/{MANIFEST}")):
        if read_manifest(manifest_path.parent).get("status") == "complete":
            runs.append(manifest_path.parent)
    if not runs:
        raise InputError(f"no complete runs in {results}")
    return runs


def fingerprint(study: Path) -> dict[str, str]:
    """What a study's runs computed, as digests (run/table → sha256), for checking reproducibility: the train and
    attack tables byte for byte, the trained weights, and the profile table without its wall-clock columns
    (`schema.TIMING_COLUMNS`: measurements of the machine, not results of the config)."""
    digests = {}
    for directory in sorted(p.parent for p in study.glob(f"*/{MANIFEST}")):
        for table in ("train", "attack"):
            path = directory / f"{table}.parquet"
            digests[f"{directory.name}/{table}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        weights = load_checkpoint(directory / CHECKPOINT)["model"]
        digests[f"{directory.name}/weights"] = hashlib.sha256(b"".join(
            name.encode() + tensor.cpu().numpy().tobytes() for name, tensor in weights.items())).hexdigest()
        profile = read_table(directory / "profile.parquet", "profile").drop(columns=list(TIMING_COLUMNS))
        digests[f"{directory.name}/profile"] = hashlib.sha256(profile.to_json().encode()).hexdigest()
    return digests
