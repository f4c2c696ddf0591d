"""What stages cost: optimizer steps, forward passes and examples read, from the plan's patterns and sizes."""

from __future__ import annotations

import math

from promptlang.compiler import plan as p
from promptlang.language import spec as m


def steps(method, n_train: int) -> int:
    per_step = method.batch_size * method.grad_accum
    if method.steps:
        return method.steps
    return (method.epochs or 1) * max(1, math.ceil(n_train / per_step))


def mask_ends_input(pattern: p.Pattern) -> bool:
    """Whether nothing but special tokens follows the pattern's mask (no text, field or slot)."""
    at = next((i for i, piece in enumerate(pattern.pieces) if piece.kind == "mask"), None)
    return at is not None and all(piece.kind == "text" and not piece.ids for piece in pattern.pieces[at + 1:])


def continuation_scored(pattern: p.Pattern | None, family: str) -> bool:
    """Whether a causal LM scores each label word as its own continuation (the word, then the text
    after the mask): one sequence per example and word, not one per example (see `scoring.causal_scores`)."""
    if pattern is None or family != "causal" or not pattern.labels:
        return False
    single = all(len(ids) == 1 for lw in pattern.labels for ids in lw.ids)
    return not (single and mask_ends_input(pattern))


def passes(pattern: p.Pattern | None, family: str, n: int, batch: int) -> int:
    """Forward passes to score `n` examples (a pass is a batch of `batch` sequences; a causal LM's
    continuations, each label word and the text after the mask run from the prompt's cache, count as
    sequences too)."""
    if n == 0:
        return 0
    if pattern is None:
        return math.ceil(n / batch)
    words = sum(len(lw.ids) for lw in pattern.labels) or 1
    if family == "masked":
        multi = pattern.mask_count > 1
        return math.ceil(n * (words if multi else 1) / batch) * (pattern.mask_count if multi else 1)
    if family == "causal":
        return math.ceil(n * (words if continuation_scored(pattern, family) else 1) / batch)
    return math.ceil(n * words / batch)


def training_work(method, n: int, pattern: p.Pattern | None, family: str, dev: int) -> p.Work:
    """Training `n` examples for the method's steps, with dev evaluations about once an epoch."""
    if n == 0:
        return p.Work()
    if method.select_model is m.ModelSelection.last:  # no dev evaluations (PET's fixed number of steps)
        dev = 0
    total = steps(method, n)
    accum = method.grad_accum
    epochs = max(1, math.ceil(total * method.batch_size * accum / n))
    lm = total * accum if getattr(getattr(method, "loss", None), "mlm", 0) > 0 else 0
    return p.Work(models_trained=1, optimizer_steps=total,
                  forward_passes=total * accum + lm + epochs * passes(pattern, family, dev, method.eval_batch_size),
                  examples_read=total * method.batch_size * accum + epochs * dev)


def written_passes(spec: m.Spec, n: int, batch: int) -> int:
    """Forward passes to write texts for `n` examples, at most: every batch runs the model once per new
    token (`generate { max_new_tokens }`; its beams are sequences of the same pass)."""
    settings = spec.generate or m.Generate()
    return math.ceil(n / batch) * settings.max_new_tokens if n else 0
