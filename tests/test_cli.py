"""The command line: exit codes, output formats, help and version."""

import json
import shutil
from pathlib import Path

import pytest

from promptlang import __version__
from promptlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = """promptlang 1

labels negative, positive

data {
  test "test.tsv"
  text sentence
}

model {
  hub "roberta-large"
}

template t "{{ sentence }} It was [MASK]."

verbalizer v {
  negative -> "bad"
  positive -> "good"
}

method zero_shot {}
"""
BAD = GOOD.replace("{{ sentence }}", "{{ sentense }}").replace("zero_shot {}", "zero_shot {\n  calibrate maybe\n}")


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "test.tsv").write_text("label\tsentence\npositive\tfine\n", encoding="utf-8")
    (tmp_path / "good.prompt").write_text(GOOD, encoding="utf-8")
    (tmp_path / "bad.prompt").write_text(BAD, encoding="utf-8")
    (tmp_path / "messy.prompt").write_text(GOOD.replace("\n\n", "\n"), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("args, code", [
    (["check", "good.prompt"], 0),
    (["check", "bad.prompt"], 1),
    (["check", "good.prompt", "bad.prompt"], 1),
    (["check", "."], 1),
    (["check", "messy.prompt"], 0),
    (["check", "missing.prompt"], 2),
    (["check", "--format", "xml", "good.prompt"], 2),
    (["check"], 2),
    ([], 2),
    (["fmt", "--check", "good.prompt"], 0),
    (["fmt", "--check", "bad.prompt"], 0),  # fmt is about layout, not meaning
    (["fmt", "--check", "messy.prompt"], 1),
    (["fmt", "--check", "."], 1),
    (["dump", "good.prompt"], 0),
    (["dump", "--stage", "nodes", "bad.prompt"], 0),
    (["dump", "bad.prompt"], 1),
    (["schema"], 0),
])
def test_exit_codes(specs, monkeypatch, args, code):
    monkeypatch.chdir(specs)
    assert run(args) == code


def run(args: list[str]) -> int:
    """The exit code of `promptlang ARGS`, whether main returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as exit_:
        return exit_.code


def test_text_output(specs, monkeypatch, capsys):
    monkeypatch.chdir(specs)
    main(["check", "bad.prompt"])
    assert capsys.readouterr().out == """\
error: `calibrate` must be `true` or `false`, got `maybe`
  --> bad.prompt:22:13
   |
22 |   calibrate maybe
   |             ^^^^^
   = help: divide out the content-free prediction (Calibrate before use)

checked 1 file: 1 error
"""


def test_json_output(specs, monkeypatch, capsys):
    monkeypatch.chdir(specs)
    main(["check", "--format", "json", "bad.prompt"])
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 1 and report["warnings"] == 0
    assert report["diagnostics"] == [{
        "severity": "error", "file": "bad.prompt", "line": 22, "col": 13, "end_line": 22, "end_col": 18,
        "message": "`calibrate` must be `true` or `false`, got `maybe`",
        "hint": "divide out the content-free prediction (Calibrate before use)",
    }]


def test_github_output(specs, monkeypatch, capsys):
    monkeypatch.chdir(specs)
    main(["check", "--format", "github", "bad.prompt"])
    assert capsys.readouterr().out == (
        "::error file=bad.prompt,line=22,col=13,endLine=22,endColumn=18,title=promptlang::"
        "`calibrate` must be `true` or `false`, got `maybe` "
        "(help: divide out the content-free prediction (Calibrate before use))\n")


def test_semantic_errors_after_the_model_validates(specs, monkeypatch, capsys):
    (specs / "bad.prompt").write_text(GOOD.replace("{{ sentence }}", "{{ sentense }}"), encoding="utf-8")
    monkeypatch.chdir(specs)
    assert main(["check", "-q", "bad.prompt"]) == 1
    out = capsys.readouterr().out
    assert "error: `sentense` is not a column of the data" in out
    assert "= help: did you mean `sentence`?" in out
    assert "checked" not in out


def test_strict_fails_on_warnings(specs, monkeypatch):
    (specs / "warn.prompt").write_text(GOOD.replace("It was [MASK].", "It was [MASK]. [mask]"), encoding="utf-8")
    monkeypatch.chdir(specs)
    assert main(["check", "warn.prompt"]) == 0
    assert main(["check", "--strict", "warn.prompt"]) == 1


def test_fmt_rewrites_in_place(specs, monkeypatch, capsys):
    messy = GOOD.replace("  text sentence", "  text    sentence   # the input")
    (specs / "good.prompt").write_text(messy, encoding="utf-8")
    monkeypatch.chdir(specs)
    assert main(["fmt", "good.prompt"]) == 0
    assert capsys.readouterr().out == "reformatted good.prompt\n"
    assert "  text sentence  # the input\n" in (specs / "good.prompt").read_text(encoding="utf-8")
    assert main(["fmt", "--check", "good.prompt"]) == 0
    assert not list(specs.glob(".good.prompt.*"))  # no temporary file left behind


def test_fmt_leaves_a_broken_file_alone(specs, monkeypatch, capsys):
    broken = "promptlang 1\nlabels a b\n"
    (specs / "broken.prompt").write_text(broken, encoding="utf-8")
    monkeypatch.chdir(specs)
    assert main(["fmt", "broken.prompt"]) == 1
    assert "error: unexpected `b` after a complete setting" in capsys.readouterr().out
    assert (specs / "broken.prompt").read_text(encoding="utf-8") == broken


def test_not_utf8(specs, monkeypatch, capsys):
    (specs / "latin.prompt").write_bytes("promptlang 1\nlabels n\u00e9gatif\n".encode("latin-1"))
    monkeypatch.chdir(specs)
    assert main(["check", "latin.prompt"]) == 1
    assert "error: the file is not UTF-8 text (byte 0xe9)\n  --> latin.prompt:2:9" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"promptlang {__version__}\n"


@pytest.mark.parametrize("command", ["check", "fmt", "dump", "schema"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: promptlang {command}")


def test_schema_is_json_schema(capsys):
    main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Spec"
    assert {"data", "model", "method"} <= set(schema["required"])


def test_console_script_is_installed():
    assert shutil.which("promptlang") or (Path(__import__("sys").executable).parent / "promptlang").exists()


def test_run_with_an_override_that_is_not_key_value_is_a_usage_error(specs, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(specs)
    assert run(["run", "good.prompt", "--set", "foo"]) == 2
    assert capsys.readouterr().err == "promptlang: error: `--set foo`: write KEY=VALUE, like `method.steps=10`\n"


def test_run_with_a_bad_override_value_is_a_spec_error_at_the_argument(specs, monkeypatch, capsys):
    # worded as if written in the spec (the builder's message), located on the command line (tests/test_overrides.py)
    pytest.importorskip("torch")
    monkeypatch.chdir(specs)
    assert run(["run", "good.prompt", "--set", "method.eval_batch_size=0"]) == 1
    assert capsys.readouterr().out == (
        "error: `eval_batch_size` must be at least 1, got `0`\n  --> --set:1:24\n  |\n"
        "1 | method.eval_batch_size=0\n  |                        ^\n"
        "  = help: examples per evaluation batch\n")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("Error while serializing: I/O error: No space left on device "
                                                "(os error 28)")])  # (safetensors' own error wraps the OSError)
def test_a_full_disk_is_said_plainly_not_called_a_bug(error, specs, monkeypatch, capsys):
    import promptlang.cli as cli

    def fails(args):
        raise error
    monkeypatch.setattr(cli, "_check", fails)
    monkeypatch.chdir(specs)
    assert main(["check", "good.prompt"]) == 1
    assert capsys.readouterr().err == (
        "promptlang: error: no space left on the device while writing; free some space (finished stages are kept "
        "in the stage store, `--stages DIR` or $PROMPTLANG_CACHE/stages, and reused) and run the same command "
        "again\n")
