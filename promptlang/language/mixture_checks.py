"""Checks of a mixture file (T5's multi-task training): its member specs are read and checked on their
own, each writes text, they share one model, and one method trains them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from promptlang.language import spec as m
from promptlang.language.builder import Built
from promptlang.language.diagnostics import Diagnostics

TRAINING = "prompt_finetune"


def check_mixture(built: Built, analyze: Callable) -> tuple[Diagnostics, dict[str, m.Spec]]:
    """The diagnostics of a mixture and its members (each member's own, in its own file), and the members'
    checked specs by path (those without errors).

    Args:
        built: the built mixture.
        analyze: the front end (`api.analyze`), to read and check each member.
    """
    mixture, locations = built.spec, built.locations
    diagnostics = Diagnostics(sources=dict(built.diagnostics.sources))
    if mixture.method.kind != TRAINING:
        diagnostics.error(f"a mixture trains one model on every task; `{mixture.method.kind}` does not train it",
                          locations.key(("method",)), f"use `method {TRAINING}`")
    if mixture.evaluate.metrics or mixture.evaluate.references:
        diagnostics.error("each task of a mixture is measured by its own spec's metrics",
                          locations.key(("evaluate",)), "remove `metrics` and `references`; keep `output`")
    members: dict[str, m.Spec] = {}
    for i, relative in enumerate(mixture.mixture.tasks):
        span = locations.get(("mixture", "tasks", i))
        if relative in mixture.mixture.tasks[:i]:
            diagnostics.error(f"`{relative}` is listed twice", span, "remove the repeat")
            continue
        spec = _member(built, analyze, relative, span, diagnostics)
        if spec is not None:
            members[relative] = spec
    _one_model(members, built, diagnostics)
    return diagnostics, members


def _member(built: Built, analyze: Callable, relative: str, span, diagnostics: Diagnostics) -> m.Spec | None:
    """One member spec, read and checked; its problems are reported in its own file."""
    path = Path(built.directory) / relative
    if not path.is_file():
        diagnostics.error(f"the task spec `{relative}` does not exist", span,
                          f"paths are relative to the mixture's folder; this one is {path}")
        return None
    analysis = analyze(path)
    diagnostics.extend(analysis.diagnostics)
    spec = analysis.spec
    if spec is None:
        return None
    if not isinstance(spec, m.Spec):
        what = "a mixture itself" if isinstance(spec, m.Mixture) else "a library of templates"
        diagnostics.error(f"`{relative}` is {what}, not a task", span, "list the specs of single tasks")
        return None
    if not spec.writes_text:
        diagnostics.error(f"`{relative}` scores label words, but a mixture trains one model to write every "
                          "task's target", span, "give that spec a `generate` block (its labels written as text)")
        return None
    return spec


def _one_model(members: dict[str, m.Spec], built: Built, diagnostics: Diagnostics) -> None:
    """Every member names the same model: the mixture trains one."""
    specs = list(members.items())
    for relative, spec in specs[1:]:
        first, model = specs[0][1].model, spec.model
        if (model.source, model.family) != (first.source, first.family):
            i = built.spec.mixture.tasks.index(relative)
            diagnostics.error(f"`{relative}` names another model than `{specs[0][0]}`",
                              built.locations.get(("mixture", "tasks", i)),
                              "a mixture trains one model: give every task's spec the same `model` block")
