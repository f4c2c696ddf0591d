"""Data files: TSV, CSV and JSON lines read strictly, one example per line, every problem located."""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter, methodcaller
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.data_rows import (BOM, JSON_ROW_HINT, BadRow, DataFileError, csv_row, json_row,
                                           no_field_limit, os_error, parse_header, read_bytes, strip_newline,
                                           text_lines, tsv_row, unquote)

EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass
class Table:
    """A data file as read: its columns, its rows (line number, values) and the lines skipped."""

    columns: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def column(self, name: str) -> list[tuple[int, str]]:
        """(line, value) of one column for every row."""
        index = self.columns.index(name)
        return [(line, values[index]) for line, values in self.rows]

    def dicts(self) -> list[tuple[int, dict[str, str]]]:
        """Every row as (line, {column: value})."""
        return [(line, dict(zip(self.columns, values))) for line, values in self.rows]


def data_format(data: m.Data, relative: str) -> str | None:
    """The format of a data file: `format` if given, else from the extension."""
    if data.format:
        return data.format.value
    return EXTENSIONS.get(Path(relative).suffix.lower())


def label_values_hint(spec: m.Spec, values: list[str]) -> str:
    """How to map raw label values to the spec's labels."""
    example = ", ".join(f'"{v}"' for v in values[:2])
    return (f"map raw values to labels in `data`: `label_values {{ LABEL -> {example} }}`, one line per label; "
            f"the labels are: {', '.join(spec.labels)}")


def read_table(path: Path, fmt: str, name: str | None = None, skip_bad: bool = False) -> Table:
    """Every row of a data file, strictly: each non-blank line after the header is one row.

    Args:
        path: the file.
        fmt: `tsv`, `csv` or `jsonl`.
        name: how messages name the file (default: its file name).
        skip_bad: skip lines that do not parse (they are listed in `Table.skipped`) instead of failing.

    Returns:
        The table; TSV and CSV rows have one value per column, JSON rows one per key of the first line.

    Raises:
        DataFileError: the file cannot be read, its header is bad, or (unless `skip_bad`) a line is bad.
    """
    name = name or path.name
    lines = text_lines(read_bytes(path, name))
    header = parse_header(lines[:1], fmt, name)
    table = Table(header)
    parse = {"tsv": tsv_row, "csv": csv_row, "jsonl": json_row}[fmt]
    first = 1 if fmt == "jsonl" else 2  # a JSON-lines file has no header line: its first object names the keys
    with no_field_limit():
        for number in range(first, len(lines) + 1):
            line = lines[number - 1]
            if line == "" or (fmt == "jsonl" and isinstance(line, str) and not line.strip()):
                continue  # a blank line
            try:
                table.rows.append((number, parse(line, header)))
            except BadRow as error:
                if not skip_bad:
                    raise DataFileError(f"`{name}` line {number}: {error}", error.hint) from None
                table.skipped.append(number)
    return table


def column_values(path: Path, fmt: str, column: str, name: str | None = None, skip_bad: bool = False,
                  expected: tuple[str, ...] = ()) -> dict[str, int]:
    """The distinct values of one column, each with the first line that holds it; the file is read
    as strictly as `read_table` reads it (a clean TSV file takes a fast path, for `promptlang check`).

    Args:
        expected: the values the column should hold (the spec's labels): a TSV file of two columns
            holding only those is scanned fastest.

    Raises:
        DataFileError: as `read_table`, or the file has no such column.
    """
    name = name or path.name
    try:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, fmt, column, name, skip_bad, expected)
    except (OSError, ValueError):
        key = None
    if key not in _SCANNED:
        try:
            _SCANNED[key] = _column_values(path, fmt, column, name, skip_bad, expected)
        except DataFileError as error:
            _SCANNED[key] = error
        while len(_SCANNED) > 32:
            del _SCANNED[next(iter(_SCANNED))]
    found = _SCANNED[key] if key is not None else _SCANNED.pop(key)
    if isinstance(found, DataFileError):
        raise DataFileError(str(found), found.hint)
    return dict(found)


