"""The `promptlang` command: check, fmt, dump, schema.

Exit codes: 0 clean, 1 problems in a spec (or files `fmt --check` would change),
2 usage errors (bad option, missing path), 3 an internal error (a bug in promptlang).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path

from promptlang import __version__
from promptlang.commands import COMMANDS
from promptlang.commands.usage import (DISK_FULL, EXIT_INTERNAL, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE,  # noqa: F401
                                       UsageError, disk_full, input_rows, quiet_transformers)
from promptlang.language.diagnostics import Diagnostics, SpecError, render_github, render_json, render_text, summary


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except UsageError as error:
        print(f"promptlang: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as error:  # found while compiling or running: located at the spec line
        print(render_text(error.diagnostics))
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_OK
    except Exception as error:  # a bug in promptlang, not in the spec: say so, briefly (but a full disk is no bug)
        if disk_full(error):
            print(f"promptlang: error: {DISK_FULL}", file=sys.stderr)
            return EXIT_PROBLEMS
        print(f"promptlang: internal error: {type(error).__name__}: {error}\n"
              "This is a bug in promptlang; please report it with the spec that caused it.", file=sys.stderr)
        return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptlang",
        description="A declarative language for prompt-based few-shot learning (PET, LM-BFF, T5).",
        epilog="Run `promptlang COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"promptlang {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for add in (_add_check, _add_fmt, _add_dump, _add_run, _add_plan, _add_render, _add_predict, _add_schema,
                *COMMANDS):
        add(commands)
    return parser


def _add_check(commands) -> None:
    check = commands.add_parser(
        "check", help="check specs for errors (exit 1 if any)",
        description="Parse, build and check specs; report every problem with its file, line and column. "
                    "Exit 0 when clean, 1 when a spec has errors, 2 on usage errors.")
    check.add_argument("paths", nargs="+", metavar="PATH", help="spec files, or directories to search for *.prompt")
    check.add_argument("--format", choices=["text", "json", "github"], default="text",
                       help="text for people, json for tools, github for GitHub Actions annotations")
    check.add_argument("--tokenizer", action="store_true",
                       help="also load each model's tokenizer and check label words and lengths "
                            "(needs `pip install promptlang[train]`)")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("-q", "--quiet", action="store_true", help="print problems only, no summary line")
    check.set_defaults(run=_check)


def _add_fmt(commands) -> None:
    fmt = commands.add_parser(
        "fmt", help="rewrite specs in the canonical layout",
        description="Rewrite specs in one canonical layout (comments kept). With --check, change nothing "
                    "and exit 1 if a file is not formatted.")
    fmt.add_argument("paths", nargs="+", metavar="PATH", help="spec files, or directories to search for *.prompt")
    fmt.add_argument("--check", action="store_true", help="exit 1 if a file would change; write nothing")
    fmt.add_argument("--diff", action="store_true", help="print what would change; write nothing")
    fmt.set_defaults(run=_fmt)


def _add_dump(commands) -> None:
    dump = commands.add_parser(
        "dump", help="print a spec after one front-end stage, as JSON",
        description="Print the syntax nodes (with positions) or the validated spec model of a file as JSON.")
    dump.add_argument("path", metavar="PATH", help="a spec file")
    dump.add_argument("--stage", choices=["nodes", "spec"], default="spec", help="which stage's output")
    dump.set_defaults(run=_dump)


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run", help="train and evaluate a spec (needs the train extra)",
        description="Compile a spec, run every stage (train, evaluate), print a results table and write the "
                    "output directory: compiled spec, plan, verbalizer, metrics, predictions, log, model.")
    run.add_argument("path", metavar="SPEC", help="a spec file")
    run.add_argument("--out", metavar="DIR", help="output directory (default: the spec's `output`, else results/NAME); "
                                                  "replaced only if it is empty or a promptlang output directory")
    run.add_argument("--force", action="store_true",
                     help="replace an output directory that a run of another spec wrote "
                          "(never a folder that promptlang did not write)")
    _add_overrides(run, "override a setting, e.g. --set method.steps=10 --set data.seeds=13,21")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress, only the results table")
    run.add_argument("--stages", metavar="DIR",
                     help="where PET / iPET keep finished stages for reuse and resuming "
                          "(default: $PROMPTLANG_CACHE/stages)")
    _add_placement(run)
    run.set_defaults(run=_run)


def _add_plan(commands) -> None:
    plan = commands.add_parser(
        "plan", help="show what a run would do, and what it costs",
        description="Compile a spec against its tokenizer and print the plan: the patterns as tokens, the "
                    "label words' token ids, the stages, and the work (models trained, optimizer steps, "
                    "forward passes, examples read). Loads the tokenizer, not the model.")
    plan.add_argument("path", metavar="SPEC", help="a spec file")
    plan.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    _add_overrides(plan)
    _add_placement(plan)
    plan.set_defaults(run=_plan)


def _add_render(commands) -> None:
    render = commands.add_parser(
        "render", help="show examples as the model will see them",
        description="Render the first examples through each pattern: the text, the tokens, where the masks "
                    "are, and which token ids each label word became.")
    render.add_argument("path", metavar="SPEC", help="a spec file")
    render.add_argument("-n", type=int, default=3, metavar="N", help="examples per pattern (default 3)")
    render.add_argument("--split", choices=["train", "dev", "test", "unlabeled"], default="test")
    _add_overrides(render)
    render.set_defaults(run=_render)


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict", help="predict labels with a run's output directory",
        description="Load the model a `promptlang run` saved and predict labels for the rows of a data file "
                    "(TSV, CSV or JSON lines with the spec's text columns). Writes TSV to stdout or --output.")
    predict.add_argument("artifact", metavar="DIR", help="a `promptlang run` output directory")
    predict.add_argument("--input", required=True, metavar="FILE", help="examples to label")
    predict.add_argument("--output", metavar="FILE", help="where to write the predictions (default: stdout)")
    _add_placement(predict)
    predict.set_defaults(run=_predict)


def _add_schema(commands) -> None:
    schema = commands.add_parser("schema", help="print the JSON Schema of the spec model",
                                 description="Print the JSON Schema of a validated spec.")
    schema.set_defaults(run=_schema)


def _add_placement(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="DEVICE",
                        help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps "
                             "(default: $PROMPTLANG_DEVICE, else auto)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                        help="forward passes in fp32, or mixed precision bf16 / fp16 "
                             "(default: the spec's `model { precision }`, else fp32)")


def _add_overrides(parser: argparse.ArgumentParser, help: str = "override a setting, as for `run`") -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def spec_files(paths: list[str]) -> list[Path]:
    """The spec files named by `paths`; directories are searched for *.prompt."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.prompt") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"no such file or directory: {name}")
    if not found:
        raise UsageError(f"no .prompt files in {', '.join(paths)}")
    return found


