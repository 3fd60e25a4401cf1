"""`report RESULTS`: one self-contained HTML page over a correlated study (docs/report.md).

index.html holds its CSS inline and every figure as a PNG data URI, so it can be mailed or opened offline;
each figure is also written beside it as a PNG file. Everything is rendered in memory first, then written file
by file atomically, index.html last: a failure leaves the previous report's index.html as it was.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sparsity_latency import figures, runs
from sparsity_latency.analysis import DIFFERENCE, PAIRED, WITHIN
from sparsity_latency.config import STANDARD
from sparsity_latency.errors import InputError
from sparsity_latency.masking import MAIN
from sparsity_latency.measures import LAYER, NETWORK, POOLED, X_MEASURES, Y_MEASURES, layer_order
from sparsity_latency.probes import NET
from sparsity_latency.robustness import failed_checks
from sparsity_latency.statistics import COEFFICIENTS, SPEARMAN

REPORT_DIR = "report"
INDEX = "index.html"
CORRELATE_TABLES = ("correlations", "observations", "pairs")
KINDS = (WITHIN, PAIRED, DIFFERENCE)
RUN_KEYS = ["run_id", "method", "seed"]
SPIKING_PREFIX = "lif"
TRAIN_PANELS = {  # train.parquet column → y label; spike_sparsity is read on the LIF rows, the others on __net__
    "spike_sparsity": "1 − spikes / (T·B·neurons)",
    "input_grad_hoyer": "Hoyer sparsity of ∂L/∂x",
    "input_grad_zero_fraction": "fraction of ∂L/∂x exactly 0",
}
SPIKING_COLUMNS = ("spike_sparsity",)
TABLE_COLUMNS = ("group", "kind", "x", "y", "coefficient", "n", "r", "95 % CI", "p", "p_bh", "note")
MISSING = "–"


@dataclass(frozen=True)
class Study:
    """What the report shows, read from a study folder."""

    name: str
    correlations: pd.DataFrame
    observations: pd.DataFrame
    pairs: pd.DataFrame
    analysed: pd.DataFrame  # run_id, method, seed of the runs the correlations are over
    train: pd.DataFrame  # train rows of those runs
    attack: pd.DataFrame  # attack rows of those runs
    absent: tuple[str, ...]  # runs the correlations are over that have no complete run directory (any more)
    flagged: dict[str, list[str]]  # run id → its failed gradient-masking checks


@dataclass(frozen=True)
class Plot:
    """One figure: its PNG file name, heading, caption, and image (None: not enough data to draw it)."""

    file: str
    title: str
    caption: str
    png: bytes | None


def read_study(results: Path) -> Study:
    """The correlate outputs of a study folder and the train and attack tables of the runs they cover."""
    if not results.is_dir():
        raise InputError(f"results folder not found: {results}")
    tables = {}
    for table in CORRELATE_TABLES:
        path = results / f"{table}.parquet"
        if not path.is_file():
            raise InputError(f"{path} not found: run `sparsity-latency correlate {results}` first")
        tables[table] = runs.read_table(path, table)
    directories = runs.complete_runs(results)
    analysed = pd.concat([tables["pairs"][RUN_KEYS], tables["observations"][RUN_KEYS]]).drop_duplicates("run_id")
    if analysed.empty:  # correlate found nothing to relate: report on every complete run
        manifests = [runs.read_manifest(directory) for directory in directories]
        analysed = pd.DataFrame([{key: m[key] for key in RUN_KEYS} for m in manifests], columns=RUN_KEYS)
    found = [d for d in directories if d.name in set(analysed["run_id"])]
    attack = _concat([runs.read_table(d / "attack.parquet", "attack") for d in found])
    return Study(
        name=results.resolve().name, **tables, analysed=analysed.reset_index(drop=True),
        train=_concat([runs.read_table(d / "train.parquet", "train") for d in found]),
        attack=attack,
        absent=tuple(sorted(set(analysed["run_id"]) - {d.name for d in found})),
        flagged=dict(sorted(failed_checks(attack).items())) if len(attack) else {},
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def network_points(observations: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run_id, method and one column per network-level measure."""
    net = observations[(observations["level"] == NETWORK) & (observations["layer"] == NET)]
    wide = net.groupby(["run_id", "method", "measure"])["value"].first().unstack("measure")
    return wide.reset_index() if not wide.empty else pd.DataFrame(columns=["run_id", "method"])


