"""Diagnostics as you type: the buffer's text through the checker (`promptlang.analyze`), each problem turned
into an editor diagnostic with the same message and hint that `promptlang check` prints."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls import uris
from pygls.workspace.position_codec import PositionCodec

from promptlang.api import analyze
from promptlang.language.diagnostics import Diagnostic, Severity
from promptlang.language.source import Source, Span
from promptlang.lsp.positions import span_range

SOURCE = "promptlang"
SEVERITIES = {Severity.ERROR: types.DiagnosticSeverity.Error, Severity.WARNING: types.DiagnosticSeverity.Warning,
              Severity.NOTE: types.DiagnosticSeverity.Information}


def document_source(text: str, uri: str) -> Source:
    """The `Source` of an editor's buffer: its text (not the file on disk) at the document's path, so that
    imports and data files resolve against the document's folder; an unsaved, untitled buffer has none."""
    path = uris.to_fs_path(uri) if uri.startswith("file:") else None
    return Source(text.removeprefix("\ufeff"), path or "<string>")


def message(diagnostic: Diagnostic) -> str:
    """The text an editor shows: `check`'s message, and its hint on a line of its own."""
    return diagnostic.message + (f"\nhelp: {diagnostic.hint}" if diagnostic.hint else "")


def check(source: Source, codec: PositionCodec) -> list[types.Diagnostic]:
    """The problems `promptlang check` finds in a buffer, as editor diagnostics on that buffer.

    A problem inside an imported file is shown on the `import` that reads it (or on the header), with the
    place in that file named in the message and in `relatedInformation`.
    """
    found = analyze(source).diagnostics
    return [_convert(item, source, codec) for item in found.sorted()]


def _convert(item: Diagnostic, source: Source, codec: PositionCodec) -> types.Diagnostic:
    span = item.span
    related = None
    text = message(item)
    if span.file != source.path:
        related = [types.DiagnosticRelatedInformation(
            location=types.Location(uri=_uri(span.file), range=_plain_range(span)), message=item.message)]
        text = f"{span.file}:{span.line}:{span.col}: {text}"
        span = _import_span(source, span.file)
    return types.Diagnostic(range=span_range(source, span, codec), message=text, severity=SEVERITIES[item.severity],
                            source=SOURCE, related_information=related)


def _uri(path: str) -> str:
    return uris.from_fs_path(str(Path(path).resolve())) or path


def _plain_range(span: Span) -> types.Range:
    """A span in a file the editor may not have open: columns counted in characters."""
    return types.Range(start=types.Position(line=span.line - 1, character=span.col - 1),
                       end=types.Position(line=span.end_line - 1, character=span.end_col - 1))


def _import_span(source: Source, file: str) -> Span:
    """Where a problem in another file is shown: the `import` line that names that file, else line 1."""
    target = Path(file).name
    for number in range(1, source.text.count("\n") + 2):
        line = source.line_text(number)
        if line.lstrip().startswith("import") and target in line:
            return Span(source.path, number, 1, number, len(line) + 1)
    first = source.line_text(1)
    return Span(source.path, 1, 1, 1, len(first) + 1)
