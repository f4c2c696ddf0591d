"""Hover help: a setting's type, default and description, read from the spec model (the one source of
help text, which `promptlang schema` and the checker's hints show too)."""

from __future__ import annotations

from promptlang.lsp import catalog
from promptlang.lsp.scan import cursor, word_at


def hover_text(text: str, offset: int) -> tuple[str, tuple[int, int]] | None:
    """The help for the name under the cursor, with its (start, end) offsets; None for no help.

    A statement's first word is a setting of the enclosing block (or a top-level statement); the first word
    of a named value (`mlm` in `loss ce 0.9, mlm 0.1`) is a setting of the block that setting holds.
    """
    word = word_at(text, offset)
    if word is None:
        return None
    where = cursor(text, word[1])
    statement, tokens = where.statement, where.statement.tokens
    if len(tokens) == 1:
        found = _help(list(statement.path), where.prefix)
    else:
        found = _keyed_help(statement, where.prefix)
    return (found, word) if found else None


def _help(path: list, name: str) -> str | None:
    if not path:
        model = catalog.block_model([(name, None)])
        return catalog.describe_block(name, model, catalog.top_field(name))
    model = catalog.block_model(path)
    field = catalog.settings(model).get(name) if model else None
    return catalog.describe(name, field) if field is not None else None


def _keyed_help(statement, name: str) -> str | None:
    """Help for the name of a named value, the first word of one item of a list (`mlm 0.1`)."""
    items = statement.items()
    if not items or len(items[-1]) != 1 or statement.key is None:
        return None
    return _help([*statement.path, (statement.key, None)], name)
