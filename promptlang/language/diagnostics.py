"""Diagnostics: located errors, warnings and notes, and how they are shown."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from enum import Enum

from promptlang.language.source import Source, Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec, at one place, with an optional hint."""

    severity: Severity
    message: str
    span: Span
    hint: str | None = None

    def to_dict(self) -> dict:
        return {
            "severity": self.severity.value,
            "file": printable(self.span.file),
            **self.span.to_dict(),
            "message": self.message,
            "hint": self.hint,
        }


# Invisible characters that reorder or hide text on a terminal (bidirectional overrides, zero widths).
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF,
              *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def shown_char(char: str) -> str:
    """A character as diagnostics show it: itself, or an escape such as `\\x1b` or `\\u202e`."""
    code = ord(char)
    if char == "\t" or not (code in _INVISIBLE or unicodedata.category(char) in ("Cc", "Cs")):
        return char
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control characters, lone surrogates and invisible characters escaped."""
    if text.isprintable():
        return text
    return "".join(shown_char(c) for c in text)


@dataclass
class Diagnostics:
    """Diagnostics collected over one or more files, with the sources to show them.

    Messages and hints are stored with control characters escaped (`printable`), so no
    output format can carry a terminal escape or a character that cannot be printed.
    """

    items: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._seen: set[Diagnostic] = set(self.items)

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.ERROR, message, span, hint))

    def warning(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.WARNING, message, span, hint))

    def note(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.NOTE, message, span, hint))

    def add(self, diagnostic: Diagnostic) -> None:
        """Add a diagnostic unless the same one is already here."""
        hint = None if diagnostic.hint is None else printable(diagnostic.hint)
        diagnostic = Diagnostic(diagnostic.severity, printable(diagnostic.message), diagnostic.span, hint)
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self.items.append(diagnostic)

    def extend(self, other: "Diagnostics") -> None:
        self.sources.update(other.sources)
        for item in other.items:
            self.add(item)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def sorted(self) -> list[Diagnostic]:
        order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
        return sorted(self.items, key=lambda d: (d.span.file, order[d.severity], d.span.line, d.span.col))

    def __bool__(self) -> bool:
        return bool(self.items)


class SpecError(Exception):
    """Raised by the API when a spec has errors; carries every diagnostic."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        super().__init__(render_text(diagnostics))


def render_one(diagnostic: Diagnostic, source: Source | None) -> str:
    """Show one diagnostic the way compilers do: header, location, source line, caret, hint.

    The source line is shown only for promptlang files (`Source.is_spec`): a file that is not
    a spec (an import or a path that names `/etc/passwd`) is named, never echoed.
    """
    span = diagnostic.span
    file = printable(span.file)
    lines = [f"{diagnostic.severity.value}: {diagnostic.message}", f"  --> {file}:{span.line}:{span.col}"]
    text = source.line_text(span.line) if source is not None and source.is_spec else ""
    if text:
        gutter = " " * len(str(span.line))
        shown, caret = _excerpt(text, span)
        lines += [f"{gutter} |", f"{span.line} | {shown}", f"{gutter} | {caret}"]
    if diagnostic.hint:
        lines.append(f"{' ' * len(str(span.line))} = help: {diagnostic.hint}")
    return "\n".join(lines)


SHOWN_WIDTH = 120  # characters of a long source line shown around the error


def _excerpt(text: str, span: Span) -> tuple[str, str]:
    """The source line as shown (escaped, cut to `SHOWN_WIDTH` around the span) and its `^^^` line."""
    col = min(span.col, len(text) + 1)
    end = max(span.end_col if span.end_line == span.line else len(text) + 1, col + 1)
    start = max(min(col - 1 - SHOWN_WIDTH // 3, len(text) - SHOWN_WIDTH), 0)
    stop = start + SHOWN_WIDTH
    head, tail = ("..." if start else ""), ("..." if stop < len(text) else "")
    before, under = head + text[start : col - 1], text[col - 1 : min(end - 1, stop)]
    pad = "".join("\t" if c == "\t" else " " * _width(c) for c in before)
    return head + printable(text[start:stop]) + tail, pad + "^" * max(sum(map(_width, under)), 1)


def _width(char: str) -> int:
    """Terminal columns a character takes once shown: 2 for wide (CJK) ones, 0 for combining marks."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else len(shown_char(char))


def summary(diagnostics: Diagnostics) -> str:
    """'2 errors, 1 warning' or 'no problems'."""
    parts = []
    for count, word in ((len(diagnostics.errors), "error"), (len(diagnostics.warnings), "warning")):
        if count:
            parts.append(f"{count} {word}{'s' if count != 1 else ''}")
    return ", ".join(parts) or "no problems"


def render_text(diagnostics: Diagnostics) -> str:
    """All diagnostics as text blocks, errors first within each file."""
    return "\n\n".join(render_one(d, diagnostics.sources.get(d.span.file)) for d in diagnostics.sorted())


def render_json(diagnostics: Diagnostics) -> str:
    """All diagnostics as one JSON document."""
    items = [d.to_dict() for d in diagnostics.sorted()]
    return json.dumps({"diagnostics": items, "errors": len(diagnostics.errors),
                       "warnings": len(diagnostics.warnings)}, indent=2, ensure_ascii=False)


def _github_escape(text: str, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def render_github(diagnostics: Diagnostics) -> str:
    """GitHub Actions workflow commands (`::error file=...::message`), one per line."""
    out = []
    for d in diagnostics.sorted():
        level = {"error": "error", "warning": "warning", "note": "notice"}[d.severity.value]
        s = d.span
        props = f"file={_github_escape(printable(s.file), True)},line={s.line},col={s.col},endLine={s.end_line},endColumn={s.end_col}"
        message = d.message + (f" (help: {d.hint})" if d.hint else "")
        out.append(f"::{level} {props},title=promptlang::{_github_escape(message)}")
    return "\n".join(out)
