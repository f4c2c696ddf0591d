"""Prompt-based fine-tuning (LM-BFF; PET with one pattern): the model is trained so that the right
label word scores highest at the mask, with PET's optional auxiliary MLM loss."""

from __future__ import annotations

from promptlang.language import spec as m
from promptlang.methods.base import Graph, Method
from promptlang.methods.common import scored_stages
from promptlang.methods.search import check


def compile(graph: Graph) -> list:
    return scored_stages(graph, trains=True)


METHOD = Method(kind="prompt_finetune", settings=m.PromptFinetune, trains=True, compile=compile, checks=(check,),
                writes=True)
