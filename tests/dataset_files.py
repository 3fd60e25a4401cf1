"""Writers of tiny files in the real on-disk formats of the event datasets that tonic reads (tests only).

- N-MNIST / N-Caltech101 .bin: 5-byte records, big-endian: x, y, then bit 7 = polarity and a 23-bit
  timestamp in µs over the last three bytes (tonic's `read_mnist_file`).
- DVSGesture .npy: float [N, 4] columns x, y, p, t in ms. POKERDVS .npy: int [N, 4] columns t, x, y, p.
- CIFAR10-DVS .aedat4: magic line, an IOHeader flatbuffer (no compression, XML description of one event
  stream), then packets: stream id, size, and a size-prefixed `EventPacket` flatbuffer ("EVTS") of
  16-byte `Event` structs (t int64, x int16, y int16, on bool, padding).
- SHD .h5: ragged `spikes/times` (float16 s) and `spikes/units` (uint16), `labels`, `extra/keys`,
  `extra/speaker`. N-TIDIGITS18 .hdf5: `<split>_labels` (sample names ending in the digits) and groups
  `<split>_timestamps` / `<split>_addresses` with one dataset per sample name.
- DAVIS ROS1 bag (written with `rosbags`): dvs_msgs/EventArray on /dvs/events, sensor_msgs/Image (mono8)
  on /dvs/image_raw, optionally sensor_msgs/Imu on /dvs/imu.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT4_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})
DVS_EVENT_MSG = "uint16 x\nuint16 y\ntime ts\nbool polarity\n"
DVS_EVENT_ARRAY_MSG = "std_msgs/Header header\nuint32 height\nuint32 width\ndvs_msgs/Event[] events\n"


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_nmnist_bin(path: Path, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
    """N-MNIST / N-Caltech101 events as 5-byte records (y = 240 would mark a timestamp overflow)."""
    t_us = np.asarray(t_us, dtype=np.int64)
    assert (t_us < 2**23).all() and (np.asarray(y) != 240).all()
    records = np.zeros((len(t_us), 5), dtype=np.uint8)
    records[:, 0], records[:, 1] = x, y
    records[:, 2] = (np.asarray(p, dtype=np.int64) << 7) | ((t_us >> 16) & 0x7F)
    records[:, 3], records[:, 4] = (t_us >> 8) & 0xFF, t_us & 0xFF
    _parent(path).write_bytes(records.tobytes())


def write_dvsgesture_npy(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, t_ms: np.ndarray) -> None:
    np.save(_parent(path), np.column_stack([x, y, p, t_ms]).astype(np.float64))


def write_pokerdvs_npy(path: Path, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
    np.save(_parent(path), np.column_stack([t, x, y, p]).astype(np.int64))


def _pad(data: bytes, multiple: int) -> bytes:
    return data + b"\0" * (-len(data) % multiple)


def _aedat4_ioheader(description: bytes) -> bytes:
    """Ioheader table {compression: int32, file_data_position: int64, description: string}."""
    head = struct.pack("<I", 24) + b"IOHE"  # root offset to the table at 24, file identifier
    head += struct.pack("<5H", 10, 20, 4, 8, 16)  # vtable at 8: sizes, then the three fields' offsets
    table = struct.pack("<iiqI", 24 - 8, 0, -1, 4)  # vtable back-offset, None, -1 = no data table, string at +4
    string = struct.pack("<I", len(description)) + description + b"\0"
    return _pad(_pad(head, 8) + table + string, 4)


def _aedat4_event_packet(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> bytes:
    """A size-prefixed EventPacket {elements: [Event]} flatbuffer, laid out 8-byte aligned."""
    body = struct.pack("<I", 16) + b"EVTS"  # at 4: root offset to the table at 20; at 8: identifier
    body += struct.pack("<3H", 6, 8, 4) + b"\0\0"  # vtable at 12: sizes, offset of `elements`
    body += struct.pack("<iI", 20 - 12, 4)  # table at 20: vtable back-offset, vector at 24 + 4
    events = np.zeros(len(t), dtype=AEDAT4_EVENT)
    events["t"], events["x"], events["y"], events["on"] = t, x, y, p
    body += struct.pack("<I", len(t)) + events.tobytes()  # vector at 28: length, structs from 32
    return struct.pack("<I", len(body)) + body


def write_aedat4(path: Path, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                 size: tuple[int, int] = (128, 128), packet_events: int = 4) -> None:
    """One event stream (id 0) in uncompressed packets of `packet_events` events."""
    description = (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{size[0]}</attr><attr key="sizeY" type="int">{size[1]}</attr>'
        '</node></node></node></dv>'
    ).encode()
    header = _aedat4_ioheader(description)
    parts = [AEDAT4_MAGIC, struct.pack("<I", len(header)), header]
    for start in range(0, len(t), packet_events):
        window = slice(start, start + packet_events)
        packet = _aedat4_event_packet(t[window], x[window], y[window], p[window])
        parts.append(struct.pack("<iI", 0, len(packet)) + packet)
    _parent(path).write_bytes(b"".join(parts))


def write_shd_h5(path: Path, samples: Sequence[tuple[np.ndarray, np.ndarray]], labels: Sequence[int],
                 keys: Sequence[str]) -> None:
    """SHD: per sample (times in s, stored float16; units), ragged."""
    with h5py.File(_parent(path), "w") as file:
        times = file.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = file.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (sample_times, sample_units) in enumerate(samples):
            times[index] = np.asarray(sample_times, dtype=np.float16)
            units[index] = np.asarray(sample_units, dtype=np.uint16)
        file.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        file.create_dataset("extra/keys", data=np.array([key.encode() for key in keys]))
        file.create_dataset("extra/speaker", data=np.zeros(len(samples), dtype=np.uint16))


def write_ntidigits_hdf5(path: Path, splits: dict[str, Sequence[tuple[str, np.ndarray, np.ndarray]]]) -> None:
    """N-TIDIGITS18: per split, samples (name such as "man-im-a-7", times in s, channel addresses)."""
    with h5py.File(_parent(path), "w") as file:
        for split, samples in splits.items():
            file.create_dataset(f"{split}_labels", data=np.array([name.encode() for name, _, _ in samples]))
            timestamps, addresses = file.create_group(f"{split}_timestamps"), file.create_group(f"{split}_addresses")
            for name, times, channels in samples:
                timestamps.create_dataset(name, data=np.asarray(times, dtype=np.float64))
                addresses.create_dataset(name, data=np.asarray(channels, dtype=np.uint16))


def _ros1_typestore() -> Any:
    store = get_typestore(Stores.ROS1_NOETIC)
    types = get_types_from_msg(DVS_EVENT_MSG, "dvs_msgs/msg/Event")
    types.update(get_types_from_msg(DVS_EVENT_ARRAY_MSG, "dvs_msgs/msg/EventArray"))
    store.register(types)
    return store


def write_davis_bag(path: Path, x: np.ndarray, y: np.ndarray, t_ns: np.ndarray, p: np.ndarray,
                    frames: Sequence[tuple[int, np.ndarray]], message_events: int = 3, imu: bool = False,
                    size: tuple[int, int] = (240, 180)) -> None:
    """A DAVIS recording: events (absolute times in ns) in EventArray messages of `message_events`,
    mono8 frames (absolute time in ns, image [H, W]), and one IMU message if asked."""
    store = _ros1_typestore()
    types = store.types
    time = types["builtin_interfaces/msg/Time"]

    def stamp(ns: int) -> Any:
        return types["std_msgs/msg/Header"](seq=0, stamp=time(sec=int(ns) // 10**9, nanosec=int(ns) % 10**9),
                                            frame_id="")

    _parent(path).unlink(missing_ok=True)
    with Writer(path) as writer:
        events_topic = writer.add_connection("/dvs/events", "dvs_msgs/msg/EventArray", typestore=store)
        frames_topic = writer.add_connection("/dvs/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for start in range(0, len(t_ns), message_events):
            window = range(start, min(start + message_events, len(t_ns)))
            events = [types["dvs_msgs/msg/Event"](x=int(x[i]), y=int(y[i]), polarity=bool(p[i]),
                                                  ts=time(sec=int(t_ns[i]) // 10**9, nanosec=int(t_ns[i]) % 10**9))
                      for i in window]
            message = types["dvs_msgs/msg/EventArray"](header=stamp(t_ns[start]), height=size[1], width=size[0],
                                                       events=events)
            writer.write(events_topic, int(t_ns[start]), store.serialize_ros1(message, "dvs_msgs/msg/EventArray"))
        for frame_ns, image in frames:
            message = types["sensor_msgs/msg/Image"](
                header=stamp(frame_ns), height=image.shape[0], width=image.shape[1], encoding="mono8",
                is_bigendian=0, step=image.shape[1], data=np.ascontiguousarray(image, dtype=np.uint8).ravel(),
            )
            writer.write(frames_topic, int(frame_ns), store.serialize_ros1(message, "sensor_msgs/msg/Image"))
        if imu:
            _write_imu(writer, store, stamp(int(t_ns[0])), int(t_ns[0]))


def _write_imu(writer: Any, store: Any, header: Any, time_ns: int) -> None:
    types = store.types
    vector, quaternion = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Quaternion"]
    covariance = np.zeros(9, dtype=np.float64)
    message = types["sensor_msgs/msg/Imu"](
        header=header, orientation=quaternion(x=0.0, y=0.0, z=0.0, w=1.0), orientation_covariance=covariance,
        angular_velocity=vector(x=0.1, y=0.2, z=0.3), angular_velocity_covariance=covariance,
        linear_acceleration=vector(x=0.0, y=0.0, z=9.81), linear_acceleration_covariance=covariance,
    )
    topic = writer.add_connection("/dvs/imu", "sensor_msgs/msg/Imu", typestore=store)
    writer.write(topic, time_ns, store.serialize_ros1(message, "sensor_msgs/msg/Imu"))
