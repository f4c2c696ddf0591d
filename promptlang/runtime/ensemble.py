"""PET's arithmetic, as plain NumPy: ensembles of label logits, soft labels, and iPET's training sets.

Nothing here runs a model, so every function can be checked against values computed by
hand. The definitions follow the PET code of Schick & Schütze (`pet/modeling.py`):

- an ensemble averages the models' label logits, each model weighted by its accuracy on the
  training set before training (`weighted`), or equally (`mean`);
- soft labels are softmax(logits / T);
- iPET generation g trains each model on `d · s^g` examples (`compiler/sizes.py`, which sizes
  the plan with them), where d is the size of the labelled set (10 / s with none) and s the
  scale factor: the labelled set plus examples that
  a random `logits_percentage` of the *other* models of the previous generation label, drawn
  per label in proportion to the label distribution of the labelled set (evenly with none),
  each example with a probability proportional to the ensemble's confidence in it.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, C) scores divided by a temperature."""
    scaled = np.asarray(scores, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def ensemble_logits(logits: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted mean of several models' (N, C) label logits (equal weights when None, or when
    every weight is zero)."""
    stacked = np.stack([np.asarray(x, dtype=np.float64) for x in logits])  # (M, N, C)
    w = np.ones(len(stacked)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones(len(stacked))
    return np.tensordot(w / w.sum(), stacked, axes=1)


def ipet_train_set(others: Sequence[tuple[np.ndarray, float]], sizes: Sequence[int], logits_percentage: float,
                   weighted: bool, n_most_likely: int | None, seed: int) -> list[tuple[int, int]]:
    """The examples one model of the next generation is trained on besides the labelled set.

    Args:
        others: (unlabeled logits (N, C), weight) of every *other* model of the previous generation.
        sizes: how many examples each label gets (`compiler.sizes.label_sizes`).
        logits_percentage: the share of `others` drawn at random to form the labelling ensemble.
        weighted: weight the ensemble by each model's weight (else a plain mean).
        n_most_likely: draw a label's examples from the n examples most likely to have it (PET uses
            this when the first generation starts from zero-shot models), instead of from the
            examples the ensemble assigns to it.
        seed: seeds the choice of models and the draws.

    Returns:
        (unlabeled index, label index) pairs, label by label; an index can repeat when a label has
        fewer candidates than it needs (PET upsamples them).
    """
    rng, rng_np = random.Random(seed), np.random.RandomState(seed)
    chosen = rng.sample(list(others), k=max(round(len(others) * logits_percentage), 1))
    probs = softmax(ensemble_logits([x for x, _ in chosen], [w for _, w in chosen] if weighted else None))
    predicted = probs.argmax(axis=1)
    out: list[tuple[int, int]] = []
    for label, size in enumerate(sizes):
        if n_most_likely:
            candidates = sorted(range(len(probs)), key=lambda i: (probs[i, label], i), reverse=True)[:n_most_likely]
            confidence = probs[candidates, label]
        else:
            assigned = [i for i in range(len(probs)) if predicted[i] == label]
            if not assigned:
                continue  # the ensemble gives this label to no example: nothing to draw from
            candidates = list(assigned)
            while len(candidates) < size:
                candidates += assigned
            confidence = probs[candidates].max(axis=1)
        size = min(size, len(candidates))
        total = confidence.sum()
        p = confidence / total if total > 0 else None  # every probability underflowed: draw uniformly
        picked = rng_np.choice(len(candidates), size=size, replace=False, p=p)
        out += [(candidates[j], label) for j in picked]
    return out
