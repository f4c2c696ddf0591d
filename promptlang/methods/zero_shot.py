"""Zero-shot: the pretrained model scores the label words at the mask, optionally calibrated."""

from __future__ import annotations

from promptlang.language import spec as m
from promptlang.methods.base import Graph, Method
from promptlang.methods.common import scored_stages


def compile(graph: Graph) -> list:
    """One evaluation per pattern, on the first data seed's test set (no training sample is used)."""
    return scored_stages(graph, trains=False, data_seeds=list(graph.splits)[:1])


METHOD = Method(kind="zero_shot", settings=m.ZeroShot, trains=False, compile=compile, writes=True)
