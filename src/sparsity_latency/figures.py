"""The report's figures, drawn on matplotlib `Figure` objects (no pyplot state) and returned as PNG bytes.

Each figure function takes a tidy frame and returns the PNG, or None when there is nothing to draw.
Colours follow the training method (one per method, the same in every figure and every report).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy import stats

from sparsity_latency.config import METHOD_SETTINGS

DPI = 100
CONFIDENCE = 0.95
AXES_INCHES = (2.6, 1.9)  # width, height of one small multiple's axes
MAX_COLUMNS = 3
TITLE_INCHES, LEGEND_INCHES = 0.45, 0.35  # above the panels (figure title), below them (legend of methods)
TICK_CHAR_INCHES = 0.055  # width of a character of a tick label, for the heatmaps' margins
MAX_LISTED_TICKS = 8  # up to this many distinct x values (eps budgets, epochs) each get a tick
GRID_POINTS = 50  # where a trend line and its band are evaluated
HEATMAP_CELL_INCHES = 0.45
ANNOTATE_MAX_CELLS = 80  # heatmap cells are labelled with r when a panel has at most this many
SIGNIFICANCE = 0.05  # p_bh below this is marked
DIVERGING = "RdBu_r"  # negative r blue, positive red
PALETTE = colormaps["tab10"].colors
FONT_SMALL, FONT_TICKS = 8, 7


@dataclass(frozen=True)
class Margins:
    """Space in inches around one panel's axes, for tick labels, axis labels and the panel title."""

    left: float = 0.8
    right: float = 0.15
    bottom: float = 0.55
    top: float = 0.3


MARGINS = Margins()
UNITS = (  # (pattern in the measure name, unit shown on the axis), first match wins
    (r"_hoyer$", "Hoyer, 0–1"),
    (r"_fraction$", "fraction"),
    (r"_ms(_|$)", "ms / sample"),
    (r"_pj$", "pJ / sample"),
    (r"^synops$", "SynOps / sample"),
    (r"time_steps$", "time steps"),
)


def ordered(names: Iterable[str], canonical: Sequence[str]) -> list[str]:
    """The distinct names in the order of `canonical`, names it does not hold after them, alphabetically."""
    rank = {name: i for i, name in enumerate(canonical)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(rank)), name))


def method_order(methods: Iterable[str]) -> list[str]:
    """Training methods in registry order (standard first), unknown ones after."""
    return ordered(methods, list(METHOD_SETTINGS))


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """A hex colour per method, fixed by the method's place in the registry so that it is the same in every report."""
    order = method_order([*METHOD_SETTINGS, *methods])
    return {method: to_hex(PALETTE[order.index(method) % len(PALETTE)]) for method in set(methods)}


def axis_label(measure: str) -> str:
    """The measure's name with its unit, e.g. `energy_pj (pJ / sample)`."""
    unit = next((unit for pattern, unit in UNITS if re.search(pattern, measure)), "")
    return f"{measure} ({unit})" if unit else measure


