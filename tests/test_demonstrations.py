"""LM-BFF's demonstrations in prompt-based fine-tuning, on tiny random causal models.

- training: every time an example is put in a batch it gets a freshly drawn demonstration set,
  one example per label from the others (never itself), reproducible for a training seed;
- evaluation: the label probabilities averaged over the `sets` sampled sets (checked against the
  reference scores of each set, averaged by hand), and the same sets in the output directory,
  so that the predictor gives the run's test probabilities;
- the plan's `demonstrations` stage and `render` showing the demonstrations.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import reference  # noqa: E402
import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.output import predictor
from promptlang import runner
from promptlang.runtime import session as runtime  # noqa: E402
from promptlang.runtime import demos as demo_lib, prompt_training  # noqa: E402
import stagerun  # noqa: E402
from promptlang.compiler.compile import compile_plan  # noqa: E402
from promptlang.runtime.data import Example, Splits  # noqa: E402
from promptlang.output.render import describe_plan, render_examples  # noqa: E402

LABELS = ["negative", "positive"]
LABEL_OF = {sentence: label for label, sentence in tinymodels.SENTENCES}
TRAIN = [Example({"sentence": s}, label) for label, s in tinymodels.SENTENCES]
DEV = [TRAIN[0], TRAIN[1], TRAIN[4], TRAIN[5]]
TEST = list(reversed(TRAIN))
WORDS = {"negative": ["terrible"], "positive": ["great"]}
TRAINING = "  steps 4\n  batch_size 2\n  learning_rate 1e-3\n  seeds 42"
LMBFF = dict(
    family="causal", words=WORDS, method="prompt_finetune {\n" + TRAINING + "\n}",
    templates='template prompt "[DEMOS]{{ sentence }} It was [MASK]."\n'
              'template demo   "{{ sentence }} It was [MASK].\\n"',
    extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n",
)
DATA = '  train "data.tsv"\n  test  "data.tsv"\n  text  sentence\n  shots 2\n  seeds 13'


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh promptlang cache per test, never the user's."""
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))


def session_for(text: str, dev=()) -> tuple[runtime.Session, Splits]:
    """A `Session` over a new tiny causal model (training changes it), with the splits given directly."""
    model, tokenizer = tinymodels.build("causal")
    spec = tinymodels.spec_of(text)
    splits = Splits(13, train=list(TRAIN), dev=list(dev), test=list(TEST))
    plan = compile_plan(spec, tokenizer, "causal", {13: splits.counts()})
    return runtime.Session(plan, tokenizer, model, cache=None, log=lambda line: None), splits


@pytest.fixture
def batches(monkeypatch) -> list[tuple[list[Example], list[list[int]]]]:
    """Every training batch: (its examples, their model inputs as token ids)."""
    seen = []
    make = prompt_training.training_batches

    def recording(session, pattern, examples, train, seed):
        batch_of = make(session, pattern, examples, train, seed)

        def traced(rows):
            encoded, at = batch_of(rows)
            seen.append(([examples[r] for r in rows], [encoded.ids[i] for i in at]))
            return encoded, at
        return traced

    monkeypatch.setattr(prompt_training, "training_batches", recording)
    return seen


def shown(tokenizer, ids: list[int]) -> tuple[list[str], str]:
    """(the sentences of the demonstrations, the rest) of an input whose template opens with [DEMOS];
    each demonstration is checked to be filled in with its label's word."""
    *lines, rest = tokenizer.decode(ids).split("\n")  # the demo template ends in a line break
    sentences = [line.rsplit(" It was ", 1)[0] for line in lines]
    assert lines == [f"{s} It was {WORDS[LABEL_OF[s]][0]}." for s in sentences]
    return sentences, rest


