"""The report page: each run's sections (only those that apply) and, for several runs, the runs side by
side, rendered through the jinja template `templates/report.html.j2` with autoescaping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from promptlang.report import measures, plots
from promptlang.report.reading import Ranking, RunData

TOP = 5  # a search's candidates shown per data seed
SAMPLES = 5  # text generation: the first test examples shown with what the model wrote


@dataclass
class Image:
    """One plot of a section: its data URI, or why it could not be drawn (a bug, shown rather than hidden)."""

    uri: str | None
    problem: str | None = None


@dataclass
class RunView:
    """One run as the template shows it."""

    run: RunData
    table: list[measures.TableRow]
    images: dict[str, Image] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    rankings: list[tuple[Ranking, list[list[str]]]] = field(default_factory=list)  # (file, the rows shown)
    samples: tuple[str, list[tuple[str, str]]] | None = None  # text generation: (stage, first (gold, written))


@dataclass
class Comparison:
    """Several runs side by side: one table row per run and model group, and one grouped bar plot."""

    metrics: list[str]
    rows: list[tuple[str, RunView, measures.TableRow]]  # (the run's name, the run, one of its models)
    image: Image


def draw(function: Callable[..., str], *args) -> Image:
    """A plot drawn; a plot that fails is reported on the page (and the rest of the report still written)."""
    try:
        return Image(function(*args))
    except Exception as error:  # noqa: BLE001 — one broken plot must not cost the run its report
        return Image(None, f"{type(error).__name__}: {error}")


def run_view(run: RunData) -> RunView:
    """The sections that apply to a run, with their plots drawn."""
    view = RunView(run, measures.table(run))
    if view.table and run.metrics:
        view.images["bars"] = draw(plots.model_bars, view.table, run.metrics)
    _predictions(view)
    _curves(view)
    if run.metrics:
        metric = run.metrics[0]
        series = measures.generations(run, metric)
        if series:
            view.images["generations"] = draw(plots.generations_plot, series, metric)
    view.rankings = [(r, _top(r)) for r in run.rankings if r.rows]
    return view


def _predictions(view: RunView) -> None:
    """The final model's test predictions: a classification's confusion matrix and reliability diagram, a
    regression's scores against the gold ones, text generation's first examples."""
    run, final = view.run, view.run.final()
    if final is None or not final.gold:
        return
    title = f"{final.stage} on test ({len(final.gold)} examples)"
    if run.task_kind == "regression":
        pairs = measures.score_pairs(final)
        if pairs:
            view.images["scores"] = draw(plots.scores_plot, [g for g, _ in pairs], [p for _, p in pairs], title)
        return
    if run.task_kind == "generation" or not run.labels:
        view.samples = (final.stage, list(zip(final.gold, final.predicted))[:SAMPLES])
        return
    matrix = measures.confusion(final, run.labels)
    counted = sum(map(sum, matrix))
    if counted:
        view.images["confusion"] = draw(plots.confusion_plot, matrix, run.labels, title)
    if counted < len(final.gold):
        view.notes["confusion"] = (f"{len(final.gold) - counted} of {len(final.gold)} examples are left out: "
                                   "their gold or predicted value is no label")
    reliability = measures.reliability(final, run.labels)
    if reliability is not None:
        view.images["calibration"] = draw(plots.reliability_plot, reliability, title)
        view.notes["ece"] = f"{reliability.ece:.4f}"


def _curves(view: RunView) -> None:
    losses = {c.stage: c.losses for c in view.run.curves if c.losses}
    dev = {c.stage: c.dev for c in view.run.curves if c.dev}
    if losses:
        view.images["loss"] = draw(plots.curves_plot, losses, "Training loss", "optimizer step", "loss", False)
    if dev:
        view.images["dev"] = draw(plots.curves_plot, dev, "Dev score during training", "dev evaluation",
                                  "dev score", True)


def _top(ranking: Ranking) -> list[list[str]]:
    """The first TOP candidates of each data seed (the file ranks them within each)."""
    if not ranking.header or ranking.header[0] != "data_seed":
        return ranking.rows[:TOP]
    shown, seen = [], {}
    for row in ranking.rows:
        seen[row[0]] = seen.get(row[0], 0) + 1
        if seen[row[0]] <= TOP:
            shown.append(row)
    return shown


def comparison(views: list[RunView]) -> Comparison:
    """The runs side by side: each run's model groups in one table, and each run's best group in one plot."""
    metrics = list(dict.fromkeys(m for v in views for m in v.run.metrics))
    rows = [(name, view, row) for name, view in zip(names(views), views) for row in view.table]
    best = {}
    for name, view in zip(names(views), views):
        if view.table:
            top = max(view.table, key=lambda r: _first_mean(r, metrics))
            best[name if len(view.table) == 1 else f"{name} ({top.group})"] = top.cells
    return Comparison(metrics, rows, draw(plots.comparison_bars, list(best), metrics, best))


def _first_mean(row: measures.TableRow, metrics: list[str]) -> float:
    return next((row.cells[m].mean for m in metrics if m in row.cells), float("-inf"))


def names(views: list[RunView]) -> list[str]:
    """Each run's name on the page: its folder's name, or its path where two runs' folders share a name."""
    plain = [v.run.name for v in views]
    return [v.run.name if plain.count(v.run.name) == 1 else str(v.run.path) for v in views]


def render(runs: list[RunData]) -> str:
    """The report page's HTML (self-contained: styles inline, plots as data URIs)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(loader=PackageLoader("promptlang.report", "templates"),
                              autoescape=select_autoescape(["html", "j2"], default=True),
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    views = [run_view(run) for run in runs]
    template = environment.get_template("report.html.j2")
    return template.render(views=views, names=names(views), comparison=comparison(views) if len(views) > 1 else None,
                           wall_time=measures.wall_time, created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def write_report(runs: list[RunData], out: Path) -> Path:
    """Write the page for `runs` to `out` (through a temporary file beside it, so no half page is left)."""
    html = render(runs)
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(out)
    return out
