"""Datasets by name, framed to tensors [N, T, P, H, W] in the input range [0, 1]."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparsity_latency.config import DataConfig
from sparsity_latency.data import events, framing, simulator, synthetic, tonic_sets
from sparsity_latency.data.cache import cache_dir, cached, code_fingerprint, files_fingerprint
from sparsity_latency.data.framing import frame_samples, intensity_frames, normalize_counts
from sparsity_latency.data.pairs import FRAMES, digit_labels, pack, pair_by_class
from sparsity_latency.data.spec import DatasetSpec
from sparsity_latency.data.tonic_sets import TONIC_DATASETS
from sparsity_latency.errors import InputError

DATASETS: dict[str, DatasetSpec] = {
    "synthetic-digits": DatasetSpec(
        synthetic.SENSOR_SIZE, tuple(str(d) for d in range(synthetic.N_CLASSES)), synthetic.DURATION_US,
        synthetic.synthetic_digits, kind="vision", files="(built in: simulated, no files)", has_frames=True,
    ),
    **TONIC_DATASETS,
}


@dataclass(frozen=True)
class FramedData:
    """Train and test inputs with labels; shared, so never modified in place.

    One modality: frames [N, T, P, H, W]. Two: both packed into [N, T, D₁ + D₂] (data/pairs.py), and
    `modalities` says how to split them again.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    modalities: tuple[tuple[str, tuple[int, int, int]], ...]  # (name, (P, H, W)) per modality

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one step of one sample: (P, H, W), or (D₁ + D₂,) when packed."""
        return tuple(self.train_x.shape[2:])


def dataset_names(name: str) -> list[str]:
    """`data.name` → the datasets it joins ("nmnist+shd" → ["nmnist", "shd"]); "frames" is the first's frames."""
    return [part.strip() for part in name.split("+")]


def check_dataset_name(name: str) -> str | None:
    """What is wrong with `data.name`, or None."""
    parts = dataset_names(name)
    if len(parts) > 2:
        return f"'{name}' joins {len(parts)} datasets; at most two modalities are supported"
    for part in parts[:1] + [p for p in parts[1:] if p != FRAMES]:
        if part not in DATASETS:
            return f"unknown dataset '{part}' (known: {', '.join(sorted(DATASETS))})"
    if len(parts) == 2 and parts[1] == FRAMES and not DATASETS[parts[0]].has_frames:
        return f"'{parts[0]}' has no intensity frames to pair with its events"
    return None


@functools.lru_cache(maxsize=4)
def load_data(config: DataConfig, seed: int) -> FramedData:
    """Inputs of `config.name` for `seed` (kept in memory for the next run of the same data)."""
    names = dataset_names(config.name)
    with_frames = names[1:] == [FRAMES]
    first = framed_dataset(names[0], config, seed, with_frames)
    x = {part: torch.from_numpy(first[f"{part}_x"]) for part in PARTS}
    y = {part: torch.from_numpy(first[f"{part}_y"]) for part in PARTS}
    n_classes = DATASETS[names[0]].n_classes
    modalities = ((modality_name(names[0]), tuple(x["train"].shape[2:])),)
    if len(names) == 2:
        if with_frames:
            second = {part: torch.from_numpy(first[f"{part}_frames"]) for part in PARTS}
        else:
            x, second, y, n_classes = _paired_splits(names, first, framed_dataset(names[1], config, seed, False), seed)
        modalities = tuple(zip(_modality_names(names), (modalities[0][1], tuple(second["train"].shape[2:])),
                               strict=True))
        x = {part: pack(x[part], second[part]) for part in PARTS}
    for part in PARTS:
        if len(y[part]) == 0:
            raise InputError(f"data '{config.name}' leaves no {part} samples (data.root = '{config.root}', "
                             f"data.{part}_samples = {getattr(config, f'{part}_samples')}, data.test_fraction = "
                             f"{config.test_fraction}): give more recordings or change the split")
    return FramedData(x["train"], y["train"], x["test"], y["test"], n_classes=n_classes, modalities=modalities)


