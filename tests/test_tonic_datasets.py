"""Real event datasets through tonic's own classes, on tiny files in each dataset's real on-disk format.

Every dataset is loaded by `TONIC_DATASETS[name].load(config, seed)`, the tool's own code path, with
`data.download = false`; the network is switched off for the whole module.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dataset_files import (
    write_aedat4,
    write_davis_bag,
    write_dvsgesture_npy,
    write_nmnist_bin,
    write_ntidigits_hdf5,
    write_pokerdvs_npy,
    write_shd_h5,
)
from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EventSplit, make_events
from sparsity_latency.data.tonic_sets import (
    DAVIS_RECORDINGS,
    NCALTECH101_CLASSES,
    SHD_CLASSES,
    TONIC_DATASETS,
    davis_bag_reader,
)
from sparsity_latency.errors import InputError

Written = dict[str, dict[str, tuple[np.ndarray, int]]]  # split ("train", "test" or "all") → source → (events, label)
DAVIS_EPOCH_NS = 1_468_939_993_067_416_000  # a real recording's start: float seconds are coarse at this size


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dataset test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(name: str, root: Path, seed: int = 0, **changes: object) -> tuple[EventSplit, EventSplit]:
    settings = {"root": str(root), "download": False, "train_samples": 0, "test_samples": 0, **changes}
    return TONIC_DATASETS[name].load(DataConfig(**settings), seed)


def random_events(rng: np.random.Generator, sensor: tuple[int, int, int], n: int = 12,
                  max_t_us: int = 300_000) -> tuple[np.ndarray, ...]:
    """Columns x, y, t (µs, sorted), p of n events on the sensor."""
    width, height, polarities = sensor
    t = np.sort(rng.choice(max_t_us, size=n, replace=False))
    return rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, polarities, n)


def by_source(split: EventSplit) -> dict[str, tuple[np.ndarray, int]]:
    return {split.source(i): (events, int(label)) for i, (events, label) in
            enumerate(zip(split.events, split.labels, strict=True))}


# --- writers of each dataset's folder -------------------------------------------------------------------


def nmnist_files(root: Path, rng: np.random.Generator) -> Written:
    written: Written = {"train": {}, "test": {}}
    for split, folder, per_class in (("train", "Train", 2), ("test", "Test", 1)):
        for digit in (3, 7):
            for index in range(per_class):
                x, y, t, p = random_events(rng, (34, 34, 2))
                path = root / "NMNIST" / folder / str(digit) / f"{index:05d}.bin"
                write_nmnist_bin(path, x, y, t, p)
                written[split][str(path)] = (make_events(x, y, t, p), digit)
    return written


def dvsgesture_files(root: Path, rng: np.random.Generator) -> Written:
    """Times in ms with µs fractions (1.001 ms): tonic's ×1000 and int cast would give 1000 µs."""
    written: Written = {"train": {}, "test": {}}
    for split, folder, users in (("train", "ibmGestureTrain", ("user01_fluorescent", "user02_led")),
                                 ("test", "ibmGestureTest", ("user24_led",))):
        for user in users:
            for label in (0, 9):
                x, y, t, p = random_events(rng, (128, 128, 2))
                t[0] = 1001
                path = root / "DVSGesture" / folder / user / f"{label}.npy"
                write_dvsgesture_npy(path, x, y, p, t / 1000.0)
                written[split][str(path)] = (make_events(x, y, t, p), label)
    return written


def cifar10dvs_files(root: Path, rng: np.random.Generator) -> Written:
    written: Written = {"all": {}}
    for label, name in ((0, "airplane"), (3, "cat")):
        for index in range(3):
            x, y, t, p = random_events(rng, (128, 128, 2), n=10)
            path = root / "CIFAR10DVS" / name / f"cifar10_{name}_{index}.aedat4"
            write_aedat4(path, t, x, y, p)
            written["all"][str(path)] = (make_events(x, y, t, p), label)
    return written


