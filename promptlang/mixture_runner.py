"""`promptlang run` and `plan` of a mixture file (T5's multi-task training): one model fine-tuned on the
examples of several task specs, drawn by T5's mixing rates, then each task evaluated on its own test set
with its own decoding and metrics; the output directory is written beside its final place and moved there."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from promptlang.api import analyze
from promptlang.compiler.mixing import mixed_draws, mixing_rates
from promptlang.language import spec as m
from promptlang.language.diagnostics import SpecError
from promptlang.language.overrides import OverrideError
from promptlang.output.artifact import Results, Row
from promptlang.output.guard import OutputError, check_target, staging_dir, swap, write_marker
from promptlang.output.live import open_progress
from promptlang.runner import Prepared, _session, prepare, read_paths
from promptlang.runtime import generation
from promptlang.runtime.placement import Placement, start, stop
from promptlang.runtime.progress import Progress
from promptlang.runtime.session import Session
from promptlang.runtime.task import task_of
from promptlang.runtime.text_task import target_ids
from promptlang.runtime.text_training import decoding_of, end_id, prompts, write
from promptlang.runtime.training import fit, progress, total_steps


@dataclass
class Member:
    """One task of the mixture: its name (the spec's file stem), its spec file, and what `prepare` made of it."""

    name: str
    path: Path
    prepared: Prepared

    @property
    def pattern(self):
        plan = self.prepared.plan
        return plan.patterns[plan.spec.patterns[0]]


@dataclass
class MixtureResults:
    """Each task's results (its rows, one per seed), and the mixing rates per seed."""

    tasks: dict[str, Results] = field(default_factory=dict)
    rates: dict[int, dict[str, float]] = field(default_factory=dict)
    sizes: dict[int, dict[str, int]] = field(default_factory=dict)
    losses: dict[int, list[float]] = field(default_factory=dict)  # the training loss per optimizer step

    def table(self) -> str:
        return "\n".join(f"{name}:\n{results.table()}" for name, results in self.tasks.items())


def run_from_command_line(args) -> MixtureResults | None:
    """`promptlang run` of a mixture file (None for a single spec, which `runner.run` runs).

    Raises:
        OverrideError: `--set` or `--stages` was given (a mixture's settings are in its tasks' specs).
    """
    if not is_mixture_file(Path(args.path)):
        return None
    if args.overrides or args.stages:
        raise OverrideError("a mixture's run takes no --set or --stages: set them in the tasks' specs")
    return run_mixture(Path(args.path), args.out, args.quiet, args.force, args.device, args.precision)


def is_mixture_file(path: Path) -> bool:
    """Whether a spec file is a mixture (it has a `mixture` block); False when it cannot be read or parsed."""
    from promptlang.language.mixture_file import is_mixture
    from promptlang.language.parser import parse
    from promptlang.language.reader import read_source

    source, _ = read_source(path)
    nodes = parse(source)[0] if source is not None else None
    return nodes is not None and is_mixture(nodes)


def load_mixture(path: Path) -> tuple[m.Mixture, object, dict[str, Path]]:
    """The checked mixture, its analysis and its member spec files by name.

    Raises:
        SpecError: the mixture or a member has errors.
    """
    analysis = analyze(path)
    if not analysis.ok or not isinstance(analysis.spec, m.Mixture):
        raise SpecError(analysis.diagnostics)
    mixture = analysis.spec
    return mixture, analysis, {Path(t).stem: path.parent / t for t in mixture.mixture.tasks}


def members_of(mixture: m.Mixture, files: dict[str, Path], where: Placement | None = None) -> list[Member]:
    """Each member prepared for the mixture: its own data, template, decoding and metrics, sampled with the
    mixture's seeds, under the mixture's method."""
    out = []
    for name, path in files.items():
        analysis = analyze(path)
        spec = analysis.spec.model_copy(update={
            "method": mixture.method, "data": analysis.spec.data.model_copy(update={"seeds": mixture.mixture.seeds})})
        out.append(Member(name, path, prepare(path, checked=(spec, analysis), where=where)))
    return out


def rates_of(mixture: m.Mixture, members: list[Member], seed: int) -> tuple[dict[str, int], dict[str, float]]:
    """The training examples of each task for one seed, and T5's mixing rates over them."""
    sizes = {member.name: len(member.prepared.splits[seed].train) for member in members}
    return sizes, mixing_rates(sizes, mixture.mixture.limit, mixture.mixture.temperature)


def describe_mixture(path: Path) -> str:
    """`promptlang plan` of a mixture: the tasks, their rates per seed and the training steps."""
    mixture, _, files = load_mixture(path)
    members = members_of(mixture, files)
    method = mixture.method
    lines = [f"mixture of {len(members)} tasks, one model: {members[0].prepared.plan.spec.model.source[1]} "
             f"({members[0].prepared.plan.family})",
             f"mixing: examples-proportional, limit K {mixture.mixture.limit or 'none'}, temperature "
             f"{mixture.mixture.temperature:g}"]
    for seed in mixture.mixture.seeds:
        sizes, rates = rates_of(mixture, members, seed)
        steps = total_steps(method, sum(sizes.values()))
        lines.append(f"seed {seed}: {steps} optimizer steps of {method.batch_size} examples drawn from the mixture")
        for member in members:
            test = len(member.prepared.splits[seed].test)
            lines.append(f"  {member.name:<28} rate {rates[member.name]:.3f}  ({sizes[member.name]} training "
                         f"examples; evaluated on {test}, {member.prepared.plan.spec.task_kind})")
    return "\n".join(lines)


def run_mixture(path: Path, out: str | None = None, quiet: bool = False, force: bool = False,
                device: str | None = None, precision: str | None = None) -> MixtureResults:
    """Train one model per seed on the mixture and evaluate every task; write the output directory.

    The model trains from its pretrained weights for each seed, for the method's `steps` (or `epochs` over
    the tasks' training examples together), on batches drawn from the mixture; nothing is selected on dev
    (the last state is evaluated). Unlike a single spec's run, a mixture's run keeps no stages: run again,
    it trains again.

    Raises:
        SpecError: the mixture or a member has errors, or running found one.
        OutputError: the output directory must not be replaced.
    """
    mixture, _, files = load_mixture(path)
    placement = start(device, precision or "fp32")
    log = open_progress(quiet, speaks=placement.main)
    try:
        return _run(path, mixture, files, placement, out, log, force)
    finally:
        log.close()
        stop(placement)


def _run(path: Path, mixture: m.Mixture, files: dict[str, Path], placement: Placement, out, log: Progress,
         force: bool) -> MixtureResults:
    started = time.time()
    members = members_of(mixture, files, placement)
    given = Path(out) if out else (path.parent / mixture.evaluate.output if mixture.evaluate.output
                                   else Path("results") / path.stem)
    reads = [path] + [p for member in members for p in read_paths(member.prepared.plan.spec, member.path,
                                                                    member.prepared.analysis)]
    target = check_target(given, path, reads, force, log)
    log(f"promptlang run {path}: a mixture of {', '.join(x.name for x in members)}")
    first = _session(members[0].prepared, members[0].path.parent, log, placement)
    sessions = {x.name: Session(x.prepared.plan, x.prepared.tokenizer, first.model, first.cache, log,
                                placement=placement, directory=x.path.parent) for x in members}
    results = MixtureResults({x.name: Results(runs_on=placement.describe()) for x in members})
    written: dict[str, list] = {x.name: [] for x in members}
    for seed in mixture.mixture.seeds:
        first.reset(seed)
        results.sizes[seed], results.rates[seed] = rates_of(mixture, members, seed)
        log(f"  seed {seed}: mixing rates " + ", ".join(f"{k} {v:.3f}" for k, v in results.rates[seed].items()))
        seconds = time.time()
        results.losses[seed] = train_mixture(mixture, members, sessions, seed, results.rates[seed])
        for member in members:
            _evaluate(member, sessions[member.name], seed, results.tasks[member.name], written[member.name], log,
                      time.time() - seconds)
    if placement.main:
        _write(path, target, mixture, members, results, written, first, log, log.lines, started)
    return results


def train_mixture(mixture: m.Mixture, members: list[Member], sessions: dict[str, Session], seed: int,
                  rates: dict[str, float]) -> list[float]:
    """Fine-tune the shared model on examples drawn from the tasks by their rates (teacher forcing on each
    task's target, the batch's target tokens averaged); the losses per optimizer step."""
    method = mixture.method
    inputs, targets = {}, {}
    for member in members:
        session, train = sessions[member.name], member.prepared.splits[seed].train
        inputs[member.name] = prompts(session, member.pattern, train)
        limit = decoding_of(session.spec).max_new_tokens
        targets[member.name] = target_ids(member.pattern, train, session.tokenizer, session.family, end_id(session),
                                          limit, session.task.words(member.pattern, train))
    sizes = {name: len(ids) for name, ids in inputs.items()}
    steps = total_steps(method, sum(sizes.values()))
    draws = mixed_draws(sizes, rates, steps * method.batch_size * method.grad_accum, seed)
    session = sessions[members[0].name]
    pad = session.plan.tokenizer.pad_id
    settings = method.model_copy(update={"steps": steps, "epochs": None})

    def loss_of(rows: list[int]):
        chosen = [draws[r] for r in rows]
        with session.placement.autocast():
            return generation.target_loss(session.model, session.family, [inputs[t][i] for t, i in chosen],
                                          [targets[t][i] for t, i in chosen], pad)

    history = fit(session.model, loss_of, len(draws), settings, seed, None, progress(session.log),
                  placement=session.placement)
    return history.losses


def _evaluate(member: Member, session: Session, seed: int, results: Results, written: list, log,
              seconds: float) -> None:
    """One task's test set written by the shared model and measured by the task's metrics."""
    test = member.prepared.splits[seed].test
    texts = write(session, member.pattern, test, session.spec.method.eval_batch_size)
    scores = session.task.metrics(session.spec.evaluate.metrics, test, texts)
    stage = f"evaluate/{member.name}/d{seed}"
    results.rows.append(Row(stage, seed, member.pattern.name, seed, scores, None, seconds, member.name))
    written.append((stage, test, texts))
    log(f"  {stage}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


def _write(path: Path, target: Path, mixture: m.Mixture, members: list[Member], results: MixtureResults,
           written: dict[str, list], first: Session, log, log_lines: list[str], started: float) -> None:
    """metrics.json (each task's runs and summary, the mixing rates), each task's predictions and what
    predicting with it needs (`<task>/plan.json`, `<task>/predictor.json`; the model, trained on the last
    seed, once in `model/`), the log."""
    import csv

    staging = staging_dir(target)
    try:
        metrics = {"tasks": {name: {"runs": [r.__dict__ for r in res.rows], "summary": res.summary()}
                             for name, res in results.tasks.items()},
                   "rates": {str(k): v for k, v in results.rates.items()},
                   "sizes": {str(k): v for k, v in results.sizes.items()},
                   "losses": {str(k): v for k, v in results.losses.items()}}
        first.tokenizer.save_pretrained(staging / "model")  # the last seed's model: each task predicts with it
        first.model.save_pretrained(staging / "model", safe_serialization=True)
        for member in members:
            task = task_of(member.prepared.plan.spec)
            folder = staging / member.name
            folder.mkdir(parents=True)
            _predictor(folder, member, written[member.name][-1][0])
            with open(folder / "predictions.tsv", "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(["stage", "index", *task.columns])
                for stage, examples, texts in written[member.name]:
                    writer.writerows([stage, i, *shown] for i, shown in enumerate(task.shown(examples, texts)))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        (staging / "mixture.json").write_text(mixture.model_dump_json(indent=2), encoding="utf-8")
        log(f"done in {time.time() - started:.0f} s")
        (staging / "log.txt").write_text("\n".join(log_lines) + "\n", encoding="utf-8")
        write_marker(staging, path)
        from promptlang.report import write_into

        write_into(staging, target)  # report.html: each task side by side (if it fails: a warning, not a failure)
        swap(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _predictor(folder: Path, member: Member, stage: str) -> None:
    """What `promptlang predict <dir>/<task>` needs: the task's plan, and a predictor.json whose model is the
    mixture's (`shared`: in the parent folder's `model/`)."""
    plan = member.prepared.plan
    (folder / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    info = {"method": plan.spec.method.kind, "family": plan.family, "pattern": member.pattern.name, "stage": stage,
            "dev": None, "labels": plan.spec.labels, "extras": {}, "shared": True}
    (folder / "predictor.json").write_text(json.dumps(info), encoding="utf-8")


__all__ = ["MixtureResults", "OutputError", "describe_mixture", "is_mixture_file", "run_from_command_line",
           "run_mixture"]
