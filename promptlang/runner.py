"""`promptlang run`: compile a spec, execute its stages, and write the results atomically."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from promptlang.api import analyze
from promptlang.compiler.compile import CompileError, compile_plan, runs_on
from promptlang.language import spec as m
from promptlang.language.diagnostics import Diagnostics, SpecError
from promptlang.language.support import not_yet
from promptlang.methods.search import searches
from promptlang.output.artifact import Keeper, Results, copy_stages, keep_model, write_artifact
from promptlang.output.found import with_found, write_found
from promptlang.output.guard import OutputError, check_target, staging_dir, write_marker
from promptlang.output.live import open_progress
from promptlang.output.render import runs_on_line
from promptlang.runtime.data import DataError, read_splits, sample_splits
from promptlang.runtime.errors import RunError
from promptlang.runtime.models import ModelError, cache_dir, family_for, load_model, load_tokenizer, locate, will_convert
from promptlang.runtime.pipeline import TooLong
from promptlang.runtime.placement import Placement, start, stop
from promptlang.runtime.progress import Progress, as_progress
from promptlang.runtime.session import Session
from promptlang.stages.executor import Executor
from promptlang.stages.kinds import EXTRAS as STAGE_EXTRAS
from promptlang.stages.kinds import WEIGHTS, Done, Run
from promptlang.stages.store import Store


def load_checked(path: Path, overrides: list[str]) -> tuple[m.Spec, object]:
    """The validated spec of a file with its `--set` overrides, or SpecError with every diagnostic.

    The overrides go through the same validation and checks as the spec (`api.analyze`).

    Raises:
        SpecError: the spec, or an override, has errors.
        OverrideError: an override is not KEY=VALUE.
    """
    analysis = analyze(path, overrides=overrides)
    if analysis.ok and isinstance(analysis.spec, m.Mixture):  # (`run` and `plan` run a mixture whole)
        raise spec_error(analysis, "this is a mixture file: it has no single plan or prompt of its own",
                         ("mixture",), "use `promptlang plan` on it without --json, or give a task's spec")
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


def prepare(spec_path: Path, overrides: list[str] = (), checked: tuple | None = None,
            where: Placement | None = None) -> Prepared:
    """Check the spec, read and sample its data, load its tokenizer, compile the plan (no model weights).

    Args:
        spec_path: the spec file.
        overrides: `--set` overrides.
        checked: (spec, analysis) when the caller has already checked the spec.
        where: the device, precision and processes the plan runs on (default: one CPU process).

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
        plan = compile_plan(spec, tokenizer, family, {seed: s.counts() for seed, s in splits.items()}, label_counts,
                            runs_on(spec, str(where.device), where.precision, where.processes) if where else None)
    except CompileError as error:
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    return Prepared(plan, tokenizer, splits, analysis)


def run(spec_path: Path, out: str | None = None, overrides: list[str] = (), quiet: bool = False,
        stages: str | Path | None = None, force: bool = False, device: str | None = None,
        precision: str | None = None) -> Results:
    """Run a spec end to end and write its output directory.

    `device` and `precision` (else the spec's `model { precision }`) say where it runs; started by
    torchrun or accelerate launch, the processes share the work and the first writes the output.

    Every stage of the plan runs through the stage store (`stages`, default `$PROMPTLANG_CACHE/stages`),
    so that running the spec again reuses what is finished and a killed run resumes. The output
    directory is checked before any work: a run replaces only an empty folder or an output
    directory of the same spec (of another spec with `force`).

    Raises:
        SpecError: the spec has errors, or running it found one (located at its spec line).
        OutputError: the output directory must not be replaced.
        PlacementError: the device or precision cannot be had on this machine.
    """
    spec, analysis = load_checked(spec_path, list(overrides))
    placement = start(device, precision or spec.model.precision.value)
    log = open_progress(quiet, speaks=placement.main)  # one process speaks for all
    try:
        return _run(spec_path, spec, analysis, placement, out, overrides, log, stages, force)
    finally:
        log.close()
        stop(placement)