def robustness_points(attack: pd.DataFrame) -> pd.DataFrame:
    """Robust accuracy of each run against eps, one panel per attack (network rows of the main evaluations, not the
    masking checks' extra runs)."""
    if attack.empty:
        return pd.DataFrame(columns=["panel", "method", "run_id", "x", "value", "norm"])
    rows = attack[(attack["layer"] == NET) & (attack["variant"] == MAIN)]
    return pd.DataFrame({"panel": rows["attack"], "method": rows["method"], "run_id": rows["run_id"],
                         "x": rows["eps"], "value": rows["robust_accuracy"], "norm": rows["norm"]})


def training_points(train: pd.DataFrame) -> pd.DataFrame:
    """Per run and epoch: spike sparsity (mean over LIF layers) and input-gradient sparsity (network row)."""
    if train.empty:
        return pd.DataFrame(columns=["panel", "method", "run_id", "x", "value"])
    spiking = train["layer"].str.startswith(SPIKING_PREFIX)
    parts = []
    for column in TRAIN_PANELS:
        rows = train[spiking] if column in SPIKING_COLUMNS else train[train["layer"] == NET]
        per_epoch = rows.groupby(["method", "run_id", "epoch"], as_index=False)[column].mean()
        parts.append(pd.DataFrame({"panel": column, "method": per_epoch["method"], "run_id": per_epoch["run_id"],
                                   "x": per_epoch["epoch"], "value": per_epoch[column]}))
    return pd.concat(parts, ignore_index=True)


def _measures(study: Study, level: str, column: str, canonical: dict[str, tuple[str, ...]]) -> list[str]:
    """The x or y measures of a level that the correlations or the observations hold, in canonical order."""
    correlations = study.correlations[study.correlations["level"] == level]
    observed = set(study.observations.loc[study.observations["level"] == level, "measure"])
    return figures.ordered(set(correlations[column]) | (observed & set(canonical[level])), canonical[level])


def _file_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) + ".png"


def scatter_plots(study: Study, colours: dict[str, str]) -> list[Plot]:
    """Network level: each latency measure against each gradient-sparsity measure, one point per run."""
    points = network_points(study.observations)
    xs = _measures(study, NETWORK, "x_measure", X_MEASURES)
    ys = _measures(study, NETWORK, "y_measure", Y_MEASURES)
    caption = ("One point per run, coloured by training method; lines: least-squares fit per method, "
               "band: 95 % confidence interval of the fitted mean (t-based; drawn from 3 runs with spread in x).")
    if not ys:
        return [Plot(_file_name("scatter"), "Latency against gradient sparsity", caption, None)]
    return [Plot(_file_name(f"scatter-{y}"), f"{y} against gradient sparsity", caption,
                 figures.scatter_figure(points, y, xs, colours)) for y in ys]


def _heatmap_groups(cells: pd.DataFrame) -> list[str]:
    within = figures.method_order(cells.loc[cells["kind"] == WITHIN, "group"])
    return [*within, *sorted(set(cells.loc[cells["kind"] == PAIRED, "group"]))]


def heatmap_plots(study: Study) -> list[Plot]:
    """Layer level: Spearman r of each spiking layer × x measure, one panel per group, one figure per y measure."""
    correlations = study.correlations
    cells = correlations[(correlations["level"] == LAYER) & (correlations["layer"] != POOLED)
                         & (correlations["coefficient"] == SPEARMAN) & correlations["kind"].isin([WITHIN, PAIRED])]
    layers = layer_order(cells["layer"])
    xs = _measures(study, LAYER, "x_measure", X_MEASURES)
    caption = ("Rows: spiking layers (each stands for its block), columns: gradient-sparsity measures, colour: "
               "Spearman r; blank: r not computable; * p_bh < 0.05. Paired panels relate the difference in "
               "sparsity to the relative latency reduction (standard − adversarial)/standard.")
    ys = _measures(study, LAYER, "y_measure", Y_MEASURES) if not cells.empty else []
    if not ys:
        return [Plot(_file_name("heatmap"), "Per-layer correlations", caption, None)]
    plots = []
    for y in ys:
        chosen = cells[cells["y_measure"] == y]
        png = figures.heatmap_figure(chosen, _heatmap_groups(chosen), layers, xs, f"Spearman r with {y}, per layer")
        plots.append(Plot(_file_name(f"heatmap-{y}"), f"Per-layer correlations with {y}", caption, png))
    return plots


