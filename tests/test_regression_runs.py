"""Regression runs end to end on the tiny models: every method that accepts a regression trains and
evaluates it through the executor, with the pole targets and KL loss, Pearson / Spearman of the
predicted scores lb + (ub − lb) · p(high), and a predictor that predicts scores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from scipy import stats  # noqa: E402

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.output.predictor import load  # noqa: E402
from promptlang.runner import run  # noqa: E402
from promptlang.runtime import task as tasks  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.runtime.ensemble import softmax  # noqa: E402
from promptlang.stages.logits import read_logits  # noqa: E402

SCORES = {"negative": [0.4, 1.0, 1.6, 2.0], "positive": [3.2, 4.0, 4.4, 5.0]}
TRAIN = "{\n  steps 2\n  batch_size 4\n  learning_rate 1e-3\n  seeds 1\n}"
RUNS = {
    "zero-shot masked": ("masked", "zero_shot {}"),
    "zero-shot causal": ("causal", "zero_shot {}"),
    "zero-shot seq2seq": ("seq2seq", "zero_shot {}"),
    "prompt-finetune masked": ("masked", "prompt_finetune " + TRAIN),
    "prompt-finetune causal": ("causal", "prompt_finetune " + TRAIN),
    "finetune masked": ("masked", "finetune " + TRAIN),
    "pet masked": ("masked", "pet {\n  steps 2\n  batch_size 4\n  seeds 1, 2\n  distill {\n    steps 2\n  }\n}"),
}


pytestmark = pytest.mark.usefixtures("promptlang_cache")


def write(folder, model_dirs, family: str, method: str):
    rows = [(SCORES[label][i % 4], sentence) for i, (label, sentence) in enumerate(tinymodels.SENTENCES)]
    (folder / "scores.tsv").write_text("score\tsentence\n" + "".join(f"{s}\t{t}\n" for s, t in rows),
                                       encoding="utf-8")
    path = folder / "spec.prompt"
    path.write_text(tinymodels.regression_spec(model_dirs[family], family, method, ("train", "dev", "test", "unlabeled")), encoding="utf-8")
    return path


def predictions(out) -> list[dict]:
    with open(out / "predictions.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("name", list(RUNS))
def test_a_regression_runs_and_is_measured_on_its_predicted_scores(name, tmp_path, model_dirs):
    family, method = RUNS[name]
    out = tmp_path / "out"
    results = run(write(tmp_path, model_dirs, family, method), str(out), quiet=True)
    rows = predictions(out)
    for row in results.rows:
        mine = [r for r in rows if r["stage"] == row.stage]
        gold = [float(r["gold"]) for r in mine]
        predicted = [float(r["predicted"]) for r in mine]
        np.testing.assert_allclose(predicted, [5 * float(r["p_high"]) for r in mine], atol=1e-4)  # lb + (ub − lb) p
        exact = 5 * softmax(read_logits(out / "stages" / row.stage / "test.logits.tsv"))[:, 1]
        assert set(row.metrics) == {"pearson", "spearman"}
        assert row.metrics["pearson"] == pytest.approx(stats.pearsonr(exact, gold)[0], abs=1e-9)
        assert row.metrics["spearman"] == pytest.approx(stats.spearmanr(exact, gold)[0], abs=1e-9)
    assert sorted(float(r["gold"]) for r in rows[:8]) == sorted(x for xs in SCORES.values() for x in xs)
    if (out / "predictor.json").is_file():
        [prediction] = load(out).predict(["a fine film"])
        assert prediction.predicted == f"{5 * prediction.probabilities['high']:.4f}"


def test_training_targets_the_poles_probabilities_with_a_kl_loss(tmp_path, model_dirs, monkeypatch):
    seen = []
    loss = tasks.Regression.loss

    def recording(self, scores, targets):
        seen.append(targets.clone())
        return loss(self, scores, targets)

    monkeypatch.setattr(tasks.Regression, "loss", recording)
    run(write(tmp_path, model_dirs, "masked", "prompt_finetune " + TRAIN), str(tmp_path / "out"), quiet=True)
    expected = {(round(1 - s / 5, 6), round(s / 5, 6)) for xs in SCORES.values() for s in xs}
    drawn = {tuple(round(float(x), 6) for x in row) for targets in seen for row in targets}
    assert seen and drawn <= expected and len(drawn) > 2  # probability targets, not pole indices


def test_the_regression_loss_is_kl_from_the_targets():
    task = tasks.Regression(["low", "high"], 0.0, 5.0)
    scores = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    targets = task.targets([Example({}, "low", score=1.0), Example({}, "high", score=4.5)])
    torch.testing.assert_close(targets, torch.tensor([[0.8, 0.2], [0.1, 0.9]]))
    log_q = torch.log_softmax(scores, dim=1)
    by_hand = (targets * (targets.log() - log_q)).sum(dim=1).mean()
    torch.testing.assert_close(task.loss(scores, targets), by_hand)


def test_dev_selection_is_on_pearson():
    task = tasks.Regression(["low", "high"], 0.0, 5.0)
    dev = [Example({}, "low", score=s) for s in (1.0, 2.0, 4.0)]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    assert task.selection(probs, dev) == pytest.approx(stats.pearsonr([0.5, 2.0, 2.5], [1.0, 2.0, 4.0])[0])


def test_the_metrics_json_says_pearson_and_spearman(tmp_path, model_dirs):
    out = tmp_path / "out"
    run(write(tmp_path, model_dirs, "masked", "zero_shot {}"), str(out), quiet=True)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["summary"]["t"]) == {"pearson", "spearman"}
    with open(out / "stages" / "evaluate" / "d13" / "t" / "test.logits.tsv", encoding="utf-8") as handle:
        header, *rows = [line.rstrip("\n").split("\t") for line in handle]
    assert header == ["index", "source", "gold", "low", "high"]
    assert sorted(float(row[2]) for row in rows) == sorted(x for xs in SCORES.values() for x in xs)  # the scores


def test_the_plan_says_what_a_regression_learns(tmp_path, model_dirs, capsys):
    from promptlang.cli import main

    assert main(["plan", str(write(tmp_path, model_dirs, "masked", "zero_shot {}"))]) == 0
    assert "task: regression of `score` in [0, 5]: targets [1 − t, t] over the poles low and high " \
           "(t = (score − 0) / 5), prediction 0 + 5 · p(high)" in capsys.readouterr().out.splitlines()
