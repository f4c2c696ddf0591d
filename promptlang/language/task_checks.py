"""Checks of a regression spec (`task regression`): its poles, its range, its metrics, its method and its scores."""

from __future__ import annotations

from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.check_context import Context
from promptlang.language.datafiles import DataFileError, column_values
from promptlang.language.scores import SCORE_HINT, score_problem, shown
from promptlang.methods import REGISTRY, method_of

REGRESSION_METRICS = (m.Metric.pearson, m.Metric.spearman)


def regression_settings(ctx: Context) -> None:
    """Two labels (the poles), an ordered range, no label column, regression metrics, a method that can learn it."""
    task = ctx.spec.task
    if task is None:
        return
    labels = ctx.spec.labels
    if labels and len(labels) != 2:
        ctx.error(f"`task regression` needs exactly two labels, its poles; this spec declares {len(labels)}",
                  ctx.at("labels"), "write `labels low, high`: the low pole first, then the high one")
    if task.lower >= task.upper:
        ctx.error(f"the range's lower bound ({shown(task.lower)}) must be below its upper bound "
                  f"({shown(task.upper)})", ctx.at("task", "range"),
                  "write `range LOW, HIGH`, for example `range 0, 5`")
    for setting in ("label", "label_values"):
        if ("data", setting) in ctx.locations.values:
            ctx.error(f"`{setting}` has no use with `task regression`: the poles come from the score",
                      ctx.key("data", setting), f"remove it; the score is read from the column `{task.score}`")
    for i, metric in enumerate(ctx.spec.evaluate.metrics or []):
        if metric not in REGRESSION_METRICS:
            ctx.error(f"`{metric.value}` does not measure a regression", ctx.at("evaluate", "metrics", i),
                      "a regression is measured by `pearson` and `spearman` (the default)")
    if "regression" not in method_of(ctx.method.kind).tasks:
        able = [f"`{kind}`" for kind, method in REGISTRY.items() if "regression" in method.tasks]
        ctx.error(f"`{ctx.method.kind}` cannot learn a regression: it labels unlabeled data with classes",
                  ctx.key("method"), f"use {', '.join(able[:-1])} or {able[-1]}")


def scores_readable(ctx: Context, split: str, path: Path, fmt: str) -> None:
    """Every score of one labelled split is a finite number within the range (the first bad one is reported,
    at its line); the file is scanned once, and each distinct value is read once."""
    data, task = ctx.spec.data, ctx.spec.task
    relative, span = getattr(data, split), ctx.at("data", split)
    try:
        values = column_values(path, fmt, task.score, relative, data.bad_rows is m.BadRows.skip)
    except DataFileError as error:
        ctx.error(str(error), span, error.hint)
        return
    if not values and split != "train":
        ctx.error(f"`{relative}` has no examples", span, "a data file holds a header and then one example per line")
    if task.lower >= task.upper:
        return  # (`regression_settings` reports the range)
    for value, line in values.items():  # in the order of their first lines
        problem = score_problem(value, task)
        if problem is not None:
            ctx.error(f"`{relative}` line {line}: {problem}", span, SCORE_HINT)
            return
