"""The stage kinds that put a model to work on a pattern (or a classification head):
`demonstrations`, `train`, `calibrate` and `evaluate`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime import demos, text_training
from promptlang.runtime.classifier import Classifier, classifier_logits, train_classifier
from promptlang.runtime.data import Example, Splits
from promptlang.runtime.errors import RunError
from promptlang.runtime.prompt_training import train_pattern
from promptlang.runtime.scoring import SoftPrompt
from promptlang.runtime.session import accuracy, content_free, probabilities
from promptlang.stages.candidates import stage_session
from promptlang.stages.kinds import EXTRAS, WEIGHTS, Done, Kind, Run, register
from promptlang.stages.logits import write_scored, write_texts

SETS = "sets.json"


# ---------------------------------------------------------------- demonstrations


def _demonstrations_inputs(run: Run, stage: p.Stage) -> dict:
    spec, plan = run.spec, run.session.plan
    return {"demonstrations": spec.demonstrations.model_dump(mode="json"),
            "templates": {k: v.model_dump(mode="json") for k, v in spec.templates.items()},
            "verbalizers": {k: v.model_dump(mode="json") for k, v in spec.verbalizers.items()},
            "tokenizer": plan.tokenizer.model_dump(mode="json"), "family": plan.family, "labels": spec.labels,
            "data": run.fingerprint(stage.data_seed, ("train",))}


def _demonstrations(run: Run, stage: p.Stage, out: Path) -> dict:
    """The demonstration sets that evaluation averages over, as token ids (`sets.json`); with `select
    similar`, the encoder that embedded the candidates (each query's sets are drawn when it is scored)."""
    sets = demos.demo_sets(run.session, run.splits[stage.data_seed])
    if isinstance(sets, demos.SimilarSets):
        (out / SETS).write_text(json.dumps({"similar": {"encoder": sets.near.encoder, "sets": len(sets),
                                                        "top": sets.near.top}}), encoding="utf-8")
    else:
        (out / SETS).write_text(json.dumps({"sets": sets}), encoding="utf-8")
    return {"sets": len(sets), "pool": stage.train_size}


def demo_sets(run: Run, stage: p.Stage, session=None) -> demos.Sets:
    """The demonstration sets of the `demonstrations` stage a stage needs (none without one); for a found
    candidate's session, the same draws made with its words (and template)."""
    done = run.need(stage, "demonstrations")
    if done is None:
        return []
    if session is not None and session is not run.session:
        return demos.demo_sets(session, run.splits[stage.data_seed])
    written = json.loads((done.path / SETS).read_text(encoding="utf-8"))
    if "similar" in written:
        return demos.demo_sets(run.session, run.splits[stage.data_seed])
    return written["sets"]


# ---------------------------------------------------------------- train


def _examples_for(run: Run, stage: p.Stage) -> list[Example]:
    """The labelled set, plus (iPET) the examples its `label` stage drew from unlabeled data."""
    splits = run.splits[stage.data_seed]
    labelled = run.need(stage, "label")
    if labelled is None:
        return splits.train
    extra: list[Example] = []
    with open(labelled.path / "examples.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            source = splits.unlabeled[int(row["index"])]
            extra.append(Example(source.fields, row["label"], source.source))
    return splits.train + extra


def selection_dev(settings: m.Training, splits: Splits) -> list[Example]:
    """The dev examples a model is selected on: none with `select_model last` (PET's fixed number of steps)."""
    return splits.dev if settings.select_model is m.ModelSelection.dev else []


def _train(run: Run, stage: p.Stage, out: Path) -> dict:
    """Train one model (a pattern, or a classification head without one) from the pretrained weights;
    write the label logits of the splits the stage scores, and keep what it trained when it saves weights."""
    session = stage_session(run, stage)
    session.reset(stage.seed)
    run.loaded = None
    examples = _examples_for(run, stage)
    if stage.saves_weights and not examples:
        raise RunError(f"no training examples for data seed {stage.data_seed}", ("data", "train"),
                       "check that the training file has rows with the spec's labels")
    if stage.pattern is None:
        result = _train_head(run, stage, examples, out)
    elif session.task.writes:
        result = _train_writer(run, stage, examples)
    else:
        result = _train_pattern(run, stage, examples, out)
    if stage.saves_weights:
        from safetensors.torch import save_model

        save_model(session.model, str(out / WEIGHTS))
        run.loaded = stage.id
    return result | {"train_size": len(examples)}


def _train_pattern(run: Run, stage: p.Stage, examples: list[Example], out: Path) -> dict:
    session, method = stage_session(run, stage), run.spec.method
    splits = run.splits[stage.data_seed]
    pattern = session.plan.patterns[stage.pattern]
    before = None
    if stage.scores and splits.train:  # an ensemble member's weight: accuracy on the training set before training
        own = demos.own_demos(session, pattern, splits.train, stage.seed)  # never an example itself
        encoded = session.encode(pattern, splits.train, method.max_length, own)
        before = accuracy(probabilities(session, pattern, encoded, method.eval_batch_size), encoded.labels)
    sets = demo_sets(run, stage, session)
    trained = train_pattern(session, pattern, examples, selection_dev(method, splits), splits.unlabeled,
                            stage.seed, sets)
    for split in stage.scores:  # (PET's soft labels for a large unlabeled set: a chunk at a time)
        write_scored(out / f"{split}.logits.tsv", getattr(splits, split),
                     lambda chunk: demos.set_logits(session, pattern, chunk, method.max_length, sets,
                                                    method.eval_batch_size, trained.soft), run.spec.labels)
    if trained.soft is not None:
        _save_tensors(out, {"soft": trained.soft.weight})
    history = trained.history
    return {"train_accuracy_before": before, "dev": trained.dev, "dev_scores": history.dev if history else [],
            "losses": history.losses if history else []}


def _train_writer(run: Run, stage: p.Stage, examples: list[Example]) -> dict:
    """T5's way: the model learns to write each example's target (teacher forcing)."""
    session = run.session
    history = text_training.train_writer(session, session.plan.patterns[stage.pattern], examples,
                                         selection_dev(run.spec.method, run.splits[stage.data_seed]), stage.seed)
    return {"dev": max(history.dev) if history.dev else None, "dev_scores": history.dev, "losses": history.losses}


def _train_head(run: Run, stage: p.Stage, examples: list[Example], out: Path) -> dict:
    """Standard fine-tuning: a new head on the labels (a regression's poles) and the whole model, trained
    with the task's loss."""
    session, method = run.session, run.spec.method
    task = session.task
    targets = task.targets(examples).to(session.device)
    classifier, history = train_classifier(session, examples,
                                           lambda scores, rows: task.loss(scores.float(), targets[rows]),
                                           method, run.splits[stage.data_seed].dev, stage.seed)
    _save_tensors(out, {"head.weight": classifier.head.weight, "head.bias": classifier.head.bias})
    return {"dev": max(history.dev) if history.dev else None, "dev_scores": history.dev, "losses": history.losses}


def _save_tensors(out: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(out / EXTRAS))


def trained_extras(done) -> dict[str, torch.Tensor]:
    """The head or soft prompt a train stage kept ({} when none)."""
    from safetensors.torch import load_file

    path = done.path / EXTRAS
    return load_file(str(path)) if path.is_file() else {}


def use_trained(run: Run, stage: p.Stage) -> Done | None:
    """Put in the session's model the weights of the train stage that `stage` needs (the pretrained
    weights when it needs none); returns that train stage's `Done`."""
    session, train = run.session, run.need(stage, "train")
    if train is None:
        session.reset(stage.seed if stage.seed is not None else stage.data_seed)
        run.loaded = None
        return None
    if run.loaded != train.stage.id:
        if not (train.path / WEIGHTS).is_file():  # removed after an earlier run chose another model
            train = run.recompute(train.stage)
        if run.loaded != train.stage.id:
            from safetensors.torch import load_model

            session.reset(stage.seed)
            load_model(session.model, str(train.path / WEIGHTS))
            run.loaded = train.stage.id
    return train


# ---------------------------------------------------------------- calibrate and evaluate


def _calibrate(run: Run, stage: p.Stage, out: Path) -> dict:
    """Contextual calibration: the label probabilities of a content-free input, once per demonstration set."""
    session, method = stage_session(run, stage), run.spec.method
    use_trained(run, stage)
    pattern = session.plan.patterns[stage.pattern]
    sets = demo_sets(run, stage, session)
    if isinstance(sets, demos.SimilarSets):  # the content-free input draws its own, as a query does
        empty = Example({name: "N/A" for name in run.spec.data.text})
        each = sets.per_set([empty])
        return {"calibration": [content_free(session, pattern, method.max_length, d).tolist() for d in each]}
    return {"calibration": [content_free(session, pattern, method.max_length, [d] if d else None).tolist()
                            for d in sets or [None]]}


def _evaluate(run: Run, stage: p.Stage, out: Path) -> dict:
    """Label logits on test: the pattern's scores (averaged over the demonstration sets as probabilities,
    each calibrated when a calibrate stage is needed), or the classification head's."""
    session, method = run.session, run.spec.method
    train = use_trained(run, stage)
    test = run.splits[stage.data_seed].test
    if stage.writes_text:
        written = text_training.write(session, session.plan.patterns[stage.pattern], test, method.eval_batch_size)
        write_texts(out / "test.generated.tsv", test, written)
        return {"dev": train.result.get("dev") if train else None}
    extras = trained_extras(train) if train else {}
    if stage.pattern is None:
        classifier = Classifier(session.model, session.family, len(run.spec.labels))
        classifier.head.load_state_dict({"weight": extras["head.weight"], "bias": extras["head.bias"]})
        score = lambda chunk: classifier_logits(session, classifier, chunk, method)  # noqa: E731
    else:
        score = _pattern_scorer(run, stage, extras.get("soft"))
    write_scored(out / "test.logits.tsv", test, score, run.spec.labels)
    return {"dev": train.result.get("dev") if train else None}


def _pattern_scorer(run: Run, stage: p.Stage, soft_weight) -> Callable[[list[Example]], np.ndarray]:
    """The logits of some examples through the stage's pattern (soft prompt, demonstration sets, calibration)."""
    session, method = stage_session(run, stage), run.spec.method
    pattern = session.plan.patterns[stage.pattern]
    soft = None
    if soft_weight is not None:
        soft = SoftPrompt(session.model, len(soft_weight))
        soft.weight.data.copy_(soft_weight)
    calibrated = run.need(stage, "calibrate")
    sets = demo_sets(run, stage, session)
    calibration = calibrated.result["calibration"] if calibrated else None
    return lambda examples: demos.set_logits(session, pattern, examples, method.max_length, sets,
                                             method.eval_batch_size, soft, calibration)


def _train_inputs(run: Run, stage: p.Stage) -> dict:  # (the MLM loss reads unlabeled data)
    return run.model_inputs(stage, ("train", "dev", "unlabeled", *stage.scores))


register(Kind("demonstrations", 2, _demonstrations_inputs, _demonstrations, lambda stage: [SETS]))
register(Kind("train", 4, _train_inputs, _train))
register(Kind("calibrate", 2, lambda run, stage: run.model_inputs(stage, ()), _calibrate))
register(Kind("evaluate", 2, lambda run, stage: run.model_inputs(stage, ("test",)), _evaluate))