def _run(spec_path: Path, spec: m.Spec, analysis, placement: Placement, out, overrides, log: Progress, stages,
         force) -> Results:
    for item in not_yet(spec):  # the features `check` warns about: refused before any work
        diagnostics = Diagnostics(sources=dict(analysis.diagnostics.sources))
        diagnostics.error(item.message, analysis.locations.key(item.path), item.hint)
        raise SpecError(diagnostics)
    store_root = Path(stages) if stages else cache_dir() / "stages"
    started = time.time()
    target = output_target(spec, spec_path, out, analysis, force, log, [store_root, cache_dir()])
    log(f"promptlang run {spec_path}: {spec.method.kind}")
    prepared = prepare(spec_path, overrides, checked=(spec, analysis), where=placement)
    session = _session(prepared, spec_path.parent, log, placement)
    directory = spec_path.parent
    distill = getattr(spec.method, "distill", None)
    other = _classifier_session(session, distill.model, directory, analysis) if distill and distill.model else None
    context = Run(session, prepared.splits, Store(store_root), log, other)
    keeper, results = Keeper(context, prunes=placement.main), Results(runs_on=placement.describe())

    def finished(item: Done) -> None:  # each score as soon as its stage is done; only the best model's weights kept
        results.add(context, item, log)
        keeper.offer(item)

    executor = Executor(context, finished)
    done = _execute(executor, prepared, analysis)
    results.executed = list(executor.record)
    if not placement.main:
        return results
    staging = staging_dir(target)
    try:
        copy_stages(staging, done, (WEIGHTS, STAGE_EXTRAS))
        if keeper.best is not None:
            keep_model(staging, context, keeper.best, model_source(spec, directory))
        write_found(staging, context, done, searches(spec.method))
        log(f"done in {time.time() - started:.0f} s")
        write_marker(staging, spec_path)
        write_artifact(staging, target, with_found(prepared.plan, context, keeper.best), prepared.tokenizer, results,
                       prepared.splits, log.lines)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results


def _session(prepared: Prepared, directory: Path, log, placement: Placement) -> Session:
    """The spec's model loaded (converted once from GGUF when it is one), in a session with the plan."""
    spec, plan, log = prepared.plan.spec, prepared.plan, as_progress(log)
    for name, count in next(iter(prepared.splits.values())).skipped.items():
        log(f"  bad_rows skip: skipped {count} line(s) of {name} that do not parse")
    try:
        if will_convert(spec.model, directory):
            log(f"  converting the GGUF model into {cache_dir() / 'gguf'} (once; a few minutes for a few hundred "
                "million parameters)")
        with log.loading(spec.model.package or spec.model.hub or spec.model.path or spec.model.gguf):
            model, family = load_model(spec.model, directory, plan.family)
    except ModelError as error:
        raise spec_error(prepared.analysis, str(error), error.path, error.hint) from None
    except (OSError, ValueError, ImportError) as error:
        raise spec_error(prepared.analysis, f"cannot load the model: {_first_line(error)}", ("model",)) from None
    total = plan.total()
    log(f"  model: {model.config.model_type} ({family}), {sum(x.numel() for x in model.parameters()) / 1e6:.0f}M "
        f"parameters; {len(plan.stages)} stages, {total.optimizer_steps} optimizer steps, "
        f"{total.forward_passes} forward passes")
    log(f"  {runs_on_line(plan.runs_on)}")
    return Session(plan, prepared.tokenizer, model, cache_dir(), log, placement=placement, directory=directory)


def _execute(executor: Executor, prepared: Prepared, analysis) -> list[Done]:
    """Every stage of the plan; an error is located at the spec setting that caused it."""
    store = executor.run.store
    try:
        return executor.execute(prepared.plan.stages)
    except KeyboardInterrupt:
        finished = len(executor.record)
        kept = (f"the {finished} finished stage(s) are kept in {store.root}: run the same command again "
                f"to resume" if finished else "no stage had finished yet")
        executor.run.log.close()  # (the live view off the terminal first)
        print(f"promptlang: interrupted in {executor.current.id}; {kept}", file=sys.stderr, flush=True)
        raise
    except RunError as error:
        raise spec_error(analysis, str(error), error.path, error.hint) from None
    except TooLong as error:
        stage = executor.current
        raise spec_error(analysis, f"template `{stage.pattern}` leaves no room for an input: {error}",
                         ("templates", stage.pattern, "text"),
                         "raise `max_length` in `method`, or mark long fields with `| shorten`") from None


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
            loaded.append(Session(plan, tokenizer, model, session.cache, session.log, placement=session.placement,
                                  directory=session.directory))
        return loaded[0]
    return load


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
    return {"spec": spec.model.model_dump(mode="json", exclude_none=True, exclude={"precision"}),
            "directory": str(folder),
            "model": model, "tokenizer": tokenizer}
