"""Standard fine-tuning: a new classification head on the encoder's first (masked) or last (causal)
token, no prompt — the baseline the prompt-based methods are compared with."""

from __future__ import annotations

from promptlang.language import spec as m
from promptlang.methods.base import Graph, Method
from promptlang.methods.common import scored_stages


def compile(graph: Graph) -> list:
    return scored_stages(graph, trains=True)


METHOD = Method(kind="finetune", settings=m.Finetune, trains=True, uses_patterns=False, compile=compile)
