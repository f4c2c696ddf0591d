"""LM-BFF's demonstrations: labelled examples filled into the demonstration template with their label
word, drawn per label into sets; scoring averaged over demonstration sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from promptlang.compiler import plan as p
from promptlang.compiler.compile import compile_pattern
from promptlang.language import spec as m
from promptlang.runtime import scoring, similar
from promptlang.runtime.data import Example, Splits
from promptlang.runtime.pipeline import Encoded
from promptlang.methods.common import uses_demos
from promptlang.runtime.session import Session, calibrate, logits, probabilities


@dataclass
class DemoPool:
    """Labelled examples ready to be demonstrations: each one's token ids through the demonstration
    template with its label's first word at the mask (encoded once), and the examples of each label."""

    ids: list[list[int]]
    by_label: list[list[int]]  # for each label, the indices of its examples
    per_label: int

    def draw(self, rng: random.Random, exclude: int | None = None,
             allowed: list[list[int]] | None = None) -> list[int]:
        """One demonstration set: `per_label` examples per label (never example `exclude`), drawn
        uniformly from the label's examples (or from `allowed[label]`: those most similar to the query,
        `similar.most_similar`), in a random order, as token ids."""
        chosen: list[int] = []
        for rows in allowed if allowed is not None else self.by_label:
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


@dataclass
class Neighbours:
    """`select similar`: the candidates' embeddings, so that each query draws from the candidates most
    like it (`similar.most_similar`)."""

    pool: DemoPool
    vectors: np.ndarray  # (P, D), unit length
    encoder: str  # where the sentence encoder is (`similar.encoder_location`)
    top: float
    columns: list[str]
    cache: object = None  # the embeddings' cache folder

    def texts(self, examples: list[Example]) -> list[str]:
        return [similar.query_text(e, self.columns) for e in examples]

    def allowed(self, texts: list[str]) -> list[list[list[int]]]:
        """For each query (its text), per label, the candidates it may draw from."""
        queries = similar.embeddings(self.encoder, texts, self.cache)
        return similar.most_similar(queries, self.vectors, self.pool.by_label, self.top)

    def among_themselves(self) -> list[list[list[int]]]:
        """For each candidate, per label, the other candidates it may draw from (training: never itself)."""
        return similar.most_similar(self.vectors, self.vectors, self.pool.by_label, self.top,
                                    exclude=list(range(len(self.vectors))))


@dataclass
class SimilarSets:
    """The `sets` demonstration sets of `select similar`: set i of a query is drawn from the candidates most
    like it with a seed of (data seed, i, the query's text), the same whatever else is scored with it."""

    near: Neighbours
    seed: int
    count: int

    def __len__(self) -> int:
        return self.count

    def per_set(self, examples: list[Example]) -> list[list[list[int]]]:
        """For each set, each example's demonstrations (token ids)."""
        texts = self.near.texts(examples)
        allowed = self.near.allowed(texts)
        return [[self.near.pool.draw(random.Random(f"{self.seed}/{i}/{text}"), allowed=kept)
                 for text, kept in zip(texts, allowed)] for i in range(self.count)]


Sets = Union[list[list[int]], SimilarSets]  # random sets are shared by every query; similar ones are per query


def neighbours(session: Session, examples: list[Example]) -> Neighbours | None:
    """The similarity filter over `examples` as candidates when the spec selects `similar`, else None."""
    settings = session.spec.demonstrations
    if settings is None or settings.select is not m.Selection.similar:
        return None
    pool = demo_pool(session, examples)
    encoder = similar.encoder_location(settings.encoder, session.directory)
    columns = session.spec.data.text
    vectors = similar.embeddings(encoder, [similar.query_text(e, columns) for e in examples], session.cache)
    top = settings.top if settings.top is not None else similar.LM_BFF_TOP
    return Neighbours(pool, vectors, encoder, top, columns, session.cache)


def demonstrations(session: Session, splits: Splits, seed: int) -> list[int]:
    """One sampled set of demonstrations: `per_label` training examples per label, each filled in
    through the demonstration template with its label's first word, in a random order."""
    return demo_pool(session, splits.train).draw(random.Random(seed))


