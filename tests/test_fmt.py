"""`promptlang fmt`: canonical layout, comments kept, idempotent, meaning unchanged."""

from pathlib import Path

import pytest

from promptlang.language.builder import build
from promptlang.language.fmt import comments, format_source
from promptlang.language.parser import parse
from promptlang.language.source import Source

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "specs").rglob("*.prompt")) + sorted((ROOT / "tests" / "golden" / "inputs").glob("*.prompt"))

# (input, canonical output): each pair shows one layout rule.
CASES = {
    "indent and one setting per line": (
        'promptlang 1\ndata { train "a.tsv" }\n',
        'promptlang 1\n\ndata {\n  train "a.tsv"\n}\n'),
    "values of consecutive settings align": (
        "promptlang 1\nmethod pet {\n  steps 1\n  learning_rate 1e-5\n}\n",
        "promptlang 1\n\nmethod pet {\n  steps         1\n  learning_rate 1e-5\n}\n"),
    "a blank line ends an alignment run": (
        "promptlang 1\nmethod pet {\n  steps 1\n\n  learning_rate 1e-5\n}\n",
        "promptlang 1\n\nmethod pet {\n  steps 1\n\n  learning_rate 1e-5\n}\n"),
    "many blank lines become one": (
        "promptlang 1\n\n\n\nlabels a, b\n",
        "promptlang 1\n\nlabels a, b\n"),
    "lists get one space after each comma": (
        "promptlang 1\nlabels a ,b,   c\n",
        "promptlang 1\n\nlabels a, b, c\n"),
    "a list over several lines is joined": (
        "promptlang 1\ndata {\n  seeds 1,\n    2,\n    3\n}\n",
        "promptlang 1\n\ndata {\n  seeds 1, 2, 3\n}\n"),
    "short templates align": (
        'promptlang 1\ntemplate a "x [MASK]"\ntemplate long_name "y [MASK]"\n',
        'promptlang 1\n\ntemplate a         "x [MASK]"\ntemplate long_name "y [MASK]"\n'),
    "mapping arrows align": (
        'promptlang 1\nverbalizer v {\n  a -> "x"\n  longer -> "y", "z"\n}\n',
        'promptlang 1\n\nverbalizer v {\n  a      -> "x"\n  longer -> "y", "z"\n}\n'),
    "empty block": (
        "promptlang 1\nmethod zero_shot {\n}\n",
        "promptlang 1\n\nmethod zero_shot {}\n"),
    "strings and numbers stay as written": (
        'promptlang 1\nmethod pet {\n  learning_rate 1E-5\n}\ntemplate t "\\u00e9 [MASK]\\t"\n',
        'promptlang 1\n\nmethod pet {\n  learning_rate 1E-5\n}\n\ntemplate t "\\u00e9 [MASK]\\t"\n'),
    "comments stay where they are": (
        "# head\npromptlang 1 # v\n# about labels\nlabels a # the a\n\n# tail\n",
        "# head\npromptlang 1  # v\n\n# about labels\nlabels a  # the a\n\n# tail\n"),
    "a comment inside a wrapped list moves above it": (
        "promptlang 1\ndata {\n  seeds 1,\n    # more\n    2\n}\n",
        "promptlang 1\n\ndata {\n  # more\n  seeds 1, 2\n}\n"),
    "a comment before the closing brace stays in the block": (
        "promptlang 1\ndata {\n  shots 1\n  # last\n}\n",
        "promptlang 1\n\ndata {\n  shots 1\n  # last\n}\n"),
    "nested blocks are set apart": (
        "promptlang 1\nmethod pet {\n  steps 1\n  distill {\n    temperature 2\n  }\n  seeds 1\n}\n",
        "promptlang 1\n\nmethod pet {\n  steps 1\n\n  distill {\n    temperature 2\n  }\n\n  seeds 1\n}\n"),
    "triple-quoted strings keep their lines": (
        'promptlang 1\ntemplate t """a\n  b [MASK]"""\n',
        'promptlang 1\n\ntemplate t """a\n  b [MASK]"""\n'),
}


@pytest.mark.parametrize("name", CASES)
def test_layout(name):
    source, expected = CASES[name]
    assert format_source(source)[0] == expected
    assert format_source(expected)[0] == expected


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_idempotent_and_meaning_kept(path):
    source = Source.read(path)
    once, _ = format_source(source)
    twice, _ = format_source(Source(once, source.path))
    assert once == twice
    formatted = Source(once, source.path)
    assert build(parse(formatted)[0], formatted).spec == build(parse(source)[0], source).spec


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_comments_kept(path):
    source = Source.read(path)
    formatted = Source(format_source(source)[0], source.path)
    assert [c.text for c in comments(formatted)] == [c.text for c in comments(source)]


def test_syntax_errors_give_no_text():
    text, diagnostics = format_source("promptlang 1\nlabels a b\n")
    assert text is None
    assert [d.message for d in diagnostics.errors] == ["unexpected `b` after a complete setting"]
