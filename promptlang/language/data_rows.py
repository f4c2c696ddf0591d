"""Data files line by line: bytes into lines, the header into column names, each line into one row's fields."""

from __future__ import annotations

import csv
import errno
import json
from contextlib import contextmanager
from pathlib import Path

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


# ---------------------------------------------------------------- bytes and lines


def read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes; an OS error becomes a `DataFileError` that names the file as `name`."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise os_error(error, name) from None


def os_error(error: OSError, name: str) -> DataFileError:
    """The `DataFileError` for a file that cannot be opened (a symbolic-link loop said plainly)."""
    if error.errno == errno.ELOOP:
        return DataFileError(f"cannot read `{name}`: it is a symbolic link that leads back to itself",
                             "point the link at a file")
    return DataFileError(f"cannot read `{name}`: {error.strerror or error}")


def text_lines(data: bytes) -> list[str | BadRow]:
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


def strip_newline(line: bytes) -> bytes:
    """One line of bytes without its `\\n` or `\\r\\n`."""
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
def no_field_limit():
    """Lift csv's 128 KiB field limit while reading (a long text is a text, not an error)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


# ---------------------------------------------------------------- header


def parse_header(lines: list[str | bytes | BadRow], fmt: str, name: str) -> list[str]:
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
        return [unquote(value) for value in text.split("\t")]
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as error:
        raise BadRow(_csv_problem(error), QUOTE_HINT) from None


def unquote(value: str) -> str:
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


def tsv_row(text: str | BadRow, header: list[str]) -> list[str]:
    """The fields of one TSV line, one per column (a field wholly in quotes is unquoted).

    Raises:
        BadRow: the line is not text, or has another number of fields than the header.
    """
    if isinstance(text, BadRow):
        raise text
    values = text.split("\t")
    if len(values) != len(header):
        return _fields(values, header, "tsv")
    return [unquote(value) for value in values] if '"' in text else values


def csv_row(text: str | BadRow, header: list[str]) -> list[str]:
    """The fields of one CSV line, one per column.

    Raises:
        BadRow: the line is not text, its quoting is broken, or it has another number of fields.
    """
    if isinstance(text, BadRow):
        raise text
    return _fields(_split(text, "csv"), header, "csv")


def _fields(values: list[str], header: list[str], fmt: str) -> list[str]:
    if len(values) != len(header):
        raise BadRow(f"{len(values)} field{'s' if len(values) != 1 else ''}, but the header has {len(header)}",
                     FIELDS_HINTS[fmt])
    return values


def json_row(text: str | BadRow, header: list[str]) -> list[str]:
    """The values of one JSON-lines object for the header's keys (None for a key it lacks).

    Raises:
        BadRow: the line is not text, not valid JSON, or not an object.
    """
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
