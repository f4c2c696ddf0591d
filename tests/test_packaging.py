"""The front end stays free of torch, and the installed package carries the grammar."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = ROOT / "grammar" / "promptlang.lark"
HEAVY = ("torch", "transformers", "tokenizers", "numpy")


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return {m for m in (out.stdout.splitlines() or [""])[-1].split(",") if m}


@pytest.mark.parametrize("code", [
    "import promptlang",
    "import promptlang.cli",
    "from promptlang.cli import main; main(['check', 'specs'])",
    "from promptlang.cli import main; main(['fmt', '--check', 'specs'])",
])
def test_front_end_does_not_import_torch(code):
    assert _loaded_after(code) == set()


def test_grammar_in_use_is_the_grammar_file():
    from promptlang.language.parser import grammar_path

    assert grammar_path().read_bytes() == GRAMMAR.read_bytes()


def test_wheel_carries_the_grammar(tmp_path):
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = next(builders.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("promptlang/_grammar/promptlang.lark") == GRAMMAR.read_bytes()