def robustness_plot(study: Study, colours: dict[str, str]) -> Plot:
    """Robust accuracy against eps, one panel per attack."""
    points = robustness_points(study.attack)
    attacks = list(dict.fromkeys(points["panel"]))
    norms = points.groupby("panel")["norm"].first()
    labels = {attack: (f"eps ({norms[attack]})", "robust accuracy") for attack in attacks}
    caption = "Mean over each method's runs, band: min–max over runs (attack.parquet, network rows, variant main)."
    png = figures.band_figure(points, attacks, labels, "Robust accuracy against the attack budget", colours)
    return Plot(_file_name("robustness"), "Robustness against eps", caption, png)


def training_plot(study: Study, colours: dict[str, str]) -> Plot:
    """Spike and input-gradient sparsity over training epochs."""
    points = training_points(study.train)
    labels = {column: ("epoch", ylabel) for column, ylabel in TRAIN_PANELS.items()}
    caption = ("From train.parquet: spike sparsity averaged over the LIF layers, input-gradient sparsity of the "
               "network row; mean over each method's runs, band: min–max over runs.")
    png = figures.band_figure(points, list(TRAIN_PANELS), labels, "Sparsity over training", colours)
    return Plot(_file_name("training"), "Sparsity over training epochs", caption, png)


def _number(value: object, spec: str) -> str:
    return MISSING if pd.isna(value) else format(value, spec)


def _table_rows(correlations: pd.DataFrame) -> pd.DataFrame:
    """Network-level rows in reading order: kind, group (standard first), x, y, coefficient."""
    rows = correlations[correlations["level"] == NETWORK]
    ranks = {
        "kind": {k: i for i, k in enumerate(KINDS)},
        "group": {g: i for i, g in enumerate(figures.method_order(rows["group"]))},
        "x_measure": {m: i for i, m in enumerate(X_MEASURES[NETWORK])},
        "y_measure": {m: i for i, m in enumerate(Y_MEASURES[NETWORK])},
        "coefficient": {c: i for i, c in enumerate(COEFFICIENTS)},
    }
    keys = pd.DataFrame({column: rows[column].map(rank).fillna(len(rank)) for column, rank in ranks.items()})
    keys["name_x"], keys["name_y"] = rows["x_measure"], rows["y_measure"]
    order = keys.sort_values([*ranks, "name_x", "name_y"], kind="stable").index
    return rows.loc[order]


def _table_row(row: pd.Series) -> str:
    n = str(row["n"]) if pd.isna(row["n_reference"]) else f"{row['n']} vs {row['n_reference']}"
    ci = MISSING if pd.isna(row["ci_low"]) else f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    cells = (row["group"], row["kind"], row["x_measure"], row["y_measure"], row["coefficient"], n,
             _number(row["r"], ".3f"), ci, _number(row["p"], ".3g"), _number(row["p_bh"], ".3g"), row["note"])
    significant = ' class="significant"' if row["p_bh"] < figures.SIGNIFICANCE else ""
    return f"<tr{significant}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def correlation_table_html(correlations: pd.DataFrame) -> str:
    """The network-level correlations as an HTML table; rows with p_bh < 0.05 carry class "significant"."""
    rows = _table_rows(correlations)
    if rows.empty:
        return '<p class="empty">No network-level correlations in correlations.parquet.</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "\n".join(_table_row(row) for _, row in rows.iterrows())
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _unmatched_html(pairs: pd.DataFrame) -> str:
    unmatched = pairs[~pairs["matched"].fillna(False).astype(bool)]
    if unmatched.empty:
        return "<p>None: every adversarial run has its standard run, and every standard run is paired.</p>"
    items = []
    for _, row in unmatched.sort_values("run_id").iterrows():
        why = ("standard run no adversarial run pairs with" if row["method"] == STANDARD
               else f"no standard run with pair_key {row['pair_key']}")
        items.append(f"<li><code>{html.escape(row['run_id'])}</code> ({html.escape(row['method'])}, "
                     f"seed {row['seed']}): {html.escape(why)}</li>")
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


def _flagged_html(flagged: dict[str, list[str]]) -> str:
    if not flagged:
        return "<p>None: every run passed its gradient-masking checks (or recorded none).</p>"
    items = [f"<li><code>{html.escape(run)}</code>: {html.escape('; '.join(failed))}</li>"
             for run, failed in flagged.items()]
    return ("<p>Their gradients may mislead: a masked gradient looks sparse without the model being robust "
            "(docs/attacks.md).</p>\n<ul>\n" + "\n".join(items) + "\n</ul>")


