"""iPET's set sizes, in plain Python (the plan is sized with them before any model or NumPy is loaded)."""

from __future__ import annotations

from typing import Sequence


def eq_div(n: int, parts: int) -> list[int]:
    """`n` split into `parts` near-equal whole numbers, the larger ones first."""
    return [n // parts + 1] * (n % parts) + [n // parts] * (parts - n % parts) if parts > 0 else []


def new_examples(n_train: int, scale_factor: float, generation: int) -> int:
    """iPET: how many examples the ensemble labels for each model of `generation` (≥ 1), so that its
    training set holds d · s^generation examples with d = |T| (or 10 / s when T is empty)."""
    original = n_train if n_train else 10 / scale_factor
    return int(original * scale_factor ** generation - n_train)


def label_sizes(n_new: int, train_counts: Sequence[int]) -> list[int]:
    """How many of the new examples each label gets: the labelled set's distribution scaled (rounded
    down), or an even split when there is no labelled set."""
    total = sum(train_counts)
    if total == 0:
        return eq_div(n_new, len(train_counts))
    multiplier = n_new / total
    return [int(count * multiplier) for count in train_counts]


def generation_sizes(train_counts: Sequence[int], scale_factor: float, generations: int) -> list[int]:
    """The training set size of each model in each iPET generation (generation 0: the labelled set)."""
    n = sum(train_counts)
    return [n] + [n + sum(label_sizes(new_examples(n, scale_factor, g), train_counts)) for g in range(1, generations)]
