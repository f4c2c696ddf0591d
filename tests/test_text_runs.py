"""Text generation end to end (T5's text-to-text way) on tiny random models: a spec whose template's
`target` holds data fields is trained with teacher forcing and writes through `generate`; its metrics,
predictions, stage files, resumption and `predict` agree with one another and with the libraries."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
import promptlang  # noqa: E402
from promptlang.cli import main  # noqa: E402
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.language import spec as m  # noqa: E402
from promptlang.runtime import text_metrics  # noqa: E402
from promptlang.runtime.data import Example, Read, sample_splits  # noqa: E402
from promptlang.runtime.text_task import Generation, target_ids, target_text  # noqa: E402

ROWS = [("a fine film", "great"), ("a bad film", "terrible"), ("the best movie of the year", "great"),
        ("the worst movie of the year", "terrible"), ("a great and moving story", "great"),
        ("a terrible and boring story", "terrible")]
SPEC = """promptlang 1

data {{
  train      "data.tsv"
  dev        "data.tsv"
  test       "data.tsv"
  text       sentence
  train_size 6
  dev_size   4
}}

model {{
  path   "{family}"
  family {family}
}}

template t {{
  text   "{{{{ sentence }}}} It was"
  target "{{{{ answer }}}}"
}}

generate {{
  max_new_tokens 4
}}

method {method}

