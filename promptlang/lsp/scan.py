"""A forgiving scan of a spec's text into statements, each with the blocks around it: what an editor needs
to know about a half-typed line that does not parse yet."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The language's tokens (grammar/promptlang.lark), where an unfinished string runs to the end of its line
# (or, with three quotes, of the text).
_TOKEN = re.compile(r'''
    (?P<string>"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z) | "(?:[^"\\\n]|\\.)*"?)
  | (?P<comment>\#[^\n]*)
  | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>(?!\d)\w+(?:-\w+)*)
  | (?P<punct>->|[{},\n])
  | (?P<other>[^\s])
''', re.S | re.X)

Path_ = tuple[tuple[str, "str | None"], ...]  # (kind, name) of each enclosing block, outermost first


@dataclass(frozen=True)
class Token:
    kind: str  # string | comment | number | name | punct | other
    text: str
    start: int
    end: int

    @property
    def closed(self) -> bool:
        """Whether a string token has its closing quote (a comment or other token is always whole)."""
        if self.kind != "string":
            return True
        quote = '"""' if self.text.startswith('"""') else '"'
        return len(self.text) >= 2 * len(quote) and self.text.endswith(quote)


@dataclass
class Statement:
    """One statement's tokens (newlines and comments left out), inside the blocks of `path`."""

    path: Path_
    tokens: list[Token] = field(default_factory=list)
    opens: bool = False  # the head of a block: `data {`, `method pet {`

    @property
    def key(self) -> str | None:
        first = self.tokens[0] if self.tokens else None
        return first.text if first is not None and first.kind == "name" else None

    def items(self) -> list[list[Token]]:
        """The values after the key, split at commas: `loss ce 0.9, mlm 0.1` → [[ce, 0.9], [mlm, 0.1]]."""
        out: list[list[Token]] = [[]]
        for token in self.tokens[1:]:
            if token.text == ",":
                out.append([])
            elif token.text != "->":
                out[-1].append(token)
        return out


@dataclass
class Scan:
    statements: list[Statement]
    pending: Statement  # the statement still open at the end of the text (the one being typed)
    last: Token | None  # the text's last token, comments included


def tokens(text: str) -> list[Token]:
    """Every token of a text, in order."""
    return [Token(match.lastgroup, match.group(0), match.start(), match.end()) for match in _TOKEN.finditer(text)]


def scan(text: str) -> Scan:
    """The statements of a text, each with its enclosing blocks; braces that do not match are tolerated."""
    stack: list[tuple[str, str | None]] = []
    done: list[Statement] = []
    current = Statement(())
    last = None
    for token in tokens(text):
        last = token
        if token.kind == "comment":
            continue
        if token.text == "\n":
            if current.tokens and current.tokens[-1].text not in (",", "->"):
                done.append(current)
                current = Statement(tuple(stack))
        elif token.text == "{":
            names = [t.text for t in current.tokens if t.kind == "name"][:2]
            current.opens = True
            done.append(current)
            stack.append((names[0] if names else "", names[1] if len(names) > 1 else None))
            current = Statement(tuple(stack))
        elif token.text == "}":
            if current.tokens:
                done.append(current)
            if stack:
                stack.pop()
            current = Statement(tuple(stack))
        else:
            current.tokens.append(token)
    return Scan(done, current, last)


@dataclass(frozen=True)
class Cursor:
    """Where the cursor is: its statement, the word typed so far, and the string it is inside (if any)."""

    statement: Statement
    prefix: str  # the part of a name before the cursor ('' between words)
    string: Token | None  # the unfinished string the cursor is in
    in_comment: bool

    @property
    def before(self) -> list[Token]:
        """The statement's tokens before the word being typed."""
        tokens = self.statement.tokens
        return tokens[:-1] if self.prefix or self.string is not None else tokens


def cursor(text: str, offset: int) -> Cursor:
    """The context of the cursor at a character offset of `text`."""
    found = scan(text[:offset])
    last = found.last
    at_end = last is not None and last.end == offset
    in_comment = at_end and last.kind == "comment"
    string = last if at_end and last.kind == "string" and not last.closed else None
    prefix = last.text if at_end and last.kind == "name" else ""
    return Cursor(found.pending, prefix, string, in_comment)


def word_at(text: str, offset: int) -> tuple[int, int] | None:
    """The (start, end) offsets of the name the cursor is on, or None."""
    for token in tokens(text):
        if token.start > offset:
            return None
        if token.kind == "name" and token.start <= offset <= token.end:
            return token.start, token.end
    return None
