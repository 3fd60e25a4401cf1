"""Real event datasets, read by tonic's own dataset classes (written against tonic 1.7.0) from `data.root/<ClassName>/`.

Each sample is read by the real tonic class's `__getitem__` (so tonic's readers run) and then passes
`check_events` with its file as the source; a reader's failure on one file becomes an InputError
naming that file.

Files present or not: tonic decides at construction by its own check (N-MNIST, for instance, wants
the archive and ≥ 10 000 .bin files) and downloads otherwise. We decide instead: a split is present
when its folder holds at least one sample file (or its single file exists). Then tonic's class is
built as a same-named subclass (tonic takes the folder from the class name) whose `_check_exists`
says yes, so nothing is downloaded. Absent with `data.download = false`: an InputError names the folder.
Absent with `data.download = true`: tonic's own check and download run (DAVIS: the three shapes_*
recordings; POKERDVS: tonic 1.7.0 copies an archive it may not ship).

Subsets: tonic lists a split's samples (file names, labels) at construction without reading them; the
listing is put in a fixed order (sorted by file; by index inside one HDF5 file), and `train_samples` /
`test_samples` draw a seeded random subset of it (0 = all), so only the drawn files are read.
POKERDVS is the exception: tonic reads all of its 131 small files at construction.

Splits: datasets without a split (CIFAR10-DVS, N-Caltech101) hold out `test_fraction` of every
class, rounded to the nearest sample (seeded, stratified); the rest is the training pool. DAVIS holds
out `test_fraction` of the recordings (at least one, and at least one left for training).

Sensors and labels:
- N-MNIST 34×34×2, labels 0–9 from the folder. DVSGesture 128×128×2, 11 classes from the file name.
- CIFAR10-DVS 128×128×2, 10 classes from the folder (tonic's `classes`).
- N-Caltech101 240×180×2: recordings differ in size and tonic shifts each to x, y ≥ 0; the ATIS
  recordings are at most 240×180, so this sensor holds every one (an event outside is an InputError).
  Labels: the 101 class folders (100 objects + BACKGROUND_Google) sorted by Python string order.
- POKERDVS 35×35×2, 4 classes (cl, he, di, sp).
- SHD 700×1×1 and N-TIDIGITS18 64×1×1 (audio: x = channel, y = 0; tonic's polarity 1 becomes 0, our
  single polarity). SHD: 20 classes (English then German digits, the file's `labels`). N-TIDIGITS18:
  the 11 single-digit classes o, 1–9, z (tonic's `single_digits`); sequences of digits are left out.
- DAVIS (DAVISDATA) 240×180×2 with intensity frames: each recording (ROS1 bag) is one sample. It has
  no class labels; the label is the recording's index among the 25 recordings tonic knows (the class
  names), which only identifies the scene.

Times: SHD, N-TIDIGITS18 and DAVIS store seconds as floats and DVSGesture stores milliseconds; tonic
scales them to µs and truncates to integers (1.001 ms → 1000 µs). The subclasses keep float times and
`check_events` rounds to the nearest µs. DAVIS times are relative to the first event (tonic's origin),
its frames' times too (tonic makes those relative to the first frame), and frames are scaled to [0, 1].

NumPy 2 and DAVIS: tonic reads bags with importRosbag 1.0.4, whose dvs_msgs/EventArray decoder builds
x, y and the timestamps as `uint8_column * 2**8 (… 2**24)`; NumPy 2 (NEP 50) keeps the uint8 type and
raises "OverflowError: Python integer 256 out of bounds for uint8" on every bag with events. While a
bag is read, `davis_bag_reader` puts our decoder (the same records read with a little-endian
structured dtype) in importRosbag's dispatch, and wraps the importRosbag that tonic calls so it also
notes each frame's time from the first event; both are put back afterwards. No installed file changes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from sparsity_latency.config import DataConfig
from sparsity_latency.data.events import EventSplit, IntensityFrames, check_events
from sparsity_latency.data.spec import DatasetSpec
from sparsity_latency.errors import InputError

NMNIST_RECORD_BYTES = 5
DAVIS_EVENTS_TOPIC = "/dvs/events"
DAVIS_FRAMES_TOPIC = "/dvs/image_raw"
DAVIS_DEFAULT_RECORDINGS = ("shapes_6dof", "shapes_rotation", "shapes_translation")  # downloaded when none is there
FRAME_TIMES_KEY = "ts_us_from_first_event"  # added to importRosbag's image topic by our wrapper

NCALTECH101_CLASSES = (
    "BACKGROUND_Google", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant",
    "barrel", "bass", "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera",
    "cannon", "car_side", "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab",
    "crayfish", "crocodile", "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly",
    "electric_guitar", "elephant", "emu", "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield",
    "gerenuk", "gramophone", "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis",
    "inline_skate", "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin",
    "mayfly", "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon",
    "pizza", "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone", "schooner", "scissors",
    "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler", "starfish", "stegosaurus", "stop_sign",
    "strawberry", "sunflower", "tick", "trilobite", "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat",
    "windsor_chair", "wrench", "yin_yang",
)
SHD_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
               "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun")
NTIDIGITS_CLASSES = ("o", "1", "2", "3", "4", "5", "6", "7", "8", "9", "z")
DAVIS_RECORDINGS = (  # tonic's DAVISDATA.recordings, in its order
    "boxes_6dof", "boxes_rotation", "boxes_translation", "calibration", "dynamic_6dof", "dynamic_rotation",
    "dynamic_translation", "hdr_boxes", "hdr_poster", "office_spiral", "office_zigzag", "outdoors_running",
    "outdoors_walking", "poster_6dof", "poster_rotation", "poster_translation", "shapes_6dof", "shapes_rotation",
    "shapes_translation", "slider_close", "slider_depth", "slider_far", "slider_hdr_close", "slider_hdr_far", "urban",
)

# Float times (µs after tonic's scaling) in place of tonic's integer field, rounded by check_events.
FLOAT_TXP = np.dtype([("t", np.float64), ("x", np.int64), ("p", np.int64)])
FLOAT_TXYP = np.dtype([("t", np.float64), ("x", np.int64), ("y", np.int64), ("p", np.int64)])
FLOAT_XYPT = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.float64)])


class Sample(NamedTuple):
    """One listed sample: its index in tonic's dataset, its name in messages, its label."""

    index: int
    source: str
    label: int


