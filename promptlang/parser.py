"""Parse: spec text → syntax nodes with spans, or located syntax errors."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput

from promptlang import syntax as s
from promptlang.diagnostics import Diagnostics
from promptlang.source import Source, Span
from promptlang.syntax_errors import NOT_A_SPEC, describe

LANGUAGE_VERSION = 1
TEMPLATE_ATTRIBUTES = ("text", "target")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "{": "{", "}": "}", "[": "[", "]": "]"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)


def grammar_path() -> Path:
    """The grammar file this package parses with (installed copy, or the checkout's `grammar/`)."""
    installed = resources.files("promptlang").joinpath("_grammar", "promptlang.lark")
    if installed.is_file():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "grammar" / "promptlang.lark"


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The LALR parser built from `grammar/promptlang.lark` (built once, then cached)."""
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        start=["spec", "statements", "template_text"],
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(source: Source | str, path: str = "<string>") -> tuple[s.File | None, Diagnostics]:
    """Parse a spec into syntax nodes.

    Args:
        source: the spec, as a `Source` or as text.
        path: the file name to report when `source` is text.

    Returns:
        The file's nodes (None when there are syntax errors) and the diagnostics.
    """
    if isinstance(source, str):
        source = Source(source, path)
    diagnostics = Diagnostics(sources={source.path: source})
    try:
        tree = lark_parser().parse(source.text, start="spec")
    except UnexpectedInput as error:
        for message, hint, (begin, end) in _all_syntax_errors(source, error):
            diagnostics.error(message, source.span(begin, end), hint)
        return None, diagnostics
    builder = _NodeBuilder(source, diagnostics)
    node = builder.transform(tree)
    return (None if diagnostics.errors else node), diagnostics


def parse_template(source: Source, raw: str, offset: int, diagnostics: Diagnostics) -> s.TemplateText | None:
    """Parse the inside of a template string that starts at `offset` in `source`."""
    try:
        tree = lark_parser().parse(raw, start="template_text")
    except UnexpectedInput as error:
        message, hint, (begin, end) = describe(error, raw, template=True)
        diagnostics.error(message, source.span(offset + begin, offset + end), hint)
        return None
    builder = _NodeBuilder(source, diagnostics, offset)
    text = builder.transform(tree)
    text.raw = raw
    return text


# ---------------------------------------------------------------- error recovery


def _all_syntax_errors(source: Source, first: UnexpectedInput):
    """The first error, then one more per top-level statement that does not parse."""
    message, hint, where = describe(first, source.text)
    yield message, hint, where
    if message == NOT_A_SPEC:
        return
    reported_until = where[1]
    for begin, end in _statement_chunks(source.text):
        if end <= reported_until:
            continue
        padded = re.sub(r"[^\n]", " ", source.text[:begin]) + source.text[begin:end]
        try:
            lark_parser().parse(padded, start="statements")
        except UnexpectedInput as error:
            message, hint, where = describe(error, padded)
            if where[0] >= reported_until:
                yield message, hint, where
                reported_until = max(where[1], end)


def _statement_chunks(text: str):
    """Character ranges of top-level statements: each starts at a line that begins with a letter."""
    starts, in_long_string, offset = [], False, 0
    for line in text.splitlines(keepends=True):
        if not in_long_string and line[:1].isalpha():
            starts.append(offset)
        if line.count('"""') % 2 == 1:
            in_long_string = not in_long_string
        offset += len(line)
    starts = starts[1:]  # the first is the header, already parsed as part of the whole file
    return list(zip(starts, starts[1:] + [len(text)]))


# ---------------------------------------------------------------- tree → nodes


def unescape(raw: str) -> tuple[str, list[tuple[int, str]]]:
    """Resolve backslash escapes; returns the text and (offset, escape) for each unknown one."""
    bad: list[tuple[int, str]] = []

    def replace(match: re.Match) -> str:
        code = match.group(1)
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if code in _ESCAPES:
            return _ESCAPES[code]
        bad.append((match.start(), match.group(0)))
        return code

    return _ESCAPE.sub(replace, raw), bad


def _string_body(token: Token) -> tuple[str, int]:
    """The raw inside of a STRING token and the offset where it starts."""
    quote = 3 if token.value.startswith('"""') else 1
    return token.value[quote:-quote], token.start_pos + quote


def _is_string(value: s.Value) -> bool:
    return isinstance(value, s.Atom) and value.kind == "string"


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


@v_args(meta=True)
class _NodeBuilder(Transformer):
    """One short method per grammar rule; errors are collected, never raised."""

    def __init__(self, source: Source, diagnostics: Diagnostics, offset: int = 0):
        super().__init__()
        self.source, self.diagnostics, self.offset = source, diagnostics, offset

    def _span(self, meta_or_token) -> Span:
        if isinstance(meta_or_token, Token):
            start, end = meta_or_token.start_pos, meta_or_token.end_pos
        elif getattr(meta_or_token, "empty", True):
            return self.source.span(self.offset, self.offset)
        else:
            start, end = meta_or_token.start_pos, meta_or_token.end_pos
        return self.source.span(self.offset + start, self.offset + end)

    def _string(self, token: Token) -> str:
        body, start = _string_body(token)
        value, bad = unescape(body)
        for at, escape in bad:
            self.diagnostics.error(
                f"unknown escape `{escape}` in a string",
                self.source.span(self.offset + start + at, self.offset + start + at + len(escape)),
                "use \\\\ for a backslash; known escapes: \\n \\t \\\" \\\\ \\{ \\[ \\uXXXX",
            )
        return value

    # files and statements

    def spec(self, meta, children):
        version, statements = children[0], children[1:]
        header = self.source.span(0, 0)
        header = Span(header.file, version.span.line, 1, version.span.end_line, version.span.end_col)
        return s.File(self._span(meta), version, statements, header_span=header)

    def statements(self, meta, children):
        return children

    def header(self, meta, children):
        return s.Atom(self._span(children[0]), "number", _number(children[0].value), token=children[0])

    def import_(self, meta, children):
        return s.Import(self._span(meta), self._string(children[0]), token=children[0])

    def labels(self, meta, children):
        return s.Labels(self._span(meta), [s.Atom(self._span(t), "name", t.value, token=t) for t in children])

    def template_short(self, meta, children):
        name, token = children
        value = self._template_value(token)
        text = s.Attribute(value.span, "text", value.span, [value])
        return s.Template(self._span(meta), name.value, self._span(name), [text], short=True)

    def template_block(self, meta, children):
        name, entries = children
        for entry in entries:
            if isinstance(entry, s.Attribute) and entry.key in TEMPLATE_ATTRIBUTES:
                entry.values = [self._template_value(v.token) if _is_string(v) else v for v in entry.values]
        return s.Template(self._span(meta), name.value, self._span(name), entries)

    def _template_value(self, token: Token) -> s.TemplateValue:
        body, start = _string_body(token)
        text = parse_template(self.source, body, self.offset + start, self.diagnostics)
        return s.TemplateValue(self._span(token), text, token=token)

    def block(self, meta, children):
        kind = children[0]
        name = children[1] if len(children) == 3 else None
        return s.Block(self._span(meta), kind.value, self._span(kind), name and name.value, children[-1],
                       name_span=name and self._span(name))

    def body(self, meta, children):
        return list(children)

    def attribute(self, meta, children):
        key, *values = children
        return s.Attribute(self._span(meta), key.value, self._span(key), values)

    def mapping(self, meta, children):
        key, *values = children
        return s.Mapping(self._span(meta), key.value, self._span(key), values)

    def keyed(self, meta, children):
        key, value = children
        return s.Keyed(self._span(meta), key.value, value)

    def string(self, meta, children):
        return s.Atom(self._span(meta), "string", self._string(children[0]), token=children[0])

    def number(self, meta, children):
        return s.Atom(self._span(meta), "number", _number(children[0].value), token=children[0])

    def name(self, meta, children):
        return s.Atom(self._span(meta), "name", children[0].value, token=children[0])

    # template text

    def template_text(self, meta, children):
        pieces = []
        for child in children:
            if isinstance(child, Token):
                child = self._piece(child)
            if isinstance(child, s.Text) and pieces and isinstance(pieces[-1], s.Text):
                continue
            pieces.append(child)
        return s.TemplateText(self._span(meta), pieces, "")

    def _piece(self, token: Token):
        span = self._span(token)
        if token.type == "TEXT":
            value, bad = unescape(token.value)
            for at, escape in bad:
                start = self.offset + token.start_pos + at
                self.diagnostics.error(f"unknown escape `{escape}` in a template",
                                       self.source.span(start, start + len(escape)),
                                       "write \\{ or \\[ for a literal `{` or `[`, \\\\ for a backslash")
            return s.Text(span, value)
        kind = token.type.split("_")[0].lower()
        count = re.search(r":(\d+)", token.value)
        return s.Slot(span, kind, int(count.group(1)) if count else None)

    def field(self, meta, children):
        name, *filters = children
        return s.FieldRef(self._span(meta), name.value, filters)

    def filter(self, meta, children):
        name, *args = children
        return s.Filter(self._span(meta), name.value, [a.value for a in args])


# `import` is a Python keyword: Lark calls the rule's method by the rule name.
setattr(_NodeBuilder, "import", _NodeBuilder.import_)
