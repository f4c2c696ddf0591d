"""The session: a loaded model, its tokenizer and the compiled plan; label scores per family,
label probabilities, and contextual calibration (every stage that scores uses these)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from promptlang.compiler import plan as p
from promptlang.runtime import scoring
from promptlang.language import spec as m
from promptlang.runtime.data import Example
from promptlang.runtime.ensemble import softmax
from promptlang.runtime.pipeline import Encoded, encode_cached
from promptlang.runtime.task import Task, task_of



@dataclass
class Session:
    """A model, its tokenizer and the compiled plan, ready to run stages."""

    plan: p.Plan
    tokenizer: object
    model: torch.nn.Module
    cache: Path | None = None
    log: Callable[[str], None] = print
    initial: dict = field(default_factory=dict)

    @property
    def spec(self) -> m.Spec:
        return self.plan.spec

    @property
    def task(self) -> Task:
        """What the spec learns (classification, regression, generation)."""
        return task_of(self.spec)

    @property
    def family(self) -> str:
        return self.plan.family

    def reset(self, seed: int) -> None:
        """Back to the pretrained weights, with every random generator seeded."""
        if not self.initial:
            self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.model.load_state_dict(self.initial)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def encode(self, pattern: p.Pattern, examples: list[Example], max_length: int,
               demos: list[list[int]] | None = None) -> Encoded:
        return encode_cached(self.cache, pattern, examples, self.tokenizer, self.plan.tokenizer, max_length,
                             self.spec.labels, self.family, demos)


# ---------------------------------------------------------------- scoring


def _sentinels(session: Session) -> tuple[int, int] | None:
    ids = session.tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>"])
    return None if any(i is None or i == session.plan.tokenizer.unk_id for i in ids) else tuple(ids)


def label_scores(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int],
                 train: bool = False, soft: scoring.SoftPrompt | None = None) -> torch.Tensor:
    """Label log-scores (B, C) for some encoded examples; differentiable when `train`."""
    pad = session.plan.tokenizer.pad_id
    method = session.spec.method
    if session.family == "masked":
        if train or pattern.mask_count <= 1 or method.decoding is m.Decoding.parallel:
            return scoring.masked_parallel(session.model, pattern, encoded, rows, pad, soft, trim=not train)
        return scoring.masked_greedy(session.model, pattern, encoded, rows, pad, method.eval_batch_size, soft)
    if session.family == "causal":
        return scoring.causal_scores(session.model, pattern, encoded, rows, pad,
                                     len(session.plan.tokenizer.suffix), soft)
    eos = session.tokenizer.eos_token_id
    sentinels = _sentinels(session) if any(piece.kind == "mask" for piece in pattern.pieces) else None
    targets = scoring.seq2seq_targets(pattern, eos, sentinels)
    return scoring.seq2seq_scores(session.model, pattern, encoded, rows, pad, targets, soft)


@torch.no_grad()
def logits(session: Session, pattern: p.Pattern, encoded: Encoded, batch_size: int,
           soft: scoring.SoftPrompt | None = None) -> np.ndarray:
    """Label log-scores (N, C): the logits that softmax turns into label probabilities."""
    out = []
    started, batches = time.time(), math.ceil(len(encoded) / batch_size)
    for number, start in enumerate(range(0, len(encoded), batch_size), 1):
        rows = list(range(start, min(start + batch_size, len(encoded))))
        out.append(label_scores(session, pattern, encoded, rows, soft=soft).float())
        if batches >= 10 and (number % max(1, batches // 5) == 0 or number == batches):
            left = (time.time() - started) / number * (batches - number)
            session.log(f"    scored {rows[-1] + 1}/{len(encoded)} examples  eta {left:.0f} s")
    return torch.cat(out).numpy() if out else np.zeros((0, len(pattern.labels)), dtype=np.float32)


def probabilities(session: Session, pattern: p.Pattern, encoded: Encoded, batch_size: int,
                  soft: scoring.SoftPrompt | None = None) -> np.ndarray:
    """Label probabilities (N, C), normalised over the labels."""
    return softmax(logits(session, pattern, encoded, batch_size, soft))


def calibrate(probs: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Contextual calibration (Zhao et al., 2021): divide by the content-free prediction, renormalise."""
    adjusted = probs / content_free[None, :]
    return adjusted / adjusted.sum(axis=1, keepdims=True)


def content_free(session: Session, pattern: p.Pattern, max_length: int, demos=None) -> np.ndarray:
    """The label probabilities for an input whose fields all say "N/A"."""
    fields = {name: "N/A" for name in session.spec.data.text}
    encoded = session.encode(pattern, [Example(fields)], max_length, demos)
    return probabilities(session, pattern, encoded, 1)[0]


def accuracy(probs: np.ndarray, labels: list[int]) -> float:
    return float((probs.argmax(axis=1) == np.array(labels)).mean()) if labels else 0.0
