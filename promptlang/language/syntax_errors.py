"""Syntax errors in plain words: a Lark exception → (message, hint, character range)."""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

_VALUE_TERMINALS = {"NAME", "STRING", "NUMBER"}
_WHAT = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "_NL": "a new line",
    "$END": "the end of the file",
    "COMMA": "`,`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "_ARROW": "`->`",
    "TEXT": "text",
    "_OPEN_FIELD": "`{{`",
    "_CLOSE_FIELD": "`}}`",
    "VBAR": "`|`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "PROMPTLANG": "`promptlang`",
    "IMPORT": "`import`",
    "LABELS": "`labels`",
    "TEMPLATE": "`template`",
}
SLOTS_HINT = "the slots are [MASK], [MASK:2], [DEMOS], [SOFT], [SOFT:4] and [SEP]; write \\[ for a literal `[`"
NOT_A_SPEC = "this is not a promptlang spec: a spec's first line is `promptlang 1`"


def describe(error: UnexpectedInput, text: str, template: bool = False) -> tuple[str, str | None, tuple[int, int]]:
    """Explain a parse error.

    Args:
        error: what Lark raised.
        text: the text that was parsed (a whole file, or the inside of a template string).
        template: whether `text` is a template string.

    Returns:
        (message, hint or None, (start, end) character offsets into `text`).
    """
    if isinstance(error, UnexpectedCharacters):
        return _bad_character(error, text, template)
    assert isinstance(error, UnexpectedToken)
    return (_template_token if template else _spec_token)(error, text)


def _found(token) -> str:
    if token.type in ("_NL", "$END"):
        return _WHAT[token.type]
    if token.type == "_NL" or token.value.startswith("#"):
        return "a comment"
    value = token.value if len(token.value) <= 30 else token.value[:27] + "..."
    return f"`{value}`"


def _expected(names: set[str]) -> str:
    words = sorted({_WHAT.get(n, f"`{n.lower()}`") for n in names if not n.startswith("__")})
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _token_range(token, text: str) -> tuple[int, int]:
    if token.type == "$END" or token.start_pos is None:
        end = len(text.rstrip())
        return max(end - 1, 0), max(end, 1)
    if token.type == "_NL":
        return token.start_pos, token.start_pos + 1
    return token.start_pos, token.end_pos


def _previous_word(text: str, position: int) -> str | None:
    match = re.search(r"([^\s{}]+)\s*$", _before(text, position))
    return match.group(1) if match else None


_LOOK_BACK = 200  # characters before an error that its message may quote or look at


def _before(text: str, position: int) -> str:
    """The last `_LOOK_BACK` characters before `position`: every search back from an error is bounded."""
    return text[max(position - _LOOK_BACK, 0):position]


def _first_statement_offset(text: str) -> int:
    match = re.match(r"(?:\s|#[^\n]*)*", text)
    return match.end()


def _not_a_spec(text: str, start: int) -> tuple[str, str, tuple[int, int]]:
    line_end = text.find("\n", start)
    end = line_end if line_end >= 0 else len(text)
    if text[start:].startswith("---"):
        hint = ("this looks like a Dotprompt file (YAML front matter between `---` lines), "
                "which also uses `.prompt`; promptlang does not read those")
    else:
        hint = "add the line `promptlang 1` at the top of the file"
    return NOT_A_SPEC, hint, (start, max(end, start + 1))


def _bad_character(error: UnexpectedCharacters, text: str, template: bool):
    at, char = error.pos_in_stream, error.char
    if not template and at <= _first_statement_offset(text):
        return _not_a_spec(text, at)
    if template:
        if char == "[":
            slot = re.match(r"\[[^\]\s]*\]?", text[at:]).group(0)
            return f"unknown slot `{slot}`", SLOTS_HINT, (at, at + len(slot))
        return (f"unexpected {_describe_char(char)} inside a field",
                "a field holds a column name and filters, like `{{ sentence | lower_first }}`", (at, at + 1))
    if text.startswith('"""', at):
        return 'this `"""` string is never closed', 'end it with `"""`', (at, at + 3)
    if char == "→":
        return f"unexpected {_describe_char(char)}", "did you mean `->`?", (at, at + 1)
    if char == '"':
        line_end = text.find("\n", at)
        end = line_end if line_end >= 0 else len(text)
        return ("this string is never closed",
                'end it with `"` on the same line, or use `"""` for text over several lines', (at, end))
    if char == "'":
        return "unexpected character `'`", 'strings are written in double quotes: `"adamw"`', (at, at + 1)
    if char in "=:":
        return (f"unexpected {_describe_char(char)}",
                "write a setting as its name and value, without `=` or `:`: `learning_rate 1e-5`", (at, at + 1))
    if char in "[]":
        return (f"unexpected {_describe_char(char)}",
                "lists are written without brackets, with commas: `seeds 13, 21, 42`", (at, at + 1))
    return f"unexpected {_describe_char(char)}", None, (at, at + 1)