_SCANNED: dict[tuple | None, dict[str, int] | DataFileError] = {}  # a warm process (fuzz, an editor) scans once


def _column_values(path: Path, fmt: str, column: str, name: str, skip_bad: bool,
                   expected: tuple[str, ...]) -> dict[str, int]:
    data = read_bytes(path, name).removeprefix(BOM)
    fast = _tsv_column(data, column, expected) if fmt == "tsv" else None
    if fast is not None:
        return fast
    table = read_table(path, fmt, name, skip_bad)
    if column not in table.columns:
        raise DataFileError(f"`{name}` has no column `{column}`", f"its columns are: {', '.join(table.columns)}")
    values: dict[str, int] = {}
    for line, value in table.column(column):
        if value is None:
            raise DataFileError(f"`{name}` line {line} has no `{column}`", JSON_ROW_HINT)
        values.setdefault(value, line)
    return values


def _tsv_column(data: bytes, column: str, expected: tuple[str, ...]) -> dict[str, int] | None:
    """`column_values` of a TSV file in which every line is text with the header's number of fields
    (None for any other file: the strict reader then finds the problem)."""
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        return None
    if "\0" in text or "\n\n" in text or not text.strip("\n"):
        return None
    head, _, body = text.partition("\n")
    header = [unquote(value) for value in head.split("\t")]
    if column not in header or len(set(header)) != len(header):
        return None
    body = "\n" + body.removesuffix("\n") + "\n"  # every row between two line ends
    return _two_columns(body, header.index(column), len(header), expected) or _split_column(body, header, column)


def _two_columns(body: str, index: int, width: int, expected: tuple[str, ...]) -> dict[str, int] | None:
    """The fastest scan, for the usual file (a label column and a text column, every label expected):
    counting `\\nLABEL\\t` (or `\\tLABEL\\n`) accounts for every row, one tab each."""
    rows = body.count("\n") - 1
    if width != 2 or not expected or body.count("\t") != rows:
        return None
    needles = {value: f"\n{value}\t" if index == 0 else f"\t{value}\n" for value in expected}
    if sum(body.count(needle) for needle in needles.values()) != rows:
        return None
    found = {value: body.find(needle) for value, needle in needles.items()}
    after = 2 if index == 0 else 1  # the header, and for `\\tLABEL\\n` the line end before the row
    lines = {value: body.count("\n", 0, at) + after for value, at in found.items() if at >= 0}
    return dict(sorted(lines.items(), key=itemgetter(1)))


def _split_column(body: str, header: list[str], column: str) -> dict[str, int] | None:
    rows = list(map(methodcaller("split", "\t"), body[1:-1].split("\n")))
    if set(map(len, rows)) - {len(header)}:
        return None
    first: dict[str, int] = {}  # value → its first line, in the order of those lines (one pass: linear)
    seen: set[str] = set()
    for line, value in enumerate(map(itemgetter(header.index(column)), rows), 2):
        if value not in seen:
            seen.add(value)
            first.setdefault(unquote(value), line)
    return first


def read_columns(path: Path, fmt: str, name: str | None = None) -> list[str]:
    """The column names on a data file's first line (only that line is read).

    Raises:
        DataFileError: the file cannot be opened, or its first line is not a header.
    """
    name = name or path.name
    try:
        with open(path, "rb") as handle:
            first = handle.readline()
    except OSError as error:
        raise os_error(error, name) from None
    return parse_header([strip_newline(first.removeprefix(BOM))] if first else [], fmt, name)


def read_rows(path: Path, fmt: str, name: str | None = None) -> list[dict[str, str]]:
    """All rows of a data file as dicts of strings (for `promptlang predict`).

    Raises:
        DataFileError: as `read_table`.
    """
    return [row for _, row in read_table(path, fmt, name).dicts()]
