"""Reading spec files from disk: a file that is not UTF-8 is a located error, and an import that names no
readable file says why."""

from __future__ import annotations

from pathlib import Path

from promptlang.language.diagnostics import Diagnostics
from promptlang.language.source import Source, Span, is_link_loop
from promptlang.language.suggest import suggest_file


def read_source(path: str | Path):
    """Read a spec file; a file that is not UTF-8 gives a located error instead.

    Returns:
        (Source or None, Diagnostics).
    """
    data = Path(path).read_bytes()
    try:
        return Source(data.decode("utf-8-sig"), str(path)), Diagnostics()
    except UnicodeDecodeError as error:
        shown = Source(data.decode("utf-8", errors="replace"), str(path))
        line = data[: error.start].count(b"\n") + 1
        col = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        diagnostics = Diagnostics(sources={shown.path: shown})
        diagnostics.error(f"the file is not UTF-8 text (byte 0x{data[error.start]:02x})",
                          Span(shown.path, line, col, line, col + 1), "save the file as UTF-8")
        return None, diagnostics


def find_import(directory: Path, name: str, seen: tuple) -> tuple[Path | None, tuple[str, str] | None]:
    """The file `import "name"` reads (resolved), or why it cannot: (message, hint).

    Args:
        directory: the importing spec's folder.
        name: the path the import names, relative to `directory`.
        seen: the resolved files on the chain of imports that led here (an import cycle).
    """
    target = directory / name
    path = _importable_path(target)
    if is_link_loop(target):
        return None, (f"cannot import `{name}`: its path is a loop of symbolic links", "point the link at a real file")
    if path in seen:
        cycle = " → ".join(p.name for p in (*seen[seen.index(path):], path))
        return None, (f"import cycle: {cycle}", "remove one of the imports in the cycle")
    if path is None and _exists(target):
        return None, (f"cannot import `{name}`: it is not a regular file", "import a spec file")
    if path is None:
        siblings = _names_in(directory / Path(name).parent)
        return None, (f"cannot import `{name}`: no such file",
                      suggest_file(Path(name).name, siblings) or f"paths are relative to the spec's folder: {directory}")
    return path, None


def _importable_path(path: Path) -> Path | None:
    """The resolved path of an existing file, or None (missing, a folder, a symbolic-link loop, or not a
    possible name)."""
    try:
        path = path.resolve()
        return path if path.is_file() else None
    except (OSError, ValueError, RuntimeError):  # RuntimeError: Python 3.11's resolve() on a symlink loop
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _names_in(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except (OSError, ValueError):
        return []