# ---------------------------------------------------------------- commands


def _check(args: argparse.Namespace) -> int:
    from promptlang.api import analyze

    files = spec_files(args.paths)
    total = Diagnostics()
    for path in files:
        total.extend(analyze(path, tokenizer=args.tokenizer).diagnostics)
    render = {"text": render_text, "json": render_json, "github": render_github}[args.format]
    output = render(total)
    if output:
        print(output)
    if args.format == "text" and not args.quiet:
        noun = "file" if len(files) == 1 else "files"
        print(("\n" if output else "") + f"checked {len(files)} {noun}: {summary(total)}")
    failed = total.errors or (args.strict and total.warnings)
    return EXIT_PROBLEMS if failed else EXIT_OK


def _fmt(args: argparse.Namespace) -> int:
    from promptlang.language.fmt import format_source
    from promptlang.language.reader import read_source

    status = EXIT_OK
    for path in spec_files(args.paths):
        source, diagnostics = read_source(path)
        formatted = None
        if source is not None:
            formatted, diagnostics = format_source(source)
        if formatted is None:
            print(render_text(diagnostics))
            status = EXIT_PROBLEMS
            continue
        if formatted == source.text:
            continue
        if args.check or args.diff:
            status = EXIT_PROBLEMS
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(
                    source.text.splitlines(True), formatted.splitlines(True), str(path), str(path)))
            else:
                print(f"would reformat {path}")
        else:
            write_atomically(path, formatted)
            print(f"reformatted {path}")
    return status


