"""Regression's arithmetic, as in LM-BFF: scores to pole targets, pole probabilities to scores, and the metrics."""

from __future__ import annotations

from typing import Sequence

import numpy as np

REGRESSION_METRICS = ("pearson", "spearman")


def pole_targets(scores: Sequence[float], lower: float, upper: float) -> np.ndarray:
    """The probability targets of the two poles: `[1 − t, t]` with `t = (y − lb) / (ub − lb)`, clipped to [0, 1].

    Args:
        scores: the gold scores y, shape (N,).
        lower: the range's lower bound lb.
        upper: its upper bound ub (above `lower`).

    Returns:
        An (N, 2) array: column 0 the low pole's probability, column 1 the high pole's.
    """
    high = np.clip((np.asarray(scores, dtype=np.float64) - lower) / (upper - lower), 0.0, 1.0)  # (N,)
    return np.stack([1.0 - high, high], axis=-1)  # (N, 2)


def predict_scores(probabilities: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """The predicted scores `lb + (ub − lb) · p(high)` of the poles' probabilities, shape (N, 2) → (N,)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != 2:
        raise ValueError(f"expected the two poles' probabilities, shape (N, 2), got {probabilities.shape}")
    return lower + (upper - lower) * probabilities[:, 1]


def regression_metrics(metrics: Sequence[str], gold: Sequence[float | None], predicted: Sequence[float]) -> dict:
    """Pearson's and Spearman's correlation of the predicted scores with the gold ones.

    Examples without a gold score (None) are left out. A correlation that is undefined, because fewer
    than two examples are scored or the gold or the predicted scores are all equal, is reported as 0.0
    (no correlation measured): a number that dev selection can compare and JSON can hold, never NaN.

    Args:
        metrics: the metric names to compute, `pearson` and/or `spearman`.
        gold: the gold scores, one per example (None: no score).
        predicted: the predicted scores, one per example.

    Returns:
        {metric: correlation} for each metric asked for, in the order asked.
    """
    from scipy import stats  # (scipy is imported only when a regression is measured)

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold scores but {len(predicted)} predictions")
    kept = [(g, p) for g, p in zip(gold, predicted) if g is not None]
    y = np.array([g for g, _ in kept], dtype=np.float64)  # (M,)
    x = np.array([p for _, p in kept], dtype=np.float64)  # (M,)
    defined = len(kept) >= 2 and np.ptp(y) > 0 and np.ptp(x) > 0
    measure = {"pearson": stats.pearsonr, "spearman": stats.spearmanr}
    out = {}
    for name in metrics:
        if name not in measure:
            raise ValueError(f"`{name}` is not a regression metric; they are {', '.join(REGRESSION_METRICS)}")
        out[name] = float(measure[name](x, y)[0]) if defined else 0.0
    return out