def test_training_batches_carry_one_demonstration_per_label_never_the_example_itself(batches):
    session, splits = session_for(tinymodels.spec_text(**dict(LMBFF, method=LMBFF["method"].replace("steps 4",
                                                                                                   "steps 12"))))
    stagerun.outcome(session, splits, "prompt", 42)
    assert [len(examples) for examples, _ in batches] == [2] * 12  # 12 steps of 2 examples: 3 epochs
    drawn: dict[str, set] = {}
    prefix = session.plan.tokenizer.prefix
    for examples, inputs in batches:
        for example, ids in zip(examples, inputs):
            assert ids[: len(prefix)] == prefix  # [DEMOS] opens the template: right after the special tokens
            sentences, rest = shown(session.tokenizer, ids[len(prefix):])
            assert sorted(LABEL_OF[s] for s in sentences) == LABELS  # per_label 1
            assert rest.startswith(example.fields["sentence"] + " It was")  # then the example itself
            assert example.fields["sentence"] not in sentences
            drawn.setdefault(example.fields["sentence"], set()).add(tuple(sentences))
    assert any(len(sets) > 1 for sets in drawn.values())  # drawn afresh each time


def test_the_draws_are_reproducible_for_a_training_seed(batches):
    for seed in (42, 42, 7):
        session, splits = session_for(tinymodels.spec_text(**LMBFF))
        stagerun.outcome(session, splits, "prompt", seed)
    first, again, other = batches[:4], batches[4:8], batches[8:]
    assert first == again
    assert first != other


def test_evaluation_averages_the_label_probabilities_over_the_sets():
    session, splits = session_for(tinymodels.spec_text(**LMBFF), dev=DEV)
    outcome = stagerun.outcome(session, splits, "prompt", 42)
    pattern = session.plan.patterns["prompt"]
    sets = [demo_lib.demonstrations(session, splits, 13 * 1000 + index) for index in range(2)]
    assert sets[0] != sets[1]
    assert outcome.extras["sets"] == [{"demos": demos} for demos in sets]
    expected = []
    for demos in sets:
        encoded = session.encode(pattern, TEST, 256, [demos] * len(TEST))
        scores = reference.scores("causal", session.model, session.tokenizer, pattern, encoded)
        expected.append(torch.softmax(scores, dim=1).numpy())
    np.testing.assert_allclose(outcome.probabilities, (expected[0] + expected[1]) / 2, atol=1e-6, rtol=0)
    assert outcome.labels == [0, 0, 0, 0, 1, 1, 1, 1]


def test_dev_accuracy_during_training_is_that_of_the_averaged_sets(monkeypatch):
    session, splits = session_for(tinymodels.spec_text(**LMBFF), dev=DEV)
    seen = []
    mean = demo_lib.mean_probabilities

    def recording(session_, pattern, encodings, batch_size, soft=None):
        probs = mean(session_, pattern, encodings, batch_size, soft)
        seen.append(([e.ids for e in encodings], probs))
        return probs

    monkeypatch.setattr(prompt_training, "mean_probabilities", recording)
    outcome = stagerun.outcome(session, splits, "prompt", 42)
    sets = [demo_lib.demonstrations(session, splits, 13000 + index) for index in range(2)]
    dev_calls = [(ids, probs) for ids, probs in seen if len(ids[0]) == len(DEV)]
    assert dev_calls and outcome.dev_scores
    for ids, probs in dev_calls:
        prefix = len(session.plan.tokenizer.prefix)
        assert [[row[prefix : prefix + len(demos)] for row in one] for one, demos in zip(ids, sets)] == \
            [[demos] * len(DEV) for demos in sets]
    accuracies = [runtime.accuracy(probs, [0 if e.label == "negative" else 1 for e in DEV]) for _, probs in dev_calls]
    assert accuracies == outcome.dev_scores


def write_project(folder, text_args: dict):
    model = tinymodels.save("causal", folder / "model")
    tinymodels.write_data(folder)
    path = folder / "spec.prompt"
    path.write_text(tinymodels.spec_text(path=str(model), data=DATA, **text_args), encoding="utf-8")
    return path


