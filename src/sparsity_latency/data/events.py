"""The event record used throughout (tonic's field names: x, y, t in µs, p), splits, and validation.

Every sample that enters the tool passes `check_events`: timestamps must be finite and non-negative,
coordinates and polarities inside the sensor; otherwise an InputError names the file and what is wrong.
Unsorted timestamps are the one repair: the events are sorted by time (stable), as a camera's driver
would have delivered them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsity_latency.errors import InputError

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])


def make_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A structured event array from its columns."""
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


@dataclass(frozen=True)
class IntensityFrames:
    """Intensity images of one sample (a DAVIS camera's APS frames): times in µs [K], images [K, H, W] in [0, 1]."""

    times_us: np.ndarray
    images: np.ndarray


@dataclass(frozen=True)
class EventSplit:
    """Events (one structured array per sample), integer labels, where each sample came from, and the
    matching intensity frames where the source has them."""

    events: list[np.ndarray]
    labels: np.ndarray
    sources: tuple[str, ...] = ()
    frames: tuple[IntensityFrames, ...] | None = field(default=None)

    def source(self, index: int) -> str:
        """A name for sample `index` in messages: its file (or file and entry), else its position."""
        return self.sources[index] if self.sources else f"sample {index}"


def check_events(raw: np.ndarray, sensor_size: tuple[int, int, int], source: str) -> np.ndarray:
    """Validate one sample's events against the sensor (width, height, polarities); returns EVENT_DTYPE
    sorted by time. Fields missing from `raw` (y of audio data) read as 0."""
    names = raw.dtype.names or ()
    missing = [name for name in ("x", "t") if name not in names]
    if missing:
        raise InputError(f"{source}: events have no '{missing[0]}' field (fields: {', '.join(names) or 'none'})")
    width, height, polarities = sensor_size
    t = np.asarray(raw["t"])
    if t.dtype.kind == "f" and not np.isfinite(t).all():
        raise InputError(f"{source}: {int((~np.isfinite(t)).sum())} events have a timestamp that is not a number")
    if len(t) and t.min() < 0:
        raise InputError(f"{source}: {int((t < 0).sum())} events have negative timestamps (first: {t.min()})")
    columns = {name: np.asarray(raw[name]).astype(np.int64) if name in names else np.zeros(len(t), np.int64)
               for name in ("x", "y", "p")}
    for name, size, axis in (("x", width, "width"), ("y", height, "height"), ("p", polarities, "polarities")):
        outside = (columns[name] < 0) | (columns[name] >= size)
        if outside.any():
            first = int(columns[name][np.argmax(outside)])
            raise InputError(f"{source}: {int(outside.sum())} events have {name} outside the sensor's "
                             f"{axis} {size} (first: {name} = {first})")
    events = make_events(columns["x"], columns["y"], np.round(t).astype(np.int64) if t.dtype.kind == "f" else t,
                         columns["p"])
    if len(events) > 1 and (np.diff(events["t"]) < 0).any():
        events = events[np.argsort(events["t"], kind="stable")]
    return events