def ncaltech101_files(root: Path, rng: np.random.Generator) -> Written:
    """Each recording touches x = 0 and y = 0 (tonic shifts them there) and reaches the ATIS's 239 × 179."""
    written: Written = {"all": {}}
    for name in ("Faces_easy", "accordion"):
        for index in range(3):
            x, y, t, p = random_events(rng, (240, 180, 2))
            x[:2], y[:2] = (0, 239), (179, 0)
            path = root / "NCALTECH101" / "Caltech101" / name / f"image_{index + 1:04d}.bin"
            write_nmnist_bin(path, x, y, t, p)
            written["all"][str(path)] = (make_events(x, y, t, p), NCALTECH101_CLASSES.index(name))
    return written


def pokerdvs_files(root: Path, rng: np.random.Generator) -> Written:
    written: Written = {"train": {}, "test": {}}
    for split, folder, per_class in (("train", "pips_train", 2), ("test", "pips_test", 1)):
        for label, name in ((1, "he"), (3, "sp")):
            for index in range(per_class):
                x, y, t, p = random_events(rng, (35, 35, 2))
                path = root / "POKERDVS" / folder / name / f"{name}_{index}.npy"
                write_pokerdvs_npy(path, t, x, y, p)
                written[split][str(path)] = (make_events(x, y, t, p), label)
    return written


def shd_files(root: Path, rng: np.random.Generator) -> Written:
    """Times k/64 s: exact in float16 (k < 2048) and whole µs (k · 15 625)."""
    written: Written = {"train": {}, "test": {}}
    for split, labels in (("train", (0, 13, 0, 13)), ("test", (13, 0))):
        path = root / "SHD" / f"shd_{split}.h5"
        samples = []
        for index, label in enumerate(labels):
            ticks = np.sort(rng.choice(2048, size=15, replace=False))
            units = rng.integers(0, 700, size=15)
            samples.append((ticks / 64.0, units))
            events = make_events(units, np.zeros(15), ticks * 15_625, np.zeros(15))
            written[split][f"{path} sample {index}"] = (events, label)
        write_shd_h5(path, samples, labels, SHD_CLASSES)
    return written


def ntidigits_files(root: Path, rng: np.random.Generator) -> Written:
    """Single digits o, 1, z in both splits; a digit sequence that tonic's single_digits leaves out."""
    path = root / "NTIDIGITS18" / "n-tidigits.hdf5"
    written: Written = {"train": {}, "test": {}}
    contents = {}
    for split, names in (("train", ("man-ab-a-o", "woman-cd-b-1", "man-ef-a-z", "man-ab-b-1234")),
                         ("test", ("woman-gh-a-1", "man-ij-b-z"))):
        samples = []
        for name in names:
            _, _, t, _ = random_events(rng, (64, 1, 1), max_t_us=2_000_000)
            channels = rng.integers(0, 64, size=len(t))
            samples.append((name, t / 1e6, channels))
            digit = name.split("-")[-1]
            if len(digit) == 1:
                label = "o123456789z".index(digit)
                events = make_events(channels, np.zeros(len(t)), t, np.zeros(len(t)))
                written[split][f"{path} {split} sample {name}"] = (events, label)
        contents[split] = samples
    write_ntidigits_hdf5(path, contents)
    return written


