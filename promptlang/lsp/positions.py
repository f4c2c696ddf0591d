"""Positions: a spec's 1-based line and column (in characters) and the editor's 0-based position (in the
code units the client counts: UTF-16 by default)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from promptlang.language.source import Source, Span


def position(source: Source, line: int, col: int, codec: PositionCodec) -> types.Position:
    """The editor's position of a 1-based (line, col) of `source`."""
    text = source.line_text(line)
    past_end = max(col - 1 - len(text), 0)  # a column after the line's last character (its line end)
    return types.Position(line=line - 1, character=codec.client_num_units(text[: col - 1]) + past_end)


def span_range(source: Source, span: Span, codec: PositionCodec) -> types.Range:
    """The editor's range of a span."""
    return types.Range(start=position(source, span.line, span.col, codec),
                       end=position(source, span.end_line, span.end_col, codec))


def offset(source: Source, where: types.Position, codec: PositionCodec) -> int:
    """The character offset in `source` of an editor's position (clamped to the text)."""
    lines = source.text.split("\n")
    if where.line >= len(lines):
        return len(source.text)
    units, col = 0, 0
    for char in lines[where.line]:
        if units >= where.character:
            break
        units += codec.client_num_units(char)
        col += 1
    return source.offset(where.line + 1, col + 1)


def end_of(source: Source, codec: PositionCodec) -> types.Position:
    """The editor's position just after the last character of `source`."""
    lines = source.text.split("\n")
    return types.Position(line=len(lines) - 1, character=codec.client_num_units(lines[-1]))
