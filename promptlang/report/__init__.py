"""`promptlang report`: a self-contained HTML page of one or several run directories (docs/report.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from promptlang.report.reading import ReportError, read_run, read_runs

REPORT = "report.html"  # the page `promptlang run` leaves in its output directory


def report(directories: list[Path], out: Path) -> Path:
    """Write the report page of some run directories to `out`.

    Args:
        directories: `promptlang run` output directories; several are shown side by side.
        out: the HTML file to write.

    Returns:
        The path written.

    Raises:
        ReportError: a directory is no run directory.
    """
    from promptlang.report.page import write_report

    return write_report([run for d in directories for run in read_runs(Path(d))], out)


def write_into(directory: Path, final: Path) -> None:
    """Leave `report.html` in a run's (or a mixture's) finished output directory (called by `run` before the directory moves to
    its place, `final`, which the page names). The run's results are written already: a report that fails says
    so on stderr and is left out."""
    from promptlang.report.page import write_report

    if os.environ.get("PROMPTLANG_REPORT", "on") == "off":  # (sweeps, and the tests that are not about it)
        return
    try:
        runs = read_runs(directory)
        for run in runs:  # the page names the folder's final place, not the one it is written in
            run.path = final / run.path.relative_to(directory)
            run.name = final.name if run.path == final else run.name
        write_report(runs, directory / REPORT)
    except Exception as error:  # noqa: BLE001 — the report is an extra: it never fails the run it describes
        print(f"promptlang: warning: no {REPORT} written ({type(error).__name__}: {error}); "
              f"`promptlang report DIR` makes it later", file=sys.stderr)


__all__ = ["REPORT", "ReportError", "read_run", "read_runs", "report", "write_into"]
