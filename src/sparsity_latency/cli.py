"""Command line: argument parsing and printing only; every command calls one library function."""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsity_latency.errors import InputError, NonFiniteLossError
from sparsity_latency.interrupts import StopSignalError, stop_on_signals
from sparsity_latency.masking import describe_check
from sparsity_latency.probes import CHECK, NET
from sparsity_latency.runs import STAGES

if TYPE_CHECKING:
    from sparsity_latency.analysis import Correlation

app = typer.Typer(
    help="Gradient sparsity vs inference latency of adversarially trained, membrane-quantized SNNs.\n\n"
    "Example: sparsity-latency study experiments/smoke.toml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True)
_debug = {"on": False}
# click's UsageError, whether typer depends on click or carries its own copy of it.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (TOML).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set train.epochs=3.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Results root folder.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU if present), cpu or cuda.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
RunArg = Annotated[str, typer.Argument(help="Run directory, or a run id found under --out.", show_default=False)]


def _print_error(message: str) -> None:
    errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _print_error(message)
    raise typer.Exit(code)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input → one line on stderr, exit 2; a failed run → one line, exit 1 (traceback with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except InputError as exc:
            _fail(str(exc), 2)
        except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            _fail(f"cannot write there: {exc}", 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except StopSignalError as exc:
            _fail(str(exc), 1)
        except NonFiniteLossError as exc:
            _fail(f"run failed: {exc}", 1)
        except OSError as exc:  # ENOSPC, EROFS, EACCES … writing results
            _fail(f"cannot write: {exc.strerror or exc} ({exc.filename or 'results'})", 2)
        except Exception as exc:
            if _debug["on"]:
                traceback.print_exc()
            _fail(f"run failed: {type(exc).__name__}: {exc}", 1)

    return wrapper


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _debug["on"] = debug


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, disable=quiet or not errors.is_terminal, transient=True)


def _device(name: str):
    from sparsity_latency.stages import resolve_device

    return resolve_device(name)


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{option} takes comma-separated numbers, got '{text}'") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(f"{option} takes comma-separated finite numbers, got '{text}'")
    return values


def _names(text: str, option: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise InputError(f"{option} takes comma-separated names, got '{text}'")
    return names


def _section_overrides(items: list[str] | None, section: str) -> dict[str, Any]:
    """`--set` items of a command that changes one section of a run's config (the rest of the run is fixed)."""
    from sparsity_latency.config import parse_override

    changes: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_override(item)
        if not key.startswith(f"{section}."):
            raise InputError(f"--set takes {section}.* keys only here (the run's other settings are fixed), "
                             f"got '{key}'")
        changes[key] = value
    return changes


@app.command()
@guarded
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    method: Annotated[str | None, typer.Option(
        help="Training method: standard, pgd-at, fgsm-at, trades, grad-reg or pgd-at+grad-reg.")] = None,
    out: OutOpt = Path("results"),
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train one run; writes run.json, checkpoint.pt and train.parquet.

    Example: sparsity-latency train experiments/smoke.toml --method pgd-at --set train.epochs=3
    """
    from sparsity_latency.config import load_config
    from sparsity_latency.stages import train_stage

    overrides = [*(set_ or []), *([f'train.method="{method}"'] if method else [])]
    cfg = load_config(config, overrides)
    torch_device = _device(device)
    with _progress(quiet) as progress, stop_on_signals() as stop:
        task = progress.add_task(f"train {cfg.train.method} seed {cfg.seed}", total=cfg.train.epochs)
        directory = train_stage(cfg, out, torch_device, lambda epoch: progress.advance(task), stop)
    from sparsity_latency.runs import read_table

    frame = read_table(directory / "train.parquet", "train")
    last = frame[(frame["layer"] == NET) & (frame["epoch"] == frame["epoch"].max())].iloc[0]
    console.print(f"trained {directory}  loss {last['loss']:.3f}  train acc {last['accuracy']:.3f}  "
                  f"test acc {last['test_accuracy']:.3f}")


@app.command()
@guarded
def attack(
    run: RunArg,
    attack: Annotated[str | None, typer.Option("--attack", help="Attacks, comma-separated: fgsm, pgd, pgd-l2, "
                                               "apgd-ce, rga, surrogate-swap, event-flip.")] = None,
    eps: Annotated[str | None, typer.Option(help="L∞ budgets in input units, e.g. 0.01,0.03,0.1.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override an attack key: --set attack.pgd_steps=20 (see docs/config.md).")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when a gradient-masking check fails.")] = False,
    out: OutOpt = Path("results"),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a trained run under attack, with gradient-masking checks; writes attack.parquet.

    Failed checks are shown in red (and flagged in --json); with --strict they also make the exit code 1.

    Example: sparsity-latency attack results/smoke/pgd-at-s0-1a2b3c4d5e --attack pgd,rga --eps 0.01,0.03
    """
    from sparsity_latency.config import with_changes
    from sparsity_latency.runs import find_run, manifest_config, read_manifest, read_table
    from sparsity_latency.stages import attack_stage

    directory = find_run(run, out)
    changes = _section_overrides(set_, "attack")
    if attack is not None:
        changes["attack.attacks"] = _names(attack, "--attack")
    if eps is not None:
        changes["attack.eps"] = _floats(eps, "--eps")
    cfg = with_changes(manifest_config(read_manifest(directory)), changes)
    if strict and not cfg.attack.checks:
        raise InputError("--strict needs the gradient-masking checks: drop attack.checks=false")
    attack_stage(directory, _device(device), cfg.attack)
    frame = read_table(directory / "attack.parquet", "attack")
    _print_attack(frame, directory.name, as_json)
    if strict and not frame.loc[frame["layer"] == CHECK, "check_passed"].all():
        raise typer.Exit(1)


def _print_attack(frame: pd.DataFrame, run_name: str, as_json: bool) -> None:
    """Robust accuracies with the input-gradient sparsity at each attack, then the masking checks."""
    net = frame[frame["layer"] == NET][["attack", "norm", "eps", "variant", "steps", "restarts", "clean_accuracy",
                                        "robust_accuracy", "input_grad_zero_fraction", "input_grad_hoyer"]]
    checks = frame[frame["layer"] == CHECK][["check", "attack", "variant", "eps", "robust_accuracy",
                                             "check_bound_accuracy", "check_reference", "check_passed"]]
    if as_json:
        console.print_json(json.dumps({"attacks": json.loads(net.to_json(orient="records")),
                                       "checks": json.loads(checks.to_json(orient="records")),
                                       "flagged": bool(not checks["check_passed"].all())}))
        return
    _print_frame(net, f"attack · {run_name}", False)
    failed = checks[~checks["check_passed"].astype(bool)]
    if checks.empty:
        console.print("gradient-masking checks: off (attack.checks = false)")
    elif failed.empty:
        console.print(f"gradient-masking checks: all {len(checks)} passed")
    else:
        console.print(f"[bold red]gradient masking suspected[/]: {len(failed)} of {len(checks)} checks failed "
                      "(robust accuracies above may be overestimated)")
        for row in failed.to_dict("records"):
            console.print(f"  [red]✗[/] {describe_check(row)}")


@app.command()
@guarded
def profile(
    run: RunArg,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Backends, comma-separated: dense (torch), event (event-driven engine).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a profile key: --set profile.batch_sizes=[1,8] (see docs/config.md).")] = None,
    out: OutOpt = Path("results"),
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Measure latency of a trained run: wall-clock per backend (network and per layer), SynOps, MACs, energy,
    time steps to decision under early exit; writes profile.parquet (docs/latency.md).

    Example: sparsity-latency profile results/smoke/standard-s0-1a2b3c4d5e --backend dense,event
    """
    from sparsity_latency.config import with_changes
    from sparsity_latency.latency.profile import EXIT
    from sparsity_latency.runs import find_run, manifest_config, read_manifest, read_table
    from sparsity_latency.stages import profile_stage

    directory = find_run(run, out)
    changes = _section_overrides(set_, "profile")
    if backend is not None:
        changes["profile.backends"] = _names(backend, "--backend")
    cfg = with_changes(manifest_config(read_manifest(directory)), changes)
    profile_stage(directory, _device(device), cfg.profile)
    frame = read_table(directory / "profile.parquet", "profile")
    net = frame[frame["layer"] == NET][["backend", "batch_size", "threads", "wall_ms_p50", "wall_ms_p95",
                                        "wall_repeats", "synops", "macs", "energy_pj", "time_steps"]]
    exits = frame[frame["layer"] == EXIT][["exit_threshold", "decision_time_steps", "exit_accuracy",
                                           "exit_fraction"]]
    if as_json:
        console.print_json(json.dumps({"latency": json.loads(net.to_json(orient="records")),
                                       "early_exit": json.loads(exits.to_json(orient="records"))}))
        return
    _print_frame(net, f"profile · {directory.name}", False)
    _print_frame(exits, "time steps to decision (early exit)", False)


@app.command()
@guarded
def correlate(
    results: Annotated[Path, typer.Argument(help="Study folder, e.g. results/smoke.", show_default=False)],
    out: Annotated[Path | None, typer.Option(help="Where to write the tables (default: the study folder).")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack whose gradients are used.")] = None,
    eps: Annotated[float | None, typer.Option(help="Eps whose gradients are used.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a correlate key: --set correlate.bootstrap_resamples=5000 (docs/config.md).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Correlate gradient sparsity with latency across the complete runs of a study (docs/analysis.md); writes
    correlations.parquet, observations.parquet and pairs.parquet.

    Example: sparsity-latency correlate results/smoke --attack pgd --eps 0.03
    """
    from sparsity_latency.config import with_changes
    from sparsity_latency.runs import complete_runs, manifest_config, read_manifest
    from sparsity_latency.study import correlate_into

    changes = _section_overrides(set_, "correlate")
    if attack is not None:
        changes["correlate.attack"] = attack
    if eps is not None:
        changes["correlate.eps"] = eps
    first = manifest_config(read_manifest(complete_runs(results)[0]))
    result = correlate_into(results, out, with_changes(first, changes).correlate)
    _print_correlation(result, as_json)
    if result.flagged and not as_json:
        console.print(f"[bold red]note[/]: {len(result.flagged)} of {len(result.pairs)} runs failed "
                      f"gradient-masking checks; their gradients may mislead: {', '.join(result.flagged)}")


@app.command()
@guarded
def report(
    results: Annotated[Path, typer.Argument(help="A correlated study folder, e.g. results/smoke.", show_default=False)],
    out: Annotated[Path | None, typer.Option(help="Folder of the report (default: RESULTS/report).")] = None,
) -> None:
    """Write one self-contained HTML page with the study's figures and correlation table (docs/report.md).

    Example: sparsity-latency report results/smoke
    """
    from sparsity_latency.report import write_report

    console.print(f"report: {write_report(results, out)}")


@app.command()
@guarded
def study(
    config: ConfigArg,
    set_: SetOpt = None,
    out: OutOpt = Path("results"),
    device: DeviceOpt = "auto",
    executor: Annotated[str, typer.Option(
        help="Where runs execute: inline (this process), local (parallel processes, --jobs), debug (submitit's "
             "in-process debug executor) or slurm (a submitit job array; see docs/cluster.md).")] = "inline",
    jobs: Annotated[int, typer.Option(help="Runs at once with --executor local.")] = 1,
    status: Annotated[bool, typer.Option("--status", help="Show each run's state (pending, running, done, "
                                                          "failed) and exit.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --executor slurm: wait for the jobs, then "
                                                      "correlate.")] = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a whole study (seeds × variants × methods → train, attack, profile), then correlate.

    Stages already complete with the same settings are skipped and training resumes from its last
    checkpoint, so an interrupted study resumes. With --executor slurm the runs not complete go out as one
    job array; run the same command again to collect them, resubmit failed ones and correlate.

    Example: sparsity-latency study experiments/smoke.toml --out results --executor local --jobs 2
    """
    from sparsity_latency import runs
    from sparsity_latency.config import load_config
    from sparsity_latency.executors import EXECUTORS, execute, run_states
    from sparsity_latency.study import expand_grid, finish_study, run_study

    cfg = load_config(config, set_ or [])
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor '{executor}' (known: {', '.join(EXECUTORS)})")
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    grid = expand_grid(cfg)
    if status:
        _print_states(run_states(grid, out), as_json)
        return
    torch_device = _device(device)
    if executor == "inline":
        n_stages = len(STAGES) * len(grid)
        with _progress(quiet) as progress, stop_on_signals() as stop:
            task = progress.add_task(f"study {cfg.study.name}", total=n_stages)

            def on_stage(run_id: str, stage: str, skipped: bool) -> None:
                progress.update(task, advance=1,
                                description=f"{run_id} {stage}{' (done before)' if skipped else ''}")

            result = run_study(cfg, out, torch_device, on_stage, stop)
    else:
        states = {state.run_id: state for state in run_states(grid, out)}
        todo = [c for c in grid if states[runs.run_id(c)].state in ("failed", "not submitted")
                or (executor != "slurm" and states[runs.run_id(c)].state == "pending")]
        if todo:
            with _progress(quiet) as progress:
                task = progress.add_task(f"study {cfg.study.name} ({executor})", total=len(todo))
                failures = execute(executor, todo, out, device, jobs,
                                   lambda run_id, ok: progress.update(task, advance=1, description=run_id))
            if failures:
                for run_id, message in failures.items():
                    _print_error(f"run {run_id} failed: {message}")
                _fail(f"{len(failures)} of {len(grid)} runs failed; run the same command again to retry them", 1)
        states = {state.run_id: state for state in run_states(grid, out)}
        while wait and any(s.state in ("pending", "running") for s in states.values()):
            time.sleep(2)
            states = {state.run_id: state for state in run_states(grid, out)}
        unfinished = [s for s in states.values() if s.state != "done"]
        if unfinished:
            counts = {name: sum(s.state == name for s in unfinished) for name in ("pending", "running", "failed")}
            summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
            if todo and executor == "slurm":
                console.print(f"submitted {len(todo)} runs of study {cfg.study.name} as a SLURM job array")
            console.print(f"{len(grid) - len(unfinished)} of {len(grid)} runs done ({summary}); "
                          f"`sparsity-latency study {config} --status` follows them; the same command again "
                          f"collects them and correlates")
            if counts["failed"] and wait:
                raise typer.Exit(1)
            return
        result = finish_study(cfg, out, grid, 0, 0)
    from sparsity_latency.report import write_report

    page = write_report(result.directory)
    directories = [result.directory / run_id for run_id in result.run_ids]
    if as_json:
        from sparsity_latency.robustness import flagged_runs, robustness_table

        console.print_json(json.dumps({
            "correlations": json.loads(result.correlation.correlations.to_json(orient="records")),
            "unmatched": result.correlation.unmatched,
            "report": str(page),
            "robustness": json.loads(robustness_table(directories).to_json(orient="records")),
            "flagged": flagged_runs(directories),
        }))
        return
    if executor == "inline":
        console.print(f"study {cfg.study.name}: {len(result.run_ids)} runs in {result.directory} "
                      f"({result.stages_run} stages run, {result.stages_skipped} already complete)")
    else:
        console.print(f"study {cfg.study.name}: {len(result.run_ids)} runs in {result.directory} "
                      f"(executor {executor})")
    _print_robustness(directories)
    _print_correlation(result.correlation, as_json)
    console.print(f"report: {page}")


def _print_states(states: list, as_json: bool) -> None:
    frame = pd.DataFrame([{"run_id": s.run_id, "state": s.state, "job_id": s.job_id or "", "detail": s.detail}
                          for s in states])
    if as_json:
        console.print_json(frame.to_json(orient="records"))
        return
    counts = frame["state"].value_counts()
    _print_frame(frame, "runs: " + ", ".join(f"{n} {state}" for state, n in counts.items()), False)


def _print_robustness(directories: list[Path]) -> None:
    """Mean robust accuracy per method (rows) and attack at each budget (columns); then the flagged runs."""
    from sparsity_latency.robustness import flagged_runs, robustness_table

    table = robustness_table(directories)
    wide = table.pivot_table(index="method", columns=["attack", "eps"], values="robust_accuracy", sort=True)
    wide.columns = [f"{attack} {eps:g}" for attack, eps in wide.columns]
    clean = table.groupby("method")["clean_accuracy"].mean().rename("clean")
    _print_frame(pd.concat([clean, wide], axis=1).reset_index(), "mean accuracy under attack (over seeds)", False)
    for run_id, failures in flagged_runs(directories).items():
        console.print(f"[bold red]gradient masking suspected[/] in {run_id}: {'; '.join(failures)}")


data_app = typer.Typer(help="Datasets: list them, simulate synthetic events, inspect and validate files.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
@guarded
def data_list(as_json: JsonOpt = False) -> None:
    """Every dataset with its sensor size, classes, and where it expects its files under data.root.

    Example: sparsity-latency data list
    """
    from sparsity_latency.data import dataset_table

    _print_frame(pd.DataFrame(dataset_table()), "datasets (files relative to data.root)", as_json)


@data_app.command("simulate")
@guarded
def data_simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write into (a data.root).", show_default=False)],
    config: Annotated[Path | None, typer.Option(help="Take the data.* settings from this config.")] = None,
    set_: SetOpt = None,
    file_format: Annotated[str, typer.Option("--format", help="nmnist (.bin files tonic's NMNIST reads) or "
                                             "npz (events and intensity frames).")] = "nmnist",
    seed: Annotated[int, typer.Option(help="Seed of the digit draw and the sensor.", min=0)] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace files already there.")] = False,
) -> None:
    """Simulate synthetic-digits (train and test splits of data.train_samples / data.test_samples) and write
    them as files.

    Example: sparsity-latency data simulate datasets --format nmnist --set data.train_samples=1000
    """
    from sparsity_latency.config import Config, load_config, parse_override, with_changes
    from sparsity_latency.data.synthetic import simulate_to_folder

    cfg = (load_config(config, set_ or []) if config is not None
           else with_changes(Config(), dict(parse_override(item) for item in set_ or [])))
    counts = simulate_to_folder(cfg.data, seed, out, file_format, overwrite)
    console.print(f"wrote {counts['train_files']} train files ({counts['train_events']} events) and "
                  f"{counts['test_files']} test files ({counts['test_events']} events) under {out} as {file_format}")


@data_app.command("inspect")
@guarded
def data_inspect(
    path: Annotated[Path, typer.Argument(help="A data.root folder, or one dataset's folder in it.",
                                         show_default=False)],
    dataset: Annotated[str | None, typer.Option(help="Which dataset, when the folder holds several.")] = None,
    samples: Annotated[int, typer.Option(help="Read a seeded subset of this many samples per split; 0 = all.",
                                         min=0)] = 0,
    show: Annotated[int, typer.Option(help="Per-sample rows to print (all with --json).", min=0)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Validate a dataset folder through the real loader and print per-sample event statistics.

    A bad file (corrupt, truncated, events outside the sensor, negative timestamps) stops it with one line
    naming the file, and exit code 2.

    Example: sparsity-latency data inspect ~/datasets --dataset nmnist --samples 100
    """
    from sparsity_latency.data.inspect import inspect_folder, summary

    found = inspect_folder(path, dataset, samples)
    if as_json:
        console.print_json(found.samples.to_json(orient="records"))
        return
    console.print(f"{found.dataset} under {found.root}: {len(found.samples)} samples read, all valid")
    _print_frame(summary(found.samples), "per split", as_json=False)
    if show:
        _print_frame(found.samples.head(show), f"first {min(show, len(found.samples))} samples", as_json=False)


def _print_frame(frame: pd.DataFrame, title: str, as_json: bool) -> None:
    if as_json:
        console.print_json(frame.to_json(orient="records"))
        return
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, justify="right" if frame[column].dtype.kind in "fi" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def _label(measure: str) -> str:
    """input_grad_hoyer → input hoyer; wall_ms_p50_b1 → wall_ms_p50_b1 (unchanged)."""
    return measure.replace("_grad_", " ").replace("_fraction", "")


def _print_correlation(result: Correlation, as_json: bool) -> None:
    """Network-level Spearman ρ (BH p) of each x × y measure, one column per group; then unmatched and flagged runs."""
    from sparsity_latency.measures import NETWORK
    from sparsity_latency.statistics import SPEARMAN

    if as_json:
        console.print_json(json.dumps({
            "correlations": json.loads(result.correlations.to_json(orient="records")),
            "pairs": json.loads(result.pairs.to_json(orient="records")),
            "unmatched": result.unmatched, "flagged": result.flagged}))
        return
    frame = result.correlations
    frame = frame[(frame["level"] == NETWORK) & (frame["coefficient"] == SPEARMAN)]
    columns = list(dict.fromkeys(zip(frame["kind"], frame["group"], strict=True)))
    table = Table(title="network level · Spearman ρ (Benjamini–Hochberg p): gradient sparsity (x) vs latency (y)",
                  caption="— : not computable (see `note`); paired: Δ sparsity vs relative latency reduction; "
                          "Pearson, 95 % intervals and layer level in correlations.parquet")
    table.add_column("x")
    table.add_column("y")
    for kind, group in columns:
        n = int(frame.loc[(frame["kind"] == kind) & (frame["group"] == group), "n"].max())
        table.add_column(f"{group} n={n}", justify="right")
    for (x, y), rows in frame.groupby(["x_measure", "y_measure"], sort=False):
        cells = []
        for kind, group in columns:
            row = rows[(rows["kind"] == kind) & (rows["group"] == group)].iloc[0]
            cells.append("—" if math.isnan(row["r"]) else f"{row['r']:+.2f} ({row['p_bh']:.2g})")
        table.add_row(_label(x), _label(y), *cells)
    console.print(table)
    if result.unmatched:
        console.print(f"[bold]unmatched runs[/] (no partner of the other training kind; left out of the paired "
                      f"tests): {', '.join(result.unmatched)}")


def main() -> None:
    """Console-script entry point; usage errors too are one line and exit code 2."""
    try:
        code = app(prog_name="sparsity-latency", standalone_mode=False)
    except _USAGE_ERROR as exc:
        if exc.format_message():  # empty after `no_args_is_help` has printed the help
            _print_error(exc.format_message())
        code = 2
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
