"""Regression, LM-BFF's way (STS-B): the pole targets, the predicted score, the metrics, the median split
into poles and its sampling, the spec's `task` block. The checks' exact messages are in
tests/errors/regression.txt."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from promptlang import analyze
from promptlang.language import spec as m
from promptlang.language.fmt import format_source
from promptlang.language.support import not_yet
from promptlang.runtime.data import DataError, pole_threshold, read_split, read_splits, sample_splits
from promptlang.runtime.regression import pole_targets, predict_scores, regression_metrics

ROOT = Path(__file__).resolve().parent.parent

# scores, lb, ub, the targets [p(low), p(high)] worked by hand
TARGETS = [
    ([0.0, 5.0], 0, 5, [[1.0, 0.0], [0.0, 1.0]]),
    ([2.5, 1.0, 3.8], 0, 5, [[0.5, 0.5], [0.8, 0.2], [0.24, 0.76]]),
    ([1.0, 3.0, 4.0], 1, 5, [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]),
    ([-1.0, 0.5, 7.0], 0, 5, [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]),  # outside the range: clipped
    ([], 0, 5, np.zeros((0, 2))),
]

# probabilities [p(low), p(high)], lb, ub, the scores lb + (ub − lb) · p(high) worked by hand
PREDICTIONS = [
    ([[0.5, 0.5]], 0, 5, [2.5]),
    ([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], 0, 5, [0.0, 5.0, 3.5]),
    ([[0.75, 0.25]], 1, 5, [2.0]),
    ([[0.9, 0.1]], -1, 1, [-0.8]),
]


@pytest.mark.parametrize("scores, lower, upper, expected", TARGETS)
def test_pole_targets(scores, lower, upper, expected):
    targets = pole_targets(scores, lower, upper)
    assert targets.shape == (len(scores), 2)
    np.testing.assert_allclose(targets, expected, atol=1e-12)
    np.testing.assert_allclose(targets.sum(axis=-1), np.ones(len(scores)))


@pytest.mark.parametrize("probabilities, lower, upper, expected", PREDICTIONS)
def test_predict_scores(probabilities, lower, upper, expected):
    np.testing.assert_allclose(predict_scores(np.array(probabilities), lower, upper), expected, atol=1e-12)


def test_a_prediction_inverts_its_target():
    scores = [0.0, 0.4, 2.5, 3.8, 5.0]
    np.testing.assert_allclose(predict_scores(pole_targets(scores, 0, 5), 0, 5), scores, atol=1e-12)


def test_predict_scores_wants_two_poles():
    with pytest.raises(ValueError, match=r"expected the two poles' probabilities, shape \(N, 2\), got \(2, 3\)"):
        predict_scores(np.ones((2, 3)) / 3, 0, 5)


GOLD = [4.2, 0.5, 3.0, 1.25, 5.0, 2.0]
PREDICTED = [3.9, 1.5, 2.0, 1.0, 4.5, 2.5]


def test_metrics_are_scipys():
    got = regression_metrics(["pearson", "spearman"], GOLD, PREDICTED)
    assert list(got) == ["pearson", "spearman"]
    assert got["pearson"] == pytest.approx(stats.pearsonr(PREDICTED, GOLD)[0], abs=1e-12)
    assert got["spearman"] == pytest.approx(stats.spearmanr(PREDICTED, GOLD)[0], abs=1e-12)
    assert 0.8 < got["pearson"] < 1  # (a sanity check of the table itself)


def test_examples_without_a_gold_score_are_left_out():
    gold, predicted = [*GOLD[:3], None, *GOLD[3:]], [*PREDICTED[:3], 0.0, *PREDICTED[3:]]
    assert regression_metrics(["pearson", "spearman"], gold, predicted) == \
        regression_metrics(["pearson", "spearman"], GOLD, PREDICTED)


@pytest.mark.parametrize("gold, predicted", [
    (GOLD, [2.5] * len(GOLD)),  # a constant prediction
    ([3.0] * 3, [1.0, 2.0, 3.0]),  # constant gold scores
    ([3.0], [1.0]),  # one example
    ([], []),
    ([None, None], [1.0, 2.0]),
])
def test_an_undefined_correlation_is_reported_as_0(gold, predicted):
    assert regression_metrics(["pearson", "spearman"], gold, predicted) == {"pearson": 0.0, "spearman": 0.0}


def test_metrics_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match="`accuracy` is not a regression metric; they are pearson, spearman"):
        regression_metrics(["accuracy"], GOLD, PREDICTED)
    with pytest.raises(ValueError, match="6 gold scores but 2 predictions"):
        regression_metrics(["pearson"], GOLD, [1.0, 2.0])


# ---------------------------------------------------------------- the spec


SPEC = """promptlang 1

