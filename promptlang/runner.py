"""`promptlang run`: compile a spec, execute its stages, and write the results atomically."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from promptlang.runtime import metrics as metric_fns
from promptlang.language import spec as m
from promptlang.api import analyze
from promptlang.compiler.compile import CompileError, compile_plan
from promptlang.runtime.data import DataError, read_splits, sample_splits
from promptlang.language.diagnostics import Diagnostics, SpecError
from promptlang.runtime.models import ModelError, cache_dir, family_for, load_model, load_tokenizer, locate, will_convert
from promptlang.output.guard import OutputError, check_target, staging_dir, swap, write_marker
from promptlang.runtime.pipeline import TooLong
from promptlang.output.predictor import EXTRAS, save_extras
from promptlang.runtime.session import METHODS, Outcome, RunError, Session
from promptlang.stages.store import Store
from promptlang.language.support import not_yet


def load_checked(path: Path, overrides: list[str]) -> tuple[m.Spec, object]:
    """The validated spec of a file with its `--set` overrides, or SpecError with every diagnostic.

    The overrides go through the same validation and checks as the spec (`api.analyze`).

    Raises:
        SpecError: the spec, or an override, has errors.
        OverrideError: an override is not KEY=VALUE.
    """
    analysis = analyze(path, overrides=overrides)
    if not analysis.ok or not isinstance(analysis.spec, m.Spec):
        raise SpecError(analysis.diagnostics)
    return analysis.spec, analysis


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def spec_error(analysis, message: str, path: tuple, hint: str | None = None) -> SpecError:
    """A runtime problem as a located diagnostic on the spec line that caused it."""
    diagnostics = Diagnostics(sources=dict(analysis.diagnostics.sources))  # the spec, its imports, `--set`
    diagnostics.error(message, analysis.locations.get(path), hint)
    return SpecError(diagnostics)


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

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Pattern → metric → mean and std over data seeds and seeds."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for pattern in dict.fromkeys(r.group for r in self.rows):
            rows = [r for r in self.rows if r.group == pattern]
            out[pattern] = {}
            for metric in rows[0].metrics:
                values = [r.metrics[metric] for r in rows]
                out[pattern][metric] = {"mean": statistics.fmean(values),
                                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                        "runs": len(values)}
        return out

    def table(self) -> str:
        lines = []
        for row in self.rows:
            scores = "  ".join(f"{k} {v:.4f}" for k, v in row.metrics.items())
            took = "reused" if row.reused else f"{row.seconds:.0f} s"
            lines.append(f"  {row.stage:<40} {scores}  ({took})")
        lines.append("")
        for pattern, values in self.summary().items():
            scores = "  ".join(f"{k} {v['mean'] * 100:.1f} ± {v['std'] * 100:.1f}" for k, v in values.items())
            lines.append(f"  {pattern:<20} {scores}  over {next(iter(values.values()))['runs']} run(s)")
        return "\n".join(lines)


def output_dir(spec: m.Spec, spec_path: Path, out: str | None) -> Path:
    """Where the run writes: `--out`, else the spec's `evaluate { output }`, else `results/NAME`."""
    if out:
        return Path(out)
    if spec.evaluate.output:
        return spec_path.parent / spec.evaluate.output
    return Path("results") / spec_path.stem


def read_paths(spec: m.Spec, spec_path: Path, analysis) -> list[Path]:
    """Every file or folder the run reads: the spec, its imports, its data, its model and tokenizer."""
    directory = spec_path.parent
    paths = [spec_path, *(Path(p) for p in analysis.diagnostics.sources if p != "<string>")]
    paths += [directory / getattr(spec.data, split) for split in ("train", "dev", "test", "unlabeled")
              if getattr(spec.data, split)]
    kind, value = spec.model.source
    if kind in ("path", "gguf"):
        paths.append(directory / value)
    if spec.model.tokenizer and (directory / spec.model.tokenizer).exists():
        paths.append(directory / spec.model.tokenizer)
    distill = getattr(spec.method, "distill", None)
    if distill and distill.model and (directory / distill.model).is_dir():
        paths.append(directory / distill.model)
    return paths


def output_target(spec: m.Spec, spec_path: Path, out: str | None, analysis, force: bool, log,
                  also: list[Path] = ()) -> Path:
    """The checked output directory (see `output.check_target`); `also`: more paths the run reads.

    Raises:
        OutputError: `--out` (or the default `results/NAME`) must not be replaced.
        SpecError: the spec's `output` must not be replaced (located at it).
    """
    given = output_dir(spec, spec_path, out)
    try:
        return check_target(given, spec_path, read_paths(spec, spec_path, analysis) + list(also), force, log)
    except OutputError as error:
        if out or not spec.evaluate.output:
            raise
        raise spec_error(analysis, error.message, ("evaluate", "output"), error.hint) from None


