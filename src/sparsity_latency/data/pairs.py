"""Multimodal pairs: two datasets joined by class label, or two modalities of the same samples.

`data.name = "A+B"` joins dataset A and dataset B. Datasets of different recordings have no sample in
common, so they are paired by class label only, as in the papers that fuse them (N-MNIST + SHD,
Bjorndahl et al.; MNIST-DVS + N-TIDIGITS, S-CMRL):

- labels are first mapped to the digit they name (`digit_labels`: SHD's 20 classes are the digits 0–9 in
  English then German, so label mod 10; N-TIDIGITS' "o" (oh) and "z" (zero) both name 0);
- each dataset keeps its own train/test split: train pairs come from the two train splits, test pairs from
  the two test splits;
- within a class, every sample of the larger modality is used once and the smaller modality is duplicated:
  its samples are drawn in seeded random orders, one full pass after another, so that no sample is used
  twice more often than another;
- classes present in only one dataset are left out (`Pairing.unpaired_classes` says which); the pairs are
  shuffled (seeded), and the paired labels are the positions of the shared classes in sorted order.

`data.name = "X+frames"` pairs each sample's events with the intensity frames of the same recording (a
DAVIS camera's APS frames; the simulator renders them for synthetic-digits): no drawing, same labels.

For the tool's stages the two modalities are packed into one tensor [N, T, D₁ + D₂] (`pack`), so that
training, attacks and probes treat a pair as one input; models/fusion.py splits it again. `PairedDataset`
and `collate_pairs` offer the same pairs to a user's own torch DataLoader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

FRAMES = "frames"


def digit_labels(dataset: str, labels: np.ndarray) -> np.ndarray:
    """Class labels → the digit each names, for datasets of spoken and written digits; others unchanged."""
    labels = np.asarray(labels)
    if dataset == "shd":
        return labels % 10
    if dataset == "ntidigits":
        return np.where(labels == 10, 0, labels)
    return labels


@dataclass(frozen=True)
class Pairing:
    """Indices into modality A and B of each pair, the pair's label, and the classes that found no partner."""

    index_a: np.ndarray
    index_b: np.ndarray
    labels: np.ndarray
    classes: tuple[int, ...]
    unpaired_classes: tuple[int, ...]


def pair_by_class(labels_a: np.ndarray, labels_b: np.ndarray, rng: np.random.Generator) -> Pairing:
    """Pairs of samples with the same label; the smaller modality of each class is duplicated."""
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    shared = sorted(set(labels_a.tolist()) & set(labels_b.tolist()))
    unpaired = sorted(set(labels_a.tolist()) ^ set(labels_b.tolist()))
    index_a, index_b, labels = [], [], []
    for position, label in enumerate(shared):
        members_a, members_b = np.flatnonzero(labels_a == label), np.flatnonzero(labels_b == label)
        count = max(len(members_a), len(members_b))
        index_a.append(_fill(members_a, count, rng))
        index_b.append(_fill(members_b, count, rng))
        labels.append(np.full(count, position, dtype=np.int64))
    if not shared:
        return Pairing(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), (), tuple(unpaired))
    order = rng.permutation(sum(len(part) for part in labels))
    return Pairing(np.concatenate(index_a)[order], np.concatenate(index_b)[order], np.concatenate(labels)[order],
                   tuple(shared), tuple(unpaired))


def _fill(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` members: all of them in order when there are enough, else seeded random passes over them."""
    if len(members) >= count:
        return members
    passes = -(-count // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(passes)])[:count]


def pack(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Frames [N, T, …] of two modalities → one tensor [N, T, D₁ + D₂], each frame flattened per step."""
    if first.shape[:2] != second.shape[:2]:
        raise ValueError(f"modalities differ in samples or time steps: {tuple(first.shape[:2])} "
                         f"vs {tuple(second.shape[:2])}")
    return torch.cat((first.flatten(2), second.flatten(2)), dim=2)


class PairedDataset(torch.utils.data.Dataset):
    """Pairs of two indexable datasets of (sample, label): item i is ((a, b), label)."""

    def __init__(self, first: Sequence[Any], second: Sequence[Any], pairing: Pairing) -> None:
        self.first, self.second, self.pairing = first, second, pairing

    def __len__(self) -> int:
        return len(self.pairing.labels)

    def __getitem__(self, index: int) -> tuple[tuple[Any, Any], int]:
        pairing = self.pairing
        return ((self.first[int(pairing.index_a[index])][0], self.second[int(pairing.index_b[index])][0]),
                int(pairing.labels[index]))


def collate_pairs(batch: list[tuple[tuple[Any, Any], int]]) -> tuple[tuple[Any, Any], torch.Tensor]:
    """A list of ((a, b), label) → ((batch of a, batch of b), labels): tensors are stacked, anything else
    (event arrays of different lengths) is kept as a list."""
    firsts, seconds = [item[0][0] for item in batch], [item[0][1] for item in batch]
    return ((_stack(firsts), _stack(seconds)), torch.tensor([item[1] for item in batch], dtype=torch.int64))


def _stack(items: list[Any]) -> Any:
    if items and all(isinstance(item, torch.Tensor) for item in items):
        return torch.stack(items)
    if items and all(isinstance(item, np.ndarray) and item.dtype.names is None for item in items) \
            and len({item.shape for item in items}) == 1:
        return torch.from_numpy(np.stack(items))
    return items
