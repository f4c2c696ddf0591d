"""Runtime: a loaded model and tokenizer, label scoring per family, and the methods that use them.

A method is a function in `METHODS`: (session, splits, pattern name, seed) → `Outcome`,
the label probabilities on test. Zero-shot (optionally calibrated), in-context,
prompt-based fine-tuning (with PET's auxiliary MLM loss) and standard fine-tuning with a
classification head (`classifier`) all share the encoding and scoring below.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.runtime import scoring
from promptlang.language import spec as m
from promptlang.runtime.classifier import classifier_logits, train_classifier
from promptlang.compiler.compile import compile_pattern
from promptlang.runtime.data import Example, Splits
from promptlang.runtime.ensemble import softmax
from promptlang.runtime.pipeline import Encoded, encode_cached, prepare
from promptlang.runtime.training import History, fit, hinge_loss, multi_token_loss, progress


class RunError(Exception):
    """A problem found while running, tied to the spec setting that caused it."""

    def __init__(self, message: str, path: tuple = (), hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


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


@dataclass
class Outcome:
    """A method's result for one (data seed, pattern, seed): label probabilities on test."""

    probabilities: np.ndarray  # (N, C)
    labels: list[int]
    history: History | None = None
    dev: float | None = None
    extras: dict = field(default_factory=dict)  # what predicting again needs: head, soft prompt, calibration, demos


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


# ---------------------------------------------------------------- methods


def zero_shot(session: Session, splits: Splits, name: str, seed: int | None) -> Outcome:
    method = session.spec.method
    pattern = session.plan.patterns[name]
    encoded = session.encode(pattern, splits.test, method.max_length)
    probs = probabilities(session, pattern, encoded, method.eval_batch_size)
    extras = {}
    if method.calibrate:
        extras["calibration"] = content_free(session, pattern, method.max_length).tolist()
        probs = calibrate(probs, np.array(extras["calibration"]))
    return Outcome(probs, encoded.labels, extras=extras)


def has_demos(pattern: p.Pattern) -> bool:
    """Whether the pattern has a [DEMOS] slot."""
    return any(piece.kind == "demos" for piece in pattern.pieces)


@dataclass
class DemoPool:
    """Labelled examples ready to be demonstrations: each one's token ids through the demonstration
    template with its label's first word at the mask (encoded once), and the examples of each label."""

    ids: list[list[int]]
    by_label: list[list[int]]  # for each label, the indices of its examples
    per_label: int

    def draw(self, rng: random.Random, exclude: int | None = None) -> list[int]:
        """One demonstration set: `per_label` examples per label (never example `exclude`), in a
        random order, as token ids."""
        chosen: list[int] = []
        for rows in self.by_label:
            pool = [r for r in rows if r != exclude]
            chosen += rng.sample(pool, min(self.per_label, len(pool)))
        rng.shuffle(chosen)
        return [token for row in chosen for token in self.ids[row]]


def demo_pool(session: Session, examples: list[Example]) -> DemoPool:
    """The examples as demonstrations (see `DemoPool`), through the spec's demonstration template."""
    spec = session.spec
    settings = spec.demonstrations
    name = settings.template or next(iter(session.plan.patterns))
    pattern = compile_pattern(spec, name, session.tokenizer)
    pattern = pattern.model_copy(update={"pieces": [x for x in pattern.pieces if x.kind != "demos"]})
    info = session.plan.tokenizer
    encoded = session.encode(pattern, examples, 10**6)
    ids: list[list[int]] = []
    for row, example in enumerate(examples):
        inner = encoded.ids[row][len(info.prefix) : len(encoded.ids[row]) - len(info.suffix)]
        at = encoded.mask_at[row] - len(info.prefix)
        word = pattern.labels[spec.labels.index(example.label)].ids[0] if example.label in spec.labels else []
        ids.append(inner[:at] + word + inner[at + encoded.mask_count:])
    by_label = [[i for i, e in enumerate(examples) if e.label == label] for label in spec.labels]
    return DemoPool(ids, by_label, settings.per_label)


def demonstrations(session: Session, splits: Splits, seed: int) -> list[int]:
    """One sampled set of demonstrations: `per_label` training examples per label, each filled in
    through the demonstration template with its label's first word, in a random order."""
    return demo_pool(session, splits.train).draw(random.Random(seed))


def demo_sets(session: Session, splits: Splits) -> list[list[int]]:
    """The `sets` demonstration sets that evaluation averages over for a data sample (set i drawn with
    seed `data seed × 1000 + i`, the plan's `demonstrations` stage); none without demonstrations."""
    settings = session.spec.demonstrations
    if settings is None:
        return []
    pool = demo_pool(session, splits.train)
    return [pool.draw(random.Random(splits.seed * 1000 + index)) for index in range(settings.sets)]


