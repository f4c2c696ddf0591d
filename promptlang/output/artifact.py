"""The output directory of a run: metrics, predictions, the plan, the log, and what predicting needs
(predictor.json, the model or where it came from, a head or soft prompt), written beside its final
place and moved there in one step."""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path


from promptlang.language import spec as m
from promptlang.output.guard import swap
from promptlang.output.predictor import EXTRAS
from promptlang.runtime.demos import SimilarSets
from promptlang.runtime.ensemble import softmax
from promptlang.runtime.similar import query_text
from promptlang.runtime.task import task_of
from promptlang.stages.kinds import EXTRAS as STAGE_EXTRAS
from promptlang.stages.kinds import WEIGHTS as STAGE_WEIGHTS
from promptlang.stages.kinds import Done, Run
from promptlang.stages.candidates import stage_session
from promptlang.stages.scored import demo_sets, use_trained


@dataclass
class Row:
    stage: str
    data_seed: int
    pattern: str | None
    seed: int | None
    metrics: dict[str, float]
    dev: float | None = None
    seconds: float = 0.0
    model: str | None = None  # the row's group in the summary (default: its pattern)
    reused: bool = False  # found in the stage store, not computed by this run

    @property
    def group(self) -> str:
        return self.model or self.pattern or "head"


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    outcomes: list[tuple] = field(default_factory=list)  # (stage, test examples, probabilities (N, C) or texts)
    executed: list[str] = field(default_factory=list)  # the stages the executor went through, in order
    runs_on: dict = field(default_factory=dict)  # the device, its name, the precision, the processes

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Model group → metric → mean and std over data seeds and seeds."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for group in dict.fromkeys(r.group for r in self.rows):
            rows = [r for r in self.rows if r.group == group]
            out[group] = {}
            for metric in rows[0].metrics:
                values = [r.metrics[metric] for r in rows]
                out[group][metric] = {"mean": statistics.fmean(values),
                                      "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                      "runs": len(values)}
        return out

    def add(self, run: Run, item: Done, log) -> None:
        """The row of a finished stage that scores test (logged as it comes); other stages add none."""
        stage = item.stage
        if "test" not in stage.scores:
            return
        test = run.splits[stage.data_seed].test
        outputs = item.texts("test") if stage.writes_text else softmax(item.logits("test"))
        scores = run.session.task.metrics(run.spec.evaluate.metrics, test, outputs)
        self.rows.append(Row(stage.id, stage.data_seed, stage.pattern, stage.seed, scores, item.result.get("dev"),
                             item.result.get("seconds", 0.0), group_of(item), item.reused))
        self.outcomes.append((stage, test, outputs))
        if test:
            log(f"  {stage.id}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    def table(self) -> str:
        lines = []
        for row in self.rows:
            scores = "  ".join(f"{k} {v:.4f}" for k, v in row.metrics.items())
            took = "reused" if row.reused else f"{row.seconds:.0f} s"
            lines.append(f"  {row.stage:<40} {scores}  ({took})")
        lines.append("")
        for group, values in self.summary().items():
            scores = "  ".join(f"{k} {v['mean'] * 100:.1f} ± {v['std'] * 100:.1f}" for k, v in values.items())
            lines.append(f"  {group:<20} {scores}  over {next(iter(values.values()))['runs']} run(s)")
        return "\n".join(lines)


def group_of(done: Done) -> str:
    """A scored stage's group in the summary: its pattern (with iPET's generation), the ensemble,
    the distilled classifier, or the head of standard fine-tuning."""
    stage = done.stage
    generation = f"g{stage.generation} " if stage.generation is not None else ""
    if stage.kind == "ensemble":
        return f"{generation}ensemble"
    if stage.kind == "distill":
        return "distilled"
    return f"{generation}{stage.pattern or 'head'}"


PREDICTING = ("evaluate", "distill")  # the stages whose model the output directory may predict with


def _dev(item: Done) -> float:
    return -float("inf") if item.result.get("dev") is None else item.result["dev"]


class Keeper:
    """Tracks the model the output directory predicts with — of the stages that can predict
    (evaluations, PET's distilled classifiers), the one with the best dev score, the first when
    there is no dev score — and keeps in the store the trained weights of that best model so far
    only, removing the others' as soon as a stage that can predict is done: a real model's weights
    are a few hundred MB to a few GB. The stages stay finished; one that needs removed weights
    computes them again."""

    def __init__(self, run: Run, prunes: bool = True):
        self.run, self.best, self.prunes = run, None, prunes  # `prunes`: this process writes the store

    def offer(self, item: Done) -> None:
        if item.stage.kind not in PREDICTING:
            return
        if self.best is None or _dev(item) > _dev(self.best):
            loser, self.best = self.best, item
        else:
            loser = item
        if loser is not None and self.prunes:
            for stage_id in (loser.stage.id, *loser.stage.needs):
                trained = self.run.done[stage_id]
                if trained.stage.saves_weights:
                    self.run.store.prune(stage_id, trained.key, (STAGE_WEIGHTS,))


def keep_model(staging: Path, run: Run, best: Done, source: dict) -> None:
    """Save what predicting as `best` needs: predictor.json, the head or soft prompt, calibration and
    demonstrations, and the weights and tokenizer when training changed them (else where the model came
    from)."""
    stage, spec = best.stage, run.spec
    info = {"method": "distilled" if stage.kind == "distill" else spec.method.kind, "pattern": stage.pattern,
            "stage": stage.id, "dev": best.result.get("dev"), "labels": spec.labels, "extras": predictor_extras(run, best)}
    if stage.kind == "distill":
        from safetensors.torch import load_model

        if not (best.path / STAGE_WEIGHTS).is_file():  # removed after an earlier run: trained again
            best = run.recompute(stage)
        trained, session = best, run.session_for(stage)
        session.reset(stage.seed)
        load_model(session.model, str(best.path / STAGE_WEIGHTS))
        run.loaded = None
        info["max_length"] = spec.method.distill.max_length
    else:
        trained, session = use_trained(run, stage), run.session
    info["family"] = session.family
    if trained is not None and (trained.path / STAGE_EXTRAS).is_file():
        shutil.copy2(trained.path / STAGE_EXTRAS, staging / EXTRAS)
    if trained is None:
        info["source"] = source
    else:
        session.tokenizer.save_pretrained(staging / "model")
        session.model.save_pretrained(staging / "model", safe_serialization=True)
    (staging / "predictor.json").write_text(json.dumps(info), encoding="utf-8")


def predictor_extras(run: Run, best: Done) -> dict:
    """predictor.json's extras: the demonstration sets, each with its calibration, or one calibration."""
    stage = best.stage
    if stage.kind != "evaluate":
        return {}
    sets = demo_sets(run, stage, stage_session(run, stage))  # (a found candidate's: drawn with its words)
    calibrated = run.need(stage, "calibrate")
    calibration = calibrated.result["calibration"] if calibrated else None
    if isinstance(sets, SimilarSets):  # what drawing for a new input needs: the candidates and the encoder
        near = sets.near
        texts = [query_text(e, near.columns) for e in run.splits[stage.data_seed].train]
        return {"similar": {"encoder": near.encoder, "top": near.top, "seed": sets.seed, "sets": len(sets),
                            "per_label": near.pool.per_label, "pool": near.pool.ids, "by_label": near.pool.by_label,
                            "texts": texts, **({"calibrations": calibration} if calibration else {})}}
    if sets:
        return {"sets": [{"demos": d, **({"calibration": calibration[i]} if calibration else {})}
                         for i, d in enumerate(sets)]}
    return {"calibration": calibration[0]} if calibration else {}


def write_artifact(staging: Path, target: Path, plan, tokenizer, results: Results, splits, log_lines) -> None:
    """Finish the run's directory beside its final place, then move it there in one step."""
    (staging / "spec.json").write_text(plan.spec.model_dump_json(indent=2), encoding="utf-8")
    (staging / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    (staging / "verbalizer.json").write_text(json.dumps(_verbalizers(plan, tokenizer), indent=2,
                                                        ensure_ascii=False), encoding="utf-8")
    skipped = next(iter(splits.values())).skipped if splits else {}  # `bad_rows skip`: lines skipped per file
    task = task_of(plan.spec)
    signatures = task.signatures() if hasattr(task, "signatures") else {}  # sacrebleu's, for BLEU
    (staging / "metrics.json").write_text(json.dumps(
        {"runs": [r.__dict__ for r in results.rows], "summary": results.summary(), "runs_on": results.runs_on,
         **({"skipped_rows": skipped} if skipped else {}), **({"signatures": signatures} if signatures else {})},
        indent=2), encoding="utf-8")
    _write_predictions(staging / "predictions.tsv", plan.spec, task, results.outcomes)
    (staging / "log.txt").write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    from promptlang.report import write_into

    write_into(staging, target)  # report.html, read from the finished folder (if it fails: a warning, not a failure)
    swap(staging, target)


def copy_stages(staging: Path, done: list[Done], keep_out: tuple[str, ...]) -> None:
    """Each stage's files (its result, logits, examples) under `stages/`, without trained weights."""
    for item in done:
        shutil.copytree(item.path, staging / "stages" / item.stage.id, ignore=shutil.ignore_patterns(*keep_out))


def _verbalizers(plan, tokenizer) -> dict:
    return {name: {lw.label: [{"word": w, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)}
                              for w, ids in zip(lw.words, lw.ids)] for lw in pattern.labels}
            for name, pattern in plan.patterns.items()}


def _write_predictions(path: Path, spec: m.Spec, task, outcomes: list[tuple]) -> None:
    """predictions.tsv: for each scored stage and test example, the gold and predicted label (a
    regression's scores) and the label probabilities; for text generation, the gold and written texts."""
    if task.writes:
        _write_texts(path, task, outcomes)
        return
    with open(path, "w", encoding="utf-8") as out:
        out.write("\t".join(["stage", "index", "gold", "predicted", *[f"p_{x}" for x in spec.labels]]) + "\n")
        for stage, examples, probabilities in outcomes:
            for i, ((gold, predicted), probs) in enumerate(zip(task.shown(examples, probabilities), probabilities)):
                out.write("\t".join([stage.id, str(i), gold, predicted, *[f"{x:.6f}" for x in probs]]) + "\n")


def _write_texts(path: Path, task, outcomes: list[tuple]) -> None:
    """predictions.tsv of a model that writes: `stage  index  gold  predicted` (and `written`, the text a
    label or score was read from), CSV-quoted where a text holds a tab, a line break or a quote."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["stage", "index", *task.columns])
        for stage, examples, written in outcomes:
            writer.writerows([stage.id, i, *shown] for i, shown in enumerate(task.shown(examples, written)))
