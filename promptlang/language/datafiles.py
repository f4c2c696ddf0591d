"""Data files: TSV, CSV and JSON lines read strictly, one example per line, every problem located."""

from __future__ import annotations

import csv
import errno
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter, methodcaller
from pathlib import Path

from promptlang.language import spec as m

EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
HEADER_HINTS = {
    "jsonl": 'the first line of a JSON-lines file is an object: {"label": ..., "sentence": ...}',
    "tsv": "the first line holds the column names, separated by tabs: `label<TAB>sentence`",
    "csv": "the first line holds the column names, separated by commas: `label,sentence`",
}
QUOTE_HINT = ("an unbalanced quote is the usual cause: close it, or double a quote inside a quoted "
              "field (`\"\"`); a field that holds a line break cannot be read")
FIELDS_HINTS = {
    "tsv": "every line holds one value per column, separated by tabs; a tab inside a text adds a field "
           "(replace it with a space)",
    "csv": "every line holds one value per column; a value with a `,` in it must be quoted: `\"a, b\"`",
}
UTF8_HINT = "save the file as UTF-8 text"
JSON_ROW_HINT = 'each line of a JSON-lines file is one object, written on that line: {"label": ..., "sentence": ...}'
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, dropped from the start of each file


class DataFileError(ValueError):
    """A data file that cannot be read: the message names the file and the line."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class BadRow(ValueError):
    """One line that does not parse as a row (the reader adds the file and the line)."""

    def __init__(self, problem: str, hint: str | None = None):
        super().__init__(problem)
        self.hint = hint


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
    lines = _lines(_read_bytes(path, name))
    header = _header(lines[:1], fmt, name)
    table = Table(header)
    parse = {"tsv": _tsv_row, "csv": _csv_row, "jsonl": _json_row}[fmt]
    first = 1 if fmt == "jsonl" else 2  # a JSON-lines file has no header line: its first object names the keys
    with _no_field_limit():
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
    data = _read_bytes(path, name).removeprefix(BOM)
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
    header = [_unquote(value) for value in head.split("\t")]
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
            first.setdefault(_unquote(value), line)
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
        raise _os_error(error, name) from None
    return _header([_strip_newline(first.removeprefix(BOM))] if first else [], fmt, name)


def read_rows(path: Path, fmt: str, name: str | None = None) -> list[dict[str, str]]:
    """All rows of a data file as dicts of strings (for `promptlang predict`).

    Raises:
        DataFileError: as `read_table`.
    """
    return [row for _, row in read_table(path, fmt, name).dicts()]


# ---------------------------------------------------------------- bytes and lines


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _os_error(error, name) from None


def _os_error(error: OSError, name: str) -> DataFileError:
    if error.errno == errno.ELOOP:
        return DataFileError(f"cannot read `{name}`: it is a symbolic link that leads back to itself",
                             "point the link at a file")
    return DataFileError(f"cannot read `{name}`: {error.strerror or error}")


def _lines(data: bytes) -> list[str | BadRow]:
    """The physical lines (split at `\\n`, a `\\r` before it dropped), without a leading BOM.

    A line that is not text (not UTF-8, or holding a NUL byte) is a `BadRow` in the list.
    """
    data = data.removeprefix(BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        return [_decode(line) for line in _split_lines(data)]
    return _split_lines(text)


def _split_lines(data):
    """Lines of bytes or of text, without their line ends."""
    newline, carriage = ("\n", "\r") if isinstance(data, str) else (b"\n", b"\r")
    lines = data.split(newline)
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line
    return [line[:-1] if line.endswith(carriage) else line for line in lines]


def _strip_newline(line: bytes) -> bytes:
    line = line.removesuffix(b"\n")
    return line.removesuffix(b"\r")


def _decode(raw: bytes) -> str | BadRow:
    """One line as text, or the problem that keeps it from being text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return BadRow(f"byte 0x{raw[error.start]:02x} (at byte {error.start + 1} of the line) is not UTF-8",
                      UTF8_HINT)
    if "\0" in text:
        return BadRow("the line holds a NUL byte", "the file may be UTF-16 or binary; " + UTF8_HINT)
    return text


