"""`correlate` over a large study: how long the real command takes for 1 000 runs × 20 spiking layers, and how
that time grows with the number of runs.

A synthetic study is written first, run directories exactly as the pipeline leaves them for `correlate`: run.json
from `runs.new_manifest` (status complete, a record for each stage) and train.parquet, attack.parquet and
profile.parquet through `runs.write_table`, so every table passes the schema check (no checkpoint.pt: correlate
does not read it). The network is conv1, lif1, …, convL, lifL, fc with sizes fixed as one architecture's; its
attack table holds PGD (L∞, main variant) at eps 0.03 and 0.1, its profile table the dense and event backends at
batch 1 and 32 and the early-exit rows. Values come from a generator seeded per run: a latent sparsity per run,
higher for adversarial methods, raises spike and gradient sparsity and lowers SynOps, energy and event-driven
latency, so the correlations are not all zero. The smaller studies (`--sizes`) are the first seeds of the
largest one, their files hard-linked, so the study is generated once.

Per study size it then times the command as a user runs it, `sparsity-latency correlate STUDY` in a fresh
process each time (Python start-up and imports included), and `study.correlate_into(STUDY)` in this process; and,
as a reference for the cost of file reading, `runs.complete_runs` alone, and every run.json, attack and profile
table read whole, one by one, with `runs.read_manifest` and `runs.read_table`. All times are medians of
`--repeats`. Exit code 1 if correlate fails.

    .venv/bin/python benchmarks/bench_correlate.py [--runs 1000] [--layers 20] [--methods standard,pgd-at]
        [--sizes 100,300] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from sparsity_latency import runs
from sparsity_latency.config import STANDARD, Config, config_from_dict, config_to_dict, with_changes
from sparsity_latency.errors import InputError
from sparsity_latency.latency.profile import EXIT, SUMMED
from sparsity_latency.models.layers import dynamics_of
from sparsity_latency.neurons import storage_bits
from sparsity_latency.probes import NET

# The settings the synthetic tables follow: the attack table holds PGD at these budgets and no masking checks.
STUDY_SETTINGS = {"study.name": "bench", "train.epochs": 3, "attack.attacks": ["pgd"], "attack.eps": [0.03, 0.1],
                  "attack.checks": False}
INPUT_CHANNELS, KERNEL, CLASSES = 2, 9, 10  # 2×32×32 event frames, 3×3 kernels, 10 classes
ADVERSARIAL_SHIFT = 0.6  # how much sparser (in logits) an adversarially trained run's spikes and gradients are
CLI = Path(sys.executable).parent / "sparsity-latency"


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


# --- the synthetic network ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    """conv1, lif1, …, convL, lifL, fc: channels double and the map halves every four blocks (up to 128 channels)."""

    layers: int
    time_steps: int

    @cached_property
    def channels(self) -> np.ndarray:
        return np.minimum(16 * 2 ** (np.arange(self.layers) // 4), 128)

    @cached_property
    def neurons(self) -> np.ndarray:
        """LIF neurons per sample of each block."""
        side = np.maximum(32 // 2 ** (np.arange(self.layers) // 4), 4)
        return self.channels * side * side

    @cached_property
    def in_channels(self) -> np.ndarray:
        return np.concatenate([[INPUT_CHANNELS], self.channels[:-1]])

    @cached_property
    def weights(self) -> np.ndarray:
        """Weights of conv1 … convL and fc."""
        return np.concatenate([self.in_channels * self.channels * KERNEL, [self.neurons[-1] * CLASSES]])

    @cached_property
    def dense_ops(self) -> dict[str, float]:
        """Operations of a dense forward pass per sample by layer: every weight applied, every neuron updated."""
        conv_ops = self.time_steps * self.neurons * self.in_channels * KERNEL
        ops = {conv: float(n) for conv, n in zip(self.convs, conv_ops, strict=True)}
        ops.update({lif: float(self.time_steps * n) for lif, n in zip(self.spiking, self.neurons, strict=True)})
        ops["fc"] = float(self.time_steps * self.weights[-1])
        return ops

    @property
    def convs(self) -> list[str]:
        return [f"conv{k}" for k in range(1, self.layers + 1)]

    @property
    def spiking(self) -> list[str]:
        return [f"lif{k}" for k in range(1, self.layers + 1)]

    @property
    def weight_layers(self) -> list[str]:
        return [*self.convs, "fc"]


# --- per-layer sparsity, as the probes measure it -----------------------------------------------------------------

@dataclass(frozen=True)
class Sparsity:
    """One pass's spike sparsity per LIF layer and gradient sparsity per tensor: target → form → values."""

    spike: np.ndarray
    grads: dict[str, dict[str, np.ndarray]]

    def columns(self, target: str, index: int) -> dict[str, float]:
        return {f"{target}_{form}": float(values[index]) for form, values in self.grads[target].items()}


