"""The parser's LALR tables as plain JSON, shipped in the package so that a process loads them instead of building them.

Regenerate `parser_tables.json` after changing `grammar/promptlang.lark` or upgrading lark (a test says when):

    .venv/bin/python -c "from promptlang.language import parser_tables; parser_tables.write()"
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import lark
from lark import Lark
from lark.exceptions import LarkError
from lark.grammar import Rule
from lark.lexer import TerminalDef

TABLES_PATH = Path(__file__).with_name("parser_tables.json")
GRAMMAR_SOURCE = Path(__file__).resolve().parents[2] / "grammar" / "promptlang.lark"  # the checkout's grammar
FORMAT = 1
LARK_OPTIONS: dict[str, Any] = {
    "start": ["spec", "statements", "template_text"],
    "parser": "lalr",
    "propagate_positions": True,
    "maybe_placeholders": False,
}
# The options a loaded parser may be given (lark's `_LOAD_ALLOWED_OPTIONS`), each pinned to a plain value, so that
# no value in the file chooses a post-lexer, transformer, callback, tree class or plug-in.
_PINNED = {"postlex": None, "transformer": None, "lexer_callbacks": {}, "tree_class": None, "_plugins": {},
           "regex": False, "use_bytes": False, "g_regex_flags": 0, "debug": False,
           "propagate_positions": LARK_OPTIONS["propagate_positions"]}
_INT_KEYS = "int-keyed"  # a dict keyed by numbers is written {"int-keyed": [[key, value], ...]} (JSON keys are text)
_SHIFT = 0  # lark's serialized action: (0, next state) shifts, (1, rule) reduces
_UNUSABLE = (OSError, ValueError, LookupError, TypeError, AttributeError, AssertionError, RecursionError, LarkError)


def parser_for(grammar: str, path: Path = TABLES_PATH) -> Lark:
    """The LALR parser for `grammar`: loaded from the tables at `path` when they were made from it, else built.

    Args:
        grammar: the grammar's text.
        path: the tables file.

    Returns:
        The parser (the same either way; loading takes a few milliseconds, building tens).
    """
    return load(grammar, path) or build(grammar)


def build(grammar: str) -> Lark:
    """The LALR parser for `grammar`, built from scratch (lark computes the tables)."""
    return Lark(grammar, **LARK_OPTIONS)


def fingerprint(grammar: str) -> dict[str, Any]:
    """What the tables were made from: this file format, the grammar's text, lark's version and the options."""
    return {"format": FORMAT, "grammar_sha256": hashlib.sha256(grammar.encode("utf-8")).hexdigest(),
            "lark": lark.__version__, "options": LARK_OPTIONS}


def load(grammar: str, path: Path = TABLES_PATH) -> Lark | None:
    """The parser rebuilt from the tables at `path`; None when they are missing, stale, damaged or tampered with.

    No pickle, and nothing in the file can run code: it is JSON (dicts, lists, text, numbers), and lark's
    deserializer makes an object only by looking its `__type__` up in a fixed namespace of lark's own classes
    (TerminalDef, Rule, PatternRE, ...), setting that class's declared fields; an unknown name is a KeyError.
    The options that could name code are pinned (`_PINNED`), whatever the file says.
    """
    try:
        tables = json.loads(path.read_text(encoding="utf-8"), object_hook=_int_keyed)
        if tables["fingerprint"] != fingerprint(grammar):
            return None
        return Lark._load_from_dict(tables["data"], tables["memo"], **_PINNED)
    except _UNUSABLE:
        return None


def tables_text(parser: Lark, grammar: str) -> str:
    """The JSON text of `parser`'s tables: the same for the same grammar and lark, whatever the hash seed."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["parser"]["parser"] = _canonical_table(data["parser"]["parser"])
    tables = {"fingerprint": fingerprint(grammar), "data": data, "memo": memo}
    return json.dumps(_json_ready(tables), ensure_ascii=True, separators=(",", ":")) + "\n"


def write(path: Path = TABLES_PATH, grammar_file: Path = GRAMMAR_SOURCE) -> None:
    """Build the parser for `grammar_file` and write its tables to `path` (whole or not at all)."""
    grammar = grammar_file.read_text(encoding="utf-8")
    text = tables_text(build(grammar), grammar)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the tables are package data like the modules
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _canonical_table(table: dict[str, Any]) -> dict[str, Any]:
    """The parse table with states numbered breadth-first from the start states, and tokens numbered by name.

    lark numbers both while iterating over sets, so its numbers change with the hash seed; these do not.
    """
    names = table["tokens"]
    states = {state: {names[token]: action for token, action in actions.items()}
              for state, actions in table["states"].items()}
    number = _breadth_first(states, [state for _, state in sorted(table["start_states"].items())])
    tokens = sorted({name for actions in states.values() for name in actions})
    index = {name: position for position, name in enumerate(tokens)}
    renumbered = {number[state]: {index[name]: _renumbered(action, number) for name, action in sorted(actions.items())}
                  for state, actions in sorted(states.items(), key=lambda item: number[item[0]])}
    return {"tokens": dict(enumerate(tokens)), "states": renumbered,
            "start_states": {start: number[state] for start, state in sorted(table["start_states"].items())},
            "end_states": {start: number[state] for start, state in sorted(table["end_states"].items())}}


def _breadth_first(states: dict[int, dict[str, Any]], starts: list[int]) -> dict[int, int]:
    """Each state's new number: its place in a breadth-first walk of the shifts, tokens in name order."""
    number: dict[int, int] = {}
    queue = deque(starts)
    while queue:
        state = queue.popleft()
        if state not in number:
            number[state] = len(number)
            queue.extend(arg for _, (action, arg) in sorted(states[state].items()) if action == _SHIFT)
    if len(number) != len(states):
        raise ValueError(f"{len(states) - len(number)} parser states cannot be reached from the start states")
    return number


def _renumbered(action: tuple[int, Any], number: dict[int, int]) -> tuple[int, Any]:
    kind, arg = action
    return (kind, number[arg]) if kind == _SHIFT else (kind, arg)


def _json_ready(value: Any) -> Any:
    """`value` with each dict keyed by numbers turned into an `int-keyed` list of pairs."""
    if isinstance(value, dict):
        if value and all(isinstance(key, int) for key in value):
            return {_INT_KEYS: [[key, _json_ready(item)] for key, item in value.items()]}
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _int_keyed(data: dict[str, Any]) -> Any:
    """The dict an `int-keyed` list of pairs stands for (a JSON object hook; other objects pass through)."""
    if _INT_KEYS in data:
        return {key: value for key, value in data[_INT_KEYS]}
    return data
