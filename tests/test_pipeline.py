"""Library-level behaviour of the stages: determinism, probes, tables, resume after interruption."""

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_TOML
from sparsity_latency import runs
from sparsity_latency.config import config_from_dict, load_config, with_changes
from sparsity_latency.data import load_data
from sparsity_latency.evaluation import evaluate_attacks
from sparsity_latency.models import build_for
from sparsity_latency.neurons import SURROGATES, MultiStep, QuantLeaky, quantize_membrane
from sparsity_latency.neurons.quantizer import dyadic_ceil
from sparsity_latency.probes import NET, SparsityProbe
from sparsity_latency.schema import TABLES
from sparsity_latency.stages import train_stage
from sparsity_latency.study import expand_grid, run_study
from sparsity_latency.training import train

CPU = torch.device("cpu")


@pytest.fixture
def config(tiny_config: Path):
    return load_config(tiny_config)


def test_grid_is_seeds_by_variants_by_methods(config) -> None:
    config = with_changes(config, {"study.variants": [{}, {"model": {"membrane_bits": 4}}]})
    grid = expand_grid(config)
    assert len(grid) == 3 * 2 * 2
    assert len({runs.run_id(c) for c in grid}) == 12
    assert {c.model.membrane_bits for c in grid} == {1.58, 4.0}


def test_training_is_deterministic_for_a_seed(config) -> None:
    first = pd.DataFrame(train(config, CPU).rows)
    second = pd.DataFrame(train(config, CPU).rows)
    pd.testing.assert_frame_equal(first, second)


def test_probe_does_not_change_results(config) -> None:
    data = load_data(config.data, config.seed)
    torch.manual_seed(0)
    model = build_for(config, data).eval()
    x = data.test_x[:8].transpose(0, 1)
    plain = model(x)
    with SparsityProbe(model, record_inputs=True) as probe:
        probed = model(x)
    assert torch.equal(plain, probed)
    assert set(probe.spikes) == {"lif1", "lif2"}
    assert probe.spikes["lif1"].shape[:2] == x.shape[:2]
    assert set(torch.unique(probe.spikes["lif1"]).tolist()) <= {0.0, 1.0}
    assert len(model._forward_hooks) == 0 and all(len(m._forward_hooks) == 0 for m in model.modules())


def test_tables_follow_the_schema(tiny_study: Path) -> None:
    directory = sorted(p.parent for p in tiny_study.glob("*/run.json"))[0]
    for table in ("train", "attack", "profile"):
        frame = runs.read_table(directory / f"{table}.parquet", table)
        assert list(frame.columns) == list(TABLES[table])
    train_frame = pd.read_parquet(directory / "train.parquet")
    lif = train_frame[train_frame["layer"].str.startswith("lif")]
    assert lif["spike_sparsity"].between(0, 1).all() and lif["spike_grad_hoyer"].between(0, 1).all()
    assert lif["membrane_grad_zero_fraction"].between(0, 1).all()
    assert lif["weight_grad_hoyer"].isna().all()
    net = train_frame[train_frame["layer"] == NET]
    assert net[["loss", "accuracy", "input_grad_small_fraction"]].notna().all().all()
    profile = pd.read_parquet(directory / "profile.parquet")
    assert set(profile["backend"]) == {"dense", "event"}
    profile = profile[profile["backend"] == "dense"]
    net = profile[profile["layer"] == NET]
    layers = profile[~profile["layer"].isin([NET, "__exit__"]) & (profile["batch_size"] == 1)]
    assert net["energy_pj"].iloc[0] == pytest.approx(layers["energy_pj"].sum())
    assert net["synops"].iloc[0] == pytest.approx(layers["synops"].sum())
    assert (net["time_steps"] == 4).all()
    # conv1 is fed by frames: dense MACs k²·H_out·W_out·C_in·C_out·T = 9·17·17·2·4·4
    conv1 = layers[layers["layer"] == "conv1"].iloc[0]
    assert conv1["macs"] == 9 * 17 * 17 * 2 * 4 * 4 and np.isnan(conv1["synops"])
    conv2 = layers[layers["layer"] == "conv2"].iloc[0]
    assert conv2["synops"] > 0 and np.isnan(conv2["macs"])


def test_attack_rows_at_eps_zero_match_clean_accuracy(tiny_study: Path) -> None:
    directory = sorted(p.parent for p in tiny_study.glob("*/run.json"))[0]
    frame = pd.read_parquet(directory / "attack.parquet")
    net = frame[frame["layer"] == NET]
    clean = net[net["eps"] == 0.0]
    assert np.allclose(clean["robust_accuracy"], clean["clean_accuracy"])
    stronger = net[net["eps"] > 0]
    assert (stronger["robust_accuracy"] <= stronger["clean_accuracy"] + 1e-9).all()


class StudyInterruptedError(Exception):
    pass