def test_the_predictor_gives_the_runs_test_probabilities_with_the_same_sets(tmp_path):
    path = write_project(tmp_path, LMBFF)
    runner.run(path, str(tmp_path / "out"), quiet=True)
    loaded = predictor.load(tmp_path / "out")
    assert len(loaded.info.extras.sets) == 2
    with open(tmp_path / "out" / "predictions.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    probs = loaded.probabilities([s for _, s in tinymodels.SENTENCES])
    np.testing.assert_allclose(probs, [[float(r["p_negative"]), float(r["p_positive"])] for r in rows],
                               atol=2e-6, rtol=0)


def test_the_plan_selects_demonstrations_before_training(tmp_path):
    prepared = runner.prepare(write_project(tmp_path, LMBFF))
    stages = prepared.plan.stages
    assert [(s.id, s.needs) for s in stages] == [
        ("demonstrations/d13", []),
        ("train/d13/prompt/s42", ["demonstrations/d13"]),
        ("evaluate/d13/prompt/s42", ["demonstrations/d13", "train/d13/prompt/s42"])]
    assert stages[0].train_size == 4
    lines = describe_plan(prepared).splitlines()
    assert "  demonstrations/d13                   1 per label, drawn from the 4 training examples; 2 sets for " \
           "evaluation (seeds 13000..13001); training draws a new set for each example each time, never the " \
           "example itself" in lines


def test_render_shows_the_demonstrations_of_a_prompt_finetune_spec(tmp_path):
    prepared = runner.prepare(write_project(tmp_path, LMBFF))
    text = render_examples(prepared, "test", 1)
    splits = prepared.splits[13]
    session = runtime.Session(prepared.plan, prepared.tokenizer, None)
    demos = prepared.tokenizer.decode(demo_lib.demonstrations(session, splits, 13000))
    example = splits.test[0].fields["sentence"]
    assert demos.count("\n") == 2
    tokenizer = prepared.tokenizer
    start = tokenizer.decode(prepared.plan.tokenizer.prefix)  # then the demonstrations, then the example
    assert f"    text:   {repr(start + demos + example + ' It was' + tokenizer.pad_token + '.')}" in text.splitlines()


def test_pets_own_demonstrations_never_show_an_example_itself():
    """PET's ensemble weight (accuracy on the training set before training) sees each training example
    with a set drawn from the others; a pattern without [DEMOS] gets none."""
    session, splits = session_for(tinymodels.spec_text(**LMBFF))
    own = demo_lib.own_demos(session, session.plan.patterns["prompt"], TRAIN, 42)
    assert own == demo_lib.own_demos(session, session.plan.patterns["prompt"], TRAIN, 42)
    for example, demos in zip(TRAIN, own):
        sentences, _ = shown(session.tokenizer, demos)
        assert sorted(LABEL_OF[s] for s in sentences) == LABELS and example.fields["sentence"] not in sentences
    plain = session.plan.patterns["prompt"].model_copy(update={"pieces": session.plan.patterns["prompt"].pieces[1:]})
    assert demo_lib.own_demos(session, plain, TRAIN, 42) is None


def test_set_logits_are_the_log_of_the_averaged_probabilities():
    """What a PET pattern model writes for test and unlabeled data: softmax gives the sets' average."""
    session, splits = session_for(tinymodels.spec_text(**LMBFF))
    pattern = session.plan.patterns["prompt"]
    sets = demo_lib.demo_sets(session, splits)
    logits = demo_lib.set_logits(session, pattern, TEST, 256, sets, 4)
    expected = [runtime.probabilities(session, pattern, session.encode(pattern, TEST, 256, [d] * len(TEST)), 4)
                for d in sets]
    np.testing.assert_allclose(runtime.softmax(logits), (expected[0] + expected[1]) / 2, atol=1e-6, rtol=0)
