"""Formatting: the buffer through `promptlang fmt`'s printer, as one edit; a buffer with syntax errors gets none."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from promptlang.language.fmt import format_source
from promptlang.language.source import Source
from promptlang.lsp.positions import end_of


def format_edits(source: Source, codec: PositionCodec) -> list[types.TextEdit]:
    """The edits that make a buffer what `promptlang fmt` writes: none when it is formatted already or
    does not parse (its diagnostics say why)."""
    formatted, _ = format_source(source)
    if formatted is None or formatted == source.text:
        return []
    whole = types.Range(start=types.Position(line=0, character=0), end=end_of(source, codec))
    return [types.TextEdit(range=whole, new_text=formatted)]
