"""The parser's shipped LALR tables: current, deterministic, equivalent to building, and never trusted blindly."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from promptlang.language import parser, parser_tables

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = parser.grammar_path().read_text(encoding="utf-8")
SPECS = sorted((ROOT / "specs").rglob("*.prompt")) + sorted((ROOT / "tests" / "golden" / "inputs").glob("*.prompt"))
REGENERATE = '.venv/bin/python -c "from promptlang.language import parser_tables; parser_tables.write()"'


@pytest.fixture(scope="module")
def built():
    return parser_tables.build(GRAMMAR)


def test_shipped_tables_match_the_grammar_and_lark(built):
    shipped = parser_tables.TABLES_PATH.read_text(encoding="utf-8")
    assert shipped == parser_tables.tables_text(built, GRAMMAR), \
        f"{parser_tables.TABLES_PATH.name} is stale (grammar, lark or options changed): regenerate with {REGENERATE}"


def test_tables_text_does_not_depend_on_the_hash_seed():
    code = ("import hashlib; from promptlang.language import parser, parser_tables as t; "
            "g = parser.grammar_path().read_text(encoding='utf-8'); "
            "print(hashlib.sha256(t.tables_text(t.build(g), g).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_lark_parser_loads_the_tables_instead_of_building(monkeypatch):
    def refuse(grammar):
        raise AssertionError("built the parser although the shipped tables are current")

    monkeypatch.setattr(parser_tables, "build", refuse)
    assert isinstance(parser.lark_parser.__wrapped__(), Lark)


def _described(tree):
    """A tree as nested tuples, with every node's and token's place in the text."""
    if isinstance(tree, Token):
        return tree.type, str(tree), tree.start_pos, tree.end_pos
    meta = tree.meta
    return (tree.data, getattr(meta, "start_pos", None), getattr(meta, "end_pos", None),
            [_described(child) for child in tree.children])


def _outcome(lark: Lark, text: str, start: str):
    """The tree, or the syntax error's kind, place and what was expected there."""
    try:
        return _described(lark.parse(text, start=start))
    except UnexpectedInput as error:
        expected = getattr(error, "expected", None) or getattr(error, "allowed", None) or ()
        return type(error).__name__, error.line, error.column, sorted(expected)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_loaded_parser_parses_like_a_built_one(path, built):
    loaded = parser_tables.load(GRAMMAR)
    text = path.read_text(encoding="utf-8")
    cuts = [text] + [text[:len(text) * k // 7] for k in range(1, 7)]  # the whole spec, then broken ones
    for cut in cuts:
        assert _outcome(loaded, cut, "spec") == _outcome(built, cut, "spec")
        assert _outcome(loaded, cut, "statements") == _outcome(built, cut, "statements")


@pytest.mark.parametrize("raw", ["plain {x} and [MASK]", "{unclosed", "[SEP] [DEMOS] {a.b}", "}", "[NOPE"])
def test_loaded_parser_parses_templates_like_a_built_one(raw, built):
    assert _outcome(parser_tables.load(GRAMMAR), raw, "template_text") == _outcome(built, raw, "template_text")


def _retyped(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def _with_options(text: str, **options) -> str:
    tables = json.loads(text)
    tables["data"]["options"].update(options)
    return json.dumps(tables)


# (case, what is done to the shipped file's text, whether it still loads)
TAMPERED = [
    ("untouched", lambda text: text, True),
    ("unknown __type__", lambda text: _retyped(text, '"__type__":"PatternRE"', '"__type__":"os.system"'), False),
    ("a lark class outside the namespace", lambda text: _retyped(text, '"__type__":"PatternRE"', '"__type__":"Lark"'),
     False),
    ("a rule where a terminal belongs", lambda text: _retyped(text, '"__type__":"TerminalDef"', '"__type__":"Rule"'),
     False),
    ("memo reference out of range", lambda text: _retyped(text, '{"@":0}', '{"@":99999}'), False),
    ("truncated", lambda text: text[:len(text) // 2], False),
    ("not JSON", lambda text: "\x80 not json", False),
    ("a list, not an object", lambda text: "[1, 2, 3]", False),
    ("no memo", lambda text: _retyped(text, '"memo":', '"mem0":'), False),
    ("another grammar", lambda text: _retyped(text, '"grammar_sha256":"', '"grammar_sha256":"0'), False),
    ("another lark", lambda text: _retyped(text, '"lark":"', '"lark":"0.'), False),
    ("options that name code are pinned", lambda text: _with_options(
        text, tree_class="os.system", postlex="os.system", transformer="os.system",
        lexer_callbacks={"NAME": "os.system"}, _plugins={"LALR_Parser": "subprocess.Popen"}), True),
]


@pytest.mark.parametrize("tamper, loads", [case[1:] for case in TAMPERED], ids=[case[0] for case in TAMPERED])
def test_tampered_tables_are_not_trusted(tamper, loads, tmp_path, built):
    path = tmp_path / "tables.json"
    path.write_text(tamper(parser_tables.TABLES_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    loaded = parser_tables.load(GRAMMAR, path)
    assert (loaded is not None) == loads
    if loaded is not None:
        assert (loaded.options.tree_class, loaded.options.postlex, loaded.options._plugins) == (None, None, {})
    spec = SPECS[0].read_text(encoding="utf-8")
    fallen_back = parser_tables.parser_for(GRAMMAR, path)  # built when it cannot be loaded
    assert _outcome(fallen_back, spec, "spec") == _outcome(built, spec, "spec")


def test_missing_tables_mean_building(tmp_path):
    assert parser_tables.load(GRAMMAR, tmp_path / "absent.json") is None
    assert isinstance(parser_tables.parser_for(GRAMMAR, tmp_path / "absent.json"), Lark)


def test_write_replaces_the_file_whole(tmp_path, monkeypatch, built):
    path = tmp_path / "tables.json"
    parser_tables.write(path, parser_tables.GRAMMAR_SOURCE)
    assert path.read_text(encoding="utf-8") == parser_tables.tables_text(built, GRAMMAR)
    assert oct(path.stat().st_mode & 0o777) == "0o644"

    def fail(source, target):
        raise OSError("disk full")

    path.write_text("old", encoding="utf-8")
    monkeypatch.setattr(parser_tables.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        parser_tables.write(path, parser_tables.GRAMMAR_SOURCE)
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables.json"]


def test_wheel_carries_the_tables(tmp_path):
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = next(builders.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("promptlang/language/parser_tables.json") == parser_tables.TABLES_PATH.read_bytes()
