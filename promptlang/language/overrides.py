"""Command-line overrides (`--set KEY=VALUE`) read as spec settings, each located in a `Source` of the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from promptlang.language import syntax as s
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.parser import _number, escape_problem, lark_parser, parse_template, unescape
from promptlang.language.source import Source, Span

COMMAND_LINE = "--set"  # the file name diagnostics give the overrides: `--> --set:2:14`
TEMPLATE_KEYS = ("text", "target")


class OverrideError(ValueError):
    """A `--set` argument that is not KEY=VALUE (a usage error)."""


@dataclass
class Override:
    """One `--set KEY=VALUE`: the spec path it sets, each key part's span, and the value as the parser would read it."""

    path: tuple[str, ...]
    key_spans: list[Span]
    entry: s.Attribute  # the value, as the attribute `LAST_KEY VALUE` of a spec


@dataclass
class Overrides:
    """The overrides of one command, the command line they came from, and the problems found reading them."""

    items: list[Override]
    source: Source
    diagnostics: Diagnostics


def read_overrides(texts: list[str]) -> Overrides:
    """Read `--set` arguments; the values as a spec would hold them (numbers, names, strings, lists, named values).

    Args:
        texts: the arguments, like `method.steps=10` or `data.seeds=13,21`.

    Returns:
        `Overrides`, located in a `Source` whose lines are the arguments.

    Raises:
        OverrideError: an argument is not KEY=VALUE.
    """
    for text in texts:
        if "=" not in text or not text.split("=", 1)[0].strip() or "\n" in text:
            raise OverrideError(f"`--set {text}`: write KEY=VALUE, like `method.steps=10`")
    source = Source("\n".join(texts), COMMAND_LINE, typed=True)
    diagnostics = Diagnostics(sources={source.path: source})
    items, start = [], 0
    for text in texts:
        items.append(_override(source, text, start, diagnostics))
        start += len(text) + 1
    return Overrides(items, source, diagnostics)


def _override(source: Source, text: str, start: int, diagnostics: Diagnostics) -> Override:
    key, value = text.split("=", 1)
    parts, key_spans, at = [], [], start
    for part in key.split("."):
        parts.append(part.strip())
        key_spans.append(_trimmed(source, at, at + len(part)))
        at += len(part) + 1
    begin = start + len(key) + 1
    value_span = _trimmed(source, begin, begin + len(value))
    if len(parts) == 3 and parts[0] == "templates" and parts[2] in TEMPLATE_KEYS:
        values = [_template(source, value, begin, diagnostics)]
    else:
        values = [_item(source, piece, at_, diagnostics) for piece, at_ in _items(value, begin)]
    return Override(tuple(parts), key_spans, s.Attribute(value_span, parts[-1], key_spans[-1], values))


def _trimmed(source: Source, begin: int, end: int) -> Span:
    """The span of [begin, end) without the spaces around it."""
    text = source.text[begin:end]
    lead = len(text) - len(text.lstrip())
    return source.span(begin + lead, max(begin + lead, begin + len(text.rstrip())))


def _items(value: str, begin: int) -> list[tuple[str, int]]:
    """The comma-separated values of `value` (commas inside quotes kept), each with its offset."""
    items, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append((value[start:i], begin + start))
            start = i + 1
    items.append((value[start:], begin + start))
    return items


def _terminal(name: str) -> re.Pattern:
    return re.compile(lark_parser().get_terminal(name).pattern.to_regexp())


def _item(source: Source, text: str, at: int, diagnostics: Diagnostics) -> s.Value:
    """One value: a number, a quoted string, `name value` (a named value), or plain text."""
    stripped = text.strip()
    at += len(text) - len(text.lstrip())
    span = source.span(at, at + len(stripped))
    keyed = re.fullmatch(r"(\S+)\s+(\S.*)", stripped)
    if keyed and _terminal("NAME").fullmatch(keyed.group(1)):
        inner = _atom(source, keyed.group(2), at + keyed.start(2), diagnostics)
        return s.Keyed(span, keyed.group(1), inner)
    return _atom(source, stripped, at, diagnostics)


def _atom(source: Source, text: str, at: int, diagnostics: Diagnostics) -> s.Atom:
    span = source.span(at, at + len(text))
    if _terminal("NUMBER").fullmatch(text):
        value, problem = _number(text)
        if problem:
            diagnostics.error(problem, span, "settings take numbers such as `3`, `0.5` or `1e-5`")
        return s.Atom(span, "number", value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        value, bad = unescape(text[1:-1])
        for offset, written, problem in bad:
            message, hint = (f"unknown escape `{written}` in a string", "known escapes: \\n \\t \\\" \\\\ \\uXXXX") \
                if problem == "unknown" else escape_problem(written, problem, "a string")
            diagnostics.error(message, source.span(at + 1 + offset, at + 1 + offset + len(written)), hint)
        return s.Atom(span, "string", value)
    return s.Atom(span, "name" if _terminal("NAME").fullmatch(text) else "string", text)


def _template(source: Source, value: str, begin: int, diagnostics: Diagnostics) -> s.Value:
    """A template's text, parsed as the inside of a template string (quotes around it are optional)."""
    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    raw, offset = (value[1:-1], begin + 1) if quoted else (value, begin)
    text = parse_template(source, raw, offset, diagnostics)
    span = source.span(begin, begin + len(value))
    if text is None:
        return s.Atom(span, "string", raw)
    return s.TemplateValue(span, text)