def grad_sparsity(rng: np.random.Generator, level: np.ndarray | float, n: int) -> dict[str, np.ndarray]:
    """The three forms of gradient sparsity of n tensors, all rising with `level` (a logit)."""
    zero = sigmoid(level + rng.normal(0, 0.3, n))
    small = zero + (1 - zero) * sigmoid(level - 1.0 + rng.normal(0, 0.3, n))
    hoyer = sigmoid(0.8 * np.asarray(level) - 0.5 + rng.normal(0, 0.3, n))
    return {"zero_fraction": zero, "small_fraction": small, "hoyer": hoyer}


def draw_sparsity(rng: np.random.Generator, net: Network, latent: float) -> Sparsity:
    """Sparsity at a run's latent level: deeper layers spike less; the membrane gradient carries the surrogate's
    zeros on top of the spike gradient's."""
    depth = np.linspace(0.0, 1.0, net.layers)
    spike = sigmoid(1.6 + 0.8 * depth + 0.5 * latent + rng.normal(0, 0.1, net.layers))
    grads = {
        "weight_grad": grad_sparsity(rng, -0.3 + 0.5 * latent + np.linspace(0.0, 1.0, net.layers + 1),
                                     net.layers + 1),
        "spike_grad": grad_sparsity(rng, 0.2 + 0.6 * latent + depth, net.layers),
        "membrane_grad": grad_sparsity(rng, 0.8 + 0.6 * latent + depth, net.layers),
        "input_grad": grad_sparsity(rng, 0.5 * latent, 1),
    }
    return Sparsity(spike, grads)


def sparsity_rows(net: Network, sparsity: Sparsity) -> list[dict]:
    """Rows in the order `probes.layer_sparsity` gives them: weight layers, spiking layers, then `__net__`."""
    rows = [{"layer": layer, **sparsity.columns("weight_grad", i)} for i, layer in enumerate(net.weight_layers)]
    rows += [{"layer": layer, "spike_sparsity": float(sparsity.spike[i]), **sparsity.columns("spike_grad", i),
              **sparsity.columns("membrane_grad", i)} for i, layer in enumerate(net.spiking)]
    rows.append({"layer": NET, **sparsity.columns("input_grad", 0)})
    return rows


# --- the three tables of one run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunDraw:
    """What one run's values are drawn from: its generator, latent sparsity and clean accuracy."""

    rng: np.random.Generator
    latent: float
    clean_accuracy: float
    adversarial: bool


def draw_run(config: Config) -> RunDraw:
    method = config.train.method
    rng = np.random.default_rng([config.seed, zlib.crc32(method.encode())])
    adversarial = method != STANDARD
    latent = float(rng.normal()) + (ADVERSARIAL_SHIFT if adversarial else 0.0)
    clean = float(np.clip(0.92 - 0.06 * adversarial + rng.normal(0, 0.02), 0, 1))
    return RunDraw(rng, latent, clean, adversarial)


def train_rows(config: Config, net: Network, run: RunDraw) -> list[dict]:
    """Epoch × layer; sparsity grows over training towards the run's level."""
    rows = []
    epochs = config.train.epochs
    for epoch in range(1, epochs + 1):
        layers = sparsity_rows(net, draw_sparsity(run.rng, net, run.latent - 0.5 * (epochs - epoch) / epochs))
        accuracy = run.clean_accuracy * (0.7 + 0.3 * epoch / epochs)
        layers[-1].update(loss=float(2.3 * (1 - accuracy) + 0.1), accuracy=accuracy,
                          test_accuracy=accuracy - 0.02)
        rows += [{"epoch": epoch, **row} for row in layers]
    return rows


def attack_rows(config: Config, net: Network, run: RunDraw) -> list[dict]:
    """PGD (L∞, main variant) at each eps × layer; robust accuracy falls with eps, slower after adversarial
    training."""
    rows = []
    for eps in config.attack.eps:
        described = {"attack": "pgd", "norm": "linf", "eps": eps, "variant": "main",
                     "steps": config.attack.pgd_steps, "restarts": config.attack.restarts}
        layers = sparsity_rows(net, draw_sparsity(run.rng, net, run.latent + 2.0 * eps))
        robust = run.clean_accuracy * float(np.exp(-eps * (15.0 if run.adversarial else 60.0)))
        layers[-1].update(clean_accuracy=run.clean_accuracy, robust_accuracy=robust)
        rows += [{**described, **row} for row in layers]
    return rows


