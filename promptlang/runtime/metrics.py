"""Metrics, computed by scikit-learn and SciPy."""

from __future__ import annotations

import numpy as np

from promptlang.language import spec as m

CLASSIFICATION = (m.Metric.accuracy, m.Metric.macro_f1)


def compute(metrics: list[m.Metric], labels: list[int], probabilities: np.ndarray) -> dict[str, float]:
    """Each metric for gold label indices and predicted label probabilities (N, C).

    Examples without a gold label (-1) are left out.
    """
    from scipy.stats import pearsonr, spearmanr

    gold = np.array(labels)
    keep = gold >= 0
    gold, probabilities = gold[keep], probabilities[keep]
    out = label_metrics([x for x in metrics if x not in (m.Metric.pearson, m.Metric.spearman)], list(gold),
                        list(probabilities.argmax(axis=1)), probabilities.shape[1])
    for metric in metrics:
        if metric in (m.Metric.pearson, m.Metric.spearman):
            expected = probabilities @ np.arange(probabilities.shape[1])  # the expected label index
            correlate = pearsonr if metric is m.Metric.pearson else spearmanr
            out[metric.value] = float(correlate(gold, expected)[0])
    return {metric.value: out[metric.value] for metric in metrics}


def label_metrics(metrics: list[m.Metric], gold: list[int], predicted: list[int], classes: int) -> dict[str, float]:
    """Accuracy (exact match), macro-F1 and MCC of predicted label indices against gold ones; a prediction
    of -1 (no label: a written text that names none) counts as wrong. Examples without a gold label (-1)
    are left out."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    pairs = [(g, p) for g, p in zip(gold, predicted) if g >= 0]
    gold, predicted = [g for g, _ in pairs], [p for _, p in pairs]
    out: dict[str, float] = {}
    for metric in metrics:
        if metric is m.Metric.accuracy or metric is m.Metric.exact_match:
            out[metric.value] = float(accuracy_score(gold, predicted))
        elif metric is m.Metric.macro_f1:
            out[metric.value] = float(f1_score(gold, predicted, average="macro", labels=list(range(classes)),
                                               zero_division=0))
        elif metric is m.Metric.mcc:
            out[metric.value] = float(matthews_corrcoef(gold, predicted))
        else:
            raise ValueError(f"`{metric.value}` needs generated text; classification runs report "
                             f"accuracy, macro_f1, mcc, pearson and spearman")
    return out