def fresh_demos(session: Session, examples: list[Example], seed: str) -> Callable[[list[int]], list[list[int]]]:
    """A function that draws, for each of some examples (indices), a new demonstration set from the other
    examples; reproducible for a given `seed`, different at each call."""
    pool, rng = demo_pool(session, examples), random.Random(seed)
    return lambda rows: [pool.draw(rng, exclude=row) for row in rows]


def encoded_sets(session: Session, pattern: p.Pattern, examples: list[Example], max_length: int,
                 sets: list[list[int]]) -> list[Encoded]:
    """The examples encoded once per demonstration set (every example with the same set), or once
    without demonstrations when there are no sets."""
    return [session.encode(pattern, examples, max_length, [demos] * len(examples)) for demos in sets] or \
        [session.encode(pattern, examples, max_length)]


def mean_probabilities(session: Session, pattern: p.Pattern, encodings: list[Encoded], batch_size: int,
                       soft: scoring.SoftPrompt | None = None) -> np.ndarray:
    """Label probabilities (N, C) averaged over encodings of the same examples (demonstration sets)."""
    return sum(probabilities(session, pattern, encoded, batch_size, soft) for encoded in encodings) / len(encodings)


def set_logits(session: Session, pattern: p.Pattern, examples: list[Example], max_length: int,
               sets: list[list[int]], batch_size: int, soft: scoring.SoftPrompt | None = None) -> np.ndarray:
    """Label log-scores (N, C) whose softmax is the probabilities averaged over the demonstration sets
    (the plain logits when there are none)."""
    if not sets:
        return logits(session, pattern, session.encode(pattern, examples, max_length), batch_size, soft)
    encodings = encoded_sets(session, pattern, examples, max_length, sets)
    return np.log(np.maximum(mean_probabilities(session, pattern, encodings, batch_size, soft), 1e-30))


def own_demos(session: Session, pattern: p.Pattern, examples: list[Example], seed: int) -> list[list[int]] | None:
    """For a pattern with a [DEMOS] slot, a demonstration set for each example drawn from the others
    (as in training); None for a pattern without one."""
    if not has_demos(pattern):
        return None
    return fresh_demos(session, examples, f"own demonstrations {seed}")(list(range(len(examples))))


def in_context(session: Session, splits: Splits, name: str, seed: int | None) -> Outcome:
    """Demonstrations in the input, no training; `sets` sampled sets are averaged."""
    method = session.spec.method
    pattern = session.plan.patterns[name]
    total, sets = None, []
    for demos in demo_sets(session, splits):
        encoded = session.encode(pattern, splits.test, method.max_length, [demos] * len(splits.test))
        probs = probabilities(session, pattern, encoded, method.eval_batch_size)
        sets.append({"demos": demos})
        if method.calibrate:
            sets[-1]["calibration"] = content_free(session, pattern, method.max_length, [demos]).tolist()
            probs = calibrate(probs, np.array(sets[-1]["calibration"]))
        total = probs if total is None else total + probs
    return Outcome(total / len(sets), encoded.labels, extras={"sets": sets})


def _mlm_loss(session: Session, encoded: Encoded, rows: list[int], rng: torch.Generator,
              soft: scoring.SoftPrompt | None = None) -> torch.Tensor:
    """PET's auxiliary language-modelling loss: BERT-style masking of 15% of the input tokens.

    Special tokens, the pattern's masks and the soft prompt's placeholders are never targets,
    and the model reads the soft prompt's vectors at its placeholders (as it does for the label
    scores), so the soft prompt also learns from this loss.
    """
    info = session.plan.tokenizer
    ids, attention = scoring.pad([encoded.ids[r] for r in rows], info.pad_id)  # (B, L)
    soft_at = [encoded.soft_at[r] for r in rows]
    chosen = (torch.rand(ids.shape, generator=rng) < 0.15) & mlm_candidates(info, ids, attention, soft_at)
    if not chosen.any():
        return torch.zeros(())
    corrupted = ids.clone()
    roll = torch.rand(ids.shape, generator=rng)
    corrupted[chosen & (roll < 0.8)] = info.mask_id
    random_tokens = torch.randint(info.vocab_size, ids.shape, generator=rng)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    corrupted[swap] = random_tokens[swap]
    hidden = scoring.hidden_states(session.model, corrupted, attention, soft, soft_at)  # (B, L, H)
    logits = scoring.head_logits(session.model, hidden[chosen])  # (N, V)
    return F.cross_entropy(logits, ids[chosen])


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
                  unlabeled: list[Example], seed: int, sets: list[list[int]] | None = None) -> Trained:
    """Prompt-based fine-tuning of the session's model on one pattern: cross-entropy over the label
    scores plus PET's weighted auxiliary MLM loss (on `unlabeled`, else on the training inputs).
    With no training examples nothing is trained (zero-shot PET).

    A pattern with a [DEMOS] slot trains LM-BFF's way: each time an example is put in a batch it gets
    demonstrations freshly drawn from the other training examples; dev accuracy is that of the label
    probabilities averaged over the demonstration `sets` (see `demo_sets`)."""
    method = session.spec.method
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
    targets = torch.tensor(train.labels)
    text = session.encode(pattern, unlabeled, method.max_length) if unlabeled else train
    batch_of = training_batches(session, pattern, train_examples, train, seed)

    multi_token = any(len(ids) > 1 for lw in pattern.labels for ids in lw.ids)
    hinge = multi_token and multi_token_loss(method) is m.MultiTokenLoss.hinge

    def loss_of(rows: list[int]) -> torch.Tensor:
        batch, at = batch_of(rows)
        scores = label_scores(session, pattern, batch, at, train=True, soft=soft)  # (B, C)
        label_loss = hinge_loss if hinge else F.cross_entropy
        loss = method.loss.ce * label_loss(scores, targets[rows])
        if method.loss.mlm > 0:
            lm_rows = rows if text is train else torch.randint(len(text), (len(rows),), generator=generator).tolist()
            loss = loss + method.loss.mlm * _mlm_loss(session, text, lm_rows, generator, soft)
        return loss

    def evaluate() -> float:
        return accuracy(mean_probabilities(session, pattern, dev, method.eval_batch_size, soft), dev[0].labels)

    history = fit(module, loss_of, len(train), method, seed, evaluate if dev else None, progress(session.log))
    return Trained(soft, history)


