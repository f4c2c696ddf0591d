"""What the report computes from a run's data: the confusion matrix, the reliability diagram's bins with
the expected calibration error, the results table's cells and iPET's scores per generation."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from promptlang.report.reading import RunData, Scored, generation_of

BINS = 10  # the reliability diagram's equal-width confidence bins


@dataclass
class Reliability:
    """Confidence bins over [0, 1]: each bin's example count, mean confidence and accuracy (None when
    empty), and the expected calibration error ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|."""

    edges: list[float]
    counts: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float


@dataclass
class Cell:
    """One results-table cell: a metric's mean and std over a model's runs."""

    mean: float
    std: float

    def text(self, scale: float = 100.0) -> str:
        """`86.1 ± 1.8` (the mean and std times `scale`, one decimal)."""
        return f"{self.mean * scale:.1f} ± {self.std * scale:.1f}"


@dataclass
class TableRow:
    """One model of the results table: its group (pattern, ensemble, distilled, head), kind and cells."""

    group: str
    kind: str
    runs: int
    cells: dict[str, Cell]


def confusion(scored: Scored, labels: list[str]) -> list[list[int]]:
    """(C, C) counts: row = gold label, column = predicted label (a prediction that is no label is left out)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for gold, predicted in zip(scored.gold, scored.predicted):
        if gold in index and predicted in index:
            matrix[index[gold]][index[predicted]] += 1
    return matrix


def reliability(scored: Scored, labels: list[str], bins: int = BINS) -> Reliability | None:
    """The reliability of the top label's probability on the examples with a known gold label; None when
    the stage has no probabilities or no such example."""
    if not scored.probabilities:
        return None
    pairs = [(max(p), labels.index(g) == p.index(max(p))) for g, p in zip(scored.gold, scored.probabilities)
             if g in labels and not any(math.isnan(x) for x in p)]
    if not pairs:
        return None
    members: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, correct in pairs:
        members[min(int(confidence * bins), bins - 1)].append((confidence, correct))
    confidence = [statistics.fmean(c for c, _ in b) if b else None for b in members]
    accuracy = [statistics.fmean(float(k) for _, k in b) if b else None for b in members]
    ece = sum(len(b) / len(pairs) * abs(a - c) for b, a, c in zip(members, accuracy, confidence) if b)
    return Reliability([i / bins for i in range(bins + 1)], [len(b) for b in members], confidence, accuracy, ece)


def score_pairs(scored: Scored) -> list[tuple[float, float]]:
    """A regression's (gold, predicted) scores, of the examples where both are numbers."""
    pairs = []
    for gold, predicted in zip(scored.gold, scored.predicted):
        try:
            pair = (float(gold), float(predicted))
        except ValueError:
            continue
        if not any(math.isnan(x) for x in pair):
            pairs.append(pair)
    return pairs


def kind_of(group: str) -> str:
    """What a summary group is: `ensemble`, `distilled`, `head` (standard fine-tuning) or `pattern`."""
    last = group.split()[-1]
    return last if last in ("ensemble", "distilled", "head") else "pattern"


def table(run: RunData) -> list[TableRow]:
    """The results table: each model group's metrics as mean ± std over its runs (metrics.json's summary)."""
    rows = []
    for group, values in run.summary.items():
        cells = {metric: Cell(v["mean"], v["std"]) for metric, v in values.items()}
        runs = next(iter(values.values()), {}).get("runs", 0)
        rows.append(TableRow(group, kind_of(group), runs, cells))
    return rows


def generations(run: RunData, metric: str) -> dict[str, dict[int, Cell]]:
    """iPET: each pattern's (and the ensemble's) `metric` per generation, as mean ± std over its runs;
    {} for a run without generations."""
    values: dict[str, dict[int, list[float]]] = {}
    for row in run.rows:
        generation = generation_of(str(row.get("stage", "")))
        score = (row.get("metrics") or {}).get(metric)
        if generation is None or not isinstance(score, (int, float)):
            continue
        series = "ensemble" if str(row["stage"]).startswith("ensemble/") else str(row.get("pattern"))
        values.setdefault(series, {}).setdefault(generation, []).append(float(score))
    return {series: {g: _cell(xs) for g, xs in sorted(points.items())} for series, points in values.items()}


def _cell(values: list[float]) -> Cell:
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def wall_time(seconds: float | None) -> str:
    """`1203 s (20 min 3 s)`; `?` when unknown."""
    if seconds is None:
        return "?"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{seconds:.0f} s" + (f" ({minutes} min {rest} s)" if minutes else "")
