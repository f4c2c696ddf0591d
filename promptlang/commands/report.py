"""`promptlang report DIR [DIR ...]`: one self-contained HTML page of one run directory, or of several side by
side (docs/report.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(commands) -> None:
    """Register `report` on the command line's subcommands."""
    report = commands.add_parser(
        "report", help="write an HTML page with a run's results and plots",
        description="Write one self-contained HTML page (plots embedded, no network needed) of `promptlang run` "
                    "output directories: the results table, scores per model, the confusion matrix, calibration, "
                    "training curves, iPET's generations, a search's ranking; several directories side by side.")
    report.add_argument("directories", nargs="+", metavar="DIR", help="output directories of `promptlang run`")
    report.add_argument("--out", metavar="FILE",
                        help="the page to write (default: DIR/report.html for one directory; report.html in the "
                             "current directory for several)")
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the page and print its path. Exit 0, or a usage error (2)."""
    from promptlang.commands.usage import EXIT_OK, UsageError
    from promptlang.report import REPORT, ReportError, read_runs

    directories = [Path(d) for d in args.directories]
    try:
        runs = [run for d in directories for run in read_runs(d)]
    except ReportError as error:
        raise UsageError(str(error)) from None
    out = Path(args.out) if args.out else directories[0] / REPORT if len(directories) == 1 else Path(REPORT)
    if out.is_dir():
        raise UsageError(f"cannot write {out}: it is a directory (give --out a file name, like {out / REPORT})")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: no such directory: {out.parent}")
    try:
        from promptlang.report.page import write_report
    except ModuleNotFoundError as error:  # matplotlib comes with the train extra
        raise UsageError(f"the report needs {error.name}: pip install 'promptlang[train]'") from None
    try:
        print(write_report(runs, out))
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    return EXIT_OK
