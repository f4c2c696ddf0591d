"""Shared test options: `pytest --regen-goldens` rewrites the golden files."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--regen-goldens", action="store_true", help="rewrite golden files from the current output")
    parser.addoption("--device", default=None, help="run every model on this device (sets $PROMPTLANG_DEVICE): "
                                                    "cpu, cuda, cuda:N, mps")


def pytest_configure(config):
    os.environ.setdefault("PROMPTLANG_REPORT", "off")  # only tests that ask (`report_on`) pay for report.html
    device = config.getoption("--device")
    if device:
        os.environ["PROMPTLANG_DEVICE"] = device


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Family → a folder holding its tiny model and tokenizer (written once per module)."""
    import tinymodels

    root = tmp_path_factory.mktemp("models")
    return {family: tinymodels.save(family, root / family) for family in tinymodels.FAMILIES}


@pytest.fixture(scope="module")
def models():
    """Family → (model, tokenizer), in memory (built once per module)."""
    import tinymodels

    return {family: tinymodels.build(family) for family in tinymodels.FAMILIES}


@pytest.fixture
def promptlang_cache(tmp_path, monkeypatch):
    """A fresh promptlang cache (tokenized data, the stage store) per test, never the user's."""
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def report_on(monkeypatch):
    """`promptlang run` writes report.html, as it does for users (the suite leaves it out elsewhere)."""
    monkeypatch.setenv("PROMPTLANG_REPORT", "on")


@pytest.fixture
def golden(request):
    """Compare text with a golden file (or rewrite it under --regen-goldens)."""

    def compare(path: Path, text: str) -> None:
        if request.config.getoption("--regen-goldens") or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if not request.config.getoption("--regen-goldens"):
                pytest.fail(f"golden file {path.name} did not exist; written now, check it and rerun")
        assert text == path.read_text(encoding="utf-8")

    return compare
