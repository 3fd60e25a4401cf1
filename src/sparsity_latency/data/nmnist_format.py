"""Writing N-MNIST's binary event files (Orchard et al. 2015), as tonic's `read_mnist_file` reads them.

One event is 5 bytes, 40 bits, most significant first (garrickorchard.com/datasets/n-mnist): bits 39–32 x,
bits 31–24 y, bit 23 polarity (1 = ON), bits 22–0 timestamp in µs. A record whose y byte is
240 is read as a timestamp-overflow marker, so y = 240 cannot be written; timestamps must fit 23 bits
(< 8 388 608 µs, about 8.4 s); we never write overflow markers.

The folder layout is the dataset's: <root>/NMNIST/Train/<digit>/<nnnnn>.bin and …/Test/…, which is where
tonic's `NMNIST(save_to=root, train=…)` looks (it takes the label from the last character of the folder
name). tonic's class itself also insists on the original, checksummed train.zip/test.zip and at least
10 000 files before it reads anything; `tonic.io.read_mnist_file` reads any of our files directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparsity_latency.data.events import EventSplit
from sparsity_latency.errors import InputError
from sparsity_latency.runs import write_atomic

RECORD_BYTES = 5
TIMESTAMP_BITS = 23
OVERFLOW_Y = 240  # tonic's reader treats a record with this y as a timestamp-overflow marker
FOLDER = "NMNIST"
SPLIT_FOLDERS = {"train": "Train", "test": "Test"}


def nmnist_records(events: np.ndarray, source: str = "events") -> bytes:
    """The 5-byte records of `events` (fields x, y, t in µs, p in {0, 1}), in their order."""
    x, y, t, p = (np.asarray(events[name]).astype(np.int64) for name in ("x", "y", "t", "p"))
    _check_fits(x, y, t, p, source)
    records = np.empty((len(t), RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = x
    records[:, 1] = y
    records[:, 2] = (p << 7) | (t >> 16)
    records[:, 3] = (t >> 8) & 0xFF
    records[:, 4] = t & 0xFF
    return records.tobytes()


def _check_fits(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, source: str) -> None:
    limit = 2**TIMESTAMP_BITS
    problems = [
        ((t < 0) | (t >= limit), f"timestamps outside N-MNIST's 23 bits [0, {limit}) µs"),
        ((x < 0) | (x > 255), "x outside a byte [0, 255]"),
        ((y < 0) | (y > 255), "y outside a byte [0, 255]"),
        (y == OVERFLOW_Y, f"y = {OVERFLOW_Y}, which N-MNIST readers take for a timestamp-overflow marker"),
        ((p != 0) & (p != 1), "polarity other than 0 or 1"),
    ]
    for bad, what in problems:
        if bad.any():
            raise InputError(f"{source}: {int(bad.sum())} events have {what}")


def write_nmnist_bin(path: Path | str, events: np.ndarray) -> None:
    """One sample's events as an N-MNIST .bin file (atomically). InputError if an event does not fit."""
    path = Path(path)
    records = nmnist_records(events, source=str(path))
    write_atomic(path, lambda temporary: temporary.write_bytes(records))


def write_nmnist_folder(root: Path | str, train: EventSplit, test: EventSplit,
                        overwrite: bool = False) -> dict[str, int]:
    """Both splits as <root>/NMNIST/{Train,Test}/<label>/<nnnnn>.bin (nnnnn = position in the split, from
    1). Labels must be 0–9. A split folder that already holds .bin files is refused unless `overwrite`,
    which deletes them first. Returns the number of files and events written per split."""
    root = Path(root)
    counts: dict[str, int] = {}
    for part, split in (("train", train), ("test", test)):
        folder = root / FOLDER / SPLIT_FOLDERS[part]
        _check_labels(split, folder)
        _clear(folder, overwrite)
        width = max(5, len(str(len(split.events))))
        for index, (events, label) in enumerate(zip(split.events, split.labels, strict=True)):
            write_nmnist_bin(folder / str(int(label)) / f"{index + 1:0{width}d}.bin", events)
        counts[f"{part}_files"] = len(split.events)
        counts[f"{part}_events"] = int(sum(len(events) for events in split.events))
    return counts


def _check_labels(split: EventSplit, folder: Path) -> None:
    labels = np.asarray(split.labels)
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        raise InputError(f"{folder}: N-MNIST folders are named by one digit; {int(bad.sum())} labels are "
                         f"outside 0–9 (first: {labels[np.argmax(bad)]})")


def _clear(folder: Path, overwrite: bool) -> None:
    existing = sorted(folder.glob("*/*.bin")) if folder.is_dir() else []
    if existing and not overwrite:
        raise InputError(f"{folder} already holds {len(existing)} .bin files; choose an empty folder "
                         "or overwrite")
    for path in existing:
        path.unlink()
