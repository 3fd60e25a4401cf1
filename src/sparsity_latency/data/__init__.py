"""Datasets by name, framed to tensors [N, T, P, H, W] in the input range [0, 1]."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sparsity_latency.config import DataConfig
from sparsity_latency.data import synthetic
from sparsity_latency.data.framing import events_to_frames, normalize_counts


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the tool needs to know of a dataset, and how to get its events."""

    sensor_size: tuple[int, int, int]  # (width, height, polarities)
    n_classes: int
    duration_us: float
    load: Callable[[DataConfig, int], tuple[synthetic.EventSplit, synthetic.EventSplit]]


DATASETS: dict[str, DatasetSpec] = {
    "synthetic-digits": DatasetSpec(
        synthetic.SENSOR_SIZE, synthetic.N_CLASSES, synthetic.DURATION_US, synthetic.synthetic_digits
    ),
}


@dataclass(frozen=True)
class FramedData:
    """Train and test frames [N, T, P, H, W] with labels; shared, so never modified in place."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(polarities, height, width) of one frame."""
        return tuple(self.train_x.shape[2:])


@functools.lru_cache(maxsize=4)
def load_data(config: DataConfig, seed: int) -> FramedData:
    """Frames of `config.name` for `seed` (kept in memory for the next run of the same data)."""
    spec = DATASETS[config.name]
    train, test = spec.load(config, seed)

    def frames(split: synthetic.EventSplit) -> torch.Tensor:
        counts = events_to_frames(split.events, spec.sensor_size, config.time_steps, spec.duration_us)
        return torch.from_numpy(normalize_counts(counts, config.frame_clip))

    return FramedData(
        train_x=frames(train),
        train_y=torch.from_numpy(np.asarray(train.labels)),
        test_x=frames(test),
        test_y=torch.from_numpy(np.asarray(test.labels)),
        n_classes=spec.n_classes,
    )
