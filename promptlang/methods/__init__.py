"""The methods, one module each, registered by kind (as peft registers its tuners): a method declares
its settings, its defaults, its checks and how it compiles to stages (`base.Method`)."""

from __future__ import annotations

from promptlang.methods import finetune, in_context, ipet, pet, prompt_finetune, zero_shot
from promptlang.methods.base import Graph, Method

REGISTRY: dict[str, Method] = {module.METHOD.kind: module.METHOD
                               for module in (zero_shot, in_context, prompt_finetune, finetune, pet, ipet)}


def method_of(kind: str) -> Method:
    """The registered method of a kind (a checked spec's `method.kind`)."""
    return REGISTRY[kind]


__all__ = ["Graph", "Method", "REGISTRY", "method_of"]
