"""T5's mixing rates and the draws that follow from them (`compiler.mixing`)."""

from __future__ import annotations

from collections import Counter

import pytest

from promptlang.compiler.mixing import mixed_draws, mixing_rates


@pytest.mark.parametrize("sizes, limit, temperature, expected", [
    ({"a": 300, "b": 100}, None, 1.0, {"a": 0.75, "b": 0.25}),  # examples-proportional
    ({"a": 300, "b": 100}, 200, 1.0, {"a": 200 / 300, "b": 100 / 300}),  # K caps the large task
    ({"a": 300, "b": 100}, 50, 1.0, {"a": 0.5, "b": 0.5}),  # K below both: equal
    ({"a": 400, "b": 100}, None, 2.0, {"a": 20 / 30, "b": 10 / 30}),  # sqrt(400) = 20, sqrt(100) = 10
    ({"a": 400, "b": 100, "c": 0}, None, 1.0, {"a": 0.8, "b": 0.2, "c": 0.0}),  # a task without examples
    ({"a": 7}, 3, 5.0, {"a": 1.0}),
])
def test_mixing_rates(sizes, limit, temperature, expected):
    assert mixing_rates(sizes, limit, temperature) == pytest.approx(expected)


@pytest.mark.parametrize("sizes, temperature, message", [
    ({"a": 0}, 1.0, "no task has a training example"),
    ({"a": 3}, 0.0, "the mixing temperature must be positive"),
])
def test_mixing_rates_refuse(sizes, temperature, message):
    with pytest.raises(ValueError, match=message):
        mixing_rates(sizes, None, temperature)


def test_draws_follow_the_rates_and_use_every_example_before_repeating():
    sizes = {"a": 30, "b": 10}
    rates = mixing_rates(sizes)
    draws = mixed_draws(sizes, rates, 4000, seed=13)
    counts = Counter(name for name, _ in draws)
    assert counts["a"] / 4000 == pytest.approx(0.75, abs=0.02)
    first_b = [i for name, i in draws if name == "b"][:10]
    assert sorted(first_b) == list(range(10))  # a whole pass over b before any repeat
    assert draws == mixed_draws(sizes, rates, 4000, seed=13)
    assert draws != mixed_draws(sizes, rates, 4000, seed=21)


def test_a_task_with_rate_zero_is_never_drawn():
    sizes = {"a": 5, "b": 0}
    assert {name for name, _ in mixed_draws(sizes, mixing_rates(sizes), 50, seed=1)} == {"a"}
