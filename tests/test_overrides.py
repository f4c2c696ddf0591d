"""`--set KEY=VALUE`: overrides go through the builder and every check, located on the command line.

Each row is an override, the spec line that would say the same (or None), and the exact text
`promptlang` prints. The spec line, written into the spec instead, must give the same message and hint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlang.api import analyze
from promptlang.cli import main
from promptlang.language.diagnostics import render_text

SPEC = """promptlang 1

labels negative, positive

data {
  train     "train.tsv"
  test      "test.tsv"
  unlabeled "unlabeled.tsv"
  text      sentence
}

model {
  path   "tokenizer"
  family masked
}

template t "{{ sentence }} It was [MASK]."

verbalizer v {
  negative -> "bad"
  positive -> "good"
}

method pet {
  patterns t
  steps    10
  distill {
    temperature 2
  }
}
"""
ROWS = "label\tsentence\npositive\ta fine film\nnegative\ta dull mess\n"


def error(line: str, col: int, width: int, message: str, hint: str | None) -> str:
    caret = " " * (col - 1) + "^" * width
    shown = f"error: {message}\n  --> --set:1:{col}\n  |\n1 | {line}\n  | {caret}"
    return shown + (f"\n  = help: {hint}" if hint else "")


CASES = [
    ("method.patterns=tt", ("patterns t", "patterns tt"),
     error("method.patterns=tt", 17, 2, "template `tt` is not defined", "did you mean `t`?")),
    ("method.patterns=t,tt", ("patterns t", "patterns t, tt"),  # a list: the second value is the wrong one
     error("method.patterns=t,tt", 19, 2, "template `tt` is not defined", "did you mean `t`?")),
    ("method.steps=0", ("steps    10", "steps 0"),
     error("method.steps=0", 14, 1, "`steps` must be at least 1, got `0`", "optimizer steps (instead of epochs)")),
    ("method.steps=inf", ("steps    10", "steps inf"),
     error("method.steps=inf", 14, 3, "`steps` must be a whole number, got `inf`",
           "optimizer steps (instead of epochs)")),
    ("method.steps=1e999", ("steps    10", "steps 1e999"),
     error("method.steps=1e999", 14, 5, "`1e999` is too large to be a number",
           "settings take numbers such as `3`, `0.5` or `1e-5`")),
    ("method.lerning_rate=1", ("steps    10", "steps 10\n  lerning_rate 1"),
     error("method.lerning_rate=1", 8, 12, "unknown setting `lerning_rate` in `method`",
           "did you mean `learning_rate`?")),
    ("method.distill.temperature=0", ("temperature 2", "temperature 0"),
     error("method.distill.temperature=0", 28, 1, "`temperature` must be greater than 0, got `0`",
           "softmax temperature for the soft labels (KL · T²)")),
    ("method.distill.temprature=1", ("temperature 2", "temprature 1"),
     error("method.distill.temprature=1", 16, 10, "unknown setting `temprature` in `distill`",
           "did you mean `temperature`?")),
    ("data.seeds=13,x", ("text      sentence", "text sentence\n  seeds 13, x"),
     error("data.seeds=13,x", 15, 1, "each value of `seeds` must be a whole number, got `x`",
           "sampling seeds; one few-shot split per seed")),
    ("data.text=sentence,sentense", ("text      sentence", "text sentence, sentense"),
     error("data.text=sentence,sentense", 20, 8, "the data has no column `sentense`", "did you mean `sentence`?")),
    ("method.loss=ce 0.9,mlm x", ("steps    10", "steps 10\n  loss ce 0.9, mlm x"),
     error("method.loss=ce 0.9,mlm x", 24, 1, "`mlm` must be a number, got `x`",
           "weight of PET's auxiliary masked-LM loss")),
    ("templates.t.text={{ sentense }} [MASK]", ('"{{ sentence }} It was [MASK]."', '"{{ sentense }} [MASK]"'),
     error("templates.t.text={{ sentense }} [MASK]", 18, 14, "`sentense` is not a column of the data",
           "did you mean `sentence`?")),
    ("evaluate.metrics=acc", ("method pet {", "evaluate {\n  metrics acc\n}\n\nmethod pet {"),  # a new block
     error("evaluate.metrics=acc", 18, 3, "each value of `metrics` cannot be `acc`", "did you mean `mcc`?")),
    ("method.kind=ipet", None,
     error("method.kind=ipet", 8, 4, "the method's kind is the block's name", "write `method NAME {` in the spec to choose it")),
    ("modle.hub=x", None,
     error("modle.hub=x", 1, 5, "unknown setting `modle`", "did you mean `model`?")),
]


@pytest.fixture
def folder(tmp_path):
    for split in ("train", "test", "unlabeled"):
        (tmp_path / f"{split}.tsv").write_text(ROWS, encoding="utf-8")
    (tmp_path / "spec.prompt").write_text(SPEC, encoding="utf-8")
    (tmp_path / "tokenizer").mkdir()  # filled by `tokenizer_folder` for the tests that compile
    return tmp_path


def problems(analysis) -> list[tuple[str, str | None]]:
    return [(d.message, d.hint) for d in analysis.diagnostics.errors]


@pytest.mark.parametrize("override, in_spec, expected", CASES, ids=[c[0] for c in CASES])
def test_an_override_is_checked_as_the_spec_is(folder, override, in_spec, expected):
    analysis = analyze(folder / "spec.prompt", overrides=[override])
    assert render_text(analysis.diagnostics) == expected
    if in_spec:
        old, new = in_spec
        assert SPEC.count(old) == 1
        written = folder / "written.prompt"
        written.write_text(SPEC.replace(old, new), encoding="utf-8")
        assert problems(analyze(written)) == problems(analysis)


def test_overrides_are_located_on_their_own_line(folder):
    analysis = analyze(folder / "spec.prompt", overrides=["method.steps=20", "method.patterns=tt"])
    [found] = analysis.diagnostics.errors
    assert (found.span.file, found.span.line, found.span.col) == ("--set", 2, 17)


@pytest.mark.parametrize("override, path, value", [
    ("data.seeds=13,21", ("data", "seeds"), [13, 21]),
    ("data.seeds=7", ("data", "seeds"), [7]),  # one value where the setting is a list
    ("method.steps=20", ("method", "steps"), 20),
    ("method.distill.temperature=1.5", ("method", "distill", "temperature"), 1.5),
    ("method.loss=ce 0.5,mlm 0.25", ("method", "loss", "mlm"), 0.25),
    ('model.path="tokenizer"', ("model", "path"), "tokenizer"),
    ("verbalizers.v.words.positive=good,great", ("verbalizers", "v", "words", "positive"), ["good", "great"]),
    ("templates.t.text={{ sentence }} Really [MASK].", ("templates", "t", "text", 1, "text"), " Really "),
])
def test_a_valid_override_changes_the_spec(folder, override, path, value):
    analysis = analyze(folder / "spec.prompt", overrides=[override])
    assert analysis.ok, render_text(analysis.diagnostics)
    node = analysis.spec.model_dump(mode="json")
    for part in path:
        node = node[part]
    assert node == value


@pytest.mark.parametrize("override", ["foo", "=3", "method.steps"])
def test_an_override_that_is_not_key_value_is_a_usage_error(folder, monkeypatch, capsys, override):
    monkeypatch.chdir(folder)
    assert main(["plan", "spec.prompt", "--set", override]) == 2
    assert capsys.readouterr().err == f"promptlang: error: `--set {override}`: write KEY=VALUE, like `method.steps=10`\n"


@pytest.mark.parametrize("command", ["plan", "render", "run"])
def test_plan_render_and_run_report_a_bad_override_before_any_work(folder, monkeypatch, capsys, command):
    monkeypatch.chdir(folder)
    assert main([command, "spec.prompt", "--set", "method.patterns=tt"]) == 1
    assert capsys.readouterr().out == CASES[0][2] + "\n"


@pytest.fixture
def tokenizer_folder(folder):
    tinymodels = pytest.importorskip("tinymodels")
    pytest.importorskip("transformers")
    tinymodels.wordpiece_tokenizer().save_pretrained(folder / "tokenizer")
    return folder


def test_plan_json_shows_a_valid_override(tokenizer_folder, monkeypatch, capsys):
    monkeypatch.chdir(tokenizer_folder)
    assert main(["plan", "--json", "spec.prompt", "--set", "data.seeds=13,21", "--set", "method.steps=3"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["spec"]["data"]["seeds"] == [13, 21]
    assert plan["spec"]["method"]["steps"] == 3
    trained = [s for s in plan["stages"] if s["kind"] == "train"]
    assert sorted({s["data_seed"] for s in trained}) == [13, 21]
    assert {s["work"]["optimizer_steps"] for s in trained} == {3}


def test_the_front_end_reads_overrides_without_torch():
    import subprocess
    import sys

    code = ("import sys; from promptlang.api import analyze; analyze('specs/sst2-pet.prompt', "
            "overrides=['method.steps=3']); print(any(m in sys.modules for m in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"