@dataclass
class Prepared:
    """A spec compiled against its tokenizer, with its data read: everything before loading weights."""

    plan: object
    tokenizer: object
    splits: dict
    analysis: object


def prepare(spec_path: Path, overrides: list[str] = (), checked: tuple | None = None) -> Prepared:
    """Check the spec, read and sample its data, load its tokenizer, compile the plan (no model weights).

    Args:
        spec_path: the spec file.
        overrides: `--set` overrides.
        checked: (spec, analysis) when the caller has already checked the spec.

    Raises:
        SpecError: the spec has errors, or its data does not match it.
    """
    spec, analysis = checked or load_checked(spec_path, list(overrides))
    directory = spec_path.parent
    try:
        read = read_splits(spec, directory)
        splits = {seed: sample_splits(spec, read, seed) for seed in spec.data.seeds}
    except DataError as error:
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    try:
        tokenizer = load_tokenizer(spec.model, directory)
        family = family_for(spec.model, directory)
    except ModelError as error:  # located at the model's setting, with its own hint
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    except (OSError, ValueError, ImportError) as error:
        raise spec_error(analysis, f"cannot load the model's tokenizer: {_first_line(error)}", ("model",),
                         "check the model source; a hub model needs the network or a filled cache") from None
    label_counts = {seed: [sum(1 for e in s.train if e.label == label) for label in spec.labels]
                    for seed, s in splits.items()}
    try:
        plan = compile_plan(spec, tokenizer, family, {seed: s.counts() for seed, s in splits.items()}, label_counts)
    except CompileError as error:
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    return Prepared(plan, tokenizer, splits, analysis)


def run(spec_path: Path, out: str | None = None, overrides: list[str] = (), quiet: bool = False,
        stages: str | Path | None = None, force: bool = False) -> Results:
    """Run a spec end to end and write its artifact directory.

    PET and iPET keep each finished stage in a store (`stages`, default `$PROMPTLANG_CACHE/stages`),
    so that running the spec again reuses what is finished and a killed run resumes. The output
    directory is checked before any work: a run replaces only an empty folder or an output
    directory of the same spec (of another spec with `force`).

    Raises:
        SpecError: the spec has errors, or running it found one (located at its spec line).
        OutputError: the output directory must not be replaced.
    """
    spec, analysis = load_checked(spec_path, list(overrides))
    log_lines: list[str] = []

    def log(text: str) -> None:
        log_lines.append(text)
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    for item in not_yet(spec):  # the features `check` warns about: refused before any work
        diagnostics = Diagnostics(sources=dict(analysis.diagnostics.sources))
        diagnostics.error(item.message, analysis.locations.key(item.path), item.hint)
        raise SpecError(diagnostics)
    store_root = Path(stages) if stages else cache_dir() / "stages"
    started = time.time()
    target = output_target(spec, spec_path, out, analysis, force, log, [store_root, cache_dir()])
    log(f"promptlang run {spec_path}: {spec.method.kind}")
    prepared = prepare(spec_path, overrides, checked=(spec, analysis))
    plan, tokenizer, splits = prepared.plan, prepared.tokenizer, prepared.splits
    for name, count in next(iter(splits.values())).skipped.items():
        log(f"  bad_rows skip: skipped {count} line(s) of {name} that do not parse")
    try:
        if will_convert(spec.model, spec_path.parent):
            log(f"  converting the GGUF model into {cache_dir() / 'gguf'} (once; a few minutes for a few hundred "
                "million parameters)")
        model, family = load_model(spec.model, spec_path.parent, plan.family)
    except ModelError as error:
        raise spec_error(prepared.analysis, str(error), error.path, error.hint) from None
    except (OSError, ValueError, ImportError) as error:
        raise spec_error(prepared.analysis, f"cannot load the model: {_first_line(error)}", ("model",)) from None
    total = plan.total()
    log(f"  model: {model.config.model_type} ({family}), {sum(x.numel() for x in model.parameters()) / 1e6:.0f}M "
        f"parameters; {len(plan.stages)} stages, {total.optimizer_steps} optimizer steps, "
        f"{total.forward_passes} forward passes")
    session = Session(plan, tokenizer, model, cache_dir(), log)
    staging = staging_dir(target)
    try:
        if spec.method.kind in ("pet", "ipet"):
            store = Store(store_root)
            results, outcomes = _run_pet(session, splits, prepared.analysis, staging, store, spec_path.parent, log)
        else:
            source = model_source(spec, spec_path.parent)
            results, outcomes = _run_stages(session, splits, analysis, staging, source, log)
        log(f"done in {time.time() - started:.0f} s")
        write_marker(staging, spec_path)
        write_artifact(staging, target, plan, tokenizer, results, outcomes, splits, log_lines)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results


