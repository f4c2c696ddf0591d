"""The language reference's examples stay true: each parses, and each complete spec checks clean
unless the page shows it failing (a `console` block right after it) or reformatted ("into")."""

import re
from pathlib import Path

import pytest

from promptlang import analyze, parse
from promptlang.source import Source

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
EXAMPLES = [(DOC[: m.start()].count("\n") + 1, m.group(1), m.group(2).lstrip())
            for m in re.finditer(r"^```promptlang\n(.*?)^```\n(.{0,40})", DOC, re.S | re.M)
            if m.group(1).startswith("promptlang 1")]


def test_there_are_examples():
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("line, text, after", EXAMPLES, ids=[f"line-{line}" for line, _, _ in EXAMPLES])
def test_example(line, text, after):
    source = Source(text, str(ROOT / "specs" / f"docs-line-{line}.prompt"))  # paths resolve as in specs/
    nodes, diagnostics = parse(source)
    assert nodes is not None, diagnostics
    shown_failing = after.startswith("```console") or after.startswith("into")
    if "data {" in text and not shown_failing:
        analysis = analyze(source)
        assert not analysis.diagnostics.errors, analysis.diagnostics
