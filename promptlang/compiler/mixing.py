"""T5's multi-task mixing (Raffel et al., 2020, section 3.5.2): how often each task's examples are drawn
when one model trains on several tasks — examples-proportional with an artificial limit K, optionally
temperature-scaled — and the seeded draws that follow from the rates."""

from __future__ import annotations

import random


def mixing_rates(sizes: dict[str, int], limit: int | None = None, temperature: float = 1.0) -> dict[str, float]:
    """Each task's share of the drawn examples: r_m ∝ min(e_m, K) ** (1 / T), normalised to sum to 1.

    Args:
        sizes: training examples per task (e_m).
        limit: K, the artificial data set size limit (None: no limit, plain examples-proportional mixing).
        temperature: T; 1 is examples-proportional, larger values move the rates towards equal mixing.

    Raises:
        ValueError: no task has an example, or the temperature is not positive.
    """
    if temperature <= 0:
        raise ValueError("the mixing temperature must be positive")
    capped = {name: min(n, limit) if limit is not None else n for name, n in sizes.items()}
    scaled = {name: n ** (1.0 / temperature) if n > 0 else 0.0 for name, n in capped.items()}
    total = sum(scaled.values())
    if total <= 0:
        raise ValueError("no task has a training example")
    return {name: value / total for name, value in scaled.items()}


def mixed_draws(sizes: dict[str, int], rates: dict[str, float], count: int, seed: int) -> list[tuple[str, int]]:
    """`count` (task, example index) draws: each draw picks a task by its rate, and each task hands out its
    examples in a seeded shuffled order, reshuffled when it has given all of them (T5's repeated streams).

    The draws depend only on the sizes, the rates, `count` and `seed`."""
    rng = random.Random(seed)
    names = [name for name in rates if rates[name] > 0 and sizes.get(name, 0) > 0]
    weights = [rates[name] for name in names]
    orders: dict[str, list[int]] = {name: [] for name in names}
    out: list[tuple[str, int]] = []
    for name in rng.choices(names, weights=weights, k=count) if names else []:
        if not orders[name]:
            orders[name] = rng.sample(range(sizes[name]), sizes[name])
        out.append((name, orders[name].pop()))
    return out
