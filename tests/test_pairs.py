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


def test_nmnist_plus_shd_from_files_pairs_digit_3_and_trains_a_fusion_network(tmp_path) -> None:
    """N-MNIST digits 3 and 7 with SHD "zero" (0) and "drei" (13 → 3): only the digit 3 pairs."""
    import dataclasses

    from sparsity_latency.config import Config, DataConfig
    from sparsity_latency.data import DATASETS, load_data
    from sparsity_latency.data.framing import frame_samples, normalize_counts
    from sparsity_latency.models import build_for
    from test_tonic_datasets import nmnist_files, shd_files

    rng = np.random.default_rng(0)
    nmnist, shd = nmnist_files(tmp_path, rng), shd_files(tmp_path, rng)
    config = DataConfig(name="nmnist+shd", root=str(tmp_path), train_samples=0, test_samples=0, time_steps=3,
                        cache=False)
    data = load_data(config, seed=0)
    assert [name for name, _ in data.modalities] == ["dvs", "audio"]
    assert [shape for _, shape in data.modalities] == [(2, 34, 34), (1, 1, 700)]
    # train: two N-MNIST 3s and two SHD "drei": 2 pairs; test: one each; one shared class (the digit 3)
    vision = 2 * 34 * 34
    assert data.train_x.shape == (2, 3, vision + 700) and data.test_x.shape == (1, 3, vision + 700)
    assert data.n_classes == 1 and data.train_y.tolist() == [0, 0]

    def framed(name: str, samples: list[np.ndarray]) -> list[torch.Tensor]:
        counts = frame_samples(samples, DATASETS[name].sensor_size, config, 0.0)
        return [torch.from_numpy(normalize_counts(c, config.frame_clip)).flatten(1) for c in counts]

    threes = framed("nmnist", [e for e, label in nmnist["train"].values() if label == 3])
    dreis = framed("shd", [e for e, label in shd["train"].values() if label == 13])
    # each larger-or-equal side's sample is used exactly once: both 3s and both "drei" appear
    for expected, part in ((threes, data.train_x[:, :, :vision]), (dreis, data.train_x[:, :, vision:])):
        matches = sorted(next(j for j, e in enumerate(expected) if torch.equal(e, x)) for x in part)
        assert matches == [0, 1]
    model = build_for(dataclasses.replace(Config(), model=dataclasses.replace(Config().model, fusion="late")), data)
    assert model(data.train_x.transpose(0, 1)).shape == (2, 1)
