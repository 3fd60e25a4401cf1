"""Bad input to every command, through the console script: one `error:` line on stderr, exit code 2 (1 for a run
that failed), no traceback, and the results that were there before left exactly as they were."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_TOML, run_cli
from dataset_files import write_nmnist_bin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAILED_RUN = 1  # exit code of a run that failed (not bad input)


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under `root` (its path relative to root → sha256), run locks left out."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != ".lock"}


def stray_temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def other_model_checkpoint(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoint.pt of a tiny run whose network has other channels than the tiny study's."""
    out = tmp_path_factory.mktemp("other-model")
    result = run_cli("train", tiny_config, "--set", "model.channels=[2, 4]", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    [checkpoint] = out.glob("tiny/*/checkpoint.pt")
    return checkpoint


class Env:
    """What a case builds its bad input with; everything lives under the test's tmp_path."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path

    @functools.cached_property
    def study(self) -> Path:
        """A private copy of the finished tiny study, at tmp/tiny."""
        return self.request.getfixturevalue("study_copy")

    @property
    def results(self) -> Path:
        """The results root (--out) holding the study copy."""
        return self.study.parent

    @property
    def config(self) -> Path:
        return self.request.getfixturevalue("tiny_config")

    def run(self, index: int = 0) -> Path:
        return sorted(p.parent for p in self.study.glob("*/run.json"))[index]

    def toml(self, old: str, new: str) -> Path:
        """The tiny config with `old` replaced by `new` (which must be there)."""
        assert old in TINY_TOML
        path = self.tmp / "bad.toml"
        path.write_text(TINY_TOML.replace(old, new, 1))
        return path

    def edit_table(self, path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
        change(pd.read_parquet(path)).to_parquet(path, index=False)
        return path

    def edit_manifest(self, run: Path, **changes: object) -> Path:
        path = run / "run.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
        return run

    def unwritable(self) -> Path:
        """A results folder nothing can be written into: chmod 0o500, or (as root, whom chmod does not stop) a
        path under a regular file."""
        if os.geteuid() != 0:
            folder = self.tmp / "full"
            folder.mkdir()
            folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
            self.request.addfinalizer(lambda: folder.chmod(stat.S_IRWXU))
            return folder
        blocker = self.tmp / "full"
        blocker.write_text("a regular file, not a folder\n")
        return blocker / "results"

    def dataset_of_one_sample(self) -> Path:
        """A data.root with one N-Caltech101 recording (a dataset without a split: test_fraction is held out)."""
        rng = np.random.default_rng(0)
        n = 64
        write_nmnist_bin(self.tmp / "datasets" / "NCALTECH101" / "Caltech101" / "accordion" / "image_0001.bin",
                         rng.integers(0, 30, n), rng.integers(0, 30, n), np.sort(rng.integers(0, 100_000, n)),
                         rng.integers(0, 2, n))
        return self.tmp / "datasets"


def _corrupt_checkpoint(env: Env) -> Path:
    run = env.run()
    (run / "checkpoint.pt").write_bytes(b"\x80\x02garbage, not a torch file\x00" * 64)
    return run


def _corrupt_manifest(env: Env) -> Path:
    run = env.run()
    (run / "run.json").write_text('{"run_id": "standard-s0-')
    return run


def _other_model(env: Env) -> Path:
    run = env.run()
    shutil.copyfile(env.request.getfixturevalue("other_model_checkpoint"), run / "checkpoint.pt")
    return run


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _study_with(env: Env, change: Callable[[Env], object]) -> Path:
    change(env)
    return env.study


def _jobs_file(env: Env, text: str) -> Path:
    (env.study / "jobs.json").write_text(text)
    return env.config


def _empty_split(env: Env, test_fraction: float) -> list[str | Path]:
    root = env.dataset_of_one_sample()
    return ["train", env.config, "--set", "data.name=ncaltech101", "--set", f"data.root='{root}'", "--set",
            "data.train_samples=0", "--set", "data.test_samples=0", "--set", f"data.test_fraction={test_fraction}",
            "--out", env.results]


@dataclass(frozen=True)
class Case:
    args: Callable[[Env], list[str | Path]]  # builds the bad input, returns the command line
    expect: tuple[str, ...]  # words the error line must hold
    code: int = 2


def train_cmd(*options: str) -> Callable[[Env], list[str | Path]]:
    return lambda env: ["train", env.config, *options, "--out", env.results]


def study_cmd(*options: str) -> Callable[[Env], list[str | Path]]:
    return lambda env: ["study", env.config, *options, "--out", env.results]


def train_toml(old: str, new: str) -> Callable[[Env], list[str | Path]]:
    return lambda env: ["train", env.toml(old, new), "--out", env.results]


def study_toml(old: str, new: str) -> Callable[[Env], list[str | Path]]:
    return lambda env: ["study", env.toml(old, new), "--out", env.results]


CASES = [
    # --- values out of range -------------------------------------------------------------------------------
    pytest.param(Case(train_cmd("--set", "train.epochs=-1"), ("'train.epochs' must be > 0",)),
                 id="train-negative-epochs"),
    pytest.param(Case(train_cmd("--set", "train.eps=-0.01"), ("'train.eps' must be >= 0",)), id="train-negative-eps"),
    pytest.param(Case(train_toml("batch_size = 16", "batch_size = 0"), ("'train.batch_size' must be > 0",)),
                 id="train-toml-batch-size-0"),
    pytest.param(Case(study_cmd("--set", "data.time_steps=0"), ("'data.time_steps' must be > 0",)),
                 id="study-time-steps-0"),
    pytest.param(Case(train_toml("membrane_bits = 1.58", "membrane_bits = 12"), ("model.membrane_bits",)),
                 id="train-membrane-bits-12"),
    pytest.param(Case(study_cmd("--set", "slurm.time_min=0"), ("'slurm.time_min' must be > 0",)),
                 id="study-slurm-time-min-0"),
    pytest.param(Case(study_cmd("--set", "slurm.cpus_per_task=-1"), ("'slurm.cpus_per_task' must be > 0",)),
                 id="study-slurm-cpus-negative"),
    pytest.param(Case(lambda env: ["attack", env.run(), "--eps", "1.5"], ("attack.eps", "<= 1")),
                 id="attack-eps-above-1"),
    # --- values of the wrong type --------------------------------------------------------------------------
    pytest.param(Case(train_toml("epochs = 1", 'epochs = "three"'), ("'train.epochs' must be an integer",)),
                 id="train-toml-epochs-string"),
    pytest.param(Case(train_cmd("--set", "train.lr=[0.1]"), ("'train.lr' must be a number",)), id="train-lr-list"),
    pytest.param(Case(train_cmd("--set", "train.batch_size=true"), ("'train.batch_size' must be an integer",)),
                 id="train-batch-size-bool"),
    pytest.param(Case(study_cmd("--set", "slurm.mem_gb='lots'"), ("'slurm.mem_gb' must be a number",)),
                 id="study-slurm-mem-string"),
    # --- unknown keys, with the suggestion of a close one --------------------------------------------------
    pytest.param(Case(train_cmd("--set", "train.epocs=3"),
                      ("unknown config key 'train.epocs'", "did you mean 'train.epochs'?")), id="train-key-epocs"),
    pytest.param(Case(study_toml("[train]", "[trian]"), ("unknown config key 'trian'", "did you mean 'train'?")),
                 id="study-toml-section-trian"),
    pytest.param(Case(lambda env: ["attack", env.run(), "--set", "attack.epss=[0.1]"],
                      ("unknown config key 'attack.epss'", "did you mean 'attack.eps'?")), id="attack-key-epss"),
    # --- unknown names -------------------------------------------------------------------------------------
    pytest.param(Case(train_cmd("--method", "trades2"), ("unknown training method 'trades2'",)),
                 id="train-unknown-method"),
    pytest.param(Case(study_cmd("--set", "data.name=mnist-dvs"), ("unknown dataset 'mnist-dvs'",)),
                 id="study-unknown-dataset"),
    pytest.param(Case(lambda env: ["attack", env.run(), "--attack", "fgsm,cw"], ("unknown attack 'cw'",)),
                 id="attack-unknown-attack"),
    pytest.param(Case(train_cmd("--set", "model.name=resnet50"), ("unknown model 'resnet50'",)),
                 id="train-unknown-model"),
    pytest.param(Case(lambda env: ["profile", env.run(), "--backend", "dense,nonsense"],
                      ("unknown backend 'nonsense'",)), id="profile-unknown-backend"),
    # --- malformed and missing files -----------------------------------------------------------------------
    pytest.param(Case(lambda env: ["study", env.toml("[study]", "[study"), "--out", env.results],
                      ("malformed TOML",)), id="study-malformed-toml"),
    pytest.param(Case(lambda env: ["train", env.tmp / "absent.toml", "--out", env.results],
                      ("config file not found",)), id="train-missing-config"),
    pytest.param(Case(lambda env: ["attack", env.study / "no-such-run", "--out", env.results], ("no run found",)),
                 id="attack-missing-run-directory"),
    pytest.param(Case(lambda env: ["profile", _corrupt_manifest(env)], ("run.json", "corrupt run manifest")),
                 id="profile-corrupt-run-json"),
    pytest.param(Case(lambda env: ["attack", env.edit_manifest(env.run(), schema_version=3)],
                      ("older schema", "version 3")), id="attack-run-json-schema-3"),
    pytest.param(Case(lambda env: ["correlate", _study_with(env, lambda e: (e.run(1) / "profile.parquet").unlink())],
                      ("missing file", "profile.parquet")), id="correlate-missing-profile-table"),
    pytest.param(Case(lambda env: ["correlate", _study_with(env, lambda e: _truncate(e.run(3) / "attack.parquet"))],
                      ("not a readable parquet file", "attack.parquet")), id="correlate-truncated-attack-table"),
    pytest.param(Case(lambda env: ["report", _study_with(env, lambda e: _truncate(e.study / "correlations.parquet"))],
                      ("not a readable parquet file", "correlations.parquet")), id="report-truncated-correlations"),
    pytest.param(Case(lambda env: ["correlate", _study_with(env, lambda e: e.edit_table(
        e.run(0) / "profile.parquet", lambda f: f.drop(columns=["synops"])))],
                      ("wrong schema", "missing column 'synops'")), id="correlate-profile-column-dropped"),
    pytest.param(Case(lambda env: ["report", _study_with(env, lambda e: e.edit_table(
        e.study / "pairs.parquet", lambda f: f.assign(matched=f["matched"].astype(str))))],
                      ("wrong schema", "column 'matched'")), id="report-pairs-matched-as-string"),
    # --- checkpoints ---------------------------------------------------------------------------------------
    pytest.param(Case(lambda env: ["attack", _corrupt_checkpoint(env)], ("corrupt checkpoint",)),
                 id="attack-garbage-checkpoint"),
    pytest.param(Case(lambda env: ["profile", _other_model(env)], ("weights do not fit",)),
                 id="profile-checkpoint-of-other-model"),
    # --- runs that fail, and data that leaves no samples ---------------------------------------------------
    pytest.param(Case(train_cmd("--set", "train.lr=1e36"), ("run failed", "training loss became"), FAILED_RUN),
                 id="train-nan-loss"),
    # one N-Caltech101 recording: test_fraction 0.2 holds none of it out (no test samples), 0.9 all (no train samples)
    pytest.param(Case(lambda env: _empty_split(env, 0.2), ("sample",)), id="train-empty-test-split"),
    pytest.param(Case(lambda env: _empty_split(env, 0.9), ("sample",)), id="train-empty-train-split"),
    # --- nothing can be written ----------------------------------------------------------------------------
    pytest.param(Case(lambda env: ["train", env.config, "--out", env.unwritable()], ("cannot write",)),
                 id="train-unwritable-out"),
    pytest.param(Case(lambda env: ["correlate", env.study, "--out", env.unwritable()], ("cannot write",)),
                 id="correlate-unwritable-out"),
    pytest.param(Case(lambda env: ["data", "simulate", env.unwritable(), "--set", "data.train_samples=2",
                                   "--set", "data.test_samples=1"], ("cannot write",)),
                 id="data-simulate-unwritable-out"),
    # --- bad command-line options --------------------------------------------------------------------------
    pytest.param(Case(study_cmd("--executor", "local", "--jobs", "0"), ("--jobs must be at least 1",)),
                 id="study-jobs-0"),
    pytest.param(Case(study_cmd("--executor", "nonsense"), ("unknown executor 'nonsense'",)), id="study-executor"),
    pytest.param(Case(train_cmd("--device", "nonsense"), ("unknown device 'nonsense'",)), id="train-device"),
    pytest.param(Case(lambda env: ["study", _jobs_file(env, '{"standard-s0": '), "--out", env.results, "--status"],
                      ("jobs.json", "corrupt jobs file")), id="study-status-corrupt-jobs-json"),
    # --- data commands -------------------------------------------------------------------------------------
    pytest.param(Case(lambda env: ["data", "inspect", env.tmp / "absent"], ("no such folder",)),
                 id="data-inspect-missing-folder"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_keeps_earlier_results(case: Case, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    env = Env(request, tmp_path)
    args = case.args(env)
    before = fingerprint(tmp_path)
    result = run_cli(*args, cwd=tmp_path)
    after = fingerprint(tmp_path)

    shown = f"command: {' '.join(map(str, args))}\nexit code {result.returncode}\nstderr: {result.stderr!r}"
    lines = result.stderr.splitlines()
    line = lines[0] if lines else ""
    problems = []
    if result.returncode != case.code:
        problems.append(f"exit code {result.returncode}, expected {case.code}")
    if len(lines) != 1 or not lines[0].strip():
        problems.append(f"stderr has {len(lines)} lines, expected one")
    if not line.startswith("error:"):
        problems.append("stderr does not start with 'error:'")
    if "Traceback" in result.stdout + result.stderr:
        problems.append("a traceback was printed")
    problems += [f"'{words}' not in the error line" for words in case.expect if words not in line]
    lost = sorted(path for path in before if path not in after)
    changed = sorted(path for path in before if path in after and after[path] != before[path])
    new = sorted(path for path in after if path not in before)
    if lost or changed or new:
        problems.append(f"results changed: lost {lost}, altered {changed}, new {new}")
    if stray_temporaries(tmp_path):
        problems.append(f"temporary files left: {stray_temporaries(tmp_path)}")
    assert not problems, "\n".join([*problems, shown])
