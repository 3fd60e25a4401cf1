"""The study report: a self-contained page over a hand-made study folder, its figures, table and failure modes."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from sparsity_latency import figures, runs
from sparsity_latency.config import Config, with_changes
from sparsity_latency.errors import InputError
from sparsity_latency.masking import describe_check
from sparsity_latency.measures import layer_order
from sparsity_latency.probes import CHECK, NET
from sparsity_latency.report import (
    INDEX,
    REPORT_DIR,
    read_study,
    robustness_points,
    training_points,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAYERS = ("conv1", "lif1", "conv2", "lif2", "fc", NET)
SPIKING = ("lif1", "lif2")
ATTACKS = ("fgsm", "pgd")
EPS = (0.0, 0.03, 0.1)
NET_X = ("input_grad_hoyer", "spike_grad_zero_fraction")
NET_Y = ("synops", "dense_wall_ms_b1")
LAYER_X = ("spike_grad_hoyer", "weight_grad_hoyer")
LAYER_Y = ("synops",)
PAIRED, DIFFERENCE = "pgd-at − standard", "pgd-at vs standard"
NAN_NOTE = "x constant"
FAILED_CHECK = {"layer": CHECK, "check": "more-steps", "attack": "pgd", "norm": "linf", "variant": "more-steps",
                "eps": 0.03, "steps": 2, "restarts": 1, "robust_accuracy": 0.8, "check_bound_accuracy": 0.6,
                "check_reference": "pgd (main)", "check_passed": False}
MASKING_FAILURE = describe_check(FAILED_CHECK)


def make_run(study: Path, method: str, seed: int) -> dict:
    """A complete run with train and attack tables whose sparsity grows with epoch, seed and adversarial training."""
    config = with_changes(Config(), {"seed": seed, "train.method": method, "study.name": study.name})
    manifest = runs.new_manifest(config)
    manifest["status"] = "complete"
    manifest["stages"] = {"attack": {"settings": {}}}
    directory = study / manifest["run_id"]
    runs.write_json(directory / "run.json", manifest)
    keys = {"run_id": manifest["run_id"], "method": method, "seed": seed}
    shift = 0.05 * (method != "standard") + 0.01 * seed
    train = []
    for epoch in (1, 2, 3):
        for layer in LAYERS:
            row = {**keys, "epoch": epoch, "layer": layer}
            if layer in SPIKING:
                row["spike_sparsity"] = 0.6 + 0.05 * epoch + shift
            if layer == NET:
                row.update(loss=1.0 / epoch, accuracy=0.5 + 0.1 * epoch, test_accuracy=0.5,
                           input_grad_hoyer=0.3 + 0.1 * epoch + shift, input_grad_zero_fraction=0.1 + shift)
            train.append(row)
    runs.write_table(directory / "train.parquet", train, "train")
    attack = []
    for name in ATTACKS:
        for eps in EPS:
            evaluation = {**keys, "attack": name, "norm": "linf", "eps": eps, "variant": "main", "steps": 1,
                          "restarts": 1}
            attack.append({**evaluation, "layer": NET, "clean_accuracy": 0.9,
                           "robust_accuracy": 0.9 - 5 * eps + shift, "input_grad_hoyer": 0.5})
            attack += [{**evaluation, "layer": layer, "spike_sparsity": 0.8} for layer in SPIKING]
    attack.append({**keys, "attack": "pgd", "norm": "linf", "eps": 0.03, "variant": "more-steps", "steps": 2,
                   "restarts": 1, "layer": NET, "clean_accuracy": 0.9, "robust_accuracy": -1.0})
    if (method, seed) == ("pgd-at", 1):
        attack.append({**keys, **FAILED_CHECK})
    runs.write_table(directory / "attack.parquet", attack, "attack")
    return manifest


def correlation(level: str, layer: str, kind: str, group: str, x: str, y: str, coefficient: str, r: float,
                p_bh: float, n: int = 3, note: str = "") -> dict:
    return {"level": level, "layer": layer, "kind": kind, "group": group, "x_measure": x, "y_measure": y,
            "coefficient": coefficient, "n": n, "n_reference": n if kind == "difference" else None, "r": r,
            "p": p_bh / 2, "p_bh": p_bh, "ci_low": r - 0.2, "ci_high": min(r + 0.2, 1.0), "test": "t",
            "ci_method": "bootstrap percentile", "note": note}


def correlation_rows(layer_rows: bool) -> list[dict]:
    """Network rows of every kind, the two rows the tests look for, a NaN row with a note, and per-layer rows."""
    groups = (("within", "standard"), ("within", "pgd-at"), ("paired", PAIRED), ("difference", DIFFERENCE))
    rows = [correlation("network", NET, kind, group, x, y, coefficient, r=0.1 * (i % 7) - 0.3, p_bh=0.5)
            for kind, group in groups for x in NET_X for y in NET_Y for i, coefficient in
            enumerate(("spearman", "pearson"))]
    # 8 rows per group; the first of a group is input_grad_hoyer × synops, spearman
    rows[0].update(r=-0.8123, p=0.001, p_bh=0.004, ci_low=-0.95, ci_high=-0.6)  # within standard: significant
    rows[8].update(r=0.4567, p=0.1, p_bh=0.3)  # within pgd-at: not significant
    rows[17].update(r=math.nan, p=math.nan, p_bh=math.nan, ci_low=math.nan, ci_high=math.nan, note=NAN_NOTE)
    if layer_rows:
        rows += [correlation("layer", layer, kind, group, x, y, "spearman", r=0.2 * k - 0.5, p_bh=0.01 * k)
                 for k, layer in enumerate(("lif2", "lif1", "__pooled__")) for kind, group in groups[:3]
                 for x in LAYER_X for y in LAYER_Y]
    return rows


def build_study(root: Path, seeds: tuple[int, ...], unmatched_seed: int | None, layer_rows: bool = True) -> Path:
    """A correlated study folder: standard and pgd-at runs per seed, plus an unmatched pgd-at run."""
    study = root / "smoke"
    standard = {seed: make_run(study, "standard", seed) for seed in seeds}
    adversarial = [make_run(study, "pgd-at", seed) for seed in seeds]
    if unmatched_seed is not None:
        adversarial.append(make_run(study, "pgd-at", unmatched_seed))
    pairs, observations = [], []
    for manifest in [*standard.values(), *adversarial]:
        keys = {key: manifest[key] for key in ("run_id", "method", "seed", "pair_key")}
        partner = standard.get(manifest["seed"]) if manifest["method"] != "standard" else None
        pairs.append({**keys, "standard_run_id": partner["run_id"] if partner else "",
                      "matched": manifest["method"] == "standard" or partner is not None})
        value = manifest["seed"] + 2.0 * (manifest["method"] != "standard")
        observations += [{**keys, "level": "network", "layer": NET, "measure": m, "value": value * (i + 1)}
                         for i, m in enumerate([*NET_X, *NET_Y])]
        observations += [{**keys, "level": "layer", "layer": layer, "measure": m, "value": value}
                         for layer in SPIKING for m in [*LAYER_X, *LAYER_Y]]
    runs.write_table(study / "pairs.parquet", pairs, "pairs")
    runs.write_table(study / "observations.parquet", observations, "observations")
    runs.write_table(study / "correlations.parquet", correlation_rows(layer_rows), "correlations")
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_study(tmp_path_factory.mktemp("report"), seeds=(0, 1, 2), unmatched_seed=3)


@pytest.fixture(scope="module")
def index(study: Path) -> Path:
    return write_report(study)


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def table_row(page: str, text: str) -> str:
    """The one <tr> of the correlation table that contains `text`."""
    (row,) = [row for row in re.findall(r"<tr[^>]*>.*?</tr>", page, flags=re.S) if text in row]
    return row


def test_report_is_self_contained_with_every_figure_embedded_and_written(study: Path, index: Path) -> None:
    assert index == study / REPORT_DIR / INDEX
    page = index.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    files = sorted(re.findall(r"<code>([\w.-]+\.png)</code>", page))
    # 2 network y measures → 2 scatter figures, 1 layer y measure → 1 heatmap, robustness, training
    assert files == ["heatmap-synops.png", "robustness.png", "scatter-dense_wall_ms_b1.png", "scatter-synops.png",
                     "training.png"]
    embedded = embedded_images(page)
    assert len(embedded) == len(files)
    for name in files:
        data = (index.parent / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data in embedded
        assert mpimg.imread(index.parent / name).shape[0] > 100
    assert "Not enough data" not in page
    assert not list(index.parent.glob(".*.tmp"))


def test_table_holds_groups_and_measures_and_highlights_significant_rows(index: Path) -> None:
    page = index.read_text(encoding="utf-8")
    for name in ("standard", "pgd-at", PAIRED, DIFFERENCE, *NET_X, *NET_Y):
        assert f"<td>{name}</td>" in page
    significant = table_row(page, "-0.812")
    assert 'class="significant"' in significant and "[-0.95, -0.60]" in significant and "0.004" in significant
    assert 'class="significant"' not in table_row(page, "0.457")
    assert "<td>3 vs 3</td>" in page  # a difference row's n beside the standard group's


def test_unmatched_runs_notes_and_runs_per_method_are_listed(study: Path, index: Path) -> None:
    page = index.read_text(encoding="utf-8")
    pairs = runs.read_table(study / "pairs.parquet", "pairs")
    (unmatched,) = pairs.loc[~pairs["matched"], "run_id"]
    assert f"<code>{unmatched}</code> (pgd-at, seed 3): no standard run with pair_key" in page
    assert "standard: 3 runs" in page and "pgd-at: 4 runs" in page
    assert f"{NAN_NOTE} <span class=\"count\">(× 1)</span>" in page
    (flagged,) = [p.name for p in study.iterdir() if p.name.startswith("pgd-at-s1-")]
    assert f"<code>{flagged}</code>: {MASKING_FAILURE.replace('>', '&gt;')}" in page


def test_report_is_deterministic(study: Path, index: Path, tmp_path: Path) -> None:
    again = write_report(study, tmp_path / "again")
    assert again.read_bytes() == index.read_bytes()


def test_single_run_per_method_without_layer_rows_still_renders(tmp_path: Path) -> None:
    study = build_study(tmp_path, seeds=(0,), unmatched_seed=None, layer_rows=False)
    page = write_report(study, tmp_path / "out").read_text(encoding="utf-8")
    assert "Per-layer correlations</h3>\n<p class=\"empty\">Not enough data" in page
    assert len(embedded_images(page)) == 4  # two scatter plots, robustness, training
    assert "None: every adversarial run has its standard run" in page
    assert "None: every run passed its gradient-masking checks" in page


def test_all_nan_r_and_empty_tables_render_placeholders(tmp_path: Path) -> None:
    study = build_study(tmp_path, seeds=(0, 1), unmatched_seed=None)
    rows = [{**row, "r": math.nan, "note": "n = 2 < 3"} for row in correlation_rows(layer_rows=True)]
    runs.write_table(study / "correlations.parquet", rows, "correlations")
    runs.write_table(study / "observations.parquet", [], "observations")
    runs.write_table(study / "pairs.parquet", [], "pairs")
    page = write_report(study).read_text(encoding="utf-8")
    assert page.count("Not enough data") == 3  # two scatter plots (no observations), one heatmap (all NaN)
    assert "standard: 2 runs" in page and "pgd-at: 2 runs" in page  # from the run folders when no table names runs
    assert "n = 2 &lt; 3 <span class=\"count\">(× " in page


def test_missing_folder_or_correlations_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="results folder not found"):
        write_report(tmp_path / "nowhere")
    study = tmp_path / "fresh"
    make_run(study, "standard", 0)
    with pytest.raises(InputError, match=r"correlations\.parquet not found: run `sparsity-latency correlate"):
        write_report(study)
    assert not (study / REPORT_DIR).exists()


def test_failure_while_rendering_leaves_previous_report_untouched(study: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / INDEX).write_text("previous report")

    def broken(*args: object) -> bytes:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(figures, "heatmap_figure", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(study, out)
    assert sorted(p.name for p in out.iterdir()) == [INDEX]
    assert (out / INDEX).read_text() == "previous report"


def test_robustness_points_keep_network_rows_of_main_evaluations(study: Path) -> None:
    points = robustness_points(read_study(study).attack)
    assert set(points["panel"]) == set(ATTACKS) and (points["value"] >= 0).all()  # more-steps rows hold -1
    assert len(points) == 7 * len(ATTACKS) * len(EPS)


def test_training_points_average_spiking_layers_per_epoch(study: Path) -> None:
    points = training_points(read_study(study).train).set_index(["panel", "run_id", "x"])["value"]
    run = next(p.name for p in sorted(study.iterdir()) if p.name.startswith("pgd-at-s1-"))
    assert points["spike_sparsity", run, 2] == pytest.approx(0.6 + 0.1 + 0.05 + 0.01)
    assert points["input_grad_hoyer", run, 3] == pytest.approx(0.3 + 0.3 + 0.06)


def test_mean_band_by_hand() -> None:
    # x = 0, 1, 2; y = 0, 1, 3: slope Sxy/Sxx = 3/2, intercept 4/3 − 3/2 = −1/6; residuals 1/6, −1/3, 1/6 → SSE 1/6,
    # s² = SSE/(n − 2) = 1/6; at x = 1 the half-width is t(0.975; 1) · √(1/6) · √(1/3).
    fit, half = figures.mean_band(np.array([0.0, 1, 2]), np.array([0.0, 1, 3]), np.array([0.0, 1.0]))
    assert fit == pytest.approx([-1 / 6, 4 / 3])
    assert half[1] == pytest.approx(12.7062047 * math.sqrt(1 / 18))
    two = figures.mean_band(np.array([0.0, 2]), np.array([1.0, 5]), np.array([1.0]))
    assert two[0] == pytest.approx([3.0]) and two[1] is None
    assert figures.mean_band(np.array([1.0, 1, 1]), np.array([0.0, 1, 2]), np.array([1.0])) is None


def test_method_colours_do_not_depend_on_the_other_methods() -> None:
    alone = figures.method_colours(["pgd-at"])
    together = figures.method_colours(["standard", "trades", "pgd-at", "my-method"])
    assert alone["pgd-at"] == together["pgd-at"] and len(set(together.values())) == 4


@pytest.mark.parametrize(("measure", "label"), [("energy_pj", "energy_pj (pJ / sample)"),
                                                ("dense_wall_ms_b1", "dense_wall_ms_b1 (ms / sample)"),
                                                ("input_grad_hoyer", "input_grad_hoyer (Hoyer, 0–1)"),
                                                ("something", "something")])
def test_axis_labels_carry_units(measure: str, label: str) -> None:
    assert figures.axis_label(measure) == label


def test_layers_in_layer_order() -> None:
    assert layer_order(["lif10", "lif2", "lif1", "lif2"]) == ["lif1", "lif2", "lif10"]