def write_atomically(path: Path, text: str) -> None:
    """Replace a file's contents so that a crash leaves the old file or the new one, never half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _dump(args: argparse.Namespace) -> int:
    from promptlang.api import analyze
    from promptlang.language.syntax import to_data

    if not Path(args.path).is_file():
        raise UsageError(f"not a spec file: {args.path} (dump takes one file)")
    analysis = analyze(Path(args.path))
    if args.stage == "nodes" and analysis.nodes is not None:
        print(json.dumps(to_data(analysis.nodes), indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.stage == "spec" and analysis.ok:
        print(analysis.spec.model_dump_json(indent=2))
        return EXIT_OK
    print(render_text(analysis.diagnostics))
    return EXIT_PROBLEMS


def _run(args: argparse.Namespace) -> int:
    from promptlang.output.guard import OutputError
    from promptlang.language.overrides import OverrideError
    from promptlang.mixture_runner import run_from_command_line
    from promptlang.runner import run
    from promptlang.runtime.placement import PlacementError, launched_world
    from promptlang.stages.store import StoreError

    if not Path(args.path).is_file():
        raise UsageError(f"not a spec file: {args.path}")
    first = launched_world()[0] == 0
    if args.quiet or not first:
        quiet_transformers()
    try:
        results = run_from_command_line(args) or run(Path(args.path), args.out, args.overrides, args.quiet,
                                                     args.stages, args.force, args.device, args.precision)
    except (OverrideError, StoreError, OutputError, PlacementError) as error:
        raise UsageError(str(error)) from None
    if first:
        print(results.table())
    return EXIT_OK


def _prepared(args: argparse.Namespace):
    from promptlang.language.overrides import OverrideError
    from promptlang.runner import prepare
    from promptlang.runtime.placement import PlacementError, planned

    if not Path(args.path).is_file():
        raise UsageError(f"not a spec file: {args.path}")
    quiet_transformers()
    try:
        where = planned(getattr(args, "device", None), getattr(args, "precision", None))
        return prepare(Path(args.path), args.overrides, where=where)
    except (OverrideError, PlacementError) as error:
        raise UsageError(str(error)) from None


def _plan(args: argparse.Namespace) -> int:
    from promptlang.mixture_runner import describe_mixture, is_mixture_file
    from promptlang.output.render import describe_plan

    if is_mixture_file(Path(args.path)) and not args.json:
        print(describe_mixture(Path(args.path)))
    else:
        prepared = _prepared(args)
        print(prepared.plan.model_dump_json(indent=2) if args.json else describe_plan(prepared))
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from promptlang.output.render import render_examples

    prepared = _prepared(args)
    print(render_examples(prepared, args.split, args.n))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from promptlang.language.datafiles import EXTENSIONS
    from promptlang.output.predictor import ArtifactError, load, predictions_tsv
    from promptlang.runtime.placement import PlacementError

    artifact, source = Path(args.artifact), Path(args.input)
    if not (artifact / "predictor.json").is_file():
        if (artifact / "metrics.json").is_file():
            raise UsageError(f"{artifact} holds no single model to predict with: a PET run keeps one only when it "
                             f"distils its ensemble (add a `distill {{ ... }}` block to `method`); a mixture keeps one per "
                             f"task: predict with DIR/TASK")
        raise UsageError(f"not a `promptlang run` output directory: {artifact}")
    fmt = EXTENSIONS.get(source.suffix.lower())
    if source.is_symlink() and not source.exists():
        raise UsageError(f"cannot read {source}: it is a symbolic link to nothing (or to itself)")
    if not source.is_file() or fmt is None:
        raise UsageError(f"cannot read {source}: give a .tsv, .csv or .jsonl file")
    quiet_transformers()
    try:
        predictor = load(artifact, device=args.device, precision=args.precision)
    except (ArtifactError, PlacementError) as error:
        raise UsageError(str(error)) from None
    rows = input_rows(source, fmt)
    columns = predictor.session.spec.data.text
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise UsageError(f"{source} has no column `{missing[0]}` (the spec's text columns: {', '.join(columns)})")
    text = predictions_tsv(columns, predictor.labels, rows, predictor.predict(rows))
    if args.output:
        try:
            write_atomically(Path(args.output), text)
        except OSError as error:
            raise UsageError(f"cannot write {args.output}: {error.strerror or error}") from None
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from promptlang.language.spec import Spec

    print(json.dumps(Spec.model_json_schema(), indent=2))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
