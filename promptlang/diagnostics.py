"""Diagnostics: located errors, warnings and notes, and how they are shown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

from promptlang.source import Source, Span


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
            "file": self.span.file,
            **self.span.to_dict(),
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class Diagnostics:
    """Diagnostics collected over one or more files, with the sources to show them."""

    items: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.ERROR, message, span, hint))

    def warning(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.WARNING, message, span, hint))

    def note(self, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(Severity.NOTE, message, span, hint))

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic not in self.items:
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
    """Show one diagnostic the way compilers do: header, location, source line, caret, hint."""
    span = diagnostic.span
    lines = [f"{diagnostic.severity.value}: {diagnostic.message}", f"  --> {span.file}:{span.line}:{span.col}"]
    text = source.line_text(span.line) if source else ""
    if text:
        gutter = " " * len(str(span.line))
        width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
        lines += [f"{gutter} |", f"{span.line} | {text}", f"{gutter} | {' ' * (span.col - 1)}{'^' * max(width, 1)}"]
    if diagnostic.hint:
        lines.append(f"{' ' * len(str(span.line))} = help: {diagnostic.hint}")
    return "\n".join(lines)


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
        props = f"file={_github_escape(s.file, True)},line={s.line},col={s.col},endLine={s.end_line},endColumn={s.end_col}"
        message = d.message + (f" (help: {d.hint})" if d.hint else "")
        out.append(f"::{level} {props},title=promptlang::{_github_escape(message)}")
    return "\n".join(out)
