"""The language reference's examples stay true: each parses, and each complete spec checks clean
unless the page shows it failing (a `console` block right after it) or reformatted ("into")."""

import re
from pathlib import Path

import pytest

from promptlang import analyze
from promptlang import parse
from promptlang.language.source import Source

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


def _what_runs(text: str) -> str:
    match = re.search(r"<!-- what-runs[^>]*-->\n(.*?)<!-- /what-runs -->", text, re.S)
    assert match, "the what-runs paragraph is missing"
    return match.group(1)


def test_readme_and_reference_say_the_same_about_what_runs():
    """One paragraph says what `promptlang run` runs; README.md and docs/language.md carry it word for word."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _what_runs(readme) == _what_runs(DOC)


def test_what_runs_names_every_method_and_everything_refused():
    from promptlang.language.spec import METHOD_KINDS
    from promptlang.language.support import FEATURES

    paragraph = " ".join(_what_runs(DOC).split())
    runs, refused = paragraph.split("cannot run yet", 1) if FEATURES else (paragraph, "")
    for kind in METHOD_KINDS:
        assert f"`{kind}`" in runs, kind
    for feature in FEATURES:
        assert feature in refused, feature
    if FEATURES:
        assert "warns" in refused and "refuses" in refused
    else:
        assert "cannot run yet" not in paragraph and "runs every spec that `promptlang check` accepts" in paragraph