def _run_stages(session: Session, splits, analysis, staging: Path, source: dict, log) -> tuple["Results", list]:
    """Every evaluate stage (its training happens inside it); the model with the best dev score is kept
    (`source`: where the model came from, recorded when its weights are not saved)."""
    spec, plan = session.spec, session.plan
    method = METHODS[spec.method.kind]
    results, outcomes, best = Results(), [], -float("inf")
    for stage in plan.stages:
        if stage.kind != "evaluate":
            continue
        log(f"  {' + '.join([*stage.needs, stage.id])} ...")  # the plan's names for what happens now
        session.reset(stage.seed if stage.seed is not None else stage.data_seed)
        began = time.time()
        try:
            outcome = method(session, splits[stage.data_seed], stage.pattern, stage.seed)
        except RunError as error:
            raise spec_error(analysis, str(error), error.path, error.hint) from None
        except TooLong as error:
            raise spec_error(analysis, f"template `{stage.pattern}` leaves no room for an input: {error}",
                             ("templates", stage.pattern, "text"),
                             "raise `max_length` in `method`, or mark long fields with `| shorten`") from None
        scores = metric_fns.compute(spec.evaluate.metrics or list(metric_fns.CLASSIFICATION),
                                    outcome.labels, outcome.probabilities)
        results.rows.append(Row(stage.id, stage.data_seed, stage.pattern, stage.seed, scores, outcome.dev,
                                time.time() - began))
        outcomes.append((stage, outcome))
        log(f"  {stage.id}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if (outcome.dev is None and best == -float("inf")) or (outcome.dev is not None and outcome.dev > best):
            best = outcome.dev if outcome.dev is not None else best
            keep_model(staging, session, stage, outcome, source)
    return results, outcomes


def _run_pet(session: Session, splits, analysis, staging: Path, store: Store, directory: Path,
             log) -> tuple["Results", list]:
    """PET / iPET through the stage store; rows for every pattern model, ensemble and distilled model."""
    from promptlang.runtime.ensemble import softmax
    from promptlang.stages.pet import HEAD, MODEL, PetRun

    spec = session.spec
    distill = spec.method.distill
    other = _classifier_session(session, distill.model, directory, analysis) if distill and distill.model else None
    pet = PetRun(session, splits, store, other, log)
    try:
        done = pet.run()
    except KeyboardInterrupt:
        kept = (f"the {len(pet.done)} finished stage(s) are kept in {store.root}: run the same command again "
                f"to resume" if pet.done else "no stage had finished yet")
        print(f"promptlang: interrupted in {pet.current.id}; {kept}", file=sys.stderr, flush=True)
        raise
    except RunError as error:
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    except TooLong as error:
        stage = pet.current
        raise spec_error(analysis, f"template `{stage.pattern}` leaves no room for an input: {error}",
                         ("templates", stage.pattern, "text"),
                         "raise `max_length` in `method`, or mark long fields with `| shorten`") from None
    results, outcomes = Results(), []
    metrics = spec.evaluate.metrics or list(metric_fns.CLASSIFICATION)
    for item in done:
        stage = item.stage
        shown = staging / "stages" / stage.id
        shutil.copytree(item.path, shown, ignore=shutil.ignore_patterns(MODEL, HEAD))
        if stage.kind == "label":
            continue
        test = splits[stage.data_seed].test
        gold = [spec.labels.index(e.label) if e.label in spec.labels else -1 for e in test]
        probs = softmax(item.logits("test"))
        scores = metric_fns.compute(metrics, gold, probs) if test else {}
        generation = f"g{stage.generation} " if stage.generation is not None else ""
        group = {"train": f"{generation}{stage.pattern}", "ensemble": f"{generation}ensemble",
                 "distill": "distilled"}[stage.kind]
        results.rows.append(Row(stage.id, stage.data_seed, stage.pattern, stage.seed, scores,
                                item.result.get("dev"), item.result.get("seconds", 0.0), group, item.reused))
        outcomes.append((stage, Outcome(probs, gold)))
        log(f"  {stage.id}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    final = [item for item in done if item.stage.kind == "distill"]
    if final:
        best = max(final, key=lambda x: -float("inf") if x.result.get("dev") is None else x.result["dev"])
        _copy(best.path / MODEL, staging / "model")
        _copy(best.path / HEAD, staging / EXTRAS)
        info = {"method": "distilled", "family": best.result["family"], "pattern": None, "stage": best.stage.id,
                "dev": best.result.get("dev"), "labels": spec.labels, "extras": {},
                "max_length": distill.max_length}
        (staging / "predictor.json").write_text(json.dumps(info), encoding="utf-8")
    return results, outcomes


def _copy(source: Path, target: Path) -> None:
    """A copy (never a hard link: writing into the output must not change the store)."""
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _classifier_session(session: Session, name: str, directory: Path, analysis) -> "Callable[[], Session]":
    """A loader for the model that `distill { model ... }` names: a folder beside the spec, else a hub id."""
    from promptlang.compiler.compile import tokenizer_info

    source = m.Model(path=name) if (directory / name).is_dir() else m.Model(hub=name)
    loaded: list[Session] = []

    def load() -> Session:
        if not loaded:
            try:
                tokenizer = load_tokenizer(source, directory)
                model, family = load_model(source, directory, family_for(source, directory))
            except (OSError, ValueError, ImportError) as error:
                raise RunError(f"cannot load the distillation model `{name}`: {_first_line(error)}",
                               ("method", "distill", "model")) from None
            plan = session.plan.model_copy(update={"family": family, "tokenizer": tokenizer_info(tokenizer)})
            loaded.append(Session(plan, tokenizer, model, session.cache, session.log))
        return loaded[0]
    return load


UNTRAINED = ("zero_shot", "in_context")  # methods that leave the model's weights as they were


def model_source(spec: m.Spec, directory: Path) -> dict:
    """Where the spec's model and tokenizer came from, for predicting with weights that were not saved.

    `model` and `tokenizer` are what `from_pretrained` loads (a folder or a hub id); `spec` and
    `directory` say how the spec named them.
    """
    folder = directory.resolve()
    model = locate(spec.model, directory).name
    tokenizer = model
    if spec.model.tokenizer:
        local = directory / spec.model.tokenizer
        tokenizer = str(local.resolve()) if local.exists() else spec.model.tokenizer
    model = str(Path(model).resolve()) if Path(model).is_dir() else model
    return {"spec": spec.model.model_dump(mode="json", exclude_none=True), "directory": str(folder),
            "model": model, "tokenizer": tokenizer}


def keep_model(staging: Path, session: Session, stage, outcome, source: dict) -> None:
    """Save what predicting as after `stage` needs: head or soft prompt, calibration, demonstrations, and
    the weights and tokenizer when training changed them (else where the model came from)."""
    shutil.rmtree(staging / "model", ignore_errors=True)
    (staging / EXTRAS).unlink(missing_ok=True)
    extras = save_extras(staging, outcome)
    kind = session.spec.method.kind
    info = {"method": kind, "family": session.family, "pattern": stage.pattern,
            "stage": stage.id, "dev": outcome.dev, "labels": session.spec.labels, "extras": extras}
    if kind in UNTRAINED:
        info["source"] = source
    (staging / "predictor.json").write_text(json.dumps(info), encoding="utf-8")
    if kind not in UNTRAINED:
        session.tokenizer.save_pretrained(staging / "model")
        session.model.save_pretrained(staging / "model", safe_serialization=True)


def write_artifact(staging: Path, target: Path, plan, tokenizer, results: "Results", outcomes, splits,
                   log_lines) -> None:
    """Finish the run's directory beside its final place, then move it there in one step."""
    (staging / "spec.json").write_text(plan.spec.model_dump_json(indent=2), encoding="utf-8")
    (staging / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    (staging / "verbalizer.json").write_text(json.dumps(_verbalizers(plan, tokenizer), indent=2,
                                                        ensure_ascii=False), encoding="utf-8")
    skipped = next(iter(splits.values())).skipped if splits else {}  # `bad_rows skip`: lines skipped per file
    (staging / "metrics.json").write_text(json.dumps(
        {"runs": [r.__dict__ for r in results.rows], "summary": results.summary(),
         **({"skipped_rows": skipped} if skipped else {})}, indent=2), encoding="utf-8")
    _write_predictions(staging / "predictions.tsv", plan, outcomes, splits)
    (staging / "log.txt").write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    swap(staging, target)


def _verbalizers(plan, tokenizer) -> dict:
    return {name: {lw.label: [{"word": w, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)}
                              for w, ids in zip(lw.words, lw.ids)] for lw in pattern.labels}
            for name, pattern in plan.patterns.items()}


def _write_predictions(path: Path, plan, outcomes: list[tuple], splits) -> None:
    labels = plan.spec.labels
    with open(path, "w", encoding="utf-8") as out:
        out.write("\t".join(["stage", "index", "gold", "predicted", *[f"p_{x}" for x in labels]]) + "\n")
        for stage, outcome in outcomes:
            for i, (gold, probs) in enumerate(zip(outcome.labels, outcome.probabilities)):
                predicted = labels[int(np.argmax(probs))]
                gold_name = labels[gold] if gold >= 0 else ""
                out.write("\t".join([stage.id, str(i), gold_name, predicted, *[f"{x:.6f}" for x in probs]]) + "\n")