def demo_sets(session: Session, splits: Splits) -> Sets:
    """The `sets` demonstration sets that evaluation averages over for a data sample (set i drawn with
    seed `data seed × 1000 + i`, the plan's `demonstrations` stage); none without demonstrations. With
    `select similar`, sets drawn for each query from the training examples most like it."""
    settings = session.spec.demonstrations
    if settings is None:
        return []
    near = neighbours(session, splits.train)
    if near is not None:
        return SimilarSets(near, splits.seed * 1000, settings.sets)
    pool = demo_pool(session, splits.train)
    return [pool.draw(random.Random(splits.seed * 1000 + index)) for index in range(settings.sets)]


def fresh_demos(session: Session, examples: list[Example], seed: str) -> Callable[[list[int]], list[list[int]]]:
    """A function that draws, for each of some examples (indices), a new demonstration set from the other
    examples; reproducible for a given `seed`, different at each call."""
    rng, near = random.Random(seed), neighbours(session, examples)
    if near is None:
        pool = demo_pool(session, examples)
        return lambda rows: [pool.draw(rng, exclude=row) for row in rows]
    allowed = near.among_themselves()  # each among the others most like it
    return lambda rows: [near.pool.draw(rng, exclude=row, allowed=allowed[row]) for row in rows]


def encoded_sets(session: Session, pattern: p.Pattern, examples: list[Example], max_length: int,
                 sets: Sets) -> list[Encoded]:
    """The examples encoded once per demonstration set (every example with the same set; with `select
    similar`, each with its own), or once without demonstrations when there are no sets."""
    if isinstance(sets, SimilarSets):
        return [session.encode(pattern, examples, max_length, each) for each in sets.per_set(examples)]
    return [session.encode(pattern, examples, max_length, [demos] * len(examples)) for demos in sets] or \
        [session.encode(pattern, examples, max_length)]


def mean_probabilities(session: Session, pattern: p.Pattern, encodings: list[Encoded], batch_size: int,
                       soft: scoring.SoftPrompt | None = None,
                       calibrations: list[list[float]] | None = None) -> np.ndarray:
    """Label probabilities (N, C) averaged over encodings of the same examples (demonstration sets),
    each divided by its content-free prediction first when `calibrations` (one per encoding) are given."""
    total = 0
    for index, encoded in enumerate(encodings):
        probs = probabilities(session, pattern, encoded, batch_size, soft)
        total = total + (calibrate(probs, np.array(calibrations[index])) if calibrations else probs)
    return total / len(encodings)


def set_probabilities(session: Session, pattern: p.Pattern, examples: list[Example], max_length: int,
                      sets: Sets, batch_size: int, soft: scoring.SoftPrompt | None = None,
                      calibrations: list[list[float]] | None = None) -> np.ndarray:
    """Label probabilities (N, C) of some examples averaged over the demonstration sets (one encoding
    without demonstrations when there are none), each calibrated when `calibrations` are given."""
    encodings = encoded_sets(session, pattern, examples, max_length, sets)
    return mean_probabilities(session, pattern, encodings, batch_size, soft, calibrations)


def set_logits(session: Session, pattern: p.Pattern, examples: list[Example], max_length: int,
               sets: Sets, batch_size: int, soft: scoring.SoftPrompt | None = None,
               calibrations: list[list[float]] | None = None) -> np.ndarray:
    """Label log-scores (N, C) whose softmax is `set_probabilities` (the plain logits when there are
    neither sets nor calibrations)."""
    if not sets and not calibrations:
        return logits(session, pattern, session.encode(pattern, examples, max_length), batch_size, soft)
    probs = set_probabilities(session, pattern, examples, max_length, sets, batch_size, soft, calibrations)
    return np.log(np.maximum(probs, 1e-30))


def own_demos(session: Session, pattern: p.Pattern, examples: list[Example], seed: int) -> list[list[int]] | None:
    """For a pattern with a [DEMOS] slot, a demonstration set for each example drawn from the others
    (as in training); None for a pattern without one."""
    if not uses_demos(pattern):
        return None
    return fresh_demos(session, examples, f"own demonstrations {seed}")(list(range(len(examples))))