def davis_bags(root: Path, rng: np.random.Generator) -> tuple[Written, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Three recordings: events at a real epoch with µs times, two 180 × 240 frames each; one with IMU."""
    written: Written = {"all": {}}
    frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for index, name in enumerate(("shapes_6dof", "shapes_rotation", "shapes_translation")):
        x, y, t, p = random_events(rng, (240, 180, 2), n=8)
        t -= t[0]
        start_ns = DAVIS_EPOCH_NS + index * 7_000_003_000
        frame_us = np.array([1_234, 250_001])
        images = rng.integers(0, 256, size=(2, 180, 240), dtype=np.uint8)
        path = root / "DAVISDATA" / f"{name}.bag"
        write_davis_bag(path, x, y, start_ns + t * 1000, p, list(zip(start_ns + frame_us * 1000, images, strict=True)),
                        imu=index == 0)
        written["all"][str(path)] = (make_events(x, y, t, p), DAVIS_RECORDINGS.index(name))
        frames[str(path)] = (frame_us, images.astype(np.float32) / np.float32(255))
    return written, frames


WRITERS: dict[str, Callable[[Path, np.random.Generator], Written]] = {
    "nmnist": nmnist_files,
    "dvsgesture": dvsgesture_files,
    "cifar10dvs": cifar10dvs_files,
    "ncaltech101": ncaltech101_files,
    "pokerdvs": pokerdvs_files,
    "shd": shd_files,
    "ntidigits": ntidigits_files,
    "davis": lambda root, rng: davis_bags(root, rng)[0],
}


# --- round trips ----------------------------------------------------------------------------------------


def assert_round_trip(got: dict[str, tuple[np.ndarray, int]], want: dict[str, tuple[np.ndarray, int]]) -> None:
    assert sorted(got) == sorted(want)
    for source, (events, label) in want.items():
        np.testing.assert_array_equal(got[source][0], events, err_msg=source)
        assert got[source][1] == label, source


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_sample_round_trips_exactly(name: str, tmp_path: Path) -> None:
    written = WRITERS[name](tmp_path, np.random.default_rng(1))
    train, test = load(name, tmp_path, test_fraction=0.34)
    for split in (train, test):
        assert split.labels.dtype == np.int64 and len(split.sources) == len(split.events)
        assert all(0 <= label < TONIC_DATASETS[name].n_classes for label in split.labels)
    if "all" in written:
        assert not set(train.sources) & set(test.sources)
        assert_round_trip({**by_source(train), **by_source(test)}, written["all"])
    else:
        assert_round_trip(by_source(train), written["train"])
        assert_round_trip(by_source(test), written["test"])


def test_davis_frames_come_with_times_from_the_first_event_and_values_in_0_1(tmp_path: Path) -> None:
    _, frames = davis_bags(tmp_path, np.random.default_rng(2))
    train, test = load("davis", tmp_path, test_fraction=0.34)
    assert (len(train.events), len(test.events)) == (2, 1)
    for split in (train, test):
        for index, sample_frames in enumerate(split.frames):
            times_us, images = frames[split.source(index)]
            np.testing.assert_array_equal(sample_frames.times_us, times_us)
            np.testing.assert_array_equal(sample_frames.images, images)
            assert sample_frames.images.dtype == np.float32


def test_audio_events_have_one_row_and_one_polarity(tmp_path: Path) -> None:
    shd_files(tmp_path, np.random.default_rng(3))
    train, _ = load("shd", tmp_path)
    for events in train.events:
        assert (events["y"] == 0).all() and (events["p"] == 0).all()


def test_datasets_without_a_split_hold_out_test_fraction_of_each_class(tmp_path: Path) -> None:
    written = cifar10dvs_files(tmp_path, np.random.default_rng(4))["all"]
    train, test = load("cifar10dvs", tmp_path, seed=3, test_fraction=1 / 3)
    assert sorted(test.labels.tolist()) == [0, 3] and sorted(train.labels.tolist()) == [0, 0, 3, 3]
    assert sorted(train.sources + test.sources) == sorted(written)
    again_train, again_test = load("cifar10dvs", tmp_path, seed=3, test_fraction=1 / 3)
    assert (again_train.sources, again_test.sources) == (train.sources, test.sources)


# --- subsets ----------------------------------------------------------------------------------------------


def test_a_subset_reads_only_the_drawn_files_the_same_for_the_same_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for index in range(6):
        write_nmnist_bin(tmp_path / "NMNIST" / "Train" / str(index % 2) / f"{index:05d}.bin",
                         *random_events(rng, (34, 34, 2)))
    write_nmnist_bin(tmp_path / "NMNIST" / "Test" / "0" / "00000.bin", *random_events(rng, (34, 34, 2)))
    train, _ = load("nmnist", tmp_path, seed=7, train_samples=2, test_samples=1)
    assert len(train.events) == 2
    for path in (tmp_path / "NMNIST" / "Train").rglob("*.bin"):
        if str(path) not in train.sources:
            path.write_bytes(b"\x01\x02\x03")  # truncated: reading it would fail
    again, _ = load("nmnist", tmp_path, seed=7, train_samples=2, test_samples=1)
    assert again.sources == train.sources
    with pytest.raises(InputError, match="Train: the train split has 6 samples; data.train_samples = 7"):
        load("nmnist", tmp_path, train_samples=7)


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TONIC_DATASETS))
def test_missing_files_without_download_name_the_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data.download = true") as error:
        load(name, tmp_path)
    folder = TONIC_DATASETS[name].files.split("/")[0]
    assert str(tmp_path / folder) in str(error.value) and "\n" not in str(error.value)


def test_files_present_are_used_even_when_download_is_allowed(tmp_path: Path) -> None:
    """tonic's own check (train.zip and ≥ 10 000 .bin files) would download here; ours finds the files."""
    written = nmnist_files(tmp_path, np.random.default_rng(8))
    train, _ = load("nmnist", tmp_path, download=True)
    assert sorted(train.sources) == sorted(written["train"])


def test_absent_files_with_download_allowed_go_to_tonics_download(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="tonic could not download NMNIST .*network"):
        load("nmnist", tmp_path, download=True)


def test_davis_needs_two_recordings_for_a_train_and_a_test_split(tmp_path: Path) -> None:
    davis_bags(tmp_path, np.random.default_rng(9))
    for name in ("shapes_rotation", "shapes_translation"):
        (tmp_path / "DAVISDATA" / f"{name}.bag").unlink()
    with pytest.raises(InputError, match="1 recording found"):
        load("davis", tmp_path)


def test_an_empty_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data.root is empty"):
        TONIC_DATASETS["nmnist"].load(DataConfig(root="", download=False), 0)


def nmnist_sample(root: Path, x: list[int], y: list[int], t: list[int], p: list[int]) -> Path:
    path = root / "NMNIST" / "Train" / "5" / "00001.bin"
    write_nmnist_bin(path, np.array(x), np.array(y), np.array(t), np.array(p))
    write_nmnist_bin(root / "NMNIST" / "Test" / "5" / "00001.bin", np.array([1]), np.array([1]),
                     np.array([5]), np.array([0]))
    return path


def test_a_truncated_bin_file_is_named(tmp_path: Path) -> None:
    path = nmnist_sample(tmp_path, [1, 2], [3, 4], [10, 20], [0, 1])
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(InputError, match=r"00001\.bin: 8 bytes is not a whole number of 5-byte events") as error:
        load("nmnist", tmp_path)
    assert str(error.value).startswith(str(path))


def test_events_outside_the_sensor_are_refused(tmp_path: Path) -> None:
    path = nmnist_sample(tmp_path, [1, 40], [3, 4], [10, 20], [0, 1])
    with pytest.raises(InputError, match="x outside the sensor's width 34") as error:
        load("nmnist", tmp_path)
    assert str(error.value).startswith(str(path))


def test_ncaltech101_recordings_larger_than_the_atis_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "NCALTECH101" / "Caltech101" / "ant" / "image_0001.bin"
    write_nmnist_bin(path, np.array([0, 245]), np.array([0, 5]), np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(InputError, match="outside the sensor's width 240"):
        load("ncaltech101", tmp_path, test_fraction=0.0)


def test_unsorted_timestamps_are_sorted(tmp_path: Path) -> None:
    nmnist_sample(tmp_path, [1, 2, 3], [4, 5, 6], [300, 100, 200], [1, 0, 1])
    train, _ = load("nmnist", tmp_path)
    np.testing.assert_array_equal(train.events[0], make_events([2, 3, 1], [5, 6, 4], [100, 200, 300], [0, 1, 1]))


def garbage(path: Path) -> None:
    path.write_bytes(b"not a recording" * 3)


def corrupt_shd_spikes(root: Path) -> None:
    import h5py

    with h5py.File(root / "SHD" / "shd_train.h5", "a") as file:
        del file["spikes/times"]


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    # dataset: (how the files are broken, the file the message must start with, relative to root)
    "dvsgesture": (lambda root: garbage(root / "DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy"),
                   "DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy: cannot be read"),
    "cifar10dvs": (lambda root: garbage(root / "CIFAR10DVS/cat/cifar10_cat_1.aedat4"),
                   "CIFAR10DVS/cat/cifar10_cat_1.aedat4: cannot be read"),
    "pokerdvs": (lambda root: garbage(root / "POKERDVS/pips_train/he/he_1.npy"),
                 "POKERDVS/pips_train/he/he_1.npy: tonic could not read"),
    "shd": (corrupt_shd_spikes, "SHD/shd_train.h5 sample 0: cannot be read"),
    "ntidigits": (lambda root: garbage(root / "NTIDIGITS18/n-tidigits.hdf5"),
                  "NTIDIGITS18/n-tidigits.hdf5: tonic could not read"),
    "davis": (lambda root: garbage(root / "DAVISDATA/shapes_rotation.bag"),
              "DAVISDATA/shapes_rotation.bag: cannot be read"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corrupt_file_is_named(name: str, tmp_path: Path) -> None:
    WRITERS[name](tmp_path, np.random.default_rng(6))
    corrupt, message = CORRUPTIONS[name]
    corrupt(tmp_path)
    with pytest.raises(InputError) as error:
        load(name, tmp_path, test_fraction=0.34)
    assert str(error.value).startswith(f"{tmp_path}/{message}"), str(error.value)
    assert "\n" not in str(error.value)


def test_an_unknown_ncaltech101_class_folder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "NCALTECH101" / "Caltech101" / "unicorn" / "image_0001.bin"
    write_nmnist_bin(path, np.array([0]), np.array([0]), np.array([1]), np.array([0]))
    with pytest.raises(InputError, match="class folder 'unicorn' is not one of N-Caltech101's 101 classes"):
        load("ncaltech101", tmp_path)


# --- DAVIS under NumPy 2 --------------------------------------------------------------------------------


def test_importrosbag_alone_fails_under_numpy_2_and_the_reader_puts_it_back(tmp_path: Path) -> None:
    davis_bags(tmp_path, np.random.default_rng(7))
    rosbag_module = importlib.import_module("importRosbag.importRosbag")
    davis_module = importlib.import_module("tonic.datasets.davisdataset")
    bag = str(tmp_path / "DAVISDATA" / "shapes_6dof.bag")
    if int(np.__version__.split(".")[0]) >= 2:
        with pytest.raises(OverflowError, match="out of bounds for uint8"):
            rosbag_module.importRosbag(bag, disable_bar=True)
    original = rosbag_module.import_dvs_msgs_EventArray, davis_module.importRosbag
    with davis_bag_reader():
        topics = davis_module.importRosbag(bag)
    assert len(topics["/dvs/events"]["ts"]) == 8 and "/dvs/imu" in topics
    assert (rosbag_module.import_dvs_msgs_EventArray, davis_module.importRosbag) == original


# --- the registry ---------------------------------------------------------------------------------------


def test_the_registry_declares_every_dataset() -> None:
    from tonic.datasets import DAVISDATA

    assert set(TONIC_DATASETS) == {"nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "pokerdvs", "shd",
                                   "ntidigits", "davis"}
    assert [TONIC_DATASETS[name].n_classes for name in TONIC_DATASETS] == [10, 11, 10, 101, 4, 20, 11, 25]
    assert tuple(DAVISDATA.recordings) == DAVIS_RECORDINGS
    assert list(NCALTECH101_CLASSES) == sorted(set(NCALTECH101_CLASSES))
    assert [name for name, spec in TONIC_DATASETS.items() if spec.has_frames] == ["davis"]
    assert {spec.kind for spec in TONIC_DATASETS.values()} == {"vision", "audio"}
    assert all(spec.duration_us == 0 for spec in TONIC_DATASETS.values())
