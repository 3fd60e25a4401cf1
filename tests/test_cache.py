"""The disk cache of framed data (data/cache.py): hits only on the exact key, survives damage."""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsity_latency.config import DataConfig
from sparsity_latency.data import cache as cache_module
from sparsity_latency.data.cache import CACHE_ENV, cache_dir, cached, code_fingerprint, files_fingerprint

KEY = {"dataset": "nmnist", "seed": 0, "time_steps": 8, "downsample": 2, "root": "/data", "files": "abc"}


class Counted:
    """A compute function that counts its calls and returns fresh arrays."""

    def __init__(self, value: int = 1) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"train_x": np.full((2, 3), self.value, dtype=np.uint16), "train_y": np.arange(2)}


@pytest.fixture(autouse=True)
def no_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing here may reach the real ~/.cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(CACHE_ENV, raising=False)


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_same_key_computes_once(tmp_path: Path) -> None:
    compute = Counted()
    first = cached(KEY, compute, tmp_path)
    second = cached(dict(reversed(KEY.items())), compute, tmp_path)  # key order does not matter
    assert compute.calls == 1
    for name in ("train_x", "train_y"):
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].dtype == second[name].dtype
    assert set(second) == {"train_x", "train_y"}
    assert len(entries(tmp_path)) == 1 and entries(tmp_path)[0].endswith(".npz")


@pytest.mark.parametrize("change", [{"seed": 1}, {"downsample": 1}, {"files": "abd"}, {"denoise_us": 0.0}])
def test_a_changed_key_computes_again(tmp_path: Path, change: dict) -> None:
    compute = Counted()
    cached(KEY, compute, tmp_path)
    cached({**KEY, **change}, compute, tmp_path)
    assert compute.calls == 2
    cached({**KEY, **change}, compute, tmp_path)
    assert compute.calls == 2


def test_a_file_holding_another_key_is_not_used(tmp_path: Path) -> None:
    # a hash collision, or a file copied or edited by hand: the name fits but the stored key does not
    cached(KEY, Counted(1), tmp_path)
    [name] = entries(tmp_path)
    other = {**KEY, "seed": 99}
    cached(other, Counted(2), tmp_path)
    os.replace(tmp_path / next(n for n in entries(tmp_path) if n != name), tmp_path / name)
    compute = Counted(3)
    assert (cached(KEY, compute, tmp_path)["train_x"] == 3).all()
    assert compute.calls == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "npy", "no key"])
def test_a_damaged_file_is_recomputed_and_rewritten(tmp_path: Path, damage: str) -> None:
    cached(KEY, Counted(), tmp_path)
    [name] = entries(tmp_path)
    path = tmp_path / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "npy":
        with path.open("wb") as file:
            np.save(file, np.zeros(3))
    else:
        np.savez(path, train_x=np.zeros(1))
    compute = Counted(5)
    damaged_archive = pytest.warns(UserWarning, match="damaged or unreadable")
    with damaged_archive if damage != "no key" else contextlib.nullcontext():  # "no key": a stranger's archive
        assert (cached(KEY, compute, tmp_path)["train_x"] == 5).all()
    assert compute.calls == 1
    assert (cached(KEY, compute, tmp_path)["train_x"] == 5).all()  # rewritten: a hit now
    assert compute.calls == 1


def test_nothing_is_left_when_compute_raises(tmp_path: Path) -> None:
    def broken() -> dict[str, np.ndarray]:
        raise RuntimeError("loader failed")

    with pytest.raises(RuntimeError, match="loader failed"):
        cached(KEY, broken, tmp_path)
    assert entries(tmp_path) == []


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def savez_then_fail(file: object, **arrays: np.ndarray) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.np, "savez", savez_then_fail)
    compute = Counted()
    with pytest.warns(UserWarning, match="without caching"):
        result = cached(KEY, compute, tmp_path)
    assert (result["train_x"] == 1).all()
    assert entries(tmp_path) == []  # neither the final file nor the temporary one


def test_an_unwritable_folder_still_gives_the_data(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    compute = Counted()
    with pytest.warns(UserWarning, match="without caching"):
        result = cached(KEY, compute, blocker / "cache")  # cannot be created, even by root
    assert (result["train_x"] == 1).all() and compute.calls == 1


def test_no_folder_means_no_caching(tmp_path: Path) -> None:
    compute = Counted()
    cached(KEY, compute, None)
    cached(KEY, compute, None)
    assert compute.calls == 2


def test_the_reserved_key_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        cached(KEY, lambda: {"__key__": np.zeros(1)}, tmp_path)


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir(DataConfig()) == tmp_path / "home" / ".cache" / "sparsity-latency"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir(DataConfig()) == tmp_path / "env"
    assert cache_dir(DataConfig(cache_dir=str(tmp_path / "config"))) == tmp_path / "config"  # the config wins
    assert cache_dir(DataConfig(cache_dir="~/frames")) == tmp_path / "home" / "frames"
    monkeypatch.setenv(CACHE_ENV, "")  # set but empty: the default
    assert cache_dir(DataConfig()) == tmp_path / "home" / ".cache" / "sparsity-latency"


def test_files_fingerprint_follows_the_raw_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "NMNIST" / "Train" / "0").mkdir(parents=True)
    sample = root / "NMNIST" / "Train" / "0" / "00001.bin"
    sample.write_bytes(b"12345")
    (root / "notes.txt").write_text("not a raw file")
    patterns = ["NMNIST/**/*.bin"]
    before = files_fingerprint(root, patterns)
    assert files_fingerprint(root, patterns) == before
    (root / "notes.txt").write_text("edited, but matches no pattern")
    assert files_fingerprint(root, patterns) == before

    stat = sample.stat()
    os.utime(sample, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))
    touched = files_fingerprint(root, patterns)
    assert touched != before
    sample.write_bytes(b"123456")
    os.utime(sample, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))  # same time, other size
    assert files_fingerprint(root, patterns) not in (before, touched)
    resized = files_fingerprint(root, patterns)
    (root / "NMNIST" / "Train" / "0" / "00002.bin").write_bytes(b"")
    assert files_fingerprint(root, patterns) != resized
    with pytest.raises(TypeError, match="list of globs"):
        files_fingerprint(root, "NMNIST/**/*.bin")


def test_code_fingerprint_changes_with_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "framing_copy.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import framing_copy

    before = code_fingerprint([framing_copy, zipfile])
    module.write_text("X = 2\n")
    assert code_fingerprint([framing_copy, zipfile]) != before
