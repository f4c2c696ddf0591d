"""Property-based fuzzing: whatever the input, the front end answers with diagnostics, never an exception."""

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlang import analyze
from promptlang.language.builder import build
from promptlang.language.fmt import format_source
from promptlang.language.parser import parse
from promptlang.language.source import Source

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").rglob("*.prompt"))]
SIGNIFICANT = list('{}[]()",#->\n\t :=|\\*') + ["{{", "}}", "[MASK]", "[DEMOS]", '"""', "promptlang", "->"]
RAW_NAMES = re.compile(r"RBRACE|LBRACE|__ANON|_NL\b|\$END|Token\(|NAME\b|STRING\b|NUMBER\b")
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated_spec(draw):
    """A shipped spec with a few random edits: deletions, insertions, duplicated or swapped lines."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "swap"]))
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif kind == "insert":
            piece = draw(st.one_of(st.sampled_from(SIGNIFICANT), st.text(max_size=4)))
            text = text[:at] + piece + text[at:]
        elif kind == "duplicate" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
        elif lines:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


def _assert_located(text: str, diagnostics) -> None:
    line_count = text.count("\n") + 1
    for d in diagnostics.items:
        if d.span.file != "fuzz.prompt":
            continue  # a diagnostic in an imported file
        assert 1 <= d.span.line <= line_count, d
        assert d.span.col >= 1, d
        assert d.message and not RAW_NAMES.search(d.message), d.message
        assert "Traceback" not in d.message


@FUZZ
@given(st.text(max_size=300))
def test_random_text_gives_diagnostics(text):
    analysis = analyze(Source(text, "fuzz.prompt"))
    assert not analysis.ok
    _assert_located(text, analysis.diagnostics)


@FUZZ
@given(st.lists(st.sampled_from(SIGNIFICANT + list("abc 123\n") + ["labels", "data", "template"]), max_size=60))
def test_random_spec_like_text_gives_diagnostics(pieces):
    text = "".join(pieces)
    analysis = analyze(Source("promptlang 1\n" + text, "fuzz.prompt"))
    _assert_located("promptlang 1\n" + text, analysis.diagnostics)


@FUZZ
@given(mutated_spec())
def test_mutated_specs_give_diagnostics(text):
    analysis = analyze(Source(text, str(ROOT / "specs" / "fuzz.prompt")))
    for d in analysis.diagnostics.items:
        assert d.span.line >= 1 and d.span.col >= 1
        assert not RAW_NAMES.search(d.message), d.message


@FUZZ
@given(mutated_spec())
def test_fmt_on_mutated_specs_is_idempotent_and_keeps_meaning(text):
    source = Source(text, str(ROOT / "specs" / "fuzz.prompt"))
    formatted, _ = format_source(source)
    if formatted is None:
        return
    again, _ = format_source(Source(formatted, source.path))
    assert again == formatted
    before, after = parse(source)[0], parse(Source(formatted, source.path))[0]
    assert after is not None
    built_before, built_after = build(before, source), build(after, Source(formatted, source.path))
    dump = lambda b: b.spec.model_dump() if b.spec is not None else None  # noqa: E731
    assert dump(built_before) == dump(built_after)