@dataclass(frozen=True)
class Opened:
    """A constructed tonic dataset of one split and its listed samples."""

    dataset: Any
    samples: list[Sample]
    where: Path


class TonicSet:
    """One of tonic's dataset classes: where its files live, how its samples are listed and converted."""

    tonic_name: ClassVar[str]  # tonic's class, and the folder under data.root
    sensor_size: ClassVar[tuple[int, int, int]]
    classes: ClassVar[tuple[str, ...]]
    files: ClassVar[str]
    kind: ClassVar[str] = "vision"
    has_split: ClassVar[bool] = True
    has_frames: ClassVar[bool] = False
    sample_suffix: ClassVar[str] = ""  # a split is present when it holds such a file; "" = it is the file
    event_dtype: ClassVar[np.dtype | None] = None  # replaces tonic's `dtype` (float times)

    def spec(self) -> DatasetSpec:
        """The registry entry of this dataset."""
        return DatasetSpec(self.sensor_size, self.classes, 0.0, self.load, kind=self.kind, files=self.files,
                           has_frames=self.has_frames, folder=self.tonic_name)

    def load(self, config: DataConfig, seed: int) -> tuple[EventSplit, EventSplit]:
        """Train and test splits (seeded subsets of `train_samples` / `test_samples`; 0 = all)."""
        folder = dataset_root(config) / self.tonic_name
        rng = np.random.default_rng(seed)
        if self.has_split:
            train, test = self.open(folder, True, config.download), self.open(folder, False, config.download)
            train_pool, test_pool = np.arange(len(train.samples)), np.arange(len(test.samples))
        else:
            train = test = self.open(folder, None, config.download)
            labels = np.array([sample.label for sample in train.samples])
            train_pool, test_pool = self.hold_out(labels, config.test_fraction, rng)
        train_picks = draw(train_pool, config.train_samples, rng, f"{train.where}: the train split",
                           "data.train_samples")
        test_picks = draw(test_pool, config.test_samples, rng, f"{test.where}: the test split", "data.test_samples")
        return self.read(train, train_picks), self.read(test, test_picks)

    # --- where the files are and how tonic is built -------------------------------------------------

    def split_path(self, folder: Path, train: bool | None) -> Path:
        """The folder (or file) holding one split; `train` is None for datasets without a split."""
        return folder

    def present(self, where: Path) -> bool:
        """Our own check: the split's file exists, or its folder holds at least one sample file."""
        if not self.sample_suffix:
            return where.is_file()
        return where.is_dir() and next(where.rglob(f"*{self.sample_suffix}"), None) is not None

    def tonic_kwargs(self, where: Path, train: bool | None) -> dict[str, Any]:
        return {} if train is None else {"train": train}

    def tonic_class(self, offline: bool) -> type:
        """tonic's class under its own name; `offline`: never download (our check found the files)."""
        import tonic.datasets

        base = getattr(tonic.datasets, self.tonic_name)
        attributes: dict[str, Any] = {"__module__": __name__}
        if self.event_dtype is not None:
            attributes["dtype"] = self.event_dtype
        if offline:
            attributes["_check_exists"] = files_found
        return type(base.__name__, (base,), attributes)

    def open(self, folder: Path, train: bool | None, download: bool) -> Opened:
        """tonic's dataset of one split and its listing; downloads only when asked and absent."""
        where = self.split_path(folder, train)
        present = self.present(where)
        if not present and not download:
            expected = f"*{self.sample_suffix} files" if self.sample_suffix else "the file"
            raise InputError(f"{where}: {self.tonic_name} not found here ({expected} expected); "
                             f"data.download = true lets tonic fetch it")
        try:
            dataset = self.tonic_class(offline=present)(str(folder.parent), **self.tonic_kwargs(where, train))
            samples = self.listing(dataset, where)
        except InputError:
            raise
        except Exception as error:
            action = "read" if present else "download"
            raise InputError(f"{self.unreadable_file(where) or where}: tonic could not {action} "
                             f"{self.tonic_name} ({reason(error)})") from error
        if not samples:
            raise InputError(f"{where}: no {self.tonic_name} samples found")
        return Opened(dataset, samples, where)

    def unreadable_file(self, where: Path) -> Path | None:
        """The file that made tonic's construction fail, where one can be named."""
        return None

    def hold_out(self, labels: np.ndarray, test_fraction: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(labels, test_fraction, rng)

    # --- listing and reading ------------------------------------------------------------------------

    def listing(self, dataset: Any, where: Path) -> list[Sample]:
        """Samples of tonic's `data` (file paths) and `targets` (class indices), sorted by file."""
        return file_listing(dataset.data, [self.label(target, path) for target, path in
                                           zip(dataset.targets, dataset.data, strict=True)])

    def label(self, target: Any, source: str) -> int:
        """Our class index of tonic's target; an InputError names the source if it is not a class."""
        label = int(target)
        if not 0 <= label < len(self.classes):
            raise InputError(f"{source}: label {target} is not one of the {len(self.classes)} classes")
        return label

    def check_file(self, sample: Sample) -> None:
        """A cheap check of the file before tonic reads it (tonic may misread a broken one silently)."""

    def read(self, opened: Opened, picks: np.ndarray) -> EventSplit:
        """The picked samples, read and checked one by one."""
        chosen = [opened.samples[int(pick)] for pick in picks]
        events, frames = [], []
        for sample in chosen:
            raw, sample_frames = self.read_sample(opened.dataset, sample)
            events.append(check_events(raw, self.sensor_size, sample.source))
            frames.append(sample_frames)
        return EventSplit(events, np.array([sample.label for sample in chosen], dtype=np.int64),
                          tuple(sample.source for sample in chosen), tuple(frames) if self.has_frames else None)

    def read_sample(self, dataset: Any, sample: Sample) -> tuple[np.ndarray, IntensityFrames | None]:
        """tonic's events of one sample (and its intensity frames where the dataset has them)."""
        self.check_file(sample)
        return self.events(tonic_item(dataset, sample)[0]), None

    def events(self, data: Any) -> np.ndarray:
        """tonic's events of one sample as a structured array with t, x (and y, p)."""
        return data


def files_found(self: Any) -> bool:
    """`_check_exists` of tonic's classes once our own check has found the files: never download."""
    return True


def tonic_item(dataset: Any, sample: Sample) -> tuple[Any, Any]:
    """tonic's `dataset[index]`; a reader's failure becomes an InputError naming the sample's file."""
    try:
        return dataset[sample.index]
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{sample.source}: cannot be read ({reason(error)})") from error


def reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def dataset_root(config: DataConfig) -> Path:
    if not config.root:
        raise InputError("data.root is empty: set it to the folder that holds (or will hold) tonic's "
                         "<ClassName>/ dataset folders")
    return Path(config.root).expanduser()


def file_listing(paths: list[str], labels: list[int]) -> list[Sample]:
    """Samples in file-name order (tonic lists files in directory order, which the file system decides)."""
    order = sorted(range(len(paths)), key=lambda index: str(paths[index]))
    return [Sample(index, str(paths[index]), labels[index]) for index in order]


def draw(pool: np.ndarray, wanted: int, rng: np.random.Generator, what: str, key: str) -> np.ndarray:
    """`wanted` of the pool's indices at random, in pool order (0 = the whole pool)."""
    if wanted == 0:
        return pool
    if wanted > len(pool):
        raise InputError(f"{what} has {len(pool)} samples; {key} = {wanted} asks for more (0 = all)")
    return pool[np.sort(rng.choice(len(pool), size=wanted, replace=False))]


def stratified_split(labels: np.ndarray, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: `test_fraction` of each class, rounded to the nearest sample, held out at random."""
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(np.floor(test_fraction * len(members) + 0.5))
        held[rng.permutation(members)[:n_test]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def without_polarity(events: np.ndarray) -> np.ndarray:
    """Audio events keep t and x; check_events reads the missing y and p as 0 (one channel, one polarity)."""
    return events[["t", "x"]]


# --- the datasets -------------------------------------------------------------------------------------


def check_record_length(sample: Sample) -> None:
    """N-MNIST / N-Caltech101 files are 5-byte records; tonic drops or misreads a partial one."""
    size = os.path.getsize(sample.source)
    if size % NMNIST_RECORD_BYTES:
        raise InputError(f"{sample.source}: {size} bytes is not a whole number of {NMNIST_RECORD_BYTES}-byte "
                         f"events (truncated?)")


class NMnist(TonicSet):
    tonic_name = "NMNIST"
    sensor_size = (34, 34, 2)
    classes = tuple(str(digit) for digit in range(10))
    files = "NMNIST/Train/<digit>/*.bin, NMNIST/Test/<digit>/*.bin"
    sample_suffix = ".bin"

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / ("Train" if train else "Test")

    def check_file(self, sample: Sample) -> None:
        check_record_length(sample)


class DvsGesture(TonicSet):
    tonic_name = "DVSGesture"
    sensor_size = (128, 128, 2)
    classes = ("hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
               "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise", "arm roll",
               "air drums", "air guitar", "other gestures")
    files = "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy, DVSGesture/ibmGestureTest/…"
    sample_suffix = ".npy"
    event_dtype = FLOAT_XYPT

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / ("ibmGestureTrain" if train else "ibmGestureTest")


class Cifar10Dvs(TonicSet):
    tonic_name = "CIFAR10DVS"
    sensor_size = (128, 128, 2)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    files = "CIFAR10DVS/<class>/*.aedat4 (no split: test_fraction of each class held out)"
    has_split = False
    sample_suffix = ".aedat4"


class NCaltech101(TonicSet):
    tonic_name = "NCALTECH101"
    sensor_size = (240, 180, 2)
    classes = NCALTECH101_CLASSES
    files = "NCALTECH101/Caltech101/<class>/*.bin (no split: test_fraction of each class held out)"
    has_split = False
    sample_suffix = ".bin"

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / "Caltech101"

    def label(self, target: Any, source: str) -> int:
        if target not in self.classes:
            raise InputError(f"{source}: class folder '{target}' is not one of N-Caltech101's "
                             f"{len(self.classes)} classes")
        return self.classes.index(target)

    def check_file(self, sample: Sample) -> None:
        check_record_length(sample)


class PokerDvs(TonicSet):
    tonic_name = "POKERDVS"
    sensor_size = (35, 35, 2)
    classes = ("cl", "he", "di", "sp")
    files = "POKERDVS/pips_train/<cl|he|di|sp>/*.npy, POKERDVS/pips_test/…"
    sample_suffix = ".npy"

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / ("pips_train" if train else "pips_test")

    def listing(self, dataset: Any, where: Path) -> list[Sample]:
        """tonic keeps the arrays, not their files: the files are found by walking as tonic walks."""
        paths = [os.path.join(path, name) for path, _, names in os.walk(where)
                 for name in sorted(names) if name.endswith("npy")]
        if len(paths) != len(dataset.targets):
            raise InputError(f"{where}: {len(paths)} .npy files but tonic read {len(dataset.targets)}")
        return file_listing(paths, [self.label(target, path) for target, path in
                                    zip(dataset.targets, paths, strict=True)])

    def unreadable_file(self, where: Path) -> Path | None:
        for path in sorted(where.rglob("*.npy")):
            try:
                np.load(path)
            except Exception:
                return path
        return None


class AudioSet(TonicSet):
    """Spike trains of a cochlea model or silicon cochlea in one HDF5 file: x = channel, no y, one polarity."""

    kind = "audio"
    event_dtype = FLOAT_TXP

    def events(self, data: Any) -> np.ndarray:
        return without_polarity(data)


class Shd(AudioSet):
    tonic_name = "SHD"
    sensor_size = (700, 1, 1)
    classes = SHD_CLASSES
    files = "SHD/shd_train.h5, SHD/shd_test.h5"

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / ("shd_train.h5" if train else "shd_test.h5")

    def listing(self, dataset: Any, where: Path) -> list[Sample]:
        import h5py

        with h5py.File(where, "r") as file:
            targets = file["labels"][()]
        return [Sample(index, f"{where} sample {index}", self.label(target, f"{where} sample {index}"))
                for index, target in enumerate(targets)]


class NTidigits(AudioSet):
    tonic_name = "NTIDIGITS18"
    sensor_size = (64, 1, 1)
    classes = NTIDIGITS_CLASSES
    files = "NTIDIGITS18/n-tidigits.hdf5 (train_* and test_* groups; single digits only)"

    def split_path(self, folder: Path, train: bool | None) -> Path:
        return folder / "n-tidigits.hdf5"

    def tonic_kwargs(self, where: Path, train: bool | None) -> dict[str, Any]:
        return {"train": bool(train), "single_digits": True}

    def listing(self, dataset: Any, where: Path) -> list[Sample]:
        names = dataset._samples  # tonic's single-digit sample names, in its index order
        sources = [f"{where} {dataset.partition} sample {name}" for name in names]
        return [Sample(index, source, self.label(dataset.class_map[name.split("-")[-1]], source))
                for index, (name, source) in enumerate(zip(names, sources, strict=True))]


class Davis(TonicSet):
    tonic_name = "DAVISDATA"
    sensor_size = (240, 180, 2)
    classes = DAVIS_RECORDINGS  # no labels: a recording's label only names its scene
    files = ("DAVISDATA/<recording>.bag (tonic's recording names, e.g. shapes_6dof.bag; data.download "
             "fetches shapes_6dof, shapes_rotation, shapes_translation)")
    has_split = False
    has_frames = True
    sample_suffix = ".bag"  # of a recording tonic knows
    event_dtype = FLOAT_TXYP

    def recordings_in(self, where: Path) -> list[str]:
        """The recordings tonic knows whose bag is in `where`."""
        return [name for name in self.classes if (where / f"{name}.bag").is_file()]

    def present(self, where: Path) -> bool:
        return bool(self.recordings_in(where))

    def tonic_kwargs(self, where: Path, train: bool | None) -> dict[str, Any]:
        return {"recording": self.recordings_in(where) or list(DAVIS_DEFAULT_RECORDINGS)}

    def listing(self, dataset: Any, where: Path) -> list[Sample]:
        return [Sample(index, str(where / f"{name}.bag"), self.classes.index(name))
                for index, name in enumerate(dataset.selection)]

    def hold_out(self, labels: np.ndarray, test_fraction: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One sample per recording, so not stratified: `test_fraction` of the recordings, at least one each side."""
        if len(labels) < 2:
            raise InputError(f"DAVISDATA: {len(labels)} recording found; a train and a test split need 2 or more")
        n_test = min(max(int(np.floor(test_fraction * len(labels) + 0.5)), 1), len(labels) - 1)
        order = rng.permutation(len(labels))
        return np.sort(order[n_test:]), np.sort(order[:n_test])

    def read_sample(self, dataset: Any, sample: Sample) -> tuple[np.ndarray, IntensityFrames | None]:
        with davis_bag_reader():
            (events, _imu, images), _target = tonic_item(dataset, sample)
        frames = davis_frames(images, sample.source, self.sensor_size)
        shift_us = np.round(min(float(events["t"].min()), 0.0))
        if shift_us < 0:  # tonic's origin is the first event in file order; an earlier one becomes t = 0
            events["t"] -= shift_us
            frames = IntensityFrames(frames.times_us - int(shift_us), frames.images)
        return events, frames


def davis_frames(images: dict[str, Any], source: str, sensor_size: tuple[int, int, int]) -> IntensityFrames:
    """The bag's frames as IntensityFrames: µs from the first event, in time order, scaled to [0, 1]."""
    pixels = np.asarray(images["frames"])
    width, height, _ = sensor_size
    if pixels.ndim != 3 or pixels.shape[1:] != (height, width):
        raise InputError(f"{source}: frames of shape {pixels.shape[1:]}; expected single-channel {height} × {width}")
    if pixels.dtype.kind != "u":
        raise InputError(f"{source}: frames of type {pixels.dtype}; expected mono8 or mono16")
    times_us = np.asarray(images[FRAME_TIMES_KEY], dtype=np.int64)
    order = np.argsort(times_us, kind="stable")
    scaled = pixels[order].astype(np.float32) / np.float32(np.iinfo(pixels.dtype).max)
    return IntensityFrames(times_us[order], scaled)


# --- DAVIS bags under NumPy 2 -------------------------------------------------------------------------

ROS_EVENT = np.dtype([("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("polarity", "u1")])


def decode_event_arrays(msgs: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """importRosbag's dvs_msgs/EventArray decoder, NumPy-2 safe: the same dict (x, y, ts in s, pol, dimX,
    dimY), read as packed 13-byte little-endian records instead of sums of uint8 columns."""
    columns: dict[str, list[np.ndarray]] = {"x": [], "y": [], "ts": [], "pol": []}
    height = width = 0
    for msg in msgs:
        data = msg["data"]
        # header: seq, stamp (sec, nsec), frame_id (length-prefixed string); then height, width, n events
        (frame_id_length,) = struct.unpack_from("<I", data, 12)
        height, width, count = struct.unpack_from("<3I", data, 16 + frame_id_length)
        records = np.frombuffer(data, dtype=ROS_EVENT, count=count, offset=28 + frame_id_length)
        columns["x"].append(records["x"])
        columns["y"].append(records["y"])
        columns["ts"].append(records["sec"].astype(np.float64) + records["nsec"].astype(np.float64) / 1e9)
        columns["pol"].append(records["polarity"].astype(bool))
    decoded: dict[str, Any] = {name: np.concatenate(parts) if parts else np.empty(0)
                               for name, parts in columns.items()}
    decoded.update(dimX=width, dimY=height)
    return decoded


def frames_from_first_event(import_rosbag: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """importRosbag that also notes each frame's time in µs from the first event (tonic measures frames
    from the first frame) and checks the bag has events and frames."""

    def read_bag(filename: str, **kwargs: Any) -> dict[str, Any]:
        topics = import_rosbag(filename, **{**kwargs, "disable_bar": True})
        for topic in (DAVIS_EVENTS_TOPIC, DAVIS_FRAMES_TOPIC):
            if topic not in topics:
                raise ValueError(f"the bag has no {topic} topic (topics: {', '.join(topics) or 'none'})")
        events, images = topics[DAVIS_EVENTS_TOPIC], topics[DAVIS_FRAMES_TOPIC]
        if not len(events["ts"]):
            raise ValueError(f"{DAVIS_EVENTS_TOPIC} holds no events")
        images[FRAME_TIMES_KEY] = np.round((np.asarray(images["ts"]) - events["ts"][0]) * 1e6)
        return topics

    return read_bag


@contextlib.contextmanager
def davis_bag_reader() -> Iterator[None]:
    """While tonic's DAVISDATA reads a bag: our EventArray decoder in importRosbag's dispatch and our
    wrapper around the importRosbag that tonic calls; both put back afterwards."""
    rosbag_module = importlib.import_module("importRosbag.importRosbag")
    davis_module = importlib.import_module("tonic.datasets.davisdataset")

    saved = rosbag_module.import_dvs_msgs_EventArray, davis_module.importRosbag
    rosbag_module.import_dvs_msgs_EventArray = decode_event_arrays
    davis_module.importRosbag = frames_from_first_event(rosbag_module.importRosbag)
    try:
        yield
    finally:
        rosbag_module.import_dvs_msgs_EventArray, davis_module.importRosbag = saved


TONIC_DATASETS: dict[str, DatasetSpec] = {
    name: tonic_set.spec()
    for name, tonic_set in (
        ("nmnist", NMnist()),
        ("dvsgesture", DvsGesture()),
        ("cifar10dvs", Cifar10Dvs()),
        ("ncaltech101", NCaltech101()),
        ("pokerdvs", PokerDvs()),
        ("shd", Shd()),
        ("ntidigits", NTidigits()),
        ("davis", Davis()),
    )
}