def test_interrupted_study_resumes_without_redoing_completed_stages(tmp_path: Path) -> None:
    raw = tomllib.loads(TINY_TOML)
    raw["study"]["seeds"] = [0]
    config = config_from_dict(raw)
    seen: list[tuple[str, str, bool]] = []

    def stop_after_four(run_id: str, stage: str, skipped: bool) -> None:
        seen.append((run_id, stage, skipped))
        if len(seen) == 4:
            raise StudyInterruptedError

    with pytest.raises(StudyInterruptedError):
        run_study(config, tmp_path, CPU, stop_after_four)
    first_run = tmp_path / "tiny" / seen[0][0]
    stamps = {p: p.stat().st_mtime_ns for p in first_run.iterdir()}
    result = run_study(config, tmp_path, CPU)
    assert (result.stages_skipped, result.stages_run) == (4, 2)
    assert stamps == {p: p.stat().st_mtime_ns for p in first_run.iterdir()}
    assert (tmp_path / "tiny" / "correlations.parquet").is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def _one_run_config():
    raw = tomllib.loads(TINY_TOML)
    raw["study"].update(seeds=[0], methods=["standard"])
    return config_from_dict(raw)


def test_changed_attack_settings_rerun_only_the_attack(tmp_path: Path) -> None:
    config = _one_run_config()
    run_study(config, tmp_path, CPU)
    result = run_study(with_changes(config, {"attack.eps": [0.0, 0.03, 0.05]}), tmp_path, CPU)
    assert (result.stages_run, result.stages_skipped) == (1, 2)


def test_study_correlates_only_its_own_runs(tmp_path: Path) -> None:
    config = _one_run_config()
    run_study(with_changes(config, {"train.epochs": 2}), tmp_path, CPU)  # another complete run, same folder
    result = run_study(config, tmp_path, CPU)
    assert len(list((tmp_path / "tiny").glob("*/run.json"))) == 2
    assert set(result.correlation.observations["run_id"]) == {runs.run_id(config)}
    network = result.correlation.correlations.query("level == 'network'")
    assert (network["n"] == 1).all() and (network["note"] == "n = 1 < 3").all()


def test_interrupted_retraining_keeps_the_earlier_record(tmp_path: Path) -> None:
    config = _one_run_config()
    run_study(config, tmp_path, CPU)
    directory = runs.run_dir(tmp_path, config)

    def interrupt(epoch: int) -> None:
        raise StudyInterruptedError

    (directory / runs.CHECKPOINT).unlink()  # no checkpoint to resume from: training starts again
    with pytest.raises(StudyInterruptedError):
        train_stage(config, tmp_path, CPU, interrupt)
    assert runs.read_manifest(directory)["status"] == "complete"


def test_robust_accuracy_counts_the_samples_evaluated(config) -> None:
    data = load_data(config.data, config.seed)
    torch.manual_seed(0)
    model = build_for(config, data)
    attack = with_changes(config, {"attack.samples": 1000, "attack.eps": [0.0], "attack.attacks": ["fgsm"],
                                   "attack.checks": False}).attack
    rows = evaluate_attacks(model, data.test_x, data.test_y, attack, 0.01, 0, CPU, n_classes=data.n_classes)
    [net] = [row for row in rows if row["layer"] == NET]
    assert net["robust_accuracy"] == pytest.approx(net["clean_accuracy"])


class _OneLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lif1 = MultiStep(QuantLeaky(membrane_bits=1.58, quant_grad="ste"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif1(x)


def test_probe_membrane_gradient_equals_manual_autograd() -> None:
    torch.manual_seed(1)
    inputs = (torch.randn(5, 3, 7) * 1.5).requires_grad_(True)
    weights = torch.randn(5, 3, 7)
    model = _OneLayer()
    with SparsityProbe(model) as probe:
        (model(inputs) * weights).sum().backward()
    # the obvious path: the same steps by hand, keeping each pre-spike membrane; the input current is first
    # rounded up to the neuron's fixed-point grid of 1/4 (β = 1/2), with a straight-through gradient
    mem, pre, spikes = None, [], []
    for x_t in dyadic_ceil(inputs.detach(), 2):
        membrane = x_t if mem is None else 0.5 * mem + x_t
        if mem is None:
            membrane.requires_grad_(True)
        else:
            membrane.retain_grad()
        pre.append(membrane)
        spk, mem = _step(membrane)
        spikes.append(spk)
    (torch.stack(spikes) * weights).sum().backward()
    expected = torch.stack([m.grad for m in pre])
    assert torch.allclose(probe.membrane_grads["lif1"], expected)
    # ∂L/∂spikes is the upstream weight itself: it has not passed through the surrogate
    assert torch.equal(probe.spike_grads["lif1"], weights)
    # the triangle surrogate (width 1) leaves exact zeros in ∂L/∂membrane
    assert (probe.membrane_grads["lif1"] == 0).any()


def _step(membrane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One QuantLeaky step from an already-integrated membrane (fire, hard reset, quantize)."""
    spk = SURROGATES["triangle"](membrane - 1.0, 1.0)
    after = membrane * (1 - spk.detach())
    return spk, quantize_membrane(after, -1.0, 1.0)
