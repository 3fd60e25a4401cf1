"""What the rest of the tool needs to know of a dataset, whatever its source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EventSplit


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the tool needs to know of a dataset, and how to get its events."""

    sensor_size: tuple[int, int, int]  # (width, height, polarities), tonic's order
    classes: tuple[str, ...]
    duration_us: float  # the recording's fixed length; 0 = each sample's own span
    load: Callable[[DataConfig, int], tuple[EventSplit, EventSplit]]
    kind: str  # "vision" or "audio"
    files: str  # where the files are expected, relative to data.root (for `data list`)
    has_frames: bool = False  # also gives intensity frames of each sample (DAVIS)
    folder: str = ""  # the folder under data.root holding its files (tonic's class name); "" = built in

    @property
    def n_classes(self) -> int:
        return len(self.classes)