def operation_counts(config: Config, net: Network, spike_sparsity: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-sample op counts, traffic, energy and memory by layer in module order, then `__net__` (their sums), as
    `latency.profile.operation_counts` gives them."""
    profile, steps = config.profile, net.time_steps
    bits = storage_bits(config.model.membrane_bits)
    spikes = (1 - spike_sparsity) * steps * net.neurons
    rows: dict[str, dict[str, float]] = {}
    for k, (conv, lif) in enumerate(zip(net.convs, net.spiking, strict=True)):
        if k == 0:  # frame-fed: dense multiply-accumulates
            macs = float(steps * net.neurons[0] * INPUT_CHANNELS * KERNEL)
            rows[conv] = {"macs": macs, "energy_pj": profile.mac_pj * macs}
        else:  # spike-fed: every input spike reaches its fan-out
            synops = float(spikes[k - 1] * net.channels[k] * KERNEL)
            rows[conv] = {"synops": synops, "energy_pj": profile.ac_pj * synops}
        rows[conv].update(weight_memory_bits=float(net.weights[k] * 32),
                          other_param_memory_bits=float(net.channels[k] * 32))
        traffic = float(net.neurons[k] * steps * bits * 2)
        rows[lif] = {"spike_count": float(spikes[k]), "spike_sparsity": float(spike_sparsity[k]),
                     "membrane_traffic_bits": traffic, "energy_pj": profile.memory_pj_per_bit * traffic,
                     "membrane_memory_bits": float(net.neurons[k] * bits)}
    synops = float(spikes[-1] * CLASSES)
    rows["fc"] = {"synops": synops, "energy_pj": profile.ac_pj * synops,
                  "weight_memory_bits": float(net.weights[-1] * 32), "other_param_memory_bits": CLASSES * 32.0}
    memory = ("weight_memory_bits", "other_param_memory_bits", "membrane_memory_bits")
    for row in rows.values():
        row["model_memory_bits"] = sum(row.get(column, 0.0) for column in memory)
    rows[NET] = {column: sum(row.get(column, 0.0) for row in rows.values())
                 for column in (*SUMMED, *memory, "model_memory_bits")}
    rows[NET]["time_steps"] = float(steps)
    return rows


def layer_ms(run: RunDraw, net: Network, counts: dict[str, dict[str, float]], backend: str,
             batch_size: int) -> dict[str, float]:
    """Median per-sample time by layer: the dense backend's follows the dense work whatever the spikes, the event
    backend's the spikes; batching amortizes per-call overhead."""
    per_batch = 1.0 if batch_size == 1 else 0.35
    dense = net.dense_ops
    times = {}
    for layer, row in counts.items():
        if layer == NET:
            continue
        if backend == "dense":
            work = dense[layer]
        else:
            work = 2.0 * row.get("macs", 0.0) + 6.0 * row.get("synops", 0.0) + 3.0 * row.get("spike_count", 0.0)
        times[layer] = (2e-7 * work + 0.002) * per_batch * float(run.rng.lognormal(0, 0.05))
    return times


def profile_rows(config: Config, net: Network, run: RunDraw) -> list[dict]:
    """Backend × batch size × layer (wall-clock on `__net__`), then the early-exit rows."""
    counts = operation_counts(config, net, draw_sparsity(run.rng, net, run.latent).spike)
    threads = config.profile.threads
    rows = []
    for backend in config.profile.backends:
        for batch_size in config.profile.batch_sizes:
            times = layer_ms(run, net, counts, backend, batch_size)
            median = 1.05 * sum(times.values()) + 0.05
            wall = {"wall_ms_p50": median, "wall_ms_p95": median * float(1.1 + abs(run.rng.normal(0, 0.05))),
                    "wall_ms_std": 0.04 * median, "wall_repeats": int(run.rng.integers(15, 60)),
                    "wall_converged": True}
            for layer, values in counts.items():
                row = {"backend": backend, "batch_size": batch_size, "layer": layer, "threads": threads, **values}
                row.update(wall if layer == NET else {"layer_ms_p50": times[layer]})
                rows.append(row)
    for threshold in config.profile.exit_thresholds:
        decided = float(sigmoid(-1.0 + 3.0 * threshold - 0.4 * run.latent + run.rng.normal(0, 0.1)))
        rows.append({"backend": "dense", "batch_size": 0, "layer": EXIT, "threads": threads,
                     "exit_threshold": threshold, "decision_time_steps": max(1.0, net.time_steps * decided),
                     "exit_accuracy": run.clean_accuracy * (0.9 + 0.1 * threshold), "exit_fraction": 1 - decided})
    return rows


# --- the study ----------------------------------------------------------------------------------------------------

def study_configs(seeds: int, methods: list[str]) -> list[Config]:
    """One validated config per run, seeds × methods, as `study.expand_grid` makes them."""
    base = with_changes(config_from_dict({}), STUDY_SETTINGS)
    return [with_changes(base, {"seed": seed, "train.method": method}) for seed in range(seeds) for method in methods]


def run_manifest(template: dict, config: Config) -> dict:
    """run.json of a finished run: `template` (one `runs.new_manifest`, whose git call is slow) with this run's
    identity, config and a record of each stage as `runs.mark_stage` writes it."""
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    settings = {"train": runs.run_identity(config), "attack": config_to_dict(config.attack),
                "profile": config_to_dict(config.profile)}
    stages = {stage: {"settings": settings[stage], "finished": finished, "device": "cpu"} for stage in runs.STAGES}
    stages["attack"]["masking_failures"] = []
    return {**template, "run_id": runs.run_id(config), "pair_key": runs.pair_key(config),
            "method": config.train.method, "seed": config.seed, "config": config_to_dict(config),
            "status": "complete", "stages": stages}


def write_run(study: Path, template: dict, net: Network, config: Config) -> Path:
    """One complete run directory; tables first, run.json last, as the stages finish."""
    manifest = run_manifest(template, config)
    directory = study / manifest["run_id"]
    run = draw_run(config)
    keys = {"run_id": manifest["run_id"], "method": manifest["method"], "seed": manifest["seed"]}
    for table, rows in (("train", train_rows(config, net, run)), ("attack", attack_rows(config, net, run)),
                        ("profile", profile_rows(config, net, run))):
        runs.write_table(directory / f"{table}.parquet", [{**keys, **row} for row in rows], table)
    runs.write_json(directory / runs.MANIFEST, manifest)
    return directory


def generate_study(study: Path, seeds: int, methods: list[str], layers: int, workers: int) -> list[Path]:
    """Write seeds × methods complete runs into `study` with `workers` processes; their directories, seed by
    seed."""
    configs = study_configs(seeds, methods)
    template = runs.new_manifest(configs[0])
    template["neuron"] = {"kind": configs[0].model.neuron, **dynamics_of(configs[0].model).describe()}
    write = partial(write_run, study, template, Network(layers, configs[0].data.time_steps))
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(write, configs, chunksize=max(len(configs) // (8 * workers), 1)))


def link_subset(directories: list[Path], study: Path) -> None:
    """A study of the given runs, their files hard-linked from where they are."""
    for directory in directories:
        shutil.copytree(directory, study / directory.name, copy_function=os.link)


def check_runs(directories: list[Path]) -> None:
    """Read a few runs back through the real readers (manifest and schema checks)."""
    for directory in directories:
        manifest = runs.read_manifest(directory)
        tables = [runs.read_table(directory / f"{table}.parquet", table) for table in runs.STAGES]
        if manifest["status"] != "complete" or any((t["run_id"] != manifest["run_id"]).any() for t in tables):
            raise RuntimeError(f"{directory}: generated run is not complete or not consistent")


# --- timing -------------------------------------------------------------------------------------------------------

def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_inputs(study: Path) -> None:
    """Every table correlate reads, through the same readers."""
    for directory in runs.complete_runs(study):
        runs.read_manifest(directory)
        runs.read_table(directory / "attack.parquet", "attack")
        runs.read_table(directory / "profile.parquet", "profile")


@dataclass
class Timing:
    runs: int
    tests: int = 0
    cli_s: float = float("nan")
    in_process_s: float = float("nan")
    manifests_s: float = float("nan")
    reading_s: float = float("nan")
    failure: str = ""


def time_cli(study: Path, repeats: int, timing: Timing) -> None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([str(CLI), "correlate", str(study)], capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            timing.failure = f"CLI exit {done.returncode}: {done.stderr.strip()[-2000:]}"
            return
    timing.cli_s = statistics.median(times)


def time_in_process(study: Path, repeats: int, timing: Timing) -> None:
    try:
        from sparsity_latency.study import correlate_into

        timing.in_process_s = median_seconds(lambda: correlate_into(study), repeats)
    except Exception:
        timing.failure = timing.failure or f"in-process correlate failed:\n{traceback.format_exc()}"


def time_study(study: Path, n_runs: int, repeats: int) -> Timing:
    """Correlate's times on one study, then (if it ran) the reading reference."""
    timing = Timing(n_runs)
    time_cli(study, repeats, timing)
    time_in_process(study, repeats, timing)
    if timing.failure:
        return timing
    timing.tests = len(pd.read_parquet(study / "correlations.parquet"))
    timing.manifests_s = median_seconds(lambda: runs.complete_runs(study), repeats)
    timing.reading_s = median_seconds(lambda: read_inputs(study), repeats)
    return timing


def print_table(timings: list[Timing], layers: int) -> None:
    print(f"\n{'runs':>6} {'layers':>6} {'tests':>6} {'CLI s':>8} {'in-proc s':>9} {'s/1000 runs':>11} "
          f"{'run.json s':>10} {'whole reads s':>13}")
    for t in timings:
        print(f"{t.runs:>6} {layers:>6} {t.tests:>6} {t.cli_s:>8.2f} {t.in_process_s:>9.2f} "
              f"{1000 * t.in_process_s / t.runs:>11.2f} {t.manifests_s:>10.2f} {t.reading_s:>13.2f}")
    print("medians; CLI: `sparsity-latency correlate STUDY`, a fresh process each; in-proc: study.correlate_into; "
          "s/1000 runs from in-proc;\nrun.json: runs.complete_runs alone; whole reads: complete_runs, then every "
          "run.json, attack and profile table read whole, one by one (runs.read_table)")


# --- main ---------------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of the largest study (seeds × methods)")
    parser.add_argument("--layers", type=int, default=20, help="spiking layers of the network")
    parser.add_argument("--methods", default="standard,pgd-at", help="training methods, comma-separated")
    parser.add_argument("--sizes", default="100,300", help="smaller studies timed beside it, runs comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each timing (median)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing the study")
    parser.add_argument("--keep", type=Path, help="write the studies here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    if min(args.runs, args.layers, args.repeats, args.workers) < 1:
        parser.error("--runs, --layers, --repeats and --workers must be positive")
    return args


def build_studies(root: Path, methods: list[str], seeds: int, sizes: list[int], layers: int,
                  workers: int) -> dict[Path, int]:
    """The largest study (generated, timed and checked) and the smaller ones cut from it: folder → runs."""
    def fresh(n_runs: int) -> Path:
        study = root / f"runs-{n_runs}"
        shutil.rmtree(study, ignore_errors=True)
        return study

    largest = fresh(seeds * len(methods))
    start = time.perf_counter()
    directories = generate_study(largest, seeds, methods, layers, workers)
    generated_s = time.perf_counter() - start
    check_runs(directories[:2] + directories[-2:])
    print(f"generated {len(directories)} runs × {layers} spiking layers ({', '.join(methods)}) in {generated_s:.1f} s "
          f"({1000 * generated_s / len(directories):.1f} ms per run, {workers} processes) into {largest}", flush=True)
    studies = {}
    for n_seeds in sorted({min(max(n // len(methods), 1), seeds) for n in sizes} - {seeds}):
        subset = fresh(n_seeds * len(methods))
        link_subset(directories[:n_seeds * len(methods)], subset)
        studies[subset] = n_seeds * len(methods)
    studies[largest] = len(directories)
    return studies


def main() -> int:
    args = parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-correlate-"))
    try:
        try:
            studies = build_studies(root, methods, max(args.runs // len(methods), 1), sizes, args.layers,
                                    args.workers)
        except InputError as exc:  # an unknown method, say: the config refuses it
            print(f"error: {exc}", file=sys.stderr)
            return 2
        timings = []
        for study, n_runs in studies.items():
            timings.append(time_study(study, n_runs, args.repeats))
            print(f"  timed {n_runs} runs", flush=True)
        print_table(timings, args.layers)
        failures = [f"{t.runs} runs: {t.failure}" for t in timings if t.failure]
        for failure in failures:
            print(f"\ncorrelate FAILED at {failure}", file=sys.stderr)
        return 1 if failures else 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
