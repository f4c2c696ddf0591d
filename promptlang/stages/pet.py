"""PET's and iPET's own stage kinds: `label` (iPET: the examples an ensemble of the other models
labels for one model of the next generation), `ensemble` (the models of one generation combined)
and `distill` (a classifier trained on the last ensemble's soft labels on unlabeled data).

Each reads what the stages it needs wrote to the store (their logits files) and writes its own
result there, so a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime.classifier import classifier_logits, train_classifier
from promptlang.compiler.sizes import label_sizes, new_examples
from promptlang.runtime.ensemble import ensemble_logits, ipet_train_set
from promptlang.runtime.errors import RunError
from promptlang.runtime.pipeline import ENCODING_VERSION
from promptlang.stages.kinds import EXTRAS, WEIGHTS, Kind, Run, libraries, register, seed_of, written
from promptlang.stages.logits import write_logits, write_scored
from promptlang.stages.scored import selection_dev


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """PET's distillation loss: KL(softmax(teacher / T) ‖ softmax(student / T)) · T², averaged over the batch."""
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2


def _label_inputs(run: Run, stage: p.Stage) -> dict:  # (more generations add stages; the earlier ones stay)
    method = run.spec.method
    return {"ipet": method.ipet.model_dump(mode="json", exclude={"generations"}), "ensemble": method.ensemble.value,
            "labels": run.spec.labels, "data": run.fingerprint(stage.data_seed, ("train", "unlabeled"))}


def _label(run: Run, stage: p.Stage, out: Path) -> dict:
    spec, settings = run.spec, run.spec.method.ipet
    splits = run.splits[stage.data_seed]
    others = [(run.done[n].logits("unlabeled"), run.done[n].weight) for n in stage.needs]
    if not others:
        raise RunError("iPET needs two or more models per generation: each model's new examples are "
                       "labelled by the other models",
                       ("method",), "use two or more patterns, or two or more `seeds` in `method`")
    counts = [sum(1 for e in splits.train if e.label == label) for label in spec.labels]
    sizes = label_sizes(new_examples(len(splits.train), settings.scale_factor, stage.generation), counts)
    chosen = ipet_train_set(others, sizes, settings.logits_percentage,
                            spec.method.ensemble is m.Reduction.weighted,
                            settings.n_most_likely if stage.generation == 1 else None, seed_of(stage.id))
    with open(out / "examples.tsv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "source", "label"])
        for index, label in chosen:
            writer.writerow([index, splits.unlabeled[index].source, spec.labels[label]])
    per_label = {label: sum(1 for _, x in chosen if x == i) for i, label in enumerate(spec.labels)}
    short = [f"{label} {per_label[label]} of {size}" for label, size in zip(spec.labels, sizes)
             if per_label[label] < size]
    if short:
        run.log(f"    fewer examples than wanted (the ensemble gives too few that label): {', '.join(short)}")
    return {"examples": len(chosen), "per_label": per_label, "wanted": dict(zip(spec.labels, sizes))}


def _reduction(run: Run) -> m.Reduction:
    """How an ensemble combines its models: PET's setting; the mean for LM-BFF's found candidates."""
    return getattr(run.spec.method, "ensemble", m.Reduction.mean)


def _ensemble_inputs(run: Run, stage: p.Stage) -> dict:
    return {"ensemble": _reduction(run).value, "labels": run.spec.labels}


def _ensemble(run: Run, stage: p.Stage, out: Path) -> dict:
    members = [run.done[n] for n in stage.needs]
    weighted = _reduction(run) is m.Reduction.weighted
    weights = [x.weight for x in members] if weighted else [1.0] * len(members)
    splits = run.splits[stage.data_seed]
    for split in stage.scores:
        merged = ensemble_logits([x.logits(split) for x in members], weights)
        write_logits(out / f"{split}.logits.tsv", getattr(splits, split), merged, run.spec.labels)
    return {"members": [x.stage.id for x in members], "weights": weights}


def _distill_inputs(run: Run, stage: p.Stage) -> dict:
    spec, plan = run.spec, run.session.plan
    return {"distill": spec.method.distill.model_dump(mode="json", exclude={"seeds"}),
            "model": spec.model.model_dump(mode="json"), "tokenizer": plan.tokenizer.model_dump(mode="json"),
            "labels": spec.labels, "data": run.fingerprint(stage.data_seed, ("dev", "test", "unlabeled")),
            "seed": stage.seed,
            "libraries": libraries(), "encoding": ENCODING_VERSION, "precision": run.session.placement.precision}


def _distill(run: Run, stage: p.Stage, out: Path) -> dict:
    distill = run.spec.method.distill
    splits = run.splits[stage.data_seed]
    if not splits.unlabeled:
        raise RunError(f"no unlabeled examples to distil on for data seed {splits.seed}",
                       ("data", "unlabeled"), "check that the unlabeled file has rows")
    session = run.session_for(stage)
    teacher = torch.tensor(run.done[stage.needs[0]].logits("unlabeled"), dtype=torch.float32, device=session.device)
    session.reset(stage.seed)
    run.loaded = None
    classifier, history = train_classifier(
        session, splits.unlabeled,
        lambda logits, rows: distillation_loss(logits.float(), teacher[rows], distill.temperature),
        distill, selection_dev(distill, splits), stage.seed, ("method", "distill"))
    for split in stage.scores:
        write_scored(out / f"{split}.logits.tsv", getattr(splits, split),
                     lambda chunk: classifier_logits(session, classifier, chunk, distill), run.spec.labels)
    from safetensors.torch import save_file, save_model

    save_model(session.model, str(out / WEIGHTS))
    save_file({"head.weight": classifier.head.weight.detach().contiguous(),
               "head.bias": classifier.head.bias.detach().contiguous()}, str(out / EXTRAS))
    return {"train_size": len(splits.unlabeled), "temperature": distill.temperature, "family": session.family,
            "dev": max(history.dev) if history.dev else None, "losses": history.losses}


register(Kind("label", 3, _label_inputs, _label, lambda stage: ["examples.tsv"]))
register(Kind("ensemble", 2, _ensemble_inputs, _ensemble))
register(Kind("distill", 5, _distill_inputs, _distill, lambda stage: written(stage, EXTRAS)))
