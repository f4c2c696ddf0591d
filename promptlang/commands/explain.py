"""`promptlang explain SPEC_OR_RUN_DIR`: the top tokens at each mask, the label probabilities before and after
calibration and the prediction, for a few examples (a spec's pretrained model, or a run's trained one)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from promptlang.commands.usage import EXIT_OK, UsageError, input_rows, quiet_transformers


def add(commands) -> None:
    """Register `explain` on the command line's subcommands."""
    explain = commands.add_parser(
        "explain", help="show what the model predicts at the mask for a few examples",
        description="For each example: the input as the model sees it, the top tokens at each mask with their "
                    "probabilities, each label's probability before and after contextual calibration, and the "
                    "prediction (for a model that writes text: what it writes, and the top tokens as it writes). "
                    "A spec explains its pretrained model (zero-shot); a run directory its trained model.")
    explain.add_argument("path", metavar="SPEC_OR_RUN_DIR", help="a spec file, or an output directory of `run`")
    given = explain.add_mutually_exclusive_group()
    given.add_argument("--examples", type=int, default=3, metavar="N", help="the first N examples of the split "
                                                                            "(default 3)")
    given.add_argument("--input", metavar="FILE", help="explain these rows instead (.tsv, .csv or .jsonl, as for "
                                                       "`predict --input`)")
    explain.add_argument("--split", choices=["test", "dev", "train"], default="test",
                         help="the split --examples takes from (default test)")
    explain.add_argument("--top", type=int, default=5, metavar="K", help="tokens shown at each mask (default 5)")
    explain.add_argument("--format", choices=["text", "json"], default="text",
                         help="text for people, json: one JSON list of the examples (docs/explain.md)")
    explain.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a setting of a spec, as for `run`")
    explain.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: "
                                                            "$PROMPTLANG_DEVICE, else auto)")
    explain.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                         help="forward passes in fp32 or mixed precision (default: the spec's, else fp32)")
    explain.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Explain the examples; print text or JSON. Exit 0, or a usage error (2)."""
    path = Path(args.path)
    _check_arguments(args, path)

    from promptlang.explain.compute import explain
    from promptlang.explain.subject import ExplainError
    from promptlang.explain.text import render
    from promptlang.language.overrides import OverrideError
    from promptlang.runtime.placement import PlacementError, stop

    quiet_transformers()  # (as `predict` runs: no third-party bars or warnings)
    subject = None
    try:
        subject = _subject(args, path)
        examples, source = _examples(args, subject)
        records = explain(subject, examples, source, args.top)
    except (ExplainError, OverrideError, PlacementError) as error:
        raise UsageError(str(error)) from None
    finally:
        if subject is not None and subject.placement is not None:
            stop(subject.placement)
    sys.stdout.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n" if args.format == "json"
                     else render(records))
    return EXIT_OK


def _check_arguments(args: argparse.Namespace, path: Path) -> None:
    """Misuse found before anything loads."""
    if args.input is None and args.examples < 1:
        raise UsageError(f"--examples must be 1 or more, not {args.examples}")
    if args.top < 1:
        raise UsageError(f"--top must be 1 or more, not {args.top}")
    if path.is_dir():
        if not (path / "predictor.json").is_file():
            if (path / "metrics.json").is_file():
                raise UsageError(f"{path} holds no single model to explain: a PET run keeps one only when it "
                                  "distils its ensemble; a mixture keeps one per task: explain DIR/TASK")
            raise UsageError(f"not a spec file or a `promptlang run` output directory: {path}")
        if args.overrides:
            raise UsageError("--set applies to a spec, not to a run directory (its settings are those it ran with)")
    elif not path.is_file():
        raise UsageError(f"no such spec file or run directory: {path}")
    if args.input is not None:
        source = Path(args.input)
        from promptlang.language.datafiles import EXTENSIONS

        if not source.is_file() or EXTENSIONS.get(source.suffix.lower()) is None:
            raise UsageError(f"cannot read {source}: give a .tsv, .csv or .jsonl file")


def _subject(args: argparse.Namespace, path: Path):
    from promptlang.explain.subject import from_run, from_spec

    if path.is_dir():
        return from_run(path, args.device, args.precision)
    return from_spec(path, args.overrides, args.device, args.precision)


def _examples(args: argparse.Namespace, subject) -> tuple[list, str]:
    """The examples to explain and where they came from: `--input`'s rows, else the split's first N."""
    if args.input is None:
        return subject.examples(args.split, args.examples), args.split
    from promptlang.language.datafiles import EXTENSIONS
    from promptlang.runtime.data import Example, label_map

    source = Path(args.input)
    rows = input_rows(source, EXTENSIONS[source.suffix.lower()])  # as `predict --input` reads them
    spec = subject.session.spec
    missing = [c for c in spec.data.text if rows and c not in rows[0]]
    if missing:
        raise UsageError(f"{source} has no column `{missing[0]}` (the spec's text columns: "
                          f"{', '.join(spec.data.text)})")
    if not rows:
        raise UsageError(f"{source} has no rows to explain")
    labels = label_map(spec)
    return [Example({c: str(row.get(c) or "") for c in spec.data.text}, labels.get(str(row.get(spec.data.label))))
            for row in rows], "input"
