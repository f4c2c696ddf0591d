"""T5's multi-task training end to end on a tiny random T5: a mixture file of two task specs (text
generation, and labels written as text) trains one model by the mixing rates and evaluates each task."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.cli import main  # noqa: E402
from promptlang.compiler.mixing import mixing_rates  # noqa: E402
from promptlang.runtime import text_metrics  # noqa: E402

ROWS = [("a fine film", "great"), ("a bad film", "terrible"), ("the best movie of the year", "great"),
        ("the worst movie of the year", "terrible"), ("a great and moving story", "great"),
        ("a terrible and boring story", "terrible")]
COPY = """promptlang 1

data {
  train "data.tsv"
  test  "data.tsv"
  text  sentence
}

model {
  path   "model"
  family seq2seq
}

template t {
  text   "{{ sentence }} It was"
  target "{{ answer }}"
}

generate {
  max_new_tokens 4
}

method zero_shot {
}

evaluate {
  metrics exact_match, f1
}
"""
LABELS = """promptlang 1

labels negative, positive

data {
  train "data.tsv"
  test  "data.tsv"
  text  sentence
  label answer
  label_values {
    negative -> "terrible"
    positive -> "great"
  }
  shots 2
}

model {
  path   "model"
  family seq2seq
}

template t {
  prefix "sst2 sentence: "
  text   "{{ sentence }}"
  target "[MASK]"
}

verbalizer v {
  negative -> "negative"
  positive -> "positive"
}

generate {
  max_new_tokens 3
}

method zero_shot {
}
"""
MIXTURE = """promptlang 1

mixture {
  tasks "copy.prompt", "labels.prompt"
  limit 5
  seeds 13, 21
}

method prompt_finetune {
  learning_rate 1e-2
  steps         50
  batch_size    4
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixture")
    tinymodels.save("seq2seq", folder / "model")
    (folder / "data.tsv").write_text("sentence\tanswer\n" + "".join(f"{s}\t{a}\n" for s, a in ROWS), encoding="utf-8")
    for name, text in (("copy", COPY), ("labels", LABELS), ("mix", MIXTURE)):
        (folder / f"{name}.prompt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ran(project) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
        patch.setenv("PROMPTLANG_REPORT", "on")
        assert main(["run", "-q", str(project / "mix.prompt"), "--out", str(project / "out")]) == 0
    return project / "out"


def test_the_plan_shows_the_mixing_rates(project, capsys):
    capsys.readouterr()
    assert main(["plan", str(project / "mix.prompt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rates = mixing_rates({"copy": 6, "labels": 4}, limit=5)
    assert lines[1] == "mixing: examples-proportional, limit K 5, temperature 1"
    assert lines[2] == "seed 13: 50 optimizer steps of 4 examples drawn from the mixture"
    assert lines[3] == f"  {'copy':<28} rate {rates['copy']:.3f}  (6 training examples; evaluated on 6, generation)"
    assert lines[4] == (f"  {'labels':<28} rate {rates['labels']:.3f}  (4 training examples; evaluated on 6, "
                        f"classification)")


def predictions(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_each_task_is_measured_on_what_the_one_model_wrote(ran):
    metrics = json.loads((ran / "metrics.json").read_text())
    assert metrics["rates"]["13"] == pytest.approx(mixing_rates({"copy": 6, "labels": 4}, limit=5))
    assert metrics["sizes"] == {"13": {"copy": 6, "labels": 4}, "21": {"copy": 6, "labels": 4}}
    assert len(metrics["losses"]["13"]) == 50 and metrics["losses"]["13"][-1] < metrics["losses"]["13"][0]
    copy = predictions(ran / "copy" / "predictions.tsv")
    assert [r["stage"] for r in copy] == ["evaluate/copy/d13"] * 6 + ["evaluate/copy/d21"] * 6
    for seed, run in zip((13, 21), metrics["tasks"]["copy"]["runs"]):
        rows = [r for r in copy if r["stage"] == f"evaluate/copy/d{seed}"]
        squad = text_metrics.squad([r["predicted"] for r in rows], [[r["gold"]] for r in rows])
        assert run["metrics"] == pytest.approx({"exact_match": squad["exact_match"] / 100, "f1": squad["f1"] / 100})
    labels = predictions(ran / "labels" / "predictions.tsv")
    for seed, run in zip((13, 21), metrics["tasks"]["labels"]["runs"]):
        rows = [r for r in labels if r["stage"] == f"evaluate/labels/d{seed}"]
        assert run["metrics"]["accuracy"] == pytest.approx(sum(r["gold"] == r["predicted"] for r in rows) / 6)


def test_a_mixture_takes_no_overrides(project, capsys):
    assert main(["run", str(project / "mix.prompt"), "--set", "method.steps=2"]) == 2
    assert "a mixture's run takes no --set or --stages" in capsys.readouterr().err


def test_each_task_predicts_with_the_mixtures_model(ran, project, capsys):
    import promptlang

    assert sorted(p.name for p in ran.iterdir()) == [".promptlang-output", "copy", "labels", "log.txt", "metrics.json",
                                                     "mixture.json", "model", "report.html"]
    assert sorted(p.name for p in (ran / "copy").iterdir()) == ["plan.json", "predictions.tsv", "predictor.json"]
    for task in ("copy", "labels"):
        last = [r for r in predictions(ran / task / "predictions.tsv") if r["stage"].endswith("/d21")]
        got = promptlang.load(ran / task).predict([s for s, _ in ROWS])
        expected = [r["written"] for r in last] if task == "labels" else [r["predicted"] for r in last]
        assert [x.predicted for x in got] == expected  # (the model kept is the last seed's)
    assert main(["predict", str(ran), "--input", str(project / "data.tsv")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("; a mixture keeps one per task: predict with DIR/TASK")


@pytest.mark.parametrize("command", [["plan", "--json"], ["render"]])
def test_what_a_mixture_has_none_of_is_a_located_error(project, capsys, command):
    assert main([*command, str(project / "mix.prompt")]) == 1
    assert capsys.readouterr().out.startswith(
        f"error: this is a mixture file: it has no single plan or prompt of its own\n  --> {project / 'mix.prompt'}:3:1\n")
