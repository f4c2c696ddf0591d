"""PET and iPET: pattern models, their ensembles, iPET's generations and distillation, run stage by stage.

Each stage of the plan (`train`, `label`, `ensemble`, `distill`) reads what the stages it needs
wrote to the store and writes its own result there (`store.py`): label logits on test and
unlabeled data as TSV, a `result.json`, and for `distill` the classifier itself. A stage whose
key (a hash of its inputs and of the keys of the stages it needs) is already in the store is
reused, so a killed run resumes at the stage it was in, and a changed pattern re-runs only
the stages that depend on it. Downstream stages always read their inputs back from the store,
so a resumed run computes exactly what an uninterrupted one does.

Logits files (`test.logits.tsv`, `unlabeled.logits.tsv`): a header `index  source  gold
<label>...`, then one row per example in the split's order: its position, where it came from
(`file:row`), its gold label name (empty when unknown), and one label logit per label (label
log-scores: softmax over a row gives the model's label probabilities).
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.runtime import session as runtime
from promptlang.language import spec as m
from promptlang.runtime.classifier import classifier_logits, train_classifier
from promptlang.runtime.data import Example, Splits
from promptlang.runtime.ensemble import ensemble_logits, ipet_train_set, label_sizes, new_examples
from promptlang.runtime.pipeline import ENCODING_VERSION
from promptlang.stages.store import RESULT, Store, key_of

# part of each stage's key: raise a kind's number when what its stages compute changes
VERSIONS = {"train": 2, "label": 1, "ensemble": 1, "distill": 3}
MODEL = "model"
HEAD = "head.safetensors"


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """PET's distillation loss: KL(softmax(teacher / T) ‖ softmax(student / T)) · T², averaged over the batch."""
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2


# ---------------------------------------------------------------- logits files


def write_logits(path: Path, examples: list[Example], logits: np.ndarray, labels: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "source", "gold", *labels])
        for i, (example, row) in enumerate(zip(examples, logits)):
            writer.writerow([i, example.source, example.label or "", *[f"{float(x):.9g}" for x in row]])


def read_logits(path: Path) -> np.ndarray:
    """The (N, C) logits of a logits file."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    width = len(rows[0]) - 3
    return np.array([[float(x) for x in row[3:]] for row in rows[1:]], dtype=np.float64).reshape(-1, width)


# ---------------------------------------------------------------- running the stages


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

    @property
    def weight(self) -> float:
        """The model's weight in a `weighted` ensemble: its accuracy on the training set before training."""
        before = self.result.get("train_accuracy_before")
        return 1.0 if before is None else before


def _fingerprint(splits: Splits, columns: list[str]) -> str:
    """A hash of one data sample: each split's text columns and labels, in order."""
    data = {name: [[[e.fields.get(c, "") for c in columns], e.label] for e in getattr(splits, name)]
            for name in ("train", "dev", "test", "unlabeled")}
    return key_of({"columns": columns, "data": data})


