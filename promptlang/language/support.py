"""What `promptlang run` cannot run yet: one list, read by the checker (a warning) and the runner (an error).

A feature that the language accepts but the runtime does not build yet is named here once, with
the spec setting that asks for it, so that `check` warns where `run` would refuse, with the same
words (and `check --strict` fails on it), and the docs can be tested against the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptlang.language import spec as m


@dataclass(frozen=True)
class NotYet:
    """A feature a spec asks for that `promptlang run` refuses, and where the spec asks for it."""

    feature: str
    message: str
    path: tuple
    hint: str


# The features, as the docs name them (tests/test_docs.py holds README.md and docs/language.md to it).
FEATURES: tuple[str, ...] = ()


def not_yet(spec: m.Spec | m.Mixture) -> list[NotYet]:
    """The features of `spec` that `promptlang run` cannot run yet, in the order the runner meets them."""
    found: list[NotYet] = []
    return found
