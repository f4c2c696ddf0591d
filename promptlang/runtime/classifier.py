"""The classification head of standard fine-tuning and of PET's distilled model: a linear layer on the
language model's base, its inputs (the text fields with the tokenizer's special tokens), training and logits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from promptlang.runtime.batches import device_of, pad
from promptlang.runtime import scoring
from promptlang.language import spec as m
from promptlang.runtime.data import Example
from promptlang.runtime.ensemble import softmax
from promptlang.runtime.data_tokens import text_ids
from promptlang.runtime.pipeline import shortened
from promptlang.compiler.tokens import ids_of, special_tokens
from promptlang.runtime.training import History, fit, progress

if TYPE_CHECKING:
    from promptlang.runtime.session import Session


class Classifier(torch.nn.Module):
    """A linear classification head on the language model's base: first token (encoders),
    last token (decoders) or the mean (encoder-decoders)."""

    def __init__(self, model, family: str, labels: int):
        super().__init__()
        self.model, self.family = model, family
        size = model.config.get_text_config().hidden_size
        self.head = torch.nn.Linear(size, labels)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        self.head.to(device_of(model))  # initialised on the CPU: the same head on every device

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        if self.family == "seq2seq":
            hidden = self.model.get_encoder()(input_ids=ids, attention_mask=attention).last_hidden_state
            pooled = (hidden * attention.unsqueeze(-1)).sum(1) / attention.sum(1, keepdim=True)
        else:
            hidden = scoring.hidden_states(self.model, ids, attention)  # (B, L, H)
            index = torch.zeros(len(ids), dtype=torch.long, device=ids.device) if self.family == "masked" \
                else attention.sum(1) - 1
            pooled = hidden[torch.arange(len(ids), device=ids.device), index]  # (B, H)
        return self.head(pooled)  # (B, C)


def classifier_inputs(session: Session, examples: list[Example], max_length: int) -> list[list[int]]:
    """The examples' text fields as one (or a pair of) segment(s) with the tokenizer's special tokens.

    The text never becomes a special token (`pipeline.text_ids`); an input over `max_length`
    loses tokens from the end of its longer segment (PET's rule).
    """
    tokenizer, columns = session.tokenizer, session.spec.data.text
    first = text_ids(tokenizer, [e.fields.get(columns[0], "") for e in examples])
    if len(columns) == 1:
        prefix, suffix = special_tokens(tokenizer)
        return [prefix + row[: max(0, max_length - len(prefix) - len(suffix))] + suffix for row in first]
    second = text_ids(tokenizer, [" ".join(e.fields.get(c, "") for c in columns[1:]) for e in examples])
    before, between, after = pair_parts(tokenizer)
    out = []
    for a, b in zip(first, second):
        excess = len(before) + len(a) + len(between) + len(b) + len(after) - max_length
        keep_a, keep_b = shortened([len(a), len(b)], min(excess, len(a) + len(b))) if excess > 0 else (len(a), len(b))
        out.append(before + a[:keep_a] + between + b[:keep_b] + after)
    return out


def pair_parts(tokenizer) -> tuple[list[int], list[int], list[int]]:
    """The special ids the tokenizer puts before, between and after the two segments of a pair."""
    plain = ids_of(tokenizer, "a")
    full = tokenizer("a", "a")["input_ids"]
    starts = [i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain]
    if len(starts) < 2:
        prefix, suffix = special_tokens(tokenizer)
        return prefix, [], suffix
    first, second = starts[0], starts[-1]
    return full[:first], full[first + len(plain) : second], full[second + len(plain):]


def train_classifier(session: Session, examples: list[Example], loss: Callable[[torch.Tensor, list[int]], torch.Tensor],
                     settings: m.Training, dev: list[Example], seed: int,
                     where: tuple = ("method",)) -> tuple[Classifier, History]:
    """A new classification head on the session's model, trained on `examples` with `loss(logits, rows)`;
    the state with the best dev score (the task's) is kept when there are dev examples (`where`: the spec path
    of `settings`)."""
    classifier = Classifier(session.model, session.family, len(session.spec.labels))
    dev = [e for e in dev if e.label in session.spec.labels]
    task = session.task

    def loss_of(rows: list[int]) -> torch.Tensor:  # (a batch is tokenized when drawn: 100k soft-labelled
        inputs = classifier_inputs(session, [examples[r] for r in rows], settings.max_length)  # examples
        ids, attention = pad(inputs, session.plan.tokenizer.pad_id, session.device)  # are never held whole)
        with session.placement.autocast():
            return loss(classifier(ids, attention), rows)

    evaluate = (lambda: task.selection(softmax(classifier_logits(session, classifier, dev, settings)), dev)) \
        if dev else None
    history = fit(classifier, loss_of, len(examples), settings, seed, evaluate, progress(session.log), where,
                  session.placement)
    return classifier, history


def classifier_logits(session: Session, classifier: Classifier, examples: list[Example],
                      settings: m.Training) -> np.ndarray:
    """The classifier's logits (N, C) for some examples (length-grouped batches, in the examples' order)."""
    from promptlang.runtime.session import scored_rows

    if not examples:
        return np.zeros((0, len(session.spec.labels)), dtype=np.float32)
    inputs = classifier_inputs(session, examples, settings.max_length)
    pad_id = session.plan.tokenizer.pad_id

    def score(rows: list[int]) -> torch.Tensor:
        with session.placement.autocast():
            return classifier(*pad([inputs[r] for r in rows], pad_id, session.device))

    return scored_rows(session, len(inputs), [len(x) for x in inputs], settings.eval_batch_size, score)