def mean_band(x: np.ndarray, y: np.ndarray, grid: np.ndarray,
              confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Least-squares line of y on x at `grid`, and the half-width of the t-based confidence band of its mean.

    Half-width t(1 − α/2; n − 2) · s · √(1/n + (g − x̄)²/Sxx), s² = SSE/(n − 2). None when x has fewer than 2
    points or no spread; the half-width is None with fewer than 3 points.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    centered = x - x.mean() if n else x
    sxx = float(centered @ centered)
    if n < 2 or sxx == 0:
        return None
    slope = float(centered @ (y - y.mean())) / sxx
    intercept = y.mean() - slope * x.mean()
    fit = intercept + slope * grid
    if n < 3:
        return fit, None
    residual = y - (intercept + slope * x)
    scale = math.sqrt(float(residual @ residual) / (n - 2))
    t = stats.t.ppf((1 + confidence) / 2, n - 2)
    return fit, t * scale * np.sqrt(1 / n + (grid - x.mean()) ** 2 / sxx)


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes at the report's fixed dpi, without a timestamp; the figure is cleared after."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        figure.clear()
    return buffer.getvalue()


def _panels(count: int, title: str, axes_inches: tuple[float, float] = AXES_INCHES, margins: Margins = MARGINS,
            max_columns: int = MAX_COLUMNS, extra_right: float = 0.0) -> tuple[Figure, list[Axes]]:
    """A figure of `count` axes of `axes_inches`, at most `max_columns` a row, each with `margins` around it.

    The layout is fixed in inches (no layout engine: constrained layout took about a third of the rendering time),
    so every figure of a kind has the same geometry.
    """
    columns = min(max_columns, count)
    rows = math.ceil(count / columns)
    panel_width = margins.left + axes_inches[0] + margins.right
    panel_height = margins.top + axes_inches[1] + margins.bottom
    width = columns * panel_width + extra_right
    height = rows * panel_height + TITLE_INCHES + LEGEND_INCHES
    figure = Figure(figsize=(width, height))
    grid = figure.add_gridspec(
        rows, columns, left=margins.left / width, right=(columns * panel_width - margins.right) / width,
        bottom=(LEGEND_INCHES + margins.bottom) / height, top=1 - (TITLE_INCHES + margins.top) / height,
        wspace=(margins.left + margins.right) / axes_inches[0], hspace=(margins.top + margins.bottom) / axes_inches[1])
    figure.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")
    return figure, [figure.add_subplot(grid[i // columns, i % columns]) for i in range(count)]


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Small fonts, a light grid, at most 5 ticks, and scientific notation for very small or large numbers."""
    ax.set_title(title, fontsize=FONT_SMALL)
    ax.set_xlabel(xlabel, fontsize=FONT_SMALL)
    ax.set_ylabel(ylabel, fontsize=FONT_SMALL)
    ax.tick_params(labelsize=FONT_TICKS)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.locator_params(nbins=5)
    ax.ticklabel_format(style="sci", scilimits=(-3, 4))
    for offset in (ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()):
        offset.set_fontsize(FONT_TICKS)


def _legend(figure: Figure, methods: Iterable[str], colours: dict[str, str]) -> None:
    handles = [Line2D([], [], color=colours[m], marker="o", linestyle="-", label=m) for m in method_order(methods)]
    figure.legend(handles=handles, loc="lower center", ncols=min(len(handles), 6), fontsize=FONT_SMALL,
                  frameon=False)


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=FONT_SMALL, color="grey")


def _finite_pairs(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    if x not in points or y not in points:
        return points.iloc[0:0]
    return points[np.isfinite(points[x].astype(float)) & np.isfinite(points[y].astype(float))]


def _scatter_panel(ax: Axes, points: pd.DataFrame, x: str, y: str, colours: dict[str, str]) -> None:
    """Runs as points, and per method its least-squares line with the band of the fitted mean."""
    finite = _finite_pairs(points, x, y)
    if finite.empty:
        _no_data(ax)
    for method in method_order(finite["method"]):
        rows = finite[finite["method"] == method]
        xs, ys = rows[x].to_numpy(float), rows[y].to_numpy(float)
        ax.scatter(xs, ys, s=16, color=colours[method], alpha=0.85, edgecolors="none", zorder=3)
        grid = np.linspace(xs.min(), xs.max(), GRID_POINTS)
        trend = mean_band(xs, ys, grid)
        if trend is None:
            continue
        fit, half = trend
        ax.plot(grid, fit, color=colours[method], linewidth=1.2)
        if half is not None:
            ax.fill_between(grid, fit - half, fit + half, color=colours[method], alpha=0.15, linewidth=0)
    _style(ax, x, axis_label(x), axis_label(y))
    if not finite.empty:
        _clip_to(ax, finite[y].to_numpy(float))


def _clip_to(ax: Axes, values: np.ndarray) -> None:
    """Keep the y range within half the points' spread of them: a wide band (few runs) runs off the panel
    instead of squashing the points into a line."""
    low, high = values.min(), values.max()
    pad = 0.5 * max(high - low, 0.1 * abs(high), 1e-12)
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, low - pad), min(top, high + pad))


def scatter_figure(points: pd.DataFrame, y: str, xs: Sequence[str], colours: dict[str, str]) -> bytes | None:
    """One panel per x measure against `y`; `points` holds one row per run: `method` and a column per measure."""
    if not xs or all(_finite_pairs(points, x, y).empty for x in xs):
        return None
    figure, axes = _panels(len(xs), f"{axis_label(y)} against gradient sparsity, one point per run")
    for ax, x in zip(axes, xs, strict=True):
        _scatter_panel(ax, points, x, y, colours)
    _legend(figure, points["method"], colours)
    return to_png(figure)


def _heatmap_panel(ax: Axes, grid: pd.DataFrame, significant: pd.DataFrame, group: str) -> AxesImage:
    """Layers × x measures coloured by r (NaN blank), labelled with r (and * when p_bh < 0.05) when small."""
    values = np.ma.masked_invalid(grid.to_numpy(float))
    cmap = colormaps[DIVERGING].with_extremes(bad="white")
    image = ax.imshow(values, cmap=cmap, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=FONT_TICKS)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=FONT_TICKS)
    ax.set_title(group, fontsize=FONT_SMALL)
    if grid.size <= ANNOTATE_MAX_CELLS:
        for (row, column), r in np.ndenumerate(grid.to_numpy(float)):
            if math.isfinite(r):
                star = "*" if significant.iat[row, column] else ""
                ax.text(column, row, f"{r:.2f}{star}", ha="center", va="center", fontsize=6,
                        color="white" if abs(r) > 0.6 else "black")
    return image


def heatmap_figure(cells: pd.DataFrame, groups: Sequence[str], layers: Sequence[str], xs: Sequence[str],
                   title: str) -> bytes | None:
    """One panel per group of the layer × x-measure grid of r; `cells` has group, layer, x_measure, r, p_bh."""
    if not groups or not cells["r"].notna().any():
        return None
    # x labels are rotated by 60° and end under their column: they reach down sin 60° and left cos 60° of their length
    longest = TICK_CHAR_INCHES * max(map(len, xs))
    margins = Margins(left=0.2 + max(TICK_CHAR_INCHES * max(map(len, layers)), 0.5 * longest),
                      bottom=0.2 + math.sin(math.radians(60)) * longest)
    axes_inches = (HEATMAP_CELL_INCHES * len(xs), HEATMAP_CELL_INCHES * len(layers))
    figure, axes = _panels(len(groups), title, axes_inches, margins, max_columns=2, extra_right=1.0)
    image = None
    for ax, group in zip(axes, groups, strict=True):
        table = cells[cells["group"] == group].groupby(["layer", "x_measure"])[["r", "p_bh"]].first()
        r, p_bh = (table[column].unstack().reindex(index=list(layers), columns=list(xs)) for column in ("r", "p_bh"))
        image = _heatmap_panel(ax, r, p_bh.lt(SIGNIFICANCE), group)
    boxes = [ax.get_position() for ax in axes]
    bottom, top = min(box.y0 for box in boxes), max(box.y1 for box in boxes)
    width = figure.get_figwidth()
    colorbar = figure.colorbar(image, cax=figure.add_axes((1 - 0.85 / width, bottom, 0.12 / width, top - bottom)))
    colorbar.set_label(f"Spearman r (* p_bh < {SIGNIFICANCE})", fontsize=FONT_SMALL)
    colorbar.ax.tick_params(labelsize=FONT_TICKS)
    return to_png(figure)


def _method_band(ax: Axes, runs: pd.DataFrame, colour: str) -> None:
    """Mean over runs against x, and the min–max band over runs (an error bar where there is one x)."""
    summary = runs.groupby("x")["value"].agg(["mean", "min", "max"]).dropna()
    if summary.empty:
        return
    x = summary.index.to_numpy(float)
    ax.plot(x, summary["mean"], color=colour, marker="o", markersize=3, linewidth=1.2)
    if len(x) > 1:
        ax.fill_between(x, summary["min"], summary["max"], color=colour, alpha=0.15, linewidth=0)
    else:
        spread = [summary["mean"] - summary["min"], summary["max"] - summary["mean"]]
        ax.errorbar(x, summary["mean"], yerr=spread, color=colour, capsize=3)


def _x_ticks(ax: Axes, x: np.ndarray) -> None:
    """A tick at each measured x when there are few (eps budgets, epochs), else whole numbers where x is whole."""
    values = np.unique(x)
    if 0 < len(values) <= MAX_LISTED_TICKS:
        ax.set_xticks(values)
    elif np.array_equal(values, np.round(values)):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def band_figure(long: pd.DataFrame, panels: Sequence[str], labels: dict[str, tuple[str, str]], title: str,
                colours: dict[str, str]) -> bytes | None:
    """Per panel and method, the mean over runs of `value` against `x` with a min–max band.

    `long` has columns panel, method, run_id, x, value; labels[panel] = (x label, y label).
    """
    long = long[np.isfinite(long["x"].astype(float)) & np.isfinite(long["value"].astype(float))]
    if long.empty:
        return None
    per_run = long.groupby(["panel", "method", "run_id", "x"], as_index=False)["value"].mean()
    figure, axes = _panels(len(panels), title)
    for ax, panel in zip(axes, panels, strict=True):
        rows = per_run[per_run["panel"] == panel]
        if rows.empty:
            _no_data(ax)
        for method in method_order(rows["method"]):
            _method_band(ax, rows[rows["method"] == method], colours[method])
        _style(ax, panel, *labels[panel])
        _x_ticks(ax, rows["x"].to_numpy(float))
    _legend(figure, per_run["method"], colours)
    return to_png(figure)
