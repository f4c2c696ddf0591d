"""The session: a loaded model, its tokenizer and the compiled plan; label scores per family,
label probabilities, and contextual calibration (every stage that scores uses these)."""

from __future__ import annotations

import random
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
from promptlang.runtime.placement import Placement
from promptlang.runtime.progress import as_progress
from promptlang.runtime.task import Task, task_of


@dataclass
class Session:
    """A model, its tokenizer and the compiled plan, ready to run stages; `placement` says on which device,
    at which precision and in which process group (the model is moved to its device here)."""

    plan: p.Plan
    tokenizer: object
    model: torch.nn.Module
    cache: Path | None = None
    log: Callable[[str], None] = print
    initial: dict = field(default_factory=dict)
    placement: Placement = field(default_factory=Placement)
    directory: Path = Path(".")  # the spec's folder: what its settings' relative paths start from

    def __post_init__(self) -> None:
        self.log = as_progress(self.log)  # (a plain callable, in tests, is wrapped)
        if self.model is not None:  # (a session may only encode)
            self.model.to(self.placement.device)

    @property
    def device(self) -> torch.device:
        """Where every tensor of this session lives."""
        return self.placement.device

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
        if not self.initial:  # kept on the CPU: a GPU holds one copy of the weights, not two
            self.initial = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            self.model.load_state_dict(self.initial)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def encode(self, pattern: p.Pattern, examples: list[Example], max_length: int,
               demos: list[list[int]] | None = None, cached: bool = True) -> Encoded:
        """Examples through a pattern (kept in the cache unless `cached` is false: a batch drawn once)."""
        return encode_cached(self.cache if cached else None, pattern, examples, self.tokenizer, self.plan.tokenizer,
                             max_length, self.spec.labels, self.family, demos)


# ---------------------------------------------------------------- scoring


def _sentinels(session: Session) -> tuple[int, int] | None:
    ids = session.tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>"])
    return None if any(i is None or i == session.plan.tokenizer.unk_id for i in ids) else tuple(ids)


def label_scores(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int],
                 train: bool = False, soft: scoring.SoftPrompt | None = None) -> torch.Tensor:
    """Label log-scores (B, C) for some encoded examples; differentiable when `train`; at the session's
    precision (autocast)."""
    with session.placement.autocast():
        return _label_scores(session, pattern, encoded, rows, train, soft)


def _label_scores(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int], train: bool,
                  soft: scoring.SoftPrompt | None) -> torch.Tensor:
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


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row indices in batches of similar length (longest first), so that little of a batch is padding;
    the caller puts the results back in row order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def scored_rows(session: Session, count: int, lengths: list[int], batch_size: int,
                score: Callable[[list[int]], torch.Tensor], what: str = "examples") -> np.ndarray:
    """`score(rows)` over rows 0..count-1 in length-grouped batches, back in row order (N, C).

    With several processes each takes every n-th batch and the rows are gathered back: the batches are
    the same at any process count, so the scores are identical to one process's.
    """
    batches = length_batches(lengths, batch_size)
    mine = session.placement.mine(list(range(len(batches))))
    done: dict[int, np.ndarray] = {}
    bar = session.log.bar(len(mine), "scored", f" batches of {what}", lines=5, least=10)
    for number, index in enumerate(mine, 1):
        rows = batches[index]
        with torch.no_grad():
            values = score(rows).float().cpu().numpy()
        done.update(zip(rows, values))
        bar.update(number)
    done = session.placement.gather_rows(done)
    return np.stack([done[i] for i in range(count)]) if count else np.zeros((0, 0), dtype=np.float32)


def logits(session: Session, pattern: p.Pattern, encoded: Encoded, batch_size: int,
           soft: scoring.SoftPrompt | None = None) -> np.ndarray:
    """Label log-scores (N, C): the logits that softmax turns into label probabilities."""
    if not len(encoded):
        return np.zeros((0, len(pattern.labels)), dtype=np.float32)
    return scored_rows(session, len(encoded), [len(ids) for ids in encoded.ids], batch_size,
                       lambda rows: label_scores(session, pattern, encoded, rows, soft=soft))


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
