"""In-context learning: labelled demonstrations in the input, no training (GPT-3 style, LM-BFF's
demonstrations); evaluation averages over sampled demonstration sets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptlang.language import spec as m
from promptlang.methods.base import Graph, Method
from promptlang.methods.common import scored_stages

if TYPE_CHECKING:
    from promptlang.language.check_context import Context


def compile(graph: Graph) -> list:
    return scored_stages(graph, trains=False)


def needs_demonstrations(ctx: "Context") -> None:
    if ctx.spec.demonstrations is None:
        ctx.error("`in_context` needs demonstrations", ctx.key("method"),
                  "add a `demonstrations { per_label 1 }` block and a [DEMOS] slot in the template")


METHOD = Method(kind="in_context", settings=m.InContext, trains=False, compile=compile,
                checks=(needs_demonstrations,))