labels low, high

task regression {
  score similarity
  range 0, 5
}

data {
  train     "train.tsv"
  test      "test.tsv"
  unlabeled "unlabeled.tsv"
  text      sentence1, sentence2
  shots     2
  dev_shots 1
  seeds     13, 21
}

model {
  hub    "roberta-large"
  family masked
}

template same "{{ sentence1 }} [MASK], {{ sentence2 }}"

verbalizer similar {
  low  -> "No"
  high -> "Yes"
}

method prompt_finetune {
  steps 10
}
"""
# nine scores: the median is 3.0, held by two rows (lines 4 and 8), which go to `high` as in LM-BFF
TRAIN_SCORES = ["4.2", "0.5", "3.0", "1", "5.000", "2.6", "3.0", "0", "3.8"]
TEST_SCORES = ["3.0", "2.9", "5"]


def write(folder: Path, spec: str = SPEC, train: list[str] = TRAIN_SCORES) -> Path:
    rows = lambda scores: "".join(f"{s}\tfirst {i}\tsecond {i}\n" for i, s in enumerate(scores))  # noqa: E731
    (folder / "train.tsv").write_text("similarity\tsentence1\tsentence2\n" + rows(train))
    (folder / "test.tsv").write_text("similarity\tsentence1\tsentence2\n" + rows(TEST_SCORES))
    (folder / "unlabeled.tsv").write_text("sentence1\tsentence2\nan\tunscored pair\n")
    (folder / "spec.prompt").write_text(spec)
    return folder / "spec.prompt"


def checked(path: Path) -> m.Spec:
    analysis = analyze(path)
    assert not analysis.diagnostics.errors, analysis.diagnostics
    return analysis.spec


def test_the_spec_holds_the_task(tmp_path):
    spec = checked(write(tmp_path))
    assert spec.task == m.Regression(score="similarity", range=[0, 5])
    assert (spec.task.lower, spec.task.upper, spec.task_kind) == (0.0, 5.0, "regression")
    assert format_source(SPEC)[0] == SPEC


@pytest.mark.parametrize("name, kind", [("sst2-zero-shot", "classification"), ("trec-t5-qa", "generation"),
                                        ("stsb-zero-shot", "regression"), ("stsb-prompt-finetune", "regression")])
def test_task_kind_of_the_shipped_specs(name, kind):
    spec = analyze(ROOT / "specs" / f"{name}.prompt").spec
    assert spec.task_kind == kind


def test_a_clean_regression_spec_gets_no_diagnostic_and_unlabeled_data_needs_no_score(tmp_path):
    analysis = analyze(write(tmp_path))  # (its unlabeled file has no score column)
    assert analysis.ok and not analysis.diagnostics.errors and not analysis.diagnostics.warnings, analysis.diagnostics


def test_a_regression_runs(tmp_path):
    assert not_yet(checked(write(tmp_path))) == []


# ---------------------------------------------------------------- the median split and sampling


def test_the_poles_split_at_the_training_files_median(tmp_path):
    spec = checked(write(tmp_path))
    read = read_splits(spec, tmp_path)
    assert pole_threshold(spec, read["train"]) == 3.0
    assert [(e.score, e.label) for e in read["train"]] == [
        (4.2, "high"), (0.5, "low"), (3.0, "high"), (1.0, "low"), (5.0, "high"), (2.6, "low"), (3.0, "high"),
        (0.0, "low"), (3.8, "high")]
    assert [(e.score, e.label) for e in read["test"]] == [(3.0, "high"), (2.9, "low"), (5.0, "high")]
    assert [(e.score, e.label) for e in read["unlabeled"]] == [(None, None)]


def test_without_a_training_file_the_poles_split_at_the_ranges_middle(tmp_path):
    zero_shot = SPEC.replace('  train     "train.tsv"\n', "").replace("  shots     2\n  dev_shots 1\n", "")
    spec = checked(write(tmp_path, zero_shot.replace("method prompt_finetune {\n  steps 10\n}", "method zero_shot {}")))
    read = read_splits(spec, tmp_path)
    assert pole_threshold(spec, read["train"]) == 2.5
    assert [e.label for e in read["test"]] == ["high", "high", "high"]


def test_k_shots_are_sampled_per_pole(tmp_path):
    spec = checked(write(tmp_path))
    read = read_splits(spec, tmp_path)
    for seed in spec.data.seeds:
        splits = sample_splits(spec, read, seed)
        assert Counter(e.label for e in splits.train) == {"low": 2, "high": 2}
        assert Counter(e.label for e in splits.dev) == {"low": 1, "high": 1}
        assert not {e.source for e in splits.train} & {e.source for e in splits.dev}
        assert all((e.score >= 3.0) == (e.label == "high") for e in splits.train + splits.dev)
    samples = [{e.source for e in sample_splits(spec, read, seed).train} for seed in spec.data.seeds]
    assert samples[0] != samples[1]


def test_the_runtime_locates_a_bad_score(tmp_path):
    """`check` reports it first; a file changed after the check still gets a located error at `run`."""
    spec = checked(write(tmp_path))
    (tmp_path / "train.tsv").write_text("similarity\tsentence1\tsentence2\n1\ta\tb\ninf\tc\td\n")
    with pytest.raises(DataError) as caught:
        read_split(spec, "train", tmp_path)
    assert (str(caught.value), caught.value.path) == (
        "`train.tsv` line 3: the score `inf` is not a finite number", ("data", "train"))
    assert caught.value.hint == "a score is a number within the task's `range`, such as `3.8`"


def test_the_shipped_sts_b_reads_and_splits(tmp_path):
    spec = checked(ROOT / "specs" / "stsb-prompt-finetune.prompt")
    read = read_splits(spec, ROOT / "specs")
    assert (len(read["train"]), len(read["test"])) == (5174, 1500)
    assert pole_threshold(spec, read["train"]) == 3.0
    assert all(0 <= e.score <= 5 and not math.isnan(e.score) for e in read["train"] + read["test"])
    assert Counter(e.label for e in sample_splits(spec, read, 13).train) == {"low": 16, "high": 16}


# `--set` overrides go through the same checks, located on the command line
OVERRIDES = [
    (["task.range=5,0"], "--set:1:12: the range's lower bound (5) must be below its upper bound (0)"),
    (["task.score=similar"], "--set:1:12: the data has no score column `similar`"),
    (["task.kind=classification"], "--set:1:6: the task's kind is the block's name"),
    (["evaluate.metrics=accuracy"], "--set:1:18: `accuracy` does not measure a regression"),
]


@pytest.mark.parametrize("overrides, error", OVERRIDES, ids=[o[0] for o, _ in OVERRIDES])
def test_overrides_are_checked(tmp_path, overrides, error):
    analysis = analyze(write(tmp_path), overrides=overrides)
    assert [f"{Path(d.span.file).name}:{d.span.line}:{d.span.col}: {d.message}"
            for d in analysis.diagnostics.errors] == [error]