def _libraries() -> dict:
    """Versions whose numerics a trained stage depends on (a resumed run must compute what the first did)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def _selection_dev(settings: m.Training, splits: Splits) -> list[Example]:
    """The dev examples a model is selected on: none with `select_model last` (PET's fixed number of steps)."""
    return splits.dev if settings.select_model is m.ModelSelection.dev else []


def _seed_of(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


class PetRun:
    """The PET / iPET stages of one plan, run in order through a store."""

    def __init__(self, session: runtime.Session, splits: dict[int, Splits], store: Store,
                 classifier_session: Callable[[], runtime.Session] | None = None,
                 log: Callable[[str], None] = print):
        self.session, self.splits, self.store, self.log = session, splits, store, log
        self._classifier_session = classifier_session
        self.fingerprints = {seed: _fingerprint(s, session.spec.data.text) for seed, s in splits.items()}
        self.done: dict[str, Done] = {}
        self.current: p.Stage | None = None  # the stage being run (for locating errors)

    @property
    def spec(self) -> m.Spec:
        return self.session.spec

    def key(self, stage: p.Stage) -> str:
        """A hash of everything the stage's result depends on."""
        spec, plan, method = self.spec, self.session.plan, self.spec.method
        inputs: dict = {"version": VERSIONS[stage.kind], "id": stage.id, "kind": stage.kind, "labels": spec.labels,
                        "needs": [self.done[n].key for n in stage.needs]}
        if stage.kind == "train":
            inputs.update(pattern=plan.patterns[stage.pattern].model_dump(mode="json"),
                          tokenizer=plan.tokenizer.model_dump(mode="json"),
                          model=spec.model.model_dump(mode="json"), family=plan.family,
                          method=method.model_dump(mode="json", exclude={"patterns", "ensemble", "distill",
                                                                         "ipet", "seeds"}),
                          data=self.fingerprints[stage.data_seed], seed=stage.seed, libraries=_libraries(),
                          encoding=ENCODING_VERSION)
            if any(piece.kind == "demos" for piece in plan.patterns[stage.pattern].pieces):
                inputs.update(demonstrations=spec.demonstrations.model_dump(mode="json"))
        elif stage.kind == "label":  # (more generations add stages; they do not change the earlier ones)
            inputs.update(ipet=method.ipet.model_dump(mode="json", exclude={"generations"}),
                          ensemble=method.ensemble.value, data=self.fingerprints[stage.data_seed])
        elif stage.kind == "ensemble":
            inputs.update(ensemble=method.ensemble.value)
        elif stage.kind == "distill":
            inputs.update(distill=method.distill.model_dump(mode="json", exclude={"seeds"}),
                          model=spec.model.model_dump(mode="json"), tokenizer=plan.tokenizer.model_dump(mode="json"),
                          data=self.fingerprints[stage.data_seed], seed=stage.seed, libraries=_libraries(),
                          encoding=ENCODING_VERSION)
        return key_of(inputs)

    def run(self) -> list[Done]:
        """Every stage, in the plan's order (each after the stages it needs)."""
        steps = {"train": self._train, "label": self._label, "ensemble": self._ensemble, "distill": self._distill}
        stages = self.session.plan.stages
        for number, stage in enumerate(stages, 1):
            self.current = stage
            key = self.key(stage)
            reused = self.store.finished(stage.id, key) is not None
            if reused:
                self.log(f"  [{number}/{len(stages)}] {stage.id}: finished earlier, reused")
            else:
                self.log(f"  [{number}/{len(stages)}] {stage.id} ...")
                began = time.time()
                with self.store.writing(stage.id, key) as out:
                    result = steps[stage.kind](stage, out)
                    result.update(stage=stage.id, key=key, seconds=round(time.time() - began, 3))
                    (out / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
            self.done[stage.id] = Done(stage, key, self.store.directory(stage.id, key),
                                       self.store.result(stage.id, key), reused)
        return [self.done[s.id] for s in stages]

    # ------------------------------------------------------------ the four kinds of stage

    def _examples_for(self, stage: p.Stage) -> list[Example]:
        """The labelled set, plus (iPET) the examples its `label` stage drew from unlabeled data."""
        splits = self.splits[stage.data_seed]
        extra: list[Example] = []
        for need in stage.needs:
            done = self.done[need]
            with open(done.path / "examples.tsv", encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle, delimiter="\t"):
                    source = splits.unlabeled[int(row["index"])]
                    extra.append(Example(source.fields, row["label"], source.source))
        return splits.train + extra

    def _train(self, stage: p.Stage, out: Path) -> dict:
        session, method = self.session, self.spec.method
        splits = self.splits[stage.data_seed]
        pattern = session.plan.patterns[stage.pattern]
        session.reset(stage.seed)
        before = None
        if splits.train:  # PET's ensemble weight: accuracy on the training set before training
            own = runtime.own_demos(session, pattern, splits.train, stage.seed)  # never an example itself
            encoded = session.encode(pattern, splits.train, method.max_length, own)
            before = runtime.accuracy(runtime.probabilities(session, pattern, encoded, method.eval_batch_size),
                                      encoded.labels)
        examples = self._examples_for(stage)
        sets = runtime.demo_sets(session, splits) if runtime.has_demos(pattern) else []
        trained = runtime.train_pattern(session, pattern, examples, _selection_dev(method, splits), splits.unlabeled,
                                        stage.seed, sets)
        for split in ("test", "unlabeled"):
            rows = getattr(splits, split)
            write_logits(out / f"{split}.logits.tsv", rows,
                         runtime.set_logits(session, pattern, rows, method.max_length, sets, method.eval_batch_size,
                                            trained.soft),
                         self.spec.labels)
        return {"train_size": len(examples), "train_accuracy_before": before, "dev": trained.dev,
                "losses": trained.history.losses if trained.history else []}

    def _label(self, stage: p.Stage, out: Path) -> dict:
        spec, settings = self.spec, self.spec.method.ipet
        splits = self.splits[stage.data_seed]
        others = [(self.done[n].logits("unlabeled"), self.done[n].weight) for n in stage.needs]
        if not others:
            raise runtime.RunError("iPET needs two or more models per generation: each model's new examples are "
                                   "labelled by the other models",
                                   ("method",), "use two or more patterns, or two or more `seeds` in `method`")
        counts = [sum(1 for e in splits.train if e.label == label) for label in spec.labels]
        sizes = label_sizes(new_examples(len(splits.train), settings.scale_factor, stage.generation), counts)
        chosen = ipet_train_set(others, sizes, settings.logits_percentage,
                                spec.method.ensemble is m.Reduction.weighted,
                                settings.n_most_likely if stage.generation == 1 else None, _seed_of(stage.id))
        with open(out / "examples.tsv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["index", "source", "label"])
            for index, label in chosen:
                writer.writerow([index, splits.unlabeled[index].source, spec.labels[label]])
        per_label = {label: sum(1 for _, x in chosen if x == i) for i, label in enumerate(spec.labels)}
        short = [f"{label} {per_label[label]} of {size}" for label, size in zip(spec.labels, sizes)
                 if per_label[label] < size]
        if short:
            self.log(f"    fewer examples than wanted (the ensemble gives too few that label): {', '.join(short)}")
        return {"examples": len(chosen), "per_label": per_label, "wanted": dict(zip(spec.labels, sizes))}

    def _ensemble(self, stage: p.Stage, out: Path) -> dict:
        members = [self.done[n] for n in stage.needs]
        weighted = self.spec.method.ensemble is m.Reduction.weighted
        weights = [x.weight for x in members] if weighted else [1.0] * len(members)
        splits = self.splits[stage.data_seed]
        for split in ("test", "unlabeled"):
            merged = ensemble_logits([x.logits(split) for x in members], weights)
            write_logits(out / f"{split}.logits.tsv", getattr(splits, split), merged, self.spec.labels)
        return {"members": [x.stage.id for x in members], "weights": weights}

    def _distill(self, stage: p.Stage, out: Path) -> dict:
        distill = self.spec.method.distill
        splits = self.splits[stage.data_seed]
        if not splits.unlabeled:
            raise runtime.RunError(f"no unlabeled examples to distil on for data seed {splits.seed}",
                                   ("data", "unlabeled"), "check that the unlabeled file has rows")
        teacher = torch.tensor(self.done[stage.needs[0]].logits("unlabeled"), dtype=torch.float32)
        session = self._classifier_session() if self._classifier_session else self.session
        session.reset(stage.seed)
        classifier, history = train_classifier(
            session, splits.unlabeled, lambda logits, rows: distillation_loss(logits, teacher[rows], distill.temperature),
            distill, _selection_dev(distill, splits), stage.seed, ("method", "distill"))
        for split in ("test", "unlabeled"):
            rows = getattr(splits, split)
            write_logits(out / f"{split}.logits.tsv", rows, classifier_logits(session, classifier, rows, distill),
                         self.spec.labels)
        from safetensors.torch import save_file

        session.tokenizer.save_pretrained(out / MODEL)
        session.model.save_pretrained(out / MODEL, safe_serialization=True)
        save_file({"head.weight": classifier.head.weight.detach().contiguous(),
                   "head.bias": classifier.head.bias.detach().contiguous()}, str(out / HEAD))
        return {"train_size": len(splits.unlabeled), "temperature": distill.temperature, "family": session.family,
                "dev": max(history.dev) if history.dev else None, "losses": history.losses}
