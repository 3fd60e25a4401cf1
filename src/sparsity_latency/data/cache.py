"""A disk cache of framed data that is never stale: an entry is used only when its stored key equals
the key asked for, exactly.

The key is a JSON-able dict naming everything the arrays depend on (dataset, resolved root, every
framing parameter, seed, a fingerprint of the raw files, of the code). Its canonical JSON names the
file (by hash) and is stored inside it, so neither a hash collision nor an edited or renamed file can
hand back other data. Entries are written to a temporary file in the same folder and renamed into
place, so a reader never sees half a file; a corrupt entry is recomputed and rewritten, and a folder
that cannot be written only costs the caching, never the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
from numpy.lib.npyio import NpzFile

from sparsity_latency.config import DataConfig
from sparsity_latency.runs import write_atomic

CACHE_ENV = "SPARSITY_LATENCY_CACHE"
KEY_ENTRY = "__key__"  # the array inside each file that holds the key's canonical JSON


def cache_dir(config: DataConfig) -> Path:
    """Where framed data is cached: `data.cache_dir`, else $SPARSITY_LATENCY_CACHE, else
    ~/.cache/sparsity-latency."""
    folder = config.cache_dir or os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "sparsity-latency")
    return Path(folder).expanduser()


def _canonical(key: dict) -> str:
    """The key as canonical JSON: sorted keys, no spaces; tuples read as lists, paths as strings."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def cached(key: dict, compute: Callable[[], dict[str, np.ndarray]], cache_dir: Path | None) -> dict[str, np.ndarray]:
    """`compute()`'s arrays, from `cache_dir` when an entry with exactly this key is there; otherwise
    computed and stored. `cache_dir` None: always computed, nothing stored."""
    if cache_dir is None:
        return compute()
    text = _canonical(key)
    path = cache_dir / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"
    arrays = _read(path, text)
    if arrays is None:
        arrays = {name: np.asarray(values) for name, values in compute().items()}
        if KEY_ENTRY in arrays:
            raise ValueError(f"'{KEY_ENTRY}' is reserved for the cache key")
        _write(path, text, arrays)
    return arrays


def files_fingerprint(root: Path, patterns: Iterable[str]) -> str:
    """A hash of the raw files matching `patterns` (globs relative to `root`, `**` allowed): each file's
    relative path, size and modification time in ns. Only stat, no reading, so it is cheap to check."""
    if isinstance(patterns, str):
        raise TypeError(f"patterns must be a list of globs, not the string {patterns!r}")
    files = {path for pattern in patterns for path in root.glob(pattern) if path.is_file()}
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """A hash of the modules' source files, so that cached data follows any change of the code that
    made it."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _read(path: Path, text: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under exactly this key, or None (no file, another key, a damaged file)."""
    try:
        with path.open("rb") as file:
            stored = np.load(file, allow_pickle=False)
            if not isinstance(stored, NpzFile):
                raise ValueError("not an .npz archive")
            with stored:
                if KEY_ENTRY not in stored.files or str(stored[KEY_ENTRY]) != text:
                    return None
                return {name: stored[name] for name in stored.files if name != KEY_ENTRY}
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(f"ignoring the cache file {path}, damaged or unreadable ({error}); computing again",
                      stacklevel=3)
        return None


def _write(path: Path, text: str, arrays: dict[str, np.ndarray]) -> None:
    """Store the arrays and key atomically (runs.write_atomic). A folder that cannot be written gives a
    warning, not an error."""
    def save(temporary: Path) -> None:
        with temporary.open("wb") as file:
            np.savez(file, **arrays, **{KEY_ENTRY: np.array(text)})

    try:
        write_atomic(path, save)
    except OSError as error:
        warnings.warn(f"cannot write the cache file {path} ({error}); continuing without caching", stacklevel=3)
