"""Running one model's stages of a session's plan through the executor, in a temporary store (for tests
that look at one method's outcome)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import numpy as np

from promptlang.output.artifact import predictor_extras
from promptlang.runtime.ensemble import softmax
from promptlang.stages.executor import Executor
from promptlang.stages.kinds import Run
from promptlang.stages.store import Store


def _reseeded(stage, seed: int):
    old = f"/s{stage.seed}"
    return stage.model_copy(update={"seed": seed, "id": stage.id.replace(old, f"/s{seed}"),
                                    "needs": [n.replace(old, f"/s{seed}") for n in stage.needs]})


@dataclass
class Outcome:
    """What evaluating one model gave: label probabilities on test, gold label indices, predictor extras."""

    probabilities: np.ndarray
    labels: list[int]
    extras: dict = field(default_factory=dict)
    dev: float | None = None
    dev_scores: list[float] = field(default_factory=list)
    done: list = field(default_factory=list)


def outcome(session, splits, pattern: str | None, seed: int | None, store=None) -> Outcome:
    """The stages of data seed `splits.seed` for one pattern (None: the head) and seed, run in order."""
    run = Run(session, {splits.seed: splits}, Store(store or tempfile.mkdtemp()), log=lambda line: None)
    stages = [s for s in session.plan.stages if s.data_seed == splits.seed
              and (s.kind == "demonstrations" or (s.pattern == pattern and s.seed == seed))]
    if len(stages) == sum(s.kind == "demonstrations" for s in stages):  # a seed the plan does not have
        stages += [_reseeded(s, seed) for s in session.plan.stages if s.data_seed == splits.seed
                   and s.pattern == pattern and s.seed == session.spec.method.seeds[0]]
    done = Executor(run).execute(stages)
    last = done[-1]
    labels = session.spec.labels
    gold = [labels.index(e.label) if e.label in labels else -1 for e in splits.test]
    train = next((d for d in done if d.stage.kind == "train"), None)
    return Outcome(softmax(last.logits("test")), gold, predictor_extras(run, last), last.result.get("dev"),
                   train.result.get("dev_scores", []) if train else [], done)
