"""Accuracy cost of quantization: ternary membrane + 2-bit weights against full precision, same seeds and epochs.

Trains `tiny-conv` with standard training on `synthetic-digits` twice per seed — once in full precision
(membrane 32 bits, weights 32 bits), once SpQuant-style (membrane 1.58 bits = ternary, weights 2 bits =
ternary) — and prints the final test accuracy of each, their mean over seeds and the difference in
points. Everything else (data, network, optimizer, epochs) is the same. Results go to docs/accuracy.md.

    .venv/bin/python benchmarks/accuracy_check.py [--seeds 0 1 2] [--epochs 10] [--train-samples 1024]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparsity_latency.config import Config, with_changes
from sparsity_latency.probes import NET
from sparsity_latency.training import train

VARIANTS = {
    "full precision (32/32)": {"membrane_bits": 32, "weight_bits": 32},
    "SpQuant (1.58-bit membrane, 2-bit weights)": {"membrane_bits": 1.58, "weight_bits": 2},
}


def test_accuracy(config: Config) -> float:
    rows = train(config, torch.device("cpu")).rows
    last = max(row["epoch"] for row in rows)
    return next(row["test_accuracy"] for row in rows if row["epoch"] == last and row["layer"] == NET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-samples", type=int, default=1024)
    parser.add_argument("--test-samples", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = with_changes(Config(), {
        "data": {"train_samples": args.train_samples, "test_samples": args.test_samples, "time_steps": 8},
        "model": {"channels": [16, 32]},
        "train": {"epochs": args.epochs, "batch_size": 32, "lr": 0.005},
    })
    print(f"tiny-conv (16, 32), synthetic-digits {args.train_samples} train / {args.test_samples} test, T = 8, "
          f"{args.epochs} epochs, Adam lr 0.005, batch 32, standard training, {args.threads} threads")
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for seed in args.seeds:
        for name, model in VARIANTS.items():
            begin = time.perf_counter()
            accuracy = test_accuracy(with_changes(base, {"seed": seed, "model": model}))
            results[name].append(accuracy)
            print(f"seed {seed}  {name:<44} test accuracy {accuracy:.3f}  ({time.perf_counter() - begin:.0f} s)")
    print()
    means = {name: statistics.mean(values) for name, values in results.items()}
    for name, mean in means.items():
        print(f"mean over {len(args.seeds)} seeds  {name:<44} {mean:.3f}")
    full, quantized = means.values()
    print(f"difference: {100 * (full - quantized):+.1f} points (full precision − SpQuant; target: within 3)")


if __name__ == "__main__":
    main()