evaluate {{
  metrics exact_match, f1, rouge, bleu
}}
"""
TRAIN = "prompt_finetune {\n  learning_rate 1e-2\n  steps         40\n  batch_size    3\n  select_model  dev\n}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("text")
    for family in ("seq2seq", "causal"):
        tinymodels.save(family, folder / family)
    (folder / "data.tsv").write_text("sentence\tanswer\n" + "".join(f"{s}\t{a}\n" for s, a in ROWS), encoding="utf-8")
    return folder


def run(project: Path, family: str, method: str, out: str, monkeypatch) -> Path:
    spec = project / f"{family}-{out}.prompt"
    spec.write_text(SPEC.format(family=family, method=method), encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
    assert main(["run", "-q", str(spec), "--out", str(project / out / family)]) == 0
    return project / out / family


def predictions(directory: Path) -> list[dict]:
    with open(directory / "predictions.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def trained(project, tmp_path_factory):
    """Each family's trained output directory (one run each, shared by the tests below)."""
    with pytest.MonkeyPatch.context() as patch:
        return {family: run(project, family, TRAIN, "trained", patch) for family in ("seq2seq", "causal")}


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_a_trained_model_writes_every_target(trained, family):
    rows = predictions(trained[family])
    assert [(r["gold"], r["predicted"]) for r in rows] == [(a, a) for _, a in ROWS]
    summary = json.loads((trained[family] / "metrics.json").read_text())["summary"]["t"]
    assert summary["exact_match"]["mean"] == summary["f1"]["mean"] == summary["rouge1"]["mean"] == 1.0


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_the_metrics_are_the_libraries_on_the_predictions(trained, family):
    rows = predictions(trained[family])
    written, gold = [r["predicted"] for r in rows], [r["gold"] for r in rows]
    metrics = json.loads((trained[family] / "metrics.json").read_text())
    got = metrics["runs"][0]["metrics"]
    squad = text_metrics.squad(written, [[g] for g in gold])
    rouge = text_metrics.rouge(written, gold)
    assert got == pytest.approx({"exact_match": squad["exact_match"] / 100, "f1": squad["f1"] / 100,
                                 "rouge1": rouge["rouge1"] / 100, "rouge2": rouge["rouge2"] / 100,
                                 "rougeLsum": rouge["rougeLsum"] / 100,
                                 "bleu": text_metrics.bleu(written, gold)["bleu"] / 100})
    assert metrics["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:")


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_the_stage_files_hold_the_written_texts_and_the_dev_scores(trained, family):
    stages = trained[family] / "stages"
    with open(stages / "evaluate/d13/t/s42/test.generated.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["text"] for r in rows] == [r["predicted"] for r in predictions(trained[family])]
    assert [r["source"] for r in rows] == [f"data.tsv:{i}" for i in range(2, 2 + len(ROWS))]
    result = json.loads((stages / "train/d13/t/s42/result.json").read_text())
    assert len(result["losses"]) == 40 and result["losses"][-1] < result["losses"][0]
    assert result["dev_scores"] and result["dev"] == max(result["dev_scores"])


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_predict_writes_what_the_run_wrote(trained, family, capsys, tmp_path):
    predictor = promptlang.load(trained[family])
    got = predictor.predict([s for s, _ in ROWS])
    assert [x.predicted for x in got] == [r["predicted"] for r in predictions(trained[family])]
    assert all(x.label is None and x.probabilities == {} for x in got)
    with pytest.raises(ValueError, match="this model writes text and has no label probabilities"):
        predictor.probabilities(["a fine film"])
    source = tmp_path / "in.tsv"
    source.write_text("sentence\na fine film\na bad film\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(trained[family]), "--input", str(source)]) == 0
    assert capsys.readouterr().out == "index\tsentence\tpredicted\n0\ta fine film\tgreat\n1\ta bad film\tterrible\n"


def test_a_rerun_reuses_every_stage(project, trained, monkeypatch, capsys):
    spec = project / "seq2seq-trained.prompt"
    monkeypatch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
    capsys.readouterr()
    assert main(["run", str(spec), "--out", str(project / "again"), "--force"]) == 0
    out = capsys.readouterr().out
    assert "evaluate/d13/t/s42" in out and "(reused)" in out and "step 1/40" not in out
    assert predictions(project / "again") == predictions(trained["seq2seq"])


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_zero_shot_writes_and_is_measured(project, family, monkeypatch):
    out = run(project, family, "zero_shot {}", "zero", monkeypatch)
    rows = predictions(out)
    assert len(rows) == len(ROWS) and all(r["gold"] in ("great", "terrible") for r in rows)
    got = json.loads((out / "metrics.json").read_text())["runs"][0]["metrics"]
    squad = text_metrics.squad([r["predicted"] for r in rows], [[r["gold"]] for r in rows])
    assert got["exact_match"] == pytest.approx(squad["exact_match"] / 100)


# ---------------------------------------------------------------- the pieces


def test_the_plan_writes_text_at_max_new_tokens_passes_per_batch(project, monkeypatch, capsys):
    spec = project / "plan.prompt"
    spec.write_text(SPEC.format(family="causal", method=TRAIN), encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
    capsys.readouterr()
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "task: text generation, trained with teacher forcing on the target; written by greedy decoding, " \
           "at most 4 new tokens" in out
    assert "  writes: {{ answer }}" in out
    assert "evaluate/d13/t/s42                   4 forward passes, 6 examples read" in out


PIECES = [p.Piece(kind="text", text="answer: "), p.Piece(kind="field", name="answer", transforms=["upper_first"])]


@pytest.mark.parametrize("family, last, expected", [
    ("seq2seq", "It was", "answer: Great"),
    ("causal", "It was", " answer: Great"),  # tokenized in place: the input does not end in a space
    ("causal", "It was ", "answer: Great"),
])
def test_target_ids_are_the_target_in_place_then_the_end(family, last, expected):
    _, tokenizer = tinymodels.build(family)
    pattern = p.Pattern(name="t", pieces=[p.Piece(kind="text", text=last)], target=PIECES)
    example = Example({"answer": "great"})
    assert target_text(PIECES, example) == "answer: Great"
    ids = target_ids(pattern, [example], tokenizer, family, end=7, limit=64)
    assert ids == [tokenizer(expected, add_special_tokens=False)["input_ids"] + [7]]
    assert target_ids(pattern, [example], tokenizer, family, end=7, limit=2) == [ids[0][:1] + [7]]


def test_the_generation_task_measures_several_gold_answers():
    task = Generation([m.FieldSegment(name="answers")], [], (m.Metric.exact_match, m.Metric.f1))
    examples = [Example({"answers": "Denver Broncos ||| the Broncos"}), Example({"answers": "Santa Clara"})]
    got = task.metrics(None, examples, ["Broncos", "santa clara, CA"])
    assert got == pytest.approx({"exact_match": 0.5, "f1": (1.0 + 0.8) / 2})
    assert task.selection(["Broncos", "santa clara, CA"], examples) == 0.5
    assert task.shown(examples, ["x", "y"]) == [("Denver Broncos ||| the Broncos", "x"), ("Santa Clara", "y")]


@pytest.mark.parametrize("train_size, dev_size, dev_file, train_count, dev_count", [
    (None, None, False, 10, 0),
    (4, None, False, 4, 0),
    (4, 3, False, 4, 3),  # dev drawn from what train leaves
    (4, 3, True, 4, 3),  # dev drawn from the dev file
    (20, 2, True, 10, 2),
])
def test_random_samples(train_size, dev_size, dev_file, train_count, dev_count):
    pool = [Example({"sentence": f"s{i}"}, source=f"t:{i}") for i in range(10)]
    dev = [Example({"sentence": f"d{i}"}, source=f"d:{i}") for i in range(5)] if dev_file else []
    data = m.Data(train="t", test="x", text=["sentence"], train_size=train_size, dev_size=dev_size)
    spec = m.Spec(data=data, model=m.Model(hub="x"), method=m.ZeroShot())
    read = Read({"train": pool, "dev": dev, "test": [], "unlabeled": []})
    first, again, other = (sample_splits(spec, read, seed) for seed in (13, 13, 21))
    assert (len(first.train), len(first.dev)) == (train_count, dev_count)
    assert [e.source for e in first.train] == [e.source for e in again.train]
    if train_size and train_size < 10:
        assert [e.source for e in first.train] != [e.source for e in other.train]
    if dev_count and not dev_file:
        assert not {e.source for e in first.train} & {e.source for e in first.dev}
    if dev_file:
        assert all(e.source.startswith("d:") for e in first.dev)


# ---------------------------------------------------------------- labels and scores written as text (T5's way)

LABELS_SPEC = """promptlang 1

labels negative, positive

data {{
  train "data.tsv"
  test  "data.tsv"
  text  sentence
  label answer
  label_values {{
    negative -> "terrible"
    positive -> "great"
  }}
}}

model {{
  path   "{family}"
  family {family}
}}

{template}

verbalizer v {{
  negative -> "negative", "bad"
  positive -> "positive"
}}

generate {{
  max_new_tokens 3
}}

method prompt_finetune {{
  learning_rate 1e-2
  steps         {steps}
  batch_size    3
}}
"""
TEMPLATES = {"seq2seq": 'template t {\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "[MASK]"\n}',
             "causal": 'template t "{{ sentence }} It was [MASK]"'}


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_labels_written_as_text(project, family, monkeypatch):
    spec = project / f"labels-{family}.prompt"
    spec.write_text(LABELS_SPEC.format(family=family, template=TEMPLATES[family], steps=60), encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
    out = project / "labels" / family
    assert main(["run", "-q", str(spec), "--out", str(out)]) == 0
    rows = predictions(out)
    gold = {"great": "positive", "terrible": "negative"}
    assert [r["gold"] for r in rows] == [gold[a] for _, a in ROWS]
    assert [r["predicted"] for r in rows] == [r["written"] if r["written"] in ("positive", "negative") else ""
                                              for r in rows]
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    got = json.loads((out / "metrics.json").read_text())["runs"][0]["metrics"]
    assert got["accuracy"] == pytest.approx(accuracy)
    if family == "seq2seq":  # (the tiny T5 learns the two words in 60 steps)
        assert accuracy == 1.0
    predicted = promptlang.load(out).predict([s for s, _ in ROWS])
    assert [(x.label or "", x.predicted) for x in predicted] == [(r["predicted"], r["written"]) for r in rows]


@pytest.mark.parametrize("written, labels", [
    (["positive", "negative", "bad", " positive ", "Positive", "great", ""],
     ["positive", "negative", "negative", "positive", "", "", ""]),
])
def test_a_written_text_that_is_no_label_is_wrong(written, labels):
    from promptlang.runtime.text_task import TextLabels

    task = TextLabels(["negative", "positive"], (("negative", "bad"), ("positive",)))
    assert task.predicted(written) == labels
    gold = [Example({}, label) for label in ["positive", "negative", "negative", "positive", "positive",
                                              "positive", "negative"]]
    assert task.metrics([m.Metric.accuracy], gold, written) == {"accuracy": pytest.approx(4 / 7)}


def test_scores_written_as_text():
    from promptlang.runtime.text_task import TextScores

    task = TextScores(["low", "high"], 0.2)
    examples = [Example({}, score=s) for s in (0.0, 2.5, 3.3, 5.0)]
    pattern = p.Pattern(name="t", pieces=[], target=[p.Piece(kind="mask")])
    assert task.words(pattern, examples) == ["0.0", "2.4", "3.2", "5.0"]
    written = ["0.2", "2.4", "three", "4.8"]
    assert task.predicted(written) == ["0.2", "2.4", "-1", "4.8"]
    assert task.shown(examples, written)[2] == ("3.3", "-1", "three")
    from scipy.stats import pearsonr

    assert task.metrics([m.Metric.pearson], examples, written) == {
        "pearson": pytest.approx(pearsonr([0.0, 2.5, 3.3, 5.0], [0.2, 2.4, -1.0, 4.8])[0])}


def test_a_regression_written_as_text_runs(project, monkeypatch):
    rows = [("a fine film", 4.6), ("a bad film", 0.4), ("the best movie of the year", 5.0), ("the worst movie of the year", 0.0)]
    (project / "scores.tsv").write_text("sentence\tscore\n" + "".join(f"{s}\t{v}\n" for s, v in rows), encoding="utf-8")
    spec = project / "scores.prompt"
    spec.write_text(LABELS_SPEC.format(family="seq2seq", template=TEMPLATES["seq2seq"], steps=60)
                    .replace("labels negative, positive", "labels low, high\n\ntask regression {\n  range 0, 5\n}")
                    .replace('  label answer\n  label_values {\n    negative -> "terrible"\n    positive -> "great"\n  }\n', "")
                    .replace('"data.tsv"', '"scores.tsv"')
                    .replace('  negative -> "negative", "bad"\n  positive -> "positive"', '  low  -> "low"\n  high -> "high"'),
                    encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(project / "cache"))
    out = project / "scores"
    assert main(["run", "-q", str(spec), "--out", str(out)]) == 0
    got = predictions(out)
    assert [r["gold"] for r in got] == ["4.6", "0.4", "5", "0"]
    from promptlang.runtime.regression import regression_metrics

    metrics = json.loads((out / "metrics.json").read_text())["runs"][0]["metrics"]
    assert metrics == pytest.approx(regression_metrics(["pearson", "spearman"], [v for _, v in rows],
                                                       [float(r["predicted"]) for r in got]))
