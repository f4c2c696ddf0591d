"""Completion: the settings of the block the cursor is in, a setting's choices, the names a value refers to
(templates, verbalizers, labels, data columns) and the fields of the data header inside `{{ }}`."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types
from pydantic import BaseModel

from promptlang.language import spec as m
from promptlang.language.builder import FILTERS
from promptlang.lsp import catalog
from promptlang.lsp.names import Names, names
from promptlang.lsp.scan import Cursor, cursor

# Settings whose values name something the spec defines or reads: (model, setting) → what they name.
REFERENCES = {
    (m.PromptMethod, "patterns"): "templates", (m.Demonstrations, "template"): "templates",
    (m.Template, "verbalizer"): "verbalizers",
    (m.Data, "text"): "columns", (m.Data, "label"): "columns", (m.Regression, "score"): "columns",
    (m.Evaluation, "references"): "columns",
}
BLOCK_NAMES = {"method": m.METHOD_KINDS, "task": m.TASK_KINDS}  # `method NAME {`: the names a block takes
MAPPED_BY_LABEL = ("verbalizer", "label_values")  # blocks whose entries map a label to values
_FIELD = re.compile(r"\{\{(?:(?!\}\}).)*$", re.S)  # an open `{{` with no `}}` after it
_FILTER = re.compile(r"\|\s*[\w-]*$")

Kind = types.CompletionItemKind


def complete(text: str, offset: int, directory: Path) -> list[types.CompletionItem]:
    """The completions at a character offset of a spec's text (which need not parse).

    Args:
        text: the buffer's text.
        offset: the cursor's character offset.
        directory: the spec's folder, against which imports and data files resolve.

    Returns:
        The items, in the order the spec model (or the text) lists them; none in a comment.
    """
    where = cursor(text, offset)
    if where.in_comment:
        return []
    if where.string is not None:
        return _in_string(text[where.string.start:offset], text, directory)
    model = catalog.block_model(list(where.statement.path)) if where.statement.path else None
    before = where.before
    if before:
        return _value_items(where, model, before, names(text, directory))
    if not where.statement.path:
        return _statement_items()
    mapped = where.statement.path[-1][0] in MAPPED_BY_LABEL  # `positive -> "great"`
    labels = [_item(label, Kind.EnumMember, "label") for label in names(text, directory).labels] if mapped else []
    return labels + _setting_items(model)


def _in_string(written: str, text: str, directory: Path) -> list[types.CompletionItem]:
    """Inside `{{ ... }}` of a template string: the data header's fields, or the filters after `|`."""
    field = _FIELD.search(written)
    if field is None:
        return []
    if _FILTER.search(field.group(0)):
        return [_item(name, Kind.Function, "filter") for name in FILTERS]
    return [_item(column, Kind.Field, "data column") for column in names(text, directory).columns]


def _statement_items() -> list[types.CompletionItem]:
    items = []
    for kind in catalog.statement_names():
        field = catalog.top_field(kind)
        model = catalog.block_model([(kind, None)])
        items.append(_item(kind, Kind.Keyword, "statement", catalog.describe_block(kind, model, field)))
    return items


def _setting_items(model: type[BaseModel] | None) -> list[types.CompletionItem]:
    if model is None:
        return []
    return [_item(name, Kind.Module if catalog.is_block(field) else Kind.Property, model.__name__,
                  catalog.describe(name, field)) for name, field in catalog.settings(model).items()]


def _value_items(where: Cursor, model, before, known: Names) -> list[types.CompletionItem]:
    """After a key: a block's name (`method pe`), a keyed value's name (`loss ce 0.9, m`), a choice,
    or a name the setting refers to."""
    key = before[0].text
    if not where.statement.path and len(before) == 1 and key in BLOCK_NAMES:
        return [_item(name, Kind.EnumMember, key) for name in BLOCK_NAMES[key]]
    if model is None:
        return []
    field = catalog.settings(model).get(key)
    if field is None:
        return []
    item = where.statement.items()[-1] if where.statement.items() else []
    finished = item[:-1] if where.prefix else item  # the item's values before the word being typed
    if catalog.is_block(field) and not finished:
        return _setting_items(catalog.block_model([*where.statement.path, (key, None)]))
    refers = next((group for (owner, setting), group in REFERENCES.items()
                   if setting == key and issubclass(model, owner)), None)
    if refers is not None:
        return [_item(name, Kind.Reference, refers[:-1]) for name in getattr(known, refers)]
    return [_item(choice, Kind.EnumMember, key) for choice in catalog.choices(field)]


def _item(label: str, kind: types.CompletionItemKind, detail: str,
          help_text: str | None = None) -> types.CompletionItem:
    documentation = types.MarkupContent(kind=types.MarkupKind.Markdown, value=help_text) if help_text else None
    return types.CompletionItem(label=label, kind=kind, detail=detail, documentation=documentation)
