"""The plan of every shipped spec, compiled against the tiny tokenizer of its model's family, as a golden file.

`promptlang plan --json` prints this plan; a change to the compiler (patterns as token ids,
label words, the stage graph and its cost) shows up here as a diff to review. The real
tokenizers cannot be loaded here (the hub is unreachable), so each spec is compiled against
the tiny tokenizer of its family from tests/tinymodels.py; the data is the shipped data.
Regenerate with `pytest --regen-goldens tests/test_plan_goldens.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from promptlang import runner  # noqa: E402
from promptlang.api import analyze  # noqa: E402
from promptlang.language.spec import Spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "plan"
SPECS = [p for p in sorted((ROOT / "specs").glob("*.prompt")) if isinstance(analyze(p).spec, Spec)]

@pytest.fixture(scope="module")
def tokenizers():
    return {family: build() for family, build in tinymodels.TOKENIZERS.items()}


def test_every_shipped_spec_names_its_family():
    """The golden plans use the family the spec states (no config can be read without the hub)."""
    assert len(SPECS) >= 14
    assert all(analyze(p).spec.model.family.value != "auto" for p in SPECS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_plan(path, tokenizers, monkeypatch, golden):
    family = analyze(path).spec.model.family.value
    monkeypatch.setattr(runner, "load_tokenizer", lambda model, directory: tokenizers[family])
    monkeypatch.setattr(runner, "family_for", lambda model, directory: family)
    plan = runner.prepare(path).plan
    # the tiny tokenizer's name is where it was loaded from: a path of this machine
    plan = plan.model_copy(update={"tokenizer": plan.tokenizer.model_copy(update={"name": f"tiny-{family}"})})
    golden(GOLDEN / f"{path.stem}.json", plan.model_dump_json(indent=1) + "\n")
