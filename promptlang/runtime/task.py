"""The task layer: what a spec learns — classification (labels), regression (a score, LM-BFF's two
poles) or generation (a target text) — and everything that depends on it: the training targets and
loss over the label scores, the dev score a model is selected on, the metrics, and the gold and
predicted values of the predictions file.

A classifying or regressing model scores the spec's labels (for a regression, its two poles), and
its task turns those scores into what it predicts; a generating model writes text, which its task
(`text_task.Generation`) measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from promptlang.language import spec as m
from promptlang.runtime.data import Example
from promptlang.runtime.metrics import CLASSIFICATION, compute
from promptlang.runtime.regression import pole_targets, predict_scores, regression_metrics
from promptlang.runtime.text_task import DEFAULT_METRICS, Generation, TextLabels, TextScores


@dataclass(frozen=True)
class Classification:
    """Labels: the target is the gold label's index; cross-entropy; accuracy selects the model."""

    labels: list[str]
    kind: str = "classification"
    writes: bool = False  # (the model scores the labels; `text_task`'s tasks write text)

    def targets(self, examples: list[Example]) -> torch.Tensor:
        return torch.tensor([self.labels.index(e.label) for e in examples])  # (N,)

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the label scores (B, C) against the gold label indices (B,)."""
        return F.cross_entropy(scores, targets)

    def gold(self, examples: list[Example]) -> list:
        return [self.labels.index(e.label) if e.label in self.labels else -1 for e in examples]

    def selection(self, probabilities: np.ndarray, examples: list[Example]) -> float:
        """The dev score a model is selected on: accuracy."""
        gold = np.array(self.gold(examples))
        return float((probabilities.argmax(axis=1) == gold).mean()) if len(gold) else 0.0

    def metrics(self, names: list[m.Metric] | None, examples: list[Example], probabilities: np.ndarray) -> dict:
        return compute(names or list(CLASSIFICATION), self.gold(examples), probabilities) if examples else {}

    def predicted(self, probabilities: np.ndarray) -> list[str]:
        """What is predicted for each row of label probabilities, as text: the most probable label."""
        return [self.labels[int(row.argmax())] for row in probabilities]

    def shown(self, examples: list[Example], probabilities: np.ndarray) -> list[tuple[str, str]]:
        """(gold, predicted) of each example, as the predictions file writes them."""
        return [(e.label if e.label in self.labels else "", predicted)
                for e, predicted in zip(examples, self.predicted(probabilities))]


@dataclass(frozen=True)
class Regression:
    """A score in [lb, ub], LM-BFF's way: the target is the poles' probabilities [1 − t, t] with
    t = (y − lb) / (ub − lb); the loss is KL(target ‖ the poles' softmax); the prediction is
    lb + (ub − lb) · p(high); Pearson selects the model."""

    labels: list[str]
    lower: float
    upper: float
    kind: str = "regression"
    writes: bool = False

    def targets(self, examples: list[Example]) -> torch.Tensor:
        return torch.tensor(pole_targets([e.score for e in examples], self.lower, self.upper),
                            dtype=torch.float32)  # (N, 2)

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """KL(targets ‖ softmax(scores)), averaged over the batch: scores (B, 2) log-scores, targets (B, 2)
        probabilities (as probabilities: `kl_div` takes the targets as probabilities, not log-probabilities)."""
        return F.kl_div(F.log_softmax(scores.float(), dim=1), targets, reduction="batchmean")

    def gold(self, examples: list[Example]) -> list:
        return [e.score for e in examples]

    def predict(self, probabilities: np.ndarray) -> np.ndarray:
        return predict_scores(probabilities, self.lower, self.upper)

    def selection(self, probabilities: np.ndarray, examples: list[Example]) -> float:
        """The dev score a model is selected on: Pearson's correlation."""
        return regression_metrics(["pearson"], self.gold(examples), self.predict(probabilities))["pearson"]

    def metrics(self, names: list[m.Metric] | None, examples: list[Example], probabilities: np.ndarray) -> dict:
        wanted = [x.value for x in names] if names else ["pearson", "spearman"]
        return regression_metrics(wanted, self.gold(examples), self.predict(probabilities)) if examples else {}

    def predicted(self, probabilities: np.ndarray) -> list[str]:
        """The predicted score of each row of pole probabilities, as text."""
        return [f"{score:.4f}" for score in self.predict(probabilities)]

    def shown(self, examples: list[Example], probabilities: np.ndarray) -> list[tuple[str, str]]:
        return [("" if e.score is None else f"{e.score:g}", predicted)
                for e, predicted in zip(examples, self.predicted(probabilities))]


Task = Classification | Regression | Generation | TextLabels | TextScores


def task_of(spec: m.Spec) -> Task:
    """The spec's task (`Spec.task_kind`)."""
    kind = spec.task_kind
    if spec.generate is not None and kind == "regression":
        return TextScores(spec.labels, spec.generate.score_step)
    if spec.generate is not None and kind == "classification":
        words = [tuple(dict.fromkeys(w for name in spec.patterns for w in _words(spec, name).get(label, [])))
                 for label in spec.labels]
        return TextLabels(spec.labels, tuple(words))
    if kind == "regression":
        return Regression(spec.labels, spec.task.lower, spec.task.upper)
    if kind == "generation":
        template = next(spec.templates[name] for name in spec.patterns if spec.templates[name].generates)
        return Generation(list(template.target), spec.labels, tuple(spec.evaluate.metrics or DEFAULT_METRICS),
                          spec.evaluate.references)
    return Classification(spec.labels)


def _words(spec: m.Spec, name: str) -> dict[str, list[str]]:
    """Each label's words in the verbalizer of template `name` (its own, else the spec's only one)."""
    template = spec.templates[name]
    verbalizer = spec.verbalizers.get(template.verbalizer) if template.verbalizer else \
        next(iter(spec.verbalizers.values()), None)
    return verbalizer.words if verbalizer else {}
