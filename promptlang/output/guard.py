"""The output directory of a run: which folders a run may replace, its marker, and the swap that replaces it.

A run writes `.NAME.partial-PID` beside its target and swaps it in with two renames (the old
directory goes to `.NAME.old-PID` in between). A run killed between the renames leaves the
old results only in `.NAME.old-PID`: the next run puts them back. Leftovers of runs whose
process is gone are removed, as the stage store removes its partial stages.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from promptlang.stages.store import alive
from promptlang.version import __version__

MARKER = ".promptlang-output"


@dataclass
class OutputError(Exception):
    """A target the run must not replace (found before any work)."""

    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.message + (f"; {self.hint}" if self.hint else "")


def resolve(path: Path) -> Path:
    """`path` made absolute with its symlinks followed.

    Raises:
        OutputError: a symlink loop, or a name no file can have.
    """
    try:
        path = Path(path).expanduser()
    except RuntimeError:  # no home directory to expand `~` to
        raise OutputError(f"cannot use {path} as the output directory: `~` names no home directory") from None
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11: "Symlink loop from ..."
        raise OutputError(f"cannot use {path} as the output directory: it is a symlink loop") from None
    except (OSError, ValueError) as error:
        raise OutputError(f"cannot use {path} as the output directory: {getattr(error, 'strerror', None) or error}")


def read_marker(directory: Path) -> dict | None:
    """The marker of a promptlang output directory, {} when it cannot be read, None when there is none."""
    path = directory / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def write_marker(directory: Path, spec_path: Path) -> None:
    """Mark `directory` as a promptlang output directory written for `spec_path`."""
    marker = {"promptlang": __version__, "spec": str(resolve(spec_path)),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def check_target(target: Path, spec_path: Path, inputs: list[Path], force: bool = False,
                 log=lambda text: None) -> Path:
    """The resolved target, once it is clear that a run may replace it.

    A target may be replaced when it does not exist, is an empty folder, or is an output
    directory of this spec (of another spec: with `force`).

    Args:
        target: the output directory, as given.
        spec_path: the spec being run.
        inputs: every path the run reads (spec, imports, data, model); no target may hold one.
        force: replace an output directory that another spec wrote.
        log: where to say that results a killed run left aside were put back (see `recover`).

    Raises:
        OutputError: the target must not be replaced.
    """
    where = resolve(target)
    _refuse_special(target, where)
    _refuse_inputs(target, where, inputs)
    recover(where, log)
    if where.exists() and not where.is_dir():
        raise OutputError(f"the output directory {target} is a file", "choose a folder with --out DIR")
    if not where.exists():
        _parent_writable(target, where)
        return where
    if where == resolve(Path.cwd()) and read_marker(where) is None:
        raise OutputError(f"the output directory {target} is the current directory",
                          "choose a new folder, like --out results/NAME")
    _refuse_foreign(target, where, spec_path, force)
    return where


def _refuse_special(target: Path, where: Path) -> None:
    if where == Path(where.anchor):
        raise OutputError(f"the output directory {target} is the filesystem root",
                          "choose a new folder, like --out results/NAME")
    if where == _home():
        raise OutputError(f"the output directory {target} is your home directory",
                          "choose a new folder, like --out results/NAME")


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, OSError, KeyError):  # no home directory
        return None


def _refuse_inputs(target: Path, where: Path, inputs: list[Path]) -> None:
    for path in inputs:
        try:
            held = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop holds nothing
            continue
        if held == where or where in held.parents:
            raise OutputError(f"the output directory {target} holds {path}, which the run reads: "
                              "replacing it would delete it", "choose a new folder, like --out results/NAME")


def _parent_writable(target: Path, where: Path) -> None:
    existing = next(p for p in where.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create the output directory {target}: {existing} is not a writable folder")


def _refuse_foreign(target: Path, where: Path, spec_path: Path, force: bool) -> None:
    try:
        empty = next(where.iterdir(), None) is None
    except OSError as error:
        raise OutputError(f"cannot read the output directory {target}: {error.strerror or error}") from None
    marker = read_marker(where)
    if empty:
        return
    if marker is None:
        raise OutputError(f"the output directory {target} is not empty and no promptlang run wrote it "
                          f"(it has no {MARKER} file); promptlang replaces only empty folders and its own "
                          "output directories, even with --force", "choose a new folder, like --out results/NAME")
    written_by = marker.get("spec")
    if written_by == str(resolve(spec_path)) or force:
        return
    by = f"another spec ({written_by})" if isinstance(written_by, str) else "an unknown spec (its marker is unreadable)"
    raise OutputError(f"the output directory {target} holds the results of {by}",
                      "add --force to replace them, or choose another folder with --out DIR")


# ---------------------------------------------------------------- the swap and its recovery


def _leftovers(target: Path) -> list[tuple[Path, str, int | None]]:
    """(path, "partial" or "old", pid) of every `.NAME.partial-*` / `.NAME.old-*` beside `target`."""
    found = []
    if not target.parent.is_dir():
        return found
    for path in target.parent.iterdir():
        for kind in ("partial", "old"):
            prefix = f".{target.name}.{kind}-"
            if path.name.startswith(prefix):
                pid = path.name[len(prefix):]
                found.append((path, kind, int(pid) if pid.isdigit() else None))
    return found


def recover(target: Path, log) -> None:
    """Put back results a killed swap left in `.NAME.old-PID`; remove what dead runs left beside `target`."""
    dead = [(path, kind) for path, kind, pid in _leftovers(target) if pid is None or not alive(pid)]
    olds = sorted((p for p, kind in dead if kind == "old"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        os.replace(olds[-1], target)
        log(f"  restored {target} from {olds[-1].name}, left by a run that was stopped while replacing it")
    for path, _ in dead:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh `.NAME.partial-PID` folder beside `target`."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    return staging


def swap(staging: Path, target: Path) -> None:
    """Move the finished `staging` folder to `target`, replacing what is there (see `recover`)."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
