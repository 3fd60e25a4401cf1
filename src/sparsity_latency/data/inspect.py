"""`data inspect`: find which dataset a folder holds, read every sample through the real loader, and
give per-sample event statistics (any bad file stops it with an InputError naming the file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EventSplit
from sparsity_latency.errors import InputError


@dataclass(frozen=True)
class Inspection:
    """Which dataset was found where, and one row per sample read."""

    dataset: str
    root: Path
    samples: pd.DataFrame


def locate(path: Path, dataset: str | None = None) -> tuple[str, Path]:
    """(dataset name, data.root) for a folder that is either a data.root or one dataset's own folder."""
    from sparsity_latency.data import DATASETS

    path = path.expanduser()
    if not path.is_dir():
        raise InputError(f"{path}: no such folder")
    folders = {spec.folder: name for name, spec in DATASETS.items() if spec.folder}
    if dataset is not None:
        if dataset not in DATASETS or not DATASETS[dataset].folder:
            raise InputError(f"unknown dataset with files '{dataset}' (known: {', '.join(sorted(folders.values()))})")
        folder = DATASETS[dataset].folder
        return dataset, path.parent if path.name == folder else path
    if path.name in folders:
        return folders[path.name], path.parent
    found = [name for folder, name in folders.items() if (path / folder).is_dir()]
    if len(found) == 1:
        return found[0], path
    if not found:
        raise InputError(f"{path}: holds no dataset folder ({', '.join(sorted(folders))}); "
                         "see `sparsity-latency data list`")
    raise InputError(f"{path}: holds several datasets ({', '.join(sorted(found))}); choose one with --dataset")


def inspect_folder(path: Path, dataset: str | None = None, samples: int = 0, seed: int = 0) -> Inspection:
    """Read the dataset under `path` (all samples, or a seeded subset of `samples` per split)."""
    from sparsity_latency.data import DATASETS

    name, root = locate(path, dataset)
    config = DataConfig(name=name, root=str(root), train_samples=samples, test_samples=samples, cache=False)
    train, test = DATASETS[name].load(config, seed)
    rows = [row for part, split in (("train", train), ("test", test)) for row in sample_statistics(split, part)]
    return Inspection(name, root, pd.DataFrame(rows, columns=SAMPLE_COLUMNS))


SAMPLE_COLUMNS = ["split", "source", "label", "events", "duration_ms", "on_fraction", "events_per_ms",
                  "x_min", "x_max", "y_min", "y_max"]


def sample_statistics(split: EventSplit, part: str) -> list[dict[str, object]]:
    """Per sample: events, time span, share of ON events, rate, and the extent of its coordinates."""
    rows = []
    for index, events in enumerate(split.events):
        count = len(events)
        span_ms = float(events["t"][-1] - events["t"][0]) / 1000 if count else 0.0
        rows.append({
            "split": part, "source": split.source(index), "label": int(split.labels[index]), "events": count,
            "duration_ms": span_ms,
            "on_fraction": float(np.mean(events["p"] == 1)) if count else float("nan"),
            "events_per_ms": count / span_ms if span_ms > 0 else float("nan"),
            **{f"{axis}_{end}": (int(getattr(events[axis], end)()) if count else -1)
               for axis in ("x", "y") for end in ("min", "max")},
        })
    return rows


def summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per split: samples, empty samples, events (mean, min, max), mean span, ON share of all events."""
    groups = samples.groupby("split", sort=False)
    return pd.DataFrame({
        "samples": groups.size(),
        "empty": groups["events"].apply(lambda events: int((events == 0).sum())),
        "events_mean": groups["events"].mean(),
        "events_min": groups["events"].min(),
        "events_max": groups["events"].max(),
        "duration_ms_mean": groups["duration_ms"].mean(),
        "on_fraction": groups.apply(lambda rows: float((rows["on_fraction"].fillna(0) * rows["events"]).sum()
                                                        / max(rows["events"].sum(), 1)), include_groups=False),
        "classes": groups["label"].nunique(),
    }).reset_index()
