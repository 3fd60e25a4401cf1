"""Multimodal pairing (data/pairs.py): by class label, own splits, seeded draws, duplication of the smaller side."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from sparsity_latency.data.pairs import PairedDataset, collate_pairs, digit_labels, pack, pair_by_class


def test_digit_labels_map_spoken_digits_to_their_digit() -> None:
    assert digit_labels("shd", np.arange(20)).tolist() == list(range(10)) * 2
    # N-TIDIGITS classes o, 1, …, 9, z: "oh" (0) and "zero" (10) both name the digit 0.
    assert digit_labels("ntidigits", np.arange(11)).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert digit_labels("nmnist", np.array([3, 7])).tolist() == [3, 7]


def test_pairs_share_the_class_and_use_every_sample_of_the_larger_side() -> None:
    labels_a = np.array([0, 0, 0, 0, 1, 1, 2])  # class 0: 4 vs 1, class 1: 2 vs 3, class 2 only in A
    labels_b = np.array([1, 0, 1, 1, 3])  # class 3 only in B
    pairing = pair_by_class(labels_a, labels_b, np.random.default_rng(0))
    assert pairing.classes == (0, 1)
    assert pairing.unpaired_classes == (2, 3)
    assert (labels_a[pairing.index_a] == np.array(pairing.classes)[pairing.labels]).all()
    assert (labels_b[pairing.index_b] == np.array(pairing.classes)[pairing.labels]).all()
    # per class max(|A_c|, |B_c|) pairs: 4 + 3
    assert len(pairing.labels) == 7
    # larger side: each sample exactly once
    assert sorted(pairing.index_a[pairing.labels == 0].tolist()) == [0, 1, 2, 3]
    assert sorted(pairing.index_b[pairing.labels == 1].tolist()) == [0, 2, 3]
    # smaller side duplicated: B's only class-0 sample four times; A's two class-1 samples 2 and 1 times
    assert pairing.index_b[pairing.labels == 0].tolist() == [1, 1, 1, 1]
    assert sorted(Counter(pairing.index_a[pairing.labels == 1].tolist()).values()) == [1, 2]


def test_pairing_is_seeded_and_balanced_in_duplication() -> None:
    labels_a = np.repeat(np.arange(3), 10)
    labels_b = np.repeat(np.arange(3), 3)
    first = pair_by_class(labels_a, labels_b, np.random.default_rng(5))
    again = pair_by_class(labels_a, labels_b, np.random.default_rng(5))
    other = pair_by_class(labels_a, labels_b, np.random.default_rng(6))
    assert np.array_equal(first.index_b, again.index_b) and np.array_equal(first.index_a, again.index_a)
    assert not np.array_equal(first.index_b, other.index_b)
    # 10 draws over 3 samples in full passes: each used 3 or 4 times
    for label in range(3):
        uses = Counter(first.index_b[first.labels == label].tolist())
        assert sorted(uses.values()) == [3, 3, 4]


def test_no_shared_class_gives_no_pairs() -> None:
    pairing = pair_by_class(np.array([0, 0]), np.array([1]), np.random.default_rng(0))
    assert len(pairing.labels) == 0 and pairing.unpaired_classes == (0, 1)


def test_pack_flattens_each_step_and_keeps_order() -> None:
    first = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)
    second = -torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 1, 1, 5)
    packed = pack(first, second)
    assert packed.shape == (2, 3, 13)
    assert torch.equal(packed[1, 2, :8], first[1, 2].flatten())
    assert torch.equal(packed[1, 2, 8:], second[1, 2].flatten())
    with pytest.raises(ValueError, match="time steps"):
        pack(first, second[:, :2])


def test_paired_dataset_and_collate_for_tensors_and_event_lists() -> None:
    frames_a = [(torch.full((2, 1), float(i)), label) for i, label in enumerate([0, 1, 1])]
    events_b = [(np.zeros(n, dtype=[("t", "<i8")]), label) for n, label in ((4, 1), (7, 0))]
    pairing = pair_by_class(np.array([0, 1, 1]), np.array([1, 0]), np.random.default_rng(0))
    dataset = PairedDataset(frames_a, events_b, pairing)
    assert len(dataset) == 3
    (batch_a, batch_b), labels = collate_pairs([dataset[i] for i in range(3)])
    assert batch_a.shape == (3, 2, 1)
    assert isinstance(batch_b, list) and len(batch_b) == 3  # events of different lengths stay a list
    for row in range(3):
        index_a = int(batch_a[row, 0, 0])
        assert frames_a[index_a][1] == pairing.classes[int(labels[row])]
        assert len(batch_b[row]) == (7 if labels[row] == 0 else 4)
