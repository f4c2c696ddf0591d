"""iPET: PET over generations; each model of the next generation trains on examples of unlabeled data
that an ensemble of the other models of this generation labelled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptlang.language import spec as m
from promptlang.methods import pet
from promptlang.methods.base import Graph, Method

if TYPE_CHECKING:
    from promptlang.language.check_context import Context


def compile(graph: Graph) -> list:
    return pet.pet_stages(graph, iterated=True)


def labels_unlabeled_data(ctx: "Context") -> None:
    method = ctx.method
    if not ctx.spec.data.unlabeled:
        ctx.error("iPET labels unlabeled data, but `data` has no `unlabeled` split", ctx.key("method"),
                  'add `unlabeled "unlabeled.tsv"` to `data`')
    if method.ipet.generations > 1 and len(ctx.patterns) * len(method.seeds) == 1:
        ctx.error("iPET needs two or more models per generation: each model's new examples are labelled "
                  "by the other models", ctx.key("method"),
                  "use two or more patterns, or two or more `seeds` in `method`")


METHOD = Method(kind="ipet", settings=m.IPet, trains=True, compile=compile, learns_without_labels=True,  aggregate=pet.METHOD.aggregate,
                multi_token_loss=pet.METHOD.multi_token_loss, tasks=("classification",),
                checks=(pet.needs_training_data, labels_unlabeled_data, pet.distillation_data))
