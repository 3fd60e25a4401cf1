"""Statistics of `synthetic-digits` for calibrating the simulator against N-MNIST (docs/simulator.md).

For the default DataConfig (or one changed with --set key=value, repeatable), simulates the default study's
train and test split (256 + 128 digits, seed 0) and prints per sample: events (mean, sd, min, max), ON
share, active pixels, events per saccade, and how many of the events the shot noise and the leak add
(the same digits simulated with that part switched off). The simulation time is the median of --repeats
runs. With --nmnist ROOT it prints the same statistics for the first --files .bin files of a real N-MNIST
copy (ROOT/NMNIST/Train/<digit>/*.bin, read with tonic's reader) next to them.

    .venv/bin/python benchmarks/calibrate_simulator.py [--set background=0.4] [--repeats 3] \
        [--nmnist ~/data --files 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import tomllib
from pathlib import Path

import numpy as np

from sparsity_latency.config import DataConfig
from sparsity_latency.data import synthetic

SEED = 0


def sample_statistics(samples: list[np.ndarray]) -> dict[str, float]:
    """Per-sample event statistics of tonic-style event arrays (x, y, t in µs, p in {0, 1})."""
    counts = np.array([len(events) for events in samples])
    on = sum(int((events["p"] == 1).sum()) for events in samples)
    active = [len(np.unique(events["x"].astype(np.int64) * 256 + events["y"])) for events in samples]
    saccades = np.array([np.bincount(np.minimum(events["t"] // int(synthetic.SACCADE_US), 2), minlength=3)
                         for events in samples])
    return {"samples": len(samples), "events_mean": counts.mean(), "events_sd": counts.std(),
            "events_min": counts.min(), "events_max": counts.max(), "on_share": on / max(counts.sum(), 1),
            "active_pixels_mean": float(np.mean(active)),
            **{f"saccade{k + 1}_events_mean": saccades[:, k].mean() for k in range(3)}}


def simulated(config: DataConfig) -> list[np.ndarray]:
    train, test = synthetic.synthetic_digits(config, SEED)
    return train.events + test.events


def parse_sets(pairs: list[str]) -> dict[str, object]:
    return {key: tomllib.loads(f"v = {value}")["v"] for key, value in (pair.split("=", 1) for pair in pairs)}


def nmnist_samples(root: Path, n_files: int) -> list[np.ndarray]:
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    files = sorted((root / "NMNIST" / "Train").glob("*/*.bin"))
    chosen = np.random.default_rng(SEED).permutation(len(files))[:n_files]
    return [read_mnist_file(str(files[i]), dtype=NMNIST.dtype) for i in sorted(chosen)]


def print_table(columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    print(f"{'':26}" + "".join(f"{name:>22}" for name in names))
    for key in columns[names[0]]:
        print(f"{key:26}" + "".join(f"{columns[name][key]:>22.3f}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="DataConfig key=value (TOML value)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nmnist", type=Path, help="folder holding NMNIST/Train/<digit>/*.bin")
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    config = dataclasses.replace(DataConfig(), **parse_sets(args.set))
    print("DataConfig:", {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                          if f.name in SIMULATOR_KEYS})

    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        samples = simulated(config)
        seconds.append(time.perf_counter() - start)
    columns = {"synthetic-digits": sample_statistics(samples),
               "no shot noise": sample_statistics(simulated(dataclasses.replace(config, shot_noise_hz=0.0))),
               "no leak": sample_statistics(simulated(dataclasses.replace(config, leak_rate_hz=0.0)))}
    if args.nmnist:
        columns["N-MNIST (real)"] = sample_statistics(nmnist_samples(args.nmnist.expanduser(), args.files))
    print_table(columns)
    print(f"simulation of {len(samples)} digits: median {statistics.median(seconds):.2f} s "
          f"over {args.repeats} runs (all: {', '.join(f'{s:.2f}' for s in seconds)})")


SIMULATOR_KEYS = ("contrast_threshold", "threshold_sigma", "refractory_us", "render_dt_us", "background",
                  "leak_rate_hz", "shot_noise_hz", "aps_interval_us")

if __name__ == "__main__":
    main()
