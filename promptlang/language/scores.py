"""The scores of a regression task: a data field read as a finite number within the task's range."""

from __future__ import annotations

import math

from promptlang.language import spec as m

SCORE_HINT = "a score is a number within the task's `range`, such as `3.8`"


def shown(number: float) -> str:
    """A bound as a person writes it: `5`, not `5.0`."""
    return str(int(number)) if float(number).is_integer() else str(number)


def score_problem(text: str, task: m.Regression) -> str | None:
    """What is wrong with one score as written (None when it is a finite number within the range)."""
    if not text.strip():
        return "the score is missing"
    try:
        value = float(text)
    except ValueError:
        return f"the score `{text[:40]}` is not a number"
    if not math.isfinite(value):
        return f"the score `{text}` is not a finite number"
    if not task.lower <= value <= task.upper:
        return f"the score `{text}` is outside the range {shown(task.lower)} to {shown(task.upper)}"
    return None


def read_score(text: str, task: m.Regression) -> float:
    """One score as a number.

    Raises:
        ValueError: it is empty, not a number, not finite or outside the range (the message says which).
    """
    problem = score_problem(text, task)
    if problem is not None:
        raise ValueError(problem)
    return float(text)