@contextmanager
def _no_field_limit():
    """Lift csv's 128 KiB field limit while reading (a long text is a text, not an error)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


# ---------------------------------------------------------------- header


def _header(lines: list[str | bytes | BadRow], fmt: str, name: str) -> list[str]:
    """The column names on the first line (JSON lines: the keys of the first object)."""
    if not lines:
        raise DataFileError(f"`{name}` is empty", HEADER_HINTS[fmt])
    try:
        text = _decode(lines[0]) if isinstance(lines[0], bytes) else lines[0]
        if isinstance(text, BadRow):
            raise text
        if not text.strip():
            raise DataFileError(f"`{name}` starts with a blank line, not the column names", HEADER_HINTS[fmt])
        columns = _json_header(text, name) if fmt == "jsonl" else _split(text, fmt)
    except BadRow as error:
        raise DataFileError(f"`{name}` line 1: {error}", error.hint) from None
    seen: set[str] = set()
    twice = next((c for c in columns if c in seen or seen.add(c)), None)
    if twice is not None:
        raise DataFileError(f"`{name}` line 1: the column `{twice}` is named twice", "give each column its own name")
    return columns


def _json_header(text: str, name: str) -> list[str]:
    try:
        first = json.loads(text)
    except ValueError as error:
        raise BadRow(f"not valid JSON ({_json_problem(error)})", HEADER_HINTS["jsonl"]) from None
    if not isinstance(first, dict):
        raise DataFileError(f"cannot read the column names of `{name}`", HEADER_HINTS["jsonl"])
    return list(first)


# ---------------------------------------------------------------- rows


def _split(text: str, fmt: str) -> list[str]:
    """The fields of one line: TSV splits at tabs, CSV reads standard quoting strictly."""
    if fmt == "tsv":
        return [_unquote(value) for value in text.split("\t")]
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as error:
        raise BadRow(_csv_problem(error), QUOTE_HINT) from None


def _unquote(value: str) -> str:
    """A TSV field written whole in CSV quotes (inner quotes doubled) without them; other quotes are text."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"' and '"' not in value[1:-1].replace('""', ""):
        return value[1:-1].replace('""', '"')
    return value


def _csv_problem(error: csv.Error) -> str:
    text = str(error)
    if "unexpected end of data" in text:
        return "a quoted field is not closed on its line (a row cannot span lines)"
    if "expected after" in text:
        return "a quoted field is followed by more text before the next `,`"
    if "new-line character" in text:
        return "the line holds a lone carriage return (`\\r`)"
    return f"it is not valid CSV ({text})"


def _tsv_row(text: str | BadRow, header: list[str]) -> list[str]:
    if isinstance(text, BadRow):
        raise text
    values = text.split("\t")
    if len(values) != len(header):
        return _fields(values, header, "tsv")
    return [_unquote(value) for value in values] if '"' in text else values


def _csv_row(text: str | BadRow, header: list[str]) -> list[str]:
    if isinstance(text, BadRow):
        raise text
    return _fields(_split(text, "csv"), header, "csv")


def _fields(values: list[str], header: list[str], fmt: str) -> list[str]:
    if len(values) != len(header):
        raise BadRow(f"{len(values)} field{'s' if len(values) != 1 else ''}, but the header has {len(header)}",
                     FIELDS_HINTS[fmt])
    return values


def _json_row(text: str | BadRow, header: list[str]) -> list[str]:
    if isinstance(text, BadRow):
        raise text
    try:
        row = json.loads(text)
    except ValueError as error:
        raise BadRow(f"not valid JSON ({_json_problem(error)})", JSON_ROW_HINT) from None
    if not isinstance(row, dict):
        raise BadRow(f"a JSON {_json_kind(row)}, not an object", JSON_ROW_HINT)
    return [_json_value(row[key]) if key in row else None for key in header]


def _json_value(value) -> str:
    return "" if value is None else str(value)


def _json_kind(value) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null")


def _json_problem(error: ValueError) -> str:
    message = getattr(error, "msg", str(error))
    column = getattr(error, "colno", None)
    message = message.removesuffix(":").removesuffix(" at")  # json's "Unterminated string starting at"
    return f"{message} at column {column}" if column else message
