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
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    gold = np.array(labels)
    keep = gold >= 0
    gold, probabilities = gold[keep], probabilities[keep]
    predicted = probabilities.argmax(axis=1)
    out: dict[str, float] = {}
    for metric in metrics:
        if metric is m.Metric.accuracy or metric is m.Metric.exact_match:
            out[metric.value] = float(accuracy_score(gold, predicted))
        elif metric is m.Metric.macro_f1:
            out[metric.value] = float(f1_score(gold, predicted, average="macro",
                                               labels=list(range(probabilities.shape[1])), zero_division=0))
        elif metric is m.Metric.mcc:
            out[metric.value] = float(matthews_corrcoef(gold, predicted))
        elif metric in (m.Metric.pearson, m.Metric.spearman):
            expected = probabilities @ np.arange(probabilities.shape[1])  # the expected label index
            correlate = pearsonr if metric is m.Metric.pearson else spearmanr
            out[metric.value] = float(correlate(gold, expected)[0])
        else:
            raise ValueError(f"`{metric.value}` needs generated text; classification runs report "
                             f"accuracy, macro_f1, mcc, pearson and spearman")
    return out