PARTS = ("train", "test")
MODALITY_OF_KIND = {"vision": "dvs", "audio": "audio"}


def modality_name(dataset: str) -> str:
    """A short module name for a modality: dvs, audio, or aps (intensity frames)."""
    return "aps" if dataset == FRAMES else MODALITY_OF_KIND[DATASETS[dataset].kind]


def _modality_names(names: list[str]) -> tuple[str, str]:
    first, second = (modality_name(name) for name in names)
    return (f"{first}_a", f"{second}_b") if first == second else (first, second)


Split = dict[str, torch.Tensor]


def _paired_splits(names: list[str], first: dict[str, np.ndarray], second: dict[str, np.ndarray],
                   seed: int) -> tuple[Split, Split, Split, int]:
    """Each modality's frames and the labels of the train and test pairs by class label, each pair from the
    two datasets' own split (data/pairs.py), and the number of shared classes."""
    first_x, second_x, labels = {}, {}, {}
    for stream, part in enumerate(PARTS):
        pairing = pair_by_class(digit_labels(names[0], first[f"{part}_y"]), digit_labels(names[1], second[f"{part}_y"]),
                                np.random.default_rng([seed, stream]))
        if len(pairing.labels) == 0:
            raise InputError(f"data.name = '{'+'.join(names)}': the {part} splits share no class label")
        first_x[part] = torch.from_numpy(first[f"{part}_x"][pairing.index_a])
        second_x[part] = torch.from_numpy(second[f"{part}_x"][pairing.index_b])
        labels[part] = torch.from_numpy(pairing.labels)
    return first_x, second_x, labels, len(pairing.classes)


def framed_dataset(name: str, config: DataConfig, seed: int, with_frames: bool) -> dict[str, np.ndarray]:
    """Frames in [0, 1] and labels of one dataset's train and test split (`train_x`, `train_y`, `test_x`,
    `test_y`; with `with_frames` also `train_frames`, `test_frames`).

    Event counts come from the disk cache when it holds them for the same dataset, files, seed, code and
    every data parameter but `frame_clip` (applied after), `cache` and `cache_dir`.
    """
    spec = DATASETS[name]

    def compute() -> dict[str, np.ndarray]:
        train, test = spec.load(config, seed)
        arrays = {}
        for part, split in (("train", train), ("test", test)):
            arrays[f"{part}_counts"] = frame_samples(split.events, spec.sensor_size, config, spec.duration_us)
            arrays[f"{part}_y"] = np.asarray(split.labels, dtype=np.int64)
            if with_frames:
                arrays[f"{part}_frames"] = intensity_frames(split.frames, split.events, spec.sensor_size, config,
                                                            spec.duration_us)
        return arrays

    if config.cache:
        key = {"dataset": name, "seed": seed, "with_frames": with_frames,
               "code": code_fingerprint([events, framing, simulator, synthetic, tonic_sets]),
               **{k: v for k, v in dataclasses.asdict(config).items()
                  if k not in ("name", "frame_clip", "cache", "cache_dir")}}
        if spec.folder:
            key["root"] = str(Path(config.root).expanduser().resolve())
            key["files"] = files_fingerprint(Path(key["root"]), [f"{spec.folder}/**/*"])
        arrays = cached(key, compute, cache_dir(config))
    else:
        arrays = compute()
    for part in ("train", "test"):
        arrays[f"{part}_x"] = normalize_counts(arrays.pop(f"{part}_counts"), config.frame_clip)
    return arrays


def dataset_table() -> list[dict[str, object]]:
    """One row per dataset for `data list`: name, kind, sensor (W×H×P), classes, intensity frames, files."""
    return [{"name": name, "kind": spec.kind, "sensor": "×".join(str(s) for s in spec.sensor_size),
             "classes": spec.n_classes, "frames": spec.has_frames, "files": spec.files}
            for name, spec in DATASETS.items()]
