"""Kill-and-resume trials: a real `study` killed with SIGKILL at a random moment, then run again to completion,
compared with an uninterrupted study of the same config (`runs.fingerprint`: train and attack tables byte for
byte, trained weights, profile table without its wall-clock columns).

The config is experiments/cluster-smoke.toml (2 runs: standard and pgd-at, 2 epochs, tiny-conv on synthetic
events, CPU). The kill moment of each trial is drawn uniformly, from a seeded generator, between the start and
the moment the uninterrupted study's results were complete (correlations.parquet written; the report is drawn
after it), measured on a second, warm run, so that the caches the first run filled do not stretch it. A trial
whose kill still came after the results were complete is counted apart: it tests nothing.

    .venv/bin/python benchmarks/bench_kill_resume.py [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparsity_latency import runs

CONFIG = Path(__file__).parents[1] / "experiments" / "cluster-smoke.toml"
STUDY = "cluster-smoke"
SCRIPT = Path(sys.executable).with_name("sparsity-latency")


def study(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([str(SCRIPT), "study", str(config), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(config: Path, out: Path) -> float:
    """Run the study to its end; the seconds until its results were complete (correlations.parquet written)."""
    start = time.monotonic()
    process = study(config, out)
    results = None
    while process.poll() is None:
        if results is None and (out / STUDY / "correlations.parquet").exists():
            results = time.monotonic() - start
        time.sleep(0.01)
    if process.returncode != 0:
        raise SystemExit(f"study failed: {process.stderr.read().strip()}")
    return results if results is not None else time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    draw = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        config = CONFIG
        finish(config, root / "warmup")
        duration = finish(config, root / "reference")
        expected = runs.fingerprint(root / "reference" / STUDY)
        print(f"uninterrupted study: results complete after {duration:.1f} s, {len(expected)} digests; "
              f"{args.trials} trials")
        matched = vacuous = 0
        for trial in range(args.trials):
            out = root / f"trial{trial}"
            moment = draw.uniform(0.0, duration)
            process = study(config, out)
            time.sleep(moment)
            process.kill()
            process.wait()
            if (out / STUDY / "correlations.parquet").exists():
                vacuous += 1
                print(f"trial {trial:2d}: kill at {moment:5.1f} s came after correlate (report being drawn)")
                continue
            finish(config, out)
            same = runs.fingerprint(out / STUDY) == expected
            matched += same
            print(f"trial {trial:2d}: kill at {moment:5.1f} s, restart: {'identical' if same else 'DIFFERENT'}")
        tested = args.trials - vacuous
        print(f"{matched} of {tested} killed-and-restarted studies matched the uninterrupted one "
              f"({vacuous} kills came after correlate, while the report was drawn)")


if __name__ == "__main__":
    main()
