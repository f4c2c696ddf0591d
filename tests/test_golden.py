"""Golden files per stage: spec → syntax nodes → spec model JSON, and → formatted text.

Inputs live in tests/golden/inputs/*.prompt; each stage's output sits beside them in
tests/golden/<stage>/. Regenerate with `pytest --regen-goldens` and review the diff.
"""

import json
from pathlib import Path

import pytest

from promptlang import analyze
from promptlang.language.fmt import format_source
from promptlang.language.source import Source
from promptlang.language.syntax import to_data

GOLDEN = Path(__file__).parent / "golden"
INPUTS = sorted((GOLDEN / "inputs").glob("*.prompt"))
SPECS = sorted((Path(__file__).parent.parent / "specs").rglob("*.prompt"))


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_nodes(path, golden):
    analysis = analyze(path)
    golden(GOLDEN / "nodes" / f"{path.stem}.json", json.dumps(to_data(analysis.nodes), indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("path", INPUTS + SPECS, ids=lambda p: p.stem)
def test_spec_model(path, golden):
    analysis = analyze(path)
    assert analysis.ok, analysis.diagnostics
    golden(GOLDEN / "spec" / f"{path.stem}.json", analysis.spec.model_dump_json(indent=1) + "\n")


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_formatted(path, golden):
    text, diagnostics = format_source(Source.read(path))
    golden(GOLDEN / "formatted" / path.name, text)
