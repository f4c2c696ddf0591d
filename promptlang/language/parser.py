"""Parse: spec text → syntax nodes with spans, or located syntax errors."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput

from promptlang.language import parser_tables
from promptlang.language import syntax as s
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.source import Source, Span
from promptlang.language.syntax_errors import MAX_DEPTH, NOT_A_SPEC, describe, too_deep

LANGUAGE_VERSION = 1
TEMPLATE_ATTRIBUTES = ("text", "target")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "{": "{", "}": "}", "[": "[", "]": "]"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)|([\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff])", re.S)
MAX_DIGITS = 30  # a whole number with more digits is no setting's value (and Python refuses > 4300)


def grammar_path() -> Path:
    """The grammar file this package parses with (installed copy, or the checkout's `grammar/`)."""
    installed = resources.files("promptlang").joinpath("_grammar", "promptlang.lark")
    if installed.is_file():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / "grammar" / "promptlang.lark"


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The LALR parser for `grammar/promptlang.lark`, loaded from the shipped tables (built if they are stale), cached."""
    return parser_tables.parser_for(grammar_path().read_text(encoding="utf-8"))


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
    deep = too_deep(source.text)
    if deep is not None:
        diagnostics.error(f"blocks are nested more than {MAX_DEPTH} deep", source.span(deep, deep + 1),
                          "a spec needs a few levels at most, like `method pet { distill { ... } }`")
        return None, diagnostics
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
        chunk = source.text[begin:end]  # parsed alone (linear in the file), offsets shifted back
        try:
            lark_parser().parse(chunk, start="statements")
        except UnexpectedInput as error:
            message, hint, (start, stop) = describe(error, chunk)
            if begin + start >= reported_until:
                yield message, hint, (begin + start, begin + stop)
                reported_until = max(begin + stop, end)


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


def unescape(raw: str) -> tuple[str, list[tuple[int, str, str]]]:
    """Resolve backslash escapes.

    Returns:
        The text, and (offset, what was written, problem) for each escape or character a
        string cannot hold; problem is "unknown", "not a character", "surrogate" or "control".
    """
    bad: list[tuple[int, str, str]] = []

    def replace(match: re.Match) -> str:
        code, control = match.group(1), match.group(2)
        if control is not None:  # written as it is, not as an escape
            bad.append((match.start(), control, "surrogate" if "\ud800" <= control <= "\udfff" else "control"))
            return control
        if code[0] in "uU" and len(code) > 1:
            return _code_point(match, bad)
        if code in _ESCAPES:
            return _ESCAPES[code]
        bad.append((match.start(), match.group(0), "unknown"))
        return code

    return _ESCAPE.sub(replace, raw), bad


def _code_point(match: re.Match, bad: list) -> str:
    """The character a `\\uXXXX` or `\\UXXXXXXXX` escape names (a problem is recorded in `bad`)."""
    code = int(match.group(1)[1:], 16)
    if code > 0x10FFFF:
        bad.append((match.start(), match.group(0), "not a character"))
        return "\ufffd"
    char = chr(code)
    if 0xD800 <= code <= 0xDFFF:
        bad.append((match.start(), match.group(0), "surrogate"))
    elif char not in "\t\n\r" and (code < 0x20 or 0x7F <= code <= 0x9F):
        bad.append((match.start(), match.group(0), "control"))
    return char


def escape_problem(written: str, problem: str, where: str) -> tuple[str, str]:
    """(message, hint) for a character that a string or template (`where`) cannot hold."""
    if problem == "not a character":
        return f"`{written}` is not a Unicode character", "the last character is \\U0010FFFF"
    if problem == "surrogate":
        return (f"`{written}` is half of a UTF-16 surrogate pair, not a character",
                "write the character itself, or its code point: \\U0001F600")
    shown = f"U+{ord(written):04X}" if len(written) == 1 else f"`{written}`"
    return (f"{where} cannot hold the control character {shown}",
            "remove it; write \\n for a line break and \\t for a tab")


def _string_body(token: Token) -> tuple[str, int]:
    """The raw inside of a STRING token and the offset where it starts."""
    quote = 3 if token.value.startswith('"""') else 1
    return token.value[quote:-quote], token.start_pos + quote


def _is_string(value: s.Value) -> bool:
    return isinstance(value, s.Atom) and value.kind == "string"


def _number(text: str) -> tuple[int | float, str | None]:
    """The value of a NUMBER token, and the problem with it (too many digits, too large), if any."""
    if re.fullmatch(r"[+-]?\d+", text):
        digits = len(text.lstrip("+-"))
        return (0, f"this number has {digits} digits") if digits > MAX_DIGITS else (int(text), None)
    value = float(text)
    shown = text if len(text) <= 30 else text[:27] + "..."
    return (0.0, f"`{shown}` is too large to be a number") if abs(value) == float("inf") else (value, None)


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
        self._escapes(bad, self.offset + start, "a string",
                      "use \\\\ for a backslash; known escapes: \\n \\t \\\" \\\\ \\{ \\[ \\uXXXX")
        return value

    def _escapes(self, bad: list, start: int, where: str, unknown_hint: str) -> None:
        """Report what `unescape` found, each at its place in the source."""
        for at, written, problem in bad:
            message, hint = (f"unknown escape `{written}` in {where}", unknown_hint) if problem == "unknown" \
                else escape_problem(written, problem, where)
            self.diagnostics.error(message, self.source.span(start + at, start + at + len(written)), hint)

    def _number(self, token: Token) -> int | float:
        value, problem = _number(token.value)
        if problem:
            self.diagnostics.error(problem, self._span(token), "settings take numbers such as `3`, `0.5` or `1e-5`")
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
        return s.Atom(self._span(children[0]), "number", self._number(children[0]), token=children[0])

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
        return s.Atom(self._span(meta), "number", self._number(children[0]), token=children[0])

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
            self._escapes(bad, self.offset + token.start_pos, "a template",
                          "write \\{ or \\[ for a literal `{` or `[`, \\\\ for a backslash")
            return s.Text(span, value)
        kind = token.type.split("_")[0].lower()
        count = re.search(r":(\d+)", token.value)
        if count and len(count.group(1)) > MAX_DIGITS:
            self.diagnostics.error(f"this slot's count has {len(count.group(1))} digits", span,
                                   "[MASK:N] holds 1 to 64 tokens, [SOFT:N] 1 to 1024")
            return s.Slot(span, kind, 1)
        return s.Slot(span, kind, int(count.group(1)) if count else None)

    def field(self, meta, children):
        name, *filters = children
        return s.FieldRef(self._span(meta), name.value, filters)

    def filter(self, meta, children):
        name, *args = children
        return s.Filter(self._span(meta), name.value, [a.value for a in args])


# `import` is a Python keyword: Lark calls the rule's method by the rule name.
setattr(_NodeBuilder, "import", _NodeBuilder.import_)
