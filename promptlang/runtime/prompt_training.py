"""Prompt-based training of a pattern: cross-entropy (or PET's hinge loss) over the label scores plus
PET's auxiliary MLM loss, with LM-BFF's demonstrations drawn afresh for each batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime.batches import pad
from promptlang.runtime import scoring
from promptlang.runtime.data import Example
from promptlang.methods.common import uses_demos
from promptlang.runtime.demos import encoded_sets, fresh_demos, mean_probabilities
from promptlang.runtime.pipeline import Encoded, prepare
from promptlang.runtime.errors import RunError
from promptlang.runtime.session import Session, label_scores
from promptlang.runtime.training import History, fit, hinge_loss, multi_token_loss, progress


def _mlm_loss(session: Session, encoded: Encoded, rows: list[int], rng: torch.Generator,
              soft: scoring.SoftPrompt | None = None) -> torch.Tensor:
    """PET's auxiliary language-modelling loss: BERT-style masking of 15% of the input tokens.

    Special tokens, the pattern's masks and the soft prompt's placeholders are never targets,
    and the model reads the soft prompt's vectors at its placeholders (as it does for the label
    scores), so the soft prompt also learns from this loss. The tokens are drawn with the CPU generator
    `rng` (the same for a seed on every device), then moved to the session's device.
    """
    info = session.plan.tokenizer
    ids, attention = pad([encoded.ids[r] for r in rows], info.pad_id)  # (B, L), on the CPU to draw
    soft_at = [encoded.soft_at[r] for r in rows]
    chosen = (torch.rand(ids.shape, generator=rng) < 0.15) & mlm_candidates(info, ids, attention, soft_at)
    if not chosen.any():
        return torch.zeros((), device=session.device)
    corrupted = ids.clone()
    roll = torch.rand(ids.shape, generator=rng)
    corrupted[chosen & (roll < 0.8)] = info.mask_id
    random_tokens = torch.randint(info.vocab_size, ids.shape, generator=rng)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    corrupted[swap] = random_tokens[swap]
    device = session.device
    chosen = chosen.to(device)
    with session.placement.autocast():
        hidden = scoring.hidden_states(session.model, corrupted.to(device), attention.to(device), soft,
                                       soft_at)  # (B, L, H)
        logits = scoring.head_logits(session.model, hidden[chosen])  # (N, V)
        return F.cross_entropy(logits, ids.to(device)[chosen])


def mlm_candidates(info: p.Tokenizer, ids: torch.Tensor, attention: torch.Tensor,
                   soft_at: list[list[int]]) -> torch.Tensor:
    """Where the MLM loss may pick targets (B, L): real tokens, neither special tokens, the pattern's
    masks, padding, nor the soft prompt's placeholders."""
    special = torch.tensor(sorted({*info.prefix, *info.suffix, info.pad_id, info.mask_id or 0}))
    candidates = attention.bool() & ~torch.isin(ids, special)
    for row, positions in enumerate(soft_at):
        candidates[row, positions] = False
    return candidates


@dataclass
class Trained:
    """A pattern model after training: the soft prompt it learned (if any) and how training went."""

    soft: scoring.SoftPrompt | None
    history: History | None

    @property
    def dev(self) -> float | None:
        return max(self.history.dev) if self.history and self.history.dev else None


def train_pattern(session: Session, pattern: p.Pattern, train_examples: list[Example], dev_examples: list[Example],
                  unlabeled: list[Example], seed: int, sets: list[list[int]] | None = None,
                  settings: m.Training | None = None) -> Trained:
    """Prompt-based fine-tuning of the session's model on one pattern: the task's loss over the label
    scores (cross-entropy; PET's hinge loss for multi-token words; a regression's KL to its pole
    targets) plus PET's weighted auxiliary MLM loss (on `unlabeled`, else on the training inputs).
    With no training examples nothing is trained (zero-shot PET). The dev score is the task's
    (accuracy, or a regression's Pearson correlation).

    A pattern with a [DEMOS] slot trains LM-BFF's way: each time an example is put in a batch it gets
    demonstrations freshly drawn from the other training examples; the dev score is that of the label
    probabilities averaged over the demonstration `sets` (see `demo_sets`). `settings` replace the
    method's training settings (an LM-BFF search's brief fine-tuning: fewer steps)."""
    method = settings or session.spec.method
    if method.loss.mlm > 0 and session.family != "masked":
        raise RunError(f"the auxiliary MLM loss needs a masked language model, but this model is {session.family}",
                       ("method", "loss", "mlm"), "set `mlm 0`, or use a masked LM")
    soft_count = sum(piece.count for piece in pattern.pieces if piece.kind == "soft")
    soft = scoring.SoftPrompt(session.model, soft_count, seed) if soft_count else None
    if not train_examples:
        return Trained(soft, None)
    train = session.encode(pattern, train_examples, method.max_length)
    dev = encoded_sets(session, pattern, dev_examples, method.max_length, sets or []) if dev_examples else None
    module = torch.nn.ModuleList([session.model] + ([soft] if soft else []))
    generator = torch.Generator().manual_seed(seed)
    task = session.task
    targets = task.targets(train_examples)

    def lm_text(rows: list[int]) -> tuple[Encoded, list[int]]:
        """The MLM loss's inputs: the batch's, or as many unlabeled examples drawn at random and encoded
        then (a large unlabeled set is never encoded whole)."""
        if not unlabeled:
            return train, rows
        drawn = torch.randint(len(unlabeled), (len(rows),), generator=generator).tolist()
        return session.encode(pattern, [unlabeled[r] for r in drawn], method.max_length, cached=False), \
            list(range(len(drawn)))
    batch_of = training_batches(session, pattern, train_examples, train, seed)

    multi_token = any(len(ids) > 1 for lw in pattern.labels for ids in lw.ids)
    hinge = multi_token and task.kind == "classification" and multi_token_loss(method) is m.MultiTokenLoss.hinge

    def loss_of(rows: list[int]) -> torch.Tensor:
        batch, at = batch_of(rows)
        scores = label_scores(session, pattern, batch, at, train=True, soft=soft)  # (B, C)
        label_loss = hinge_loss if hinge else task.loss
        loss = method.loss.ce * label_loss(scores.float(), targets[rows].to(session.device))
        if method.loss.mlm > 0:
            loss = loss + method.loss.mlm * _mlm_loss(session, *lm_text(rows), generator, soft)
        return loss

    def evaluate() -> float:
        return task.selection(mean_probabilities(session, pattern, dev, method.eval_batch_size, soft), dev_examples)

    history = fit(module, loss_of, len(train), method, seed, evaluate if dev else None, progress(session.log),
                  placement=session.placement)
    return Trained(soft, history)


def training_batches(session: Session, pattern: p.Pattern, examples: list[Example], train: Encoded,
                     seed: int) -> Callable[[list[int]], tuple[Encoded, list[int]]]:
    """How a batch of training examples (indices) becomes model input: (an encoding, its rows).

    Without a [DEMOS] slot: rows of `train`, the whole training set's encoding. With one: the batch
    assembled anew from fields tokenized once, each example with a demonstration set freshly drawn
    from the other examples (reproducible for `seed`, different at each draw).
    """
    if not uses_demos(pattern):
        return lambda rows: (train, rows)
    prepared = prepare(pattern, examples, session.tokenizer, session.plan.tokenizer, session.spec.method.max_length,
                       session.spec.labels, session.family)
    draw = fresh_demos(session, examples, f"demonstrations {seed}")
    return lambda rows: (prepared.assemble(rows, draw(rows)), list(range(len(rows))))
