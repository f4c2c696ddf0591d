"""Format: print syntax nodes back in one canonical layout, keeping comments.

The layout: two-space indents; one setting per line; values of consecutive settings
aligned; one blank line around multi-line blocks, other blank lines kept (at most one);
strings and numbers exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from promptlang.language import syntax as s
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.parser import parse
from promptlang.language.source import Source

INDENT = "  "
_SKIP = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*', re.S)


@dataclass
class Comment:
    line: int
    text: str
    trailing: bool  # code before it on the same line


def comments(source: Source) -> list[Comment]:
    """Every comment in a source, in order."""
    out = []
    for match in _SKIP.finditer(source.text):
        if match.group(0).startswith("#"):
            line, col = source.position(match.start())
            before = source.line_text(line)[: col - 1]
            out.append(Comment(line, match.group(0).rstrip(), bool(before.strip())))
    return out


def format_source(source: Source | str, path: str = "<string>") -> tuple[str | None, Diagnostics]:
    """The canonical text of a spec, or None (with the syntax errors) if it does not parse."""
    if isinstance(source, str):
        source = Source(source, path)
    nodes, diagnostics = parse(source)
    if nodes is None:
        return None, diagnostics
    return _Printer(source).file(nodes), diagnostics


class _Printer:
    def __init__(self, source: Source):
        self.source = source
        self.comments = comments(source)
        self.lines: list[str] = []

    # ------------------------------------------------------------ comments and lines

    def _leading(self, before_line: int, depth: int) -> None:
        """Emit comments that come before `before_line` as lines of their own."""
        while self.comments and self.comments[0].line < before_line:
            comment = self.comments.pop(0)
            if comment.trailing and self.lines and not self.lines[-1].lstrip().startswith("#") \
                    and comment.line == self._last_line:
                self.lines[-1] += "  " + comment.text
                continue
            if self._blank_before(comment.line) and self.lines and self.lines[-1] != "":
                self.lines.append("")
            self.lines.append(INDENT * depth + comment.text)
            self._last_line = comment.line

    def _emit(self, depth: int, text: str, source_line: int) -> None:
        self.lines.append(INDENT * depth + text if text else "")
        self._last_line = source_line
        if self.comments and self.comments[0].line == source_line and self.comments[0].trailing:
            self.lines[-1] += "  " + self.comments.pop(0).text

    def _blank_before(self, line: int) -> bool:
        return line > 1 and not self.source.line_text(line - 1).strip()

    def _blank(self) -> None:
        if self.lines and self.lines[-1] != "" and not self.lines[-1].endswith("{"):
            self.lines.append("")

    def _leading_then_blank(self, line: int, depth: int) -> None:
        """Leading comments, then the blank line (if any) that separated them from the node."""
        had = bool(self.comments) and self.comments[0].line < line
        self._leading(line, depth)
        if had and self._blank_before(line):
            self._blank()

    # ------------------------------------------------------------ statements

    def file(self, file: s.File) -> str:
        self._last_line = 0
        self._template_widths = _template_alignment(file.statements)
        self._leading(file.version.span.line, 0)
        self._emit(0, f"promptlang {file.version.token}", file.version.span.line)
        previous = None
        for statement in file.statements:
            if _multiline(statement) or _multiline(previous) or self._blank_before_node(statement) \
                    or type(statement) is not type(previous):
                self._blank()
            self._statement(statement)
            previous = statement
        self._leading(10**9, 0)
        return "\n".join(self.lines).rstrip("\n") + "\n"

    def _blank_before_node(self, node) -> bool:
        first = min([node.span.line] + [c.line for c in self.comments if c.line < node.span.line and not c.trailing])
        return self._blank_before(first)

    def _statement(self, statement: s.Statement) -> None:
        self._leading_then_blank(statement.span.line, 0)
        if isinstance(statement, s.Import):
            self._emit(0, f"import {statement.token}", statement.span.end_line)
        elif isinstance(statement, s.Labels):
            names = ", ".join(str(a.token) for a in statement.names)
            self._emit(0, f"labels {names}", statement.span.end_line)
        elif isinstance(statement, s.Template) and statement.short:
            width = self._short_template_width(statement)
            value = statement.entries[0].values[0]
            self._emit(0, f"template {statement.name.ljust(width)} {value.token}", statement.span.end_line)
        elif isinstance(statement, s.Template):
            self._block(f"template {statement.name}", statement.entries, statement.span, 0)
        else:
            head = statement.kind + (f" {statement.name}" if statement.name else "")
            self._block(head, statement.entries, statement.span, 0)

    def _short_template_width(self, statement: s.Template) -> int:
        return self._template_widths.get(id(statement), len(statement.name))

    def _block(self, head: str, entries: list[s.Entry], span, depth: int) -> None:
        if not entries:
            self._emit(depth, head + " {}", span.end_line)
            return
        self._emit(depth, head + " {", span.line)
        widths = _alignment(entries)
        previous = None
        for entry in entries:
            if previous is not None and (isinstance(entry, s.Block) or isinstance(previous, s.Block)
                                         or self._blank_before_node(entry)):
                self._blank()
            self._entry(entry, depth + 1, widths.get(id(entry), 0))
            previous = entry
        self._leading(span.end_line, depth + 1)
        self._emit(depth, "}", span.end_line)

    def _entry(self, entry: s.Entry, depth: int, width: int) -> None:
        if not isinstance(entry, s.Block):
            self._move_inner_comments(entry)
        self._leading_then_blank(entry.span.line, depth)
        if isinstance(entry, s.Block):
            head = entry.kind + (f" {entry.name}" if entry.name else "")
            self._block(head, entry.entries, entry.span, depth)
            return
        values = ", ".join(_value(v) for v in entry.values)
        if isinstance(entry, s.Mapping):
            self._emit(depth, f"{entry.key.ljust(width)} -> {values}", entry.span.end_line)
        else:
            self._emit(depth, f"{entry.key.ljust(width)} {values}", entry.span.end_line)

    def _move_inner_comments(self, entry: s.Entry) -> None:
        """Comments inside a list that spans lines go above it: the list is printed on one line."""
        for comment in self.comments:
            if entry.span.line <= comment.line < entry.span.end_line:
                comment.line, comment.trailing = entry.span.line - 1, False


def _value(value: s.Value) -> str:
    if isinstance(value, s.Keyed):
        return f"{value.key} {value.value.token}"
    return str(value.token)


def _multiline(statement) -> bool:
    return isinstance(statement, s.Block) or (isinstance(statement, s.Template) and not statement.short)


def _template_alignment(statements: list[s.Statement]) -> dict[int, int]:
    """Name widths: consecutive short templates line up their strings."""
    widths: dict[int, int] = {}
    run: list[s.Template] = []
    for statement in [*statements, None]:
        short = isinstance(statement, s.Template) and statement.short
        if run and (not short or statement.span.line > run[-1].span.end_line + 1):
            width = max(len(t.name) for t in run)
            widths.update({id(t): width for t in run})
            run = []
        if short:
            run.append(statement)
    return widths


def _alignment(entries: list[s.Entry]) -> dict[int, int]:
    """Key widths: consecutive attributes (or mappings) line up their values."""
    widths: dict[int, int] = {}
    run: list[s.Entry] = []

    def close() -> None:
        width = max((len(e.key) for e in run), default=0)
        widths.update({id(e): width for e in run})
        run.clear()

    for entry in entries:
        if isinstance(entry, s.Block) or (run and type(entry) is not type(run[-1])) \
                or (run and entry.span.line > run[-1].span.end_line + 1):
            close()
        if not isinstance(entry, s.Block):
            run.append(entry)
    close()
    return widths
