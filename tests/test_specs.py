"""Every shipped spec checks clean, is formatted, and survives a format round trip."""

from pathlib import Path

import pytest

from promptlang import analyze
from promptlang.cli import main
from promptlang.language.fmt import format_source
from promptlang.language.source import Source
from promptlang.language.spec import Mixture, Spec
from promptlang.language.support import not_yet

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.prompt"))
METHODS = {"zero_shot", "in_context", "finetune", "prompt_finetune", "pet", "ipet"}


def test_there_are_specs():
    assert len(SPECS) >= 10


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_spec_checks_clean(path):
    """No errors; the only warnings are the features `run` cannot run yet (support.not_yet)."""
    analysis = analyze(path)
    assert analysis.ok, analysis.diagnostics
    expected = [item.message for item in not_yet(analysis.spec)] if isinstance(analysis.spec, (Spec, Mixture)) else []
    assert sorted(d.message for d in analysis.diagnostics.warnings) == sorted(expected), analysis.diagnostics


def test_shipped_specs_that_cannot_run_yet():
    waiting = {str(p.relative_to(ROOT / "specs")) for p in SPECS
               if isinstance(analyze(p).spec, (Spec, Mixture)) and not_yet(analyze(p).spec)}
    assert waiting == set()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_spec_is_formatted(path):
    text, _ = format_source(Source.read(path))
    assert text == path.read_text(encoding="utf-8")


def test_every_method_has_a_spec():
    kinds = {analyze(p).spec.method.kind for p in SPECS if hasattr(analyze(p).spec, "method")}
    assert kinds == METHODS


def test_check_specs_directory_exits_0(capsys):
    assert main(["check", str(ROOT / "specs")]) == 0
    assert capsys.readouterr().out.strip().endswith("checked 28 files: no problems")