def training_batches(session: Session, pattern: p.Pattern, examples: list[Example], train: Encoded,
                     seed: int) -> Callable[[list[int]], tuple[Encoded, list[int]]]:
    """How a batch of training examples (indices) becomes model input: (an encoding, its rows).

    Without a [DEMOS] slot: rows of `train`, the whole training set's encoding. With one: the batch
    assembled anew from fields tokenized once, each example with a demonstration set freshly drawn
    from the other examples (reproducible for `seed`, different at each draw).
    """
    if not has_demos(pattern):
        return lambda rows: (train, rows)
    prepared = prepare(pattern, examples, session.tokenizer, session.plan.tokenizer, session.spec.method.max_length,
                       session.spec.labels, session.family)
    draw = fresh_demos(session, examples, f"demonstrations {seed}")
    return lambda rows: (prepared.assemble(rows, draw(rows)), list(range(len(rows))))


def prompt_finetune(session: Session, splits: Splits, name: str, seed: int | None) -> Outcome:
    """Prompt-based fine-tuning of one pattern, evaluated on test (with a [DEMOS] slot: the label
    probabilities averaged over the demonstration sets, which the output directory keeps)."""
    method = session.spec.method
    pattern = session.plan.patterns[name]
    _check_trainable(session, splits)
    sets = demo_sets(session, splits) if has_demos(pattern) else []
    trained = train_pattern(session, pattern, splits.train, splits.dev, splits.unlabeled, seed or 0, sets)
    test = encoded_sets(session, pattern, splits.test, method.max_length, sets)
    soft = trained.soft
    extras = ({"soft": soft.weight.detach()} if soft else {}) | ({"sets": [{"demos": d} for d in sets]} if sets else {})
    return Outcome(mean_probabilities(session, pattern, test, method.eval_batch_size, soft), test[0].labels,
                   trained.history, trained.dev, extras)


def finetune(session: Session, splits: Splits, name: str | None, seed: int | None) -> Outcome:
    """Standard fine-tuning: a new classification head on the same examples, no prompt."""
    method = session.spec.method
    _check_trainable(session, splits)
    labels = {label: i for i, label in enumerate(session.spec.labels)}
    targets = torch.tensor([labels[e.label] for e in splits.train])
    classifier, history = train_classifier(session, splits.train, lambda out, rows: F.cross_entropy(out, targets[rows]),
                                           method, splits.dev, seed or 0)
    return Outcome(softmax(classifier_logits(session, classifier, splits.test, method)),
                   [labels.get(e.label, -1) for e in splits.test], history,
                   max(history.dev) if history.dev else None,
                   {"head.weight": classifier.head.weight.detach(), "head.bias": classifier.head.bias.detach()})


def _check_trainable(session: Session, splits: Splits) -> None:
    """A method that trains needs training examples (the file may hold none, or none of the labels)."""
    if not splits.train:
        raise RunError(f"no training examples for data seed {splits.seed}", ("data", "train"),
                       "check that the training file has rows with the spec's labels")


METHODS: dict[str, Callable[[Session, Splits, str | None, int | None], Outcome]] = {
    "zero_shot": zero_shot,
    "in_context": in_context,
    "prompt_finetune": prompt_finetune,
    "finetune": finetune,
}