def _notes_html(study: Study) -> str:
    notes = study.correlations.loc[study.correlations["note"].fillna("") != "", "note"].value_counts()
    items = [f"<li>{html.escape(note)} <span class=\"count\">(× {count})</span></li>" for note, count in notes.items()]
    if study.absent:
        items.append(f"<li>{len(study.absent)} run(s) in the correlations have no complete run directory, so they "
                     f"are missing from the robustness and training figures: "
                     f"{html.escape(', '.join(study.absent))}</li>")
    return "<ul>\n" + "\n".join(items) + "\n</ul>" if items else "<p>No notes: every correlation was computable.</p>"


def _headline_html(study: Study, colours: dict[str, str]) -> str:
    counts = study.analysed["method"].value_counts()
    methods = "".join(f'<li><span class="swatch" style="background:{colours[method]}"></span>'
                      f"{html.escape(method)}: {counts[method]} run{'s' if counts[method] != 1 else ''}</li>"
                      for method in figures.method_order(counts.index))
    return (f"<h1>Sparsity–latency report: {html.escape(study.name)}</h1>\n"
            f"<p>{len(study.analysed)} runs analysed. Runs per training method:</p>\n"
            f'<ul class="methods">{methods}</ul>')


def _figure_html(plot: Plot) -> str:
    if plot.png is None:
        return f'<h3>{html.escape(plot.title)}</h3>\n<p class="empty">Not enough data for this figure.</p>'
    data = base64.b64encode(plot.png).decode("ascii")
    return (f"<h3>{html.escape(plot.title)}</h3>\n<figure><img src=\"data:image/png;base64,{data}\" "
            f"alt=\"{html.escape(plot.title)}\"><figcaption>{html.escape(plot.caption)} "
            f"(<code>{html.escape(plot.file)}</code>)</figcaption></figure>")


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 0 0 1.5em 0; } img { max-width: 100%; } figcaption { font-size: .85em; color: #555; }
table { border-collapse: collapse; font-size: .8em; } th, td { padding: .2em .5em; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; position: sticky; top: 0; }
tr.significant td { background: #fff1b8; font-weight: 600; }
.empty { color: #a33; font-style: italic; } .count { color: #777; }
ul.methods { list-style: none; padding-left: 0; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .4em; vertical-align: middle; }
"""


def render_html(study: Study, plots: dict[str, list[Plot]]) -> str:
    """The whole page: headline, each section's figures, the correlation table, unmatched runs and notes."""
    colours = figures.method_colours(study.analysed["method"])
    sections = "\n".join(f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(_figure_html(p) for p in section)
                         for heading, section in plots.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Report: {html.escape(study.name)}</title><style>{STYLE}</style></head>
<body>
{_headline_html(study, colours)}
{sections}
<h2>Correlations at network level</h2>
<p>Highlighted: p_bh &lt; {figures.SIGNIFICANCE} (Benjamini–Hochberg). within: runs of one method; paired:
adversarial minus its standard run (x: difference in sparsity, y: relative latency reduction); difference:
r of the adversarial group minus r of the standard group (n vs the standard group's n).</p>
{correlation_table_html(study.correlations)}
<h2>Unmatched runs</h2>
{_unmatched_html(study.pairs)}
<h2>Runs flagged by the gradient-masking checks</h2>
{_flagged_html(study.flagged)}
<h2>Notes</h2>
{_notes_html(study)}
</body>
</html>
"""


def render_plots(study: Study) -> dict[str, list[Plot]]:
    """Every figure of the report, by section."""
    colours = figures.method_colours(study.analysed["method"])
    return {
        "Latency against gradient sparsity (network level)": scatter_plots(study, colours),
        "Per-layer correlations": heatmap_plots(study),
        "Robustness": [robustness_plot(study, colours)],
        "Sparsity during training": [training_plot(study, colours)],
    }


def write_report(results: Path, out: Path | None = None) -> Path:
    """Write `index.html` and one PNG per figure into `out` (default RESULTS/report/); return index.html's path."""
    results = Path(results)
    study = read_study(results)
    out = Path(out) if out is not None else results / REPORT_DIR
    plots = render_plots(study)
    page = render_html(study, plots)
    for plot in (plot for section in plots.values() for plot in section if plot.png is not None):
        runs.write_atomic(out / plot.file, lambda tmp, png=plot.png: tmp.write_bytes(png))
    index = out / INDEX
    runs.write_atomic(index, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return index
