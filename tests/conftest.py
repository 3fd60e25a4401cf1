"""Shared fixtures: a tiny study config, the real console script, one tiny study run once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("sparsity-latency")

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s workers, one per core: one thread each, for it
    os.environ["OMP_NUM_THREADS"] = "1"  # and the commands it starts (set before torch is imported)

TINY_TOML = """
[study]
name = "tiny"
seeds = [0, 1, 2]
methods = ["standard", "pgd-at"]

[data]
train_samples = 48
test_samples = 24
time_steps = 4

[model]
channels = [4, 8]
membrane_bits = 1.58

[train]
epochs = 1
batch_size = 16
lr = 0.005
eps = 0.03
pgd_steps = 2

[attack]
attacks = ["fgsm", "pgd"]
eps = [0.0, 0.03]
pgd_steps = 2
batch_size = 24

[profile]
batch_sizes = [1, 8]
warmup = 1
repeats = 3
samples = 16

[correlate]
attack = "pgd"
eps = 0.03
"""


@pytest.fixture(scope="session", autouse=True)
def private_frame_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Framed data is cached in a folder of this test session, never in the user's home (the CLI inherits it)."""
    folder = tmp_path_factory.mktemp("frame-cache")
    os.environ["SPARSITY_LATENCY_CACHE"] = str(folder)
    return folder


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `sparsity-latency` console script, as a user would."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture(scope="session")
def tiny_study(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny study (6 runs), made once through the real `study` command; do not modify."""
    out = tmp_path_factory.mktemp("results")
    result = run_cli("study", tiny_config, "--out", out)
    assert result.returncode == 0, result.stderr
    return out / "tiny"


@pytest.fixture
def study_copy(tiny_study: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny study that a test may change."""
    return Path(shutil.copytree(tiny_study, tmp_path / "tiny"))