def _describe_char(char: str) -> str:
    if char == "\t":
        return "tab"
    return f"character `{char}`" if char.isprintable() else f"character U+{ord(char):04X}"


MAX_DEPTH = 32  # blocks inside blocks; real specs use three levels at most
_BRACES = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}]', re.S)


def too_deep(text: str) -> int | None:
    """Offset of the first `{` nested more than `MAX_DEPTH` deep (strings and comments skipped), or None.

    Checked before parsing: the syntax tree is built and walked recursively.
    """
    depth = 0
    for match in _BRACES.finditer(text):
        brace = match.group(0)
        if brace == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif brace == "}":
            depth = max(depth - 1, 0)
    return None


def _open_brace(text: str) -> int | None:
    """Offset of the innermost `{` left open at the end of `text` (strings and comments skipped)."""
    stack: list[int] = []
    for match in _BRACES.finditer(text):
        if match.group(0) == "{":
            stack.append(match.start())
        elif match.group(0) == "}" and stack:
            stack.pop()
    return stack[-1] if stack else None


_MAIN_TOKENS = [
    ("_NL", r"\r?\n|#"),
    ("STRING", r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"'),
    ("NUMBER", r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"),
    ("NAME", r"(?!\d)\w+(?:-\w+)*"),
    ("_ARROW", r"->"),
    ("_CLOSE_FIELD", r"\}\}"),
    ("LBRACE", r"\{"),
    ("RBRACE", r"\}"),
    ("COMMA", r","),
    ("CHAR", r"."),
]


def _relex(token: Token, text: str, names: tuple[str, ...]) -> Token:
    """Re-read a token that Lark's fallback lexer took as template text (a `TEXT` token)."""
    if token.type != "TEXT":
        return token
    for name, pattern in _MAIN_TOKENS:
        if name in names:
            match = re.compile(pattern, re.S).match(text, token.start_pos)
            if match:
                return Token(name, match.group(0), start_pos=match.start(), end_pos=match.end())
    return token


def _spec_token(error: UnexpectedToken, text: str):
    token = _relex(error.token, text, ("_NL", "STRING", "NUMBER", "NAME", "_ARROW", "LBRACE", "RBRACE", "COMMA", "CHAR"))
    expected = set(error.expected)
    if token.type == "CHAR":
        return _bad_character(UnexpectedCharacters(text, token.start_pos, 0, 0), text, False)
    if token.type == "STRING" and not token.value.endswith('"') or token.value == '"':
        return _bad_character(UnexpectedCharacters(text, token.start_pos, 0, 0), text, False)
    where = _token_range(token, text)
    found = _found(token)
    if token.type == "NUMBER" and re.match(r"\w", text[token.end_pos:token.end_pos + 1]):
        word = re.match(r"[\w.+-]+", text[token.start_pos:]).group(0)
        return f"`{word}` is not a number", "write numbers in full, like `16000` or `1e-5`", (
            token.start_pos, token.start_pos + len(word))
    if "PROMPTLANG" in expected:
        return _not_a_spec(text, _first_statement_offset(text))
    if expected == {"NUMBER"} and _previous_word(text, where[0]) == "promptlang":
        return "the `promptlang` line needs a language version", "write `promptlang 1`", where
    if token.type == "$END" and "RBRACE" in expected:
        brace = _open_brace(text)
        if brace is not None:
            return "this block is never closed", "add a `}` to end it", (brace, brace + 1)
    return _out_of_place(token, expected, text, where, found)


def _out_of_place(token: Token, expected: set, text: str, where: tuple[int, int], found: str):
    """(message, hint, where) for a token in the wrong place, worded from the word before it and what
    the parser expected there."""
    previous = _previous_word(text, where[1] if token.type == "$END" else where[0])
    same_line = "\n" not in text[_previous_end(text, where[0]):where[0]]
    if token.type in ("_NL", "$END", "RBRACE") and expected & _VALUE_TERMINALS \
            and previous and previous.endswith(","):
        comma = text.rindex(",", 0, where[1] if token.type == "$END" else where[0])
        return "a list ends with `,`", "remove the last `,`, or add the missing value", (comma, comma + 1)
    if token.type == "RBRACE" and "RBRACE" not in expected:
        if expected & _VALUE_TERMINALS and same_line and token.type != "$END":
            return f"missing a value after `{previous}`", "give the setting a value, like `epochs 3`", where
        return "unexpected `}`: no block is open here", "remove it, or open a block with `data {`", where
    if token.type in ("_NL", "$END", "RBRACE") and expected & _VALUE_TERMINALS:
        if previous == "labels":
            return "missing the label names after `labels`", "list them: `labels negative, positive`", where
        return f"missing a value after `{previous}`", "give the setting a value, like `epochs 3`", where
    if previous == "labels" or (expected == {"NAME"} and previous and previous.endswith(",")
                                and _line_start_word(text, where[0]) == "labels"):
        return (f"labels are names, found {found}",
                "name them (`labels negative, positive`) and map raw values with `label_values` in `data`", where)
    if previous == "import" and token.type != "STRING":
        return f"expected the imported file's path, found {found}", 'put the path in quotes: `import "common.prompt"`', where
    if token.type in _VALUE_TERMINALS and expected <= {"LBRACE", "NAME"} and token.type != "NAME":
        return (f"unexpected {found}: a setting outside any block",
                "settings go inside a block, for example `method pet { epochs 3 }`", where)
    if token.type == "STRING" and expected & {"NAME"} and not expected & {"STRING"}:
        return (f"expected a name, found the string {found}",
                "names (labels, templates, columns) are written without quotes", where)
    if token.type in _VALUE_TERMINALS and "_NL" in expected and "COMMA" in expected:
        return (f"unexpected {found} after a complete setting",
                "separate the values of a list with `,`, and put each setting on its own line", where)
    if token.type in _VALUE_TERMINALS and "RBRACE" in expected and "_NL" in expected:
        return (f"unexpected {found} after a complete setting",
                "put each setting on its own line", where)
    if token.type == "_ARROW":
        return ("unexpected `->`: arrows go in mappings such as `positive -> \"great\"`",
                "a mapping's left side is one name (a label)", where)
    if token.type == "LBRACE" and "_NL" in expected:
        return ("unexpected `{`", "a block starts with its kind and an optional name, like `data {` or "
                "`method pet {`", where)
    if expected == {"LBRACE"}:
        return (f"unexpected {found}, expected `{{`",
                "a block is its kind, an optional name, then `{`: `method pet {`", where)
    return f"unexpected {found}", f"expected {_expected(expected)}", where


def _previous_end(text: str, position: int) -> int:
    """Where the last word before `position` ends."""
    start = max(position - _LOOK_BACK, 0)
    match = re.search(r"\S\s*$", text[start:position])
    return start + match.start() + 1 if match else start


def _line_start_word(text: str, position: int) -> str | None:
    start = text.rfind("\n", 0, position) + 1
    match = re.match(r"\s*(\S+)", text[start:position])
    return match.group(1) if match else None


def _template_token(error: UnexpectedToken, text: str):
    token = _relex(error.token, text, ("_CLOSE_FIELD", "NAME", "CHAR"))
    expected = set(error.expected)
    where = _token_range(token, text)
    if token.type == "$END":
        brace = text.rfind("{{")
        return "this field is never closed", "close it with `}}`", (brace, brace + 2)
    if token.type == "_CLOSE_FIELD" and "NAME" in expected:
        if _before(text, where[0]).rstrip().endswith("|"):
            return "missing a filter name after `|`", "write a filter, like `| lower_first`, or remove the `|`", where
        return "empty field", "write a column name, like `{{ sentence }}`", where
    if token.type in ("NAME", "CHAR") and expected >= {"VBAR", "_CLOSE_FIELD"}:
        field = _previous_word(text, where[0])
        return "this field is never closed", f"add `}}}}` after `{field}`", where
    if "RPAR" in expected or "LPAR" in expected and token.type != "LPAR":
        return (f"unexpected {_found(token)} in a filter",
                "filters look like `| lower_first` or `| shorten(head)`", where)
    return (f"unexpected {_found(token)} inside a field",
            "a field holds a column name and filters, like `{{ sentence | lower_first }}`", where)
