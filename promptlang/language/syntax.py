"""Syntax nodes: the parsed file, every node with the span it came from.

Nodes are plain data; passes dispatch on the node type. `to_data` turns a node tree
into JSON-ready dicts for golden tests and `promptlang parse`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Union

from promptlang.language.source import Span


@dataclass
class Node:
    span: Span = field(repr=False, compare=False)


# ---------------------------------------------------------------- values


@dataclass
class Atom(Node):
    """A string, number or bare name; `value` is already unescaped / converted."""

    kind: str  # "string" | "number" | "name"
    value: Union[str, int, float]
    token: object = field(default=None, repr=False, compare=False, metadata={"hidden": True})


@dataclass
class Keyed(Node):
    """A named value inside a list: the `ce 0.9` in `loss ce 0.9, mlm 0.1`."""

    key: str
    value: Atom


@dataclass
class TemplateValue(Node):
    """A template string used as a value: `text "..."` / `target "..."` in a template."""

    text: "TemplateText"
    token: object = field(default=None, repr=False, compare=False, metadata={"hidden": True})


Value = Union[Atom, Keyed, TemplateValue]


# ---------------------------------------------------------------- template text


@dataclass
class Text(Node):
    text: str


@dataclass
class Filter(Node):
    name: str
    args: list[str]


@dataclass
class FieldRef(Node):
    """`{{ name | filter | filter(arg) }}`."""

    name: str
    filters: list[Filter]


@dataclass
class Slot(Node):
    """`[MASK]`, `[MASK:2]`, `[DEMOS]`, `[SOFT:4]`, `[SEP]`."""

    kind: str  # "mask" | "demos" | "soft" | "sep"
    count: int | None


Piece = Union[Text, FieldRef, Slot]


@dataclass
class TemplateText(Node):
    """A parsed template string; `raw` is the string as written, without quotes."""

    pieces: list[Piece]
    raw: str


# ---------------------------------------------------------------- statements


@dataclass
class Attribute(Node):
    key: str
    key_span: Span = field(repr=False, compare=False)
    values: list[Value]


@dataclass
class Mapping(Node):
    """`label -> value, value`: verbalizer words, raw label values."""

    key: str
    key_span: Span = field(repr=False, compare=False)
    values: list[Value]


@dataclass
class Block(Node):
    kind: str
    kind_span: Span = field(repr=False, compare=False)
    name: str | None
    entries: list[Union[Attribute, Mapping, "Block"]]
    name_span: Span | None = field(default=None, repr=False, compare=False)


Entry = Union[Attribute, Mapping, Block]


@dataclass
class Import(Node):
    path: str
    token: object = field(default=None, repr=False, compare=False, metadata={"hidden": True})


@dataclass
class Labels(Node):
    names: list[Atom]


@dataclass
class Template(Node):
    """`template NAME "text"` (short form) or `template NAME { text "..." ... }`.

    The short form is stored as a block with one `text` attribute and `short` set.
    """

    name: str
    name_span: Span = field(repr=False, compare=False)
    entries: list[Entry]
    short: bool = False


Statement = Union[Import, Labels, Template, Block]


@dataclass
class File(Node):
    """A whole spec file."""

    version: Atom
    statements: list[Statement]
    header_span: Span | None = field(default=None, repr=False, compare=False)


def to_data(node: object, spans: bool = True) -> object:
    """A node tree as plain JSON-ready data, with `_type` and (optionally) `_span` keys."""
    if isinstance(node, list):
        return [to_data(item, spans) for item in node]
    if not isinstance(node, Node):
        return node
    data: dict = {"_type": type(node).__name__}
    if spans:
        span = node.span
        data["_span"] = f"{span.line}:{span.col}-{span.end_line}:{span.end_col}"
    for f in dataclasses.fields(node):
        if f.name == "span" or f.name.endswith("_span") or f.metadata.get("hidden"):
            continue
        data[f.name] = to_data(getattr(node, f.name), spans)
    return data
