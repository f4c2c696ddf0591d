"""A mixture file (T5's multi-task training): `mixture`, `method` and `evaluate` only, built into a
`spec.Mixture`; its tasks' specs hold their data, model, templates and metrics."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import ValidationError

from promptlang.language import spec as m
from promptlang.language import syntax as s
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.locations import Locations
from promptlang.language.validation import coerce, report

MIXTURE_STATEMENTS = ("mixture", "method", "evaluate")  # what a mixture file holds


def is_mixture(file: s.File) -> bool:
    """A file with a `mixture` block: several specs' tasks trained as one (T5's multi-task training)."""
    return any(isinstance(st, s.Block) and st.kind == "mixture" for st in file.statements)


def validate_mixture(file: s.File, raw: dict[str, Any], locations: Locations, diagnostics: Diagnostics,
                     said: Callable) -> m.Mixture | None:
    """The mixture of a built file, or None with the problems reported: a statement a mixture file does
    not hold, or a setting pydantic refuses (`said`: whether the builder already reported it)."""
    others = [st for st in file.statements if not (isinstance(st, s.Block) and st.kind in MIXTURE_STATEMENTS)]
    for statement in others:
        what = {s.Labels: "labels", s.Template: "template", s.Import: "import"}.get(type(statement)) \
            or getattr(statement, "kind", "this")
        span = statement.kind_span if isinstance(statement, s.Block) else statement.span
        diagnostics.error(f"a mixture file holds `mixture`, `method` and `evaluate`, not `{what}`", span,
                          "the tasks' data, model, templates and metrics belong in their own specs, which `tasks` lists")
    if others:
        return None
    values = coerce({k: v for k, v in raw.items() if k in MIXTURE_STATEMENTS}, m.Mixture)
    try:
        return m.Mixture.model_validate(values)
    except ValidationError as error:
        report(error, values, locations, diagnostics, said)
        return None
