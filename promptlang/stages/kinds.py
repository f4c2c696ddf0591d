"""Stage kinds: each kind of stage is registered once, with what its key hashes and the function that
computes it into a directory of the store; `Run` is what those functions see."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime.data import Splits
from promptlang.runtime.pipeline import ENCODING_VERSION
from promptlang.runtime.progress import as_progress
from promptlang.runtime.session import Session
from promptlang.stages.logits import read_logits, read_texts
from promptlang.stages.store import Store, key_of

SPLITS = ("train", "dev", "test", "unlabeled")
WEIGHTS = "weights.safetensors"  # a stage's trained model weights (every parameter, safetensors)
EXTRAS = "extras.safetensors"  # what else it trained: a classifier head, a soft prompt


@dataclass
class Done:
    """A finished stage: where its result is, and whether this run computed it or found it."""

    stage: p.Stage
    key: str
    path: Path
    result: dict
    reused: bool

    def logits(self, split: str) -> np.ndarray:
        return read_logits(self.path / f"{split}.logits.tsv")

    def texts(self, split: str) -> list[str]:
        """What the model wrote for each example of a split (a stage that `writes_text`)."""
        return read_texts(self.path / f"{split}.generated.tsv")

    @property
    def weight(self) -> float:
        """The model's weight in a `weighted` ensemble: its accuracy on the training set before training."""
        before = self.result.get("train_accuracy_before")
        return 1.0 if before is None else before


@dataclass
class Run:
    """What a stage's function sees: the session, the data samples, the store and the stages done so far."""

    session: Session
    splits: dict[int, Splits]
    store: Store
    log: Callable[[str], None] = print
    classifier_session: Callable[[], Session] | None = None  # PET's `distill { model ... }`
    done: dict[str, Done] = field(default_factory=dict)
    loaded: str | None = None  # the stage whose trained weights the session's model holds now
    recompute: Callable[[p.Stage], Done] | None = None  # runs a finished stage again (the executor's)
    fingerprints: dict[tuple, str] = field(default_factory=dict, repr=False)  # hashed once per run

    def __post_init__(self) -> None:
        self.log = as_progress(self.log)  # (a plain callable, in tests, is wrapped)

    @property
    def spec(self) -> m.Spec:
        return self.session.spec

    def session_for(self, stage: p.Stage) -> Session:
        """The session a stage runs its model in: PET's distillation model's when `distill` names one."""
        if stage.kind == "distill" and self.classifier_session is not None:
            return self.classifier_session()
        return self.session

    def need(self, stage: p.Stage, kind: str) -> Done | None:
        """The finished stage of a kind that `stage` needs (its first), if any."""
        return next((self.done[n] for n in stage.needs if self.done[n].stage.kind == kind), None)

    def fingerprint(self, data_seed: int, splits: tuple[str, ...] = SPLITS) -> str:
        """The hash of some splits of a data sample (`fingerprint`), computed once per run."""
        if (data_seed, splits) not in self.fingerprints:
            self.fingerprints[data_seed, splits] = fingerprint(self.splits[data_seed], self.spec.data.text, splits)
        return self.fingerprints[data_seed, splits]

    def model_inputs(self, stage: p.Stage, reads: tuple[str, ...] = SPLITS) -> dict:
        """What a stage that runs the model depends on beyond its needs: the pattern as compiled, the
        tokenizer, the model, the method's settings, the splits of the data sample it reads, its seed,
        the libraries, the precision (not the device nor the process count: a stage computed on one
        device or several means the same)."""
        spec, plan = self.spec, self.session.plan
        pattern = plan.patterns.get(stage.pattern) if stage.pattern else None
        return {"pattern": pattern.model_dump(mode="json") if pattern else None,
                "tokenizer": plan.tokenizer.model_dump(mode="json"), "model": spec.model.model_dump(mode="json"),
                "family": plan.family, "labels": spec.labels, "data": self.fingerprint(stage.data_seed, reads),
                "method": spec.method.model_dump(mode="json", exclude={"patterns", "ensemble", "distill", "ipet",
                                                                       "seeds"}),
                "seed": stage.seed, "libraries": libraries(), "encoding": ENCODING_VERSION,
                "precision": self.session.placement.precision}


@dataclass(frozen=True)
class Kind:
    """One kind of stage.

    Attributes:
        name: the plan's `kind`.
        version: part of every key; raise it when what the kind computes changes.
        inputs: what the key hashes besides the stage's id, kind and the keys of its needs.
        compute: runs the stage, writing its files into the directory; returns `result.json`'s content.
        files: the files a stage of this kind writes besides `result.json` (its logits files, and
            the trained weights of a stage that saves them); the executor holds every stage to it.
        check: what must hold of a finished stage, computed or reused, before the run goes on
            (raises `RunError`).
    """

    name: str
    version: int
    inputs: Callable[[Run, p.Stage], dict]
    compute: Callable[[Run, p.Stage, Path], dict]
    files: Callable[[p.Stage], list[str]] = lambda stage: written(stage)
    check: Callable[[Run, Done], None] = lambda run, done: None


def written(stage: p.Stage, *more: str) -> list[str]:
    """The logits files of the splits a stage scores, its weights when it saves them, and `more`."""
    scored = [f"{split}.{'generated' if stage.writes_text else 'logits'}.tsv" for split in stage.scores]
    return scored + ([WEIGHTS] if stage.saves_weights else []) + list(more)


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def fingerprint(splits: Splits, columns: list[str], names: tuple[str, ...] = SPLITS) -> str:
    """A hash of some splits of one data sample: each example's text columns, label and score, in order."""
    data = {name: [[[e.fields.get(c, "") for c in columns], e.label, e.score] for e in getattr(splits, name)]
            for name in SPLITS if name in names}
    return key_of({"columns": columns, "data": data})


def libraries() -> dict:
    """Versions whose numerics a trained stage depends on (a resumed run must compute what the first did)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def seed_of(text: str) -> int:
    """A reproducible 32-bit seed from a text (a stage's id)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
