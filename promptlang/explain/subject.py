"""What `explain` looks at: a spec's pretrained model (as `run` loads it) or a run directory's trained one
(as `predict` loads it), each pattern with its demonstration sets and content-free prediction."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from promptlang.compiler import plan as p
from promptlang.methods.common import uses_demos
from promptlang.runtime import demos
from promptlang.runtime.data import DataError, Example, load_splits
from promptlang.runtime.placement import Placement
from promptlang.runtime.scoring import SoftPrompt
from promptlang.runtime.session import Session, content_free


class ExplainError(Exception):
    """What `explain` was given cannot be explained (the command prints it as a usage error)."""


@dataclass
class Scorer:
    """One pattern as the model scores it: its soft prompt, its demonstration sets, one content-free
    prediction per set, and whether the prediction uses the calibrated probabilities."""

    name: str
    pattern: p.Pattern
    soft: SoftPrompt | None
    sets: demos.Sets
    calibrations: list[list[float]] | None  # None for a pattern whose model writes text
    calibrated: bool


@dataclass
class Subject:
    """A loaded model with the patterns it scores; `trained` for a run directory's model."""

    session: Session
    scorers: list[Scorer]
    trained: bool
    splits: object = None  # the spec's first data sample (a spec), read when needed (a run directory)
    spec_dir: Path | None = None  # where the spec's data paths start from
    placement: Placement | None = None  # the placement `from_spec` started (stopped by the caller)

    def examples(self, split: str, count: int) -> list[Example]:
        """The first `count` examples of a split of the spec's first data sample.

        Raises:
            ExplainError: the split cannot be read or has no examples.
        """
        if self.splits is None:
            self.splits = self._read_splits()
        found = getattr(self.splits, split)[:count]
        if not found:
            raise ExplainError(f"the spec has no {split} examples (its `data {{ {split} ... }}` is not set or is "
                               "empty): choose another --split or give --input FILE")
        return found

    def _read_splits(self):
        spec = self.session.spec
        if self.spec_dir is None:
            raise ExplainError("the run directory does not say where its spec was (no .promptlang-output "
                               "marker): give examples with --input FILE")
        try:
            return load_splits(spec, self.spec_dir, spec.data.seeds[0])
        except DataError as error:
            raise ExplainError(f"cannot read the run's data: {error}; give examples with --input FILE") from None


def content_free_sets(session: Session, pattern: p.Pattern, sets: demos.Sets) -> list[list[float]]:
    """The content-free prediction once per demonstration set, as the `calibrate` stage computes it."""
    max_length = session.spec.method.max_length
    if isinstance(sets, demos.SimilarSets):  # the content-free input draws its own, as a query does
        empty = Example({name: "N/A" for name in session.spec.data.text})
        return [content_free(session, pattern, max_length, d).tolist() for d in sets.per_set([empty])]
    return [content_free(session, pattern, max_length, [d] if d else None).tolist() for d in sets or [None]]


def from_spec(path: Path, overrides: list[str], device: str | None, precision: str | None) -> Subject:
    """A spec's pretrained model, loaded as `promptlang run` loads it (a GGUF model's conversion cached),
    with every pattern of the plan; demonstrations and calibration as the zero-shot evaluation has them.

    Raises:
        SpecError: the spec has errors, or its data or model cannot be loaded (located).
        ExplainError: the spec has no pattern (a classification head).
        PlacementError: the device or precision cannot be had here.
    """
    from promptlang import runner
    from promptlang.runtime.placement import start, stop

    spec, analysis = runner.load_checked(path, list(overrides))
    placement = start(device, precision or spec.model.precision.value)
    try:
        return _spec_subject(path, overrides, (spec, analysis), placement)
    except BaseException:
        stop(placement)
        raise


def _spec_subject(path: Path, overrides: list[str], checked: tuple, placement: Placement) -> Subject:
    from promptlang import runner
    from promptlang.runtime.models import cache_dir, will_convert

    spec = checked[0]
    prepared = runner.prepare(path, overrides, checked=checked, where=placement)
    if not prepared.plan.patterns:
        raise ExplainError(f"`{spec.method.kind}` has no pattern (a classification head reads the text): "
                           "there is no mask to explain")
    if will_convert(spec.model, path.parent):  # the one slow step, said before it starts
        print(f"promptlang: converting the GGUF model into {cache_dir() / 'gguf'} (once; a few minutes)",
              file=sys.stderr, flush=True)
    session = runner._session(prepared, path.parent, lambda text: None, placement)
    splits = next(iter(prepared.splits.values()))
    calibrated = bool(getattr(spec.method, "calibrate", False))
    scorers = []
    for name, pattern in prepared.plan.patterns.items():
        sets = demos.demo_sets(session, splits) if uses_demos(pattern) else []
        calibrations = None if session.task.writes else content_free_sets(session, pattern, sets)
        scorers.append(Scorer(name, pattern, None, sets, calibrations, calibrated))
    return Subject(session, scorers, False, splits, path.parent, placement)


def from_run(directory: Path, device: str | None, precision: str | None) -> Subject:
    """A run directory's model, loaded as `promptlang predict` loads it, with the run's pattern, soft
    prompt, demonstration sets and calibration; a run that did not calibrate gets its content-free
    prediction computed here (shown, not used).

    Raises:
        ExplainError: the directory cannot be predicted with, or has no pattern.
        PlacementError: the device or precision cannot be had here.
    """
    from promptlang.output.guard import read_marker
    from promptlang.output.predictor import ArtifactError, load

    try:
        predictor = load(directory, device=device, precision=precision)
    except ArtifactError as error:
        raise ExplainError(str(error)) from None
    info, session = predictor.info, predictor.session
    if info.pattern is None:
        raise ExplainError(f"{directory} predicts with a classification head (`{info.method}`): there is no "
                           "mask to explain")
    pattern = session.plan.patterns[info.pattern]
    sets, calibrations = _run_sets(predictor)
    calibrated = calibrations is not None
    if calibrations is None and not session.task.writes:
        calibrations = content_free_sets(session, pattern, sets)
    marker = read_marker(directory) or {}
    spec_dir = Path(marker["spec"]).parent if isinstance(marker.get("spec"), str) else None
    scorer = Scorer(info.pattern, pattern, predictor.soft, sets, calibrations, calibrated)
    return Subject(session, [scorer], info.source is None, None, spec_dir)  # (an untrained run saves no weights)


def _run_sets(predictor) -> tuple[demos.Sets, list[list[float]] | None]:
    """The demonstration sets and calibrations that `Predictor.probabilities` scores with."""
    extras = predictor.info.extras
    if extras.similar is not None:
        return predictor.similar_sets(extras.similar), extras.similar.calibrations
    sets = extras.sets or [extras]
    calibrations = [one.calibration for one in sets] if all(one.calibration for one in sets) else None
    return [one.demos for one in sets if one.demos], calibrations
