"""The names a spec's text defines or reaches: its labels, its templates and verbalizers (with those of the files
it imports), and the columns of its data file's header."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptlang.language.check_context import SPLITS, header_of, is_file, safe_path
from promptlang.language.datafiles import EXTENSIONS
from promptlang.language.parser import unescape
from promptlang.language.reader import find_import, read_source
from promptlang.lsp.scan import Statement, Token, scan

MAX_IMPORT_DEPTH = 8  # imports followed, file within file


@dataclass
class Names:
    labels: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    verbalizers: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def string_value(token: Token) -> str | None:
    """The text of a finished string token, escapes resolved; None for another token."""
    if token.kind != "string" or not token.closed:
        return None
    quote = 3 if token.text.startswith('"""') else 1
    return unescape(token.text[quote:-quote])[0]


def names(text: str, directory: Path) -> Names:
    """The names a spec's text defines, reaches through its imports, and finds in its data file's header.

    Args:
        text: the spec as typed (it need not parse).
        directory: the spec's folder: imports and data files are relative to it, as the checker reads them.
    """
    found = Names()
    statements = scan(text).statements
    _definitions(statements, directory, found, (), 0)
    found.columns = columns(statements, directory)
    return found


def _definitions(statements: list[Statement], directory: Path, found: Names, seen: tuple, depth: int) -> None:
    for statement in statements:
        if statement.path or statement.key is None:
            continue
        second = statement.tokens[1] if len(statement.tokens) > 1 else None
        if statement.key == "labels":
            found.labels += [t.text for t in statement.tokens[1:] if t.kind == "name" and t.text not in found.labels]
        elif statement.key in ("template", "verbalizer") and second is not None and second.kind == "name":
            group = found.templates if statement.key == "template" else found.verbalizers
            if second.text not in group:
                group.append(second.text)
        elif statement.key == "import" and second is not None and depth < MAX_IMPORT_DEPTH:
            _imported(string_value(second), directory, found, seen, depth)


def _imported(name: str | None, directory: Path, found: Names, seen: tuple, depth: int) -> None:
    path, problem = find_import(directory, name, seen) if name else (None, None)
    if path is None or problem is not None:
        return
    try:
        source, _ = read_source(path)
    except OSError:
        return
    if source is not None:
        _definitions(scan(source.text).statements, path.parent, found, seen + (path,), depth + 1)


def columns(statements: list[Statement], directory: Path) -> list[str]:
    """The columns of the first data file named in `data` whose header can be read (as `check` finds them)."""
    data = {statement.key: statement.items()[0] for statement in statements
            if statement.path == (("data", None),) and statement.key and statement.items()}
    if "dataset" in data:
        return []
    written = data.get("format")
    fmt = written[0].text if written and written[0].kind == "name" else None
    for split in SPLITS:
        relative = string_value(data[split][0]) if data.get(split) else None
        path = safe_path(directory / relative) if relative else None
        kind = fmt or (EXTENSIONS.get(Path(relative).suffix.lower()) if relative else None)
        if path is not None and kind in EXTENSIONS.values() and is_file(path):
            header = header_of(path, kind, relative)
            if header is not None:
                return header
    return []
