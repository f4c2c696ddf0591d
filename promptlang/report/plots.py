"""The report's plots, drawn with matplotlib (no pyplot, so no display or backend is needed) and returned
as SVG data URIs that an `<img>` shows without any network."""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from promptlang.report.measures import Cell, Reliability, TableRow

STYLE = {"svg.hashsalt": "promptlang", "svg.fonttype": "path", "font.size": 10, "axes.titlesize": 11,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "axes.axisbelow": True}
LEGEND_MAX = 10  # more training curves than this: no legend (their stage ids would hide the plot)


@contextmanager
def drawing(width: float = 6.4, height: float = 3.6, **grid):
    """A figure and its axes (`grid`: `subplots`' arguments); on leaving, `uri` holds the figure as an SVG
    data URI."""
    with rc_context(STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(**grid)
        holder = _Holder(figure, axes)
        yield holder
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    holder.uri = "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Holder:
    def __init__(self, figure, axes):
        self.figure, self.axes, self.uri = figure, axes, ""


def grouped_bars(axes, names: list[str], series: dict[str, list[Cell | None]], ylabel: str) -> None:
    """Bars for each name, one per series (mean × 100) with error bars (std × 100), values written on top."""
    count = max(len(series), 1)
    width = min(0.8 / count, 0.3)
    for k, (label, cells) in enumerate(series.items()):
        xs = [i + (k - (count - 1) / 2) * width for i, c in enumerate(cells) if c is not None]
        kept = [c for c in cells if c is not None]
        bars = axes.bar(xs, [c.mean * 100 for c in kept], width * 0.95, yerr=[c.std * 100 for c in kept],
                        capsize=3, label=label, error_kw={"elinewidth": 1})
        if len(names) * count <= 8:  # (more bars than that and the values overlap: the table has them)
            axes.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    axes.set_xlim(-0.7, len(names) - 0.3)
    axes.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0,
                    ha="right" if len(names) > 4 else "center")
    axes.set_ylabel(ylabel)
    low = min([0.0] + [c.mean * 100 - c.std * 100 for cells in series.values() for c in cells if c])
    axes.set_ylim(low, 108 if low >= 0 else None)
    if len(series) > 1:
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def model_bars(rows: list[TableRow], metrics: list[str]) -> str:
    """Each model group's metrics, mean ± std over its runs."""
    with drawing(min(7.5, max(4.8, 0.7 * len(rows) * max(1, len(metrics) / 2) + 2)), 3.6) as d:
        grouped_bars(d.axes, [r.group for r in rows], {m: [r.cells.get(m) for r in rows] for m in metrics},
                     "score × 100 (mean ± std over seeds)")
        d.axes.set_title("Test scores per model")
    return d.uri


def comparison_bars(names: list[str], metrics: list[str], cells: dict[str, dict[str, Cell]]) -> str:
    """The runs side by side: for each metric, one bar per run (its name → metric → cell)."""
    with drawing(min(8.0, max(5.6, 1.2 * len(metrics) * max(1, len(names) / 2) + 2)), 3.8) as d:
        grouped_bars(d.axes, metrics, {n: [cells[n].get(m) for m in metrics] for n in names},
                     "score × 100 (mean ± std over seeds)")
        d.axes.set_title("Runs side by side")
    return d.uri


def confusion_plot(matrix: list[list[int]], labels: list[str], title: str) -> str:
    """The confusion matrix as a heat map with each cell's count (rows: gold, columns: predicted)."""
    size = min(9.0, 2.6 + 0.5 * len(labels))
    with drawing(size + 0.8, size) as d:
        image = d.axes.imshow(matrix, cmap="Blues")
        d.axes.grid(False)
        bar = d.figure.colorbar(image, ax=d.axes, shrink=0.8, label="examples")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
        peak = max((x for row in matrix for x in row), default=0)
        if len(labels) <= 20:
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    d.axes.text(j, i, str(count), ha="center", va="center",
                                color="white" if count > peak / 2 else "black")
        ticks = range(len(labels))
        d.axes.set_xticks(ticks, labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center")
        d.axes.set_yticks(ticks, labels)
        d.axes.set_xlabel("predicted")
        d.axes.set_ylabel("gold")
        d.axes.set_title(title, fontsize=9)
    return d.uri


def reliability_plot(reliability: Reliability, title: str) -> str:
    """The reliability diagram: each confidence bin's accuracy against the diagonal of perfect calibration,
    with the examples per bin below."""
    edges = reliability.edges
    width = edges[1] - edges[0]
    centers = [e + width / 2 for e in edges[:-1]]
    with drawing(5.0, 4.6, nrows=2, sharex=True, height_ratios=[3, 1]) as d:
        top, bottom = d.axes
        kept = [(c, a) for c, a in zip(centers, reliability.accuracy) if a is not None]
        top.bar([c for c, _ in kept], [a for _, a in kept], width * 0.9, label="accuracy", color="#4c72b0")
        top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{title}\nECE {reliability.ece:.3f} ({len(edges) - 1} bins)", fontsize=9)
        top.legend(fontsize=8, loc="upper left")
        bottom.bar(centers, reliability.counts, width * 0.9, color="#999999")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence (probability of the predicted label)")
        bottom.set_ylabel("examples")
    return d.uri


def curves_plot(curves: dict[str, list[float]], title: str, xlabel: str, ylabel: str, markers: bool) -> str:
    """One line per training stage (its stage id in the legend when there are few)."""
    with drawing(6.4, 3.6) as d:
        alpha = 1.0 if len(curves) <= LEGEND_MAX else 0.5
        for stage, values in curves.items():
            d.axes.plot(range(1, len(values) + 1), values, marker="o" if markers else None, markersize=3,
                        linewidth=1.2, alpha=alpha, label=stage)
        d.axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        d.axes.set_xlabel(xlabel)
        d.axes.set_ylabel(ylabel)
        d.axes.set_title(title if len(curves) <= LEGEND_MAX else f"{title} ({len(curves)} stages)")
        if len(curves) <= LEGEND_MAX:
            d.axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return d.uri


def generations_plot(series: dict[str, dict[int, Cell]], metric: str) -> str:
    """iPET: each pattern's and the ensemble's score per generation, mean ± std over its runs."""
    with drawing(6.0, 3.6) as d:
        for name, points in series.items():
            xs = list(points)
            d.axes.errorbar(xs, [points[g].mean * 100 for g in xs], yerr=[points[g].std * 100 for g in xs],
                            marker="o", capsize=3, label=name, linewidth=2 if name == "ensemble" else 1.2)
        every = sorted({g for points in series.values() for g in points})
        d.axes.set_xticks(every, [f"g{g}" for g in every])
        d.axes.set_xlabel("generation")
        d.axes.set_ylabel(f"{metric} × 100")
        d.axes.set_title(f"iPET: {metric} per generation")
        d.axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return d.uri


def scores_plot(gold: list[float], predicted: list[float], title: str) -> str:
    """A regression's predicted score against the gold score of each test example, with the diagonal."""
    with drawing(4.6, 4.2) as d:
        d.axes.scatter(gold, predicted, s=12, alpha=0.6)
        low, high = min(gold + predicted), max(gold + predicted)
        d.axes.plot([low, high], [low, high], "--", color="gray", label="predicted = gold")
        d.axes.set_xlabel("gold score")
        d.axes.set_ylabel("predicted score")
        d.axes.set_title(title, fontsize=9)
        d.axes.legend(fontsize=8, loc="upper left")
    return d.uri
