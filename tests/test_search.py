"""LM-BFF's searches end to end: the plan's search and ranking stages, successive halving's schedule and
what it keeps, the run from a .prompt file (outputs, found.prompt, predicting, resuming) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.api import analyze  # noqa: E402
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.language import spec as m  # noqa: E402
from promptlang.language.diagnostics import SpecError  # noqa: E402
from promptlang.methods.search import rounds  # noqa: E402
from promptlang.runner import run  # noqa: E402
from promptlang.stages.candidates import ranking  # noqa: E402

pytestmark = pytest.mark.usefixtures("promptlang_cache")

DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  text  sentence'''


def _method(search: str, seeds: str = "1, 2") -> str:
    return f"prompt_finetune {{\n  steps 4\n  batch_size 2\n  seeds {seeds}\n{search}}}"


WORDS = "  label_word_search {\n    top_k 3\n    candidates 4\n    start 4\n  }\n"


def write(folder: Path, model_dirs, family: str, method: str, **spec) -> Path:
    tinymodels.write_data(folder)
    path = folder / "spec.prompt"
    path.write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, method=method,
                                         **spec), encoding="utf-8")
    return path


# ---------------------------------------------------------------- halving's schedule

ROUNDS = [  # (rank, candidates, start, keep, budget, final steps) → (candidates, steps) per round
    ("halving", 100, 8, 1, 4, 1000, [(8, 166), (4, 333), (2, 666)]),
    ("halving", 20, 8, 2, 4, 100, [(8, 25), (4, 50)]),
    ("halving", 5, 8, 1, 2, 30, [(5, 4), (3, 6), (2, 10)]),
    ("halving", 20, 1, 1, 4, 100, []),  # the zero-shot ranking decides alone
    ("halving", 20, 3, 1, 1, 1, [(3, 1), (2, 1)]),  # never below one step
    ("full", 20, 8, 1, 4, 1000, [(20, 1000)]),  # LM-BFF: every candidate, the method's steps
]


@pytest.mark.parametrize("rank, candidates, start, keep, budget, steps, expected", ROUNDS)
def test_halving_rounds(rank, candidates, start, keep, budget, steps, expected):
    settings = m.LabelWordSearch(rank=rank, candidates=candidates, start=start, keep=keep, budget=budget)
    assert rounds(settings, steps) == expected
    if rank == "halving" and all(each > 1 for _, each in expected):  # inside the budget (unless at 1 step)
        assert sum(count * each for count, each in expected) <= budget * steps


def _done(stage_id: str, round_: int, result: dict, slot: int | None = None):
    stage = p.Stage(id=stage_id, kind="rank", method="prompt_finetune", data_seed=13, search="words", round=round_,
                    slot=slot)
    return SimpleNamespace(stage=stage, result=result)


def test_ranking_puts_each_rounds_winners_first():
    # zero-shot: candidates 0..5 score .5 .9 .7 .9 .1 .6 → order 1 3 2 5 0 4 (a tie keeps the search's order)
    done = {"z": _done("z", 0, {"dev": [.5, .9, .7, .9, .1, .6]}),
            # round 1 fine-tunes the best four (1 3 2 5): 2 and 5 come out ahead
            "a": _done("a", 1, {"candidate": 1, "dev": .6}, 0), "b": _done("b", 1, {"candidate": 3, "dev": .7}, 1),
            "c": _done("c", 1, {"candidate": 2, "dev": .8}, 2), "d": _done("d", 1, {"candidate": 5, "dev": .8}, 3),
            # round 2: the best two of round 1 (2 5); 5 wins
            "e": _done("e", 2, {"candidate": 2, "dev": .7}, 0), "f": _done("f", 2, {"candidate": 5, "dev": .9}, 1),
            "g": _done("g", 2, {"candidate": None, "dev": None}, 2)}  # a slot the search found no candidate for
    fake = SimpleNamespace(done=done)
    stage = lambda *needs: p.Stage(id="x", kind="train", method="prompt_finetune", data_seed=13,  # noqa: E731
                                   search="words", needs=list(needs))
    assert ranking(fake, stage("z"), "words") == [1, 3, 2, 5, 0, 4]
    assert ranking(fake, stage("z", "a", "b", "c", "d"), "words") == [2, 5, 3, 1, 0, 4]
    assert ranking(fake, stage(*done), "words") == [5, 2, 3, 1, 0, 4]


# ---------------------------------------------------------------- the plan


def test_the_plan_of_a_label_word_search(tmp_path, model_dirs):
    from promptlang.runner import prepare

    spec = write(tmp_path, model_dirs, "masked", _method(WORDS))
    plan = prepare(spec).plan
    assert [(s.id, s.round, s.slot, s.steps) for s in plan.stages] == [
        ("search/d13/words", None, None, None),
        ("rank/d13/words/zero-shot", 0, None, None),
        ("rank/d13/words/r1/c0", 1, 0, 2), ("rank/d13/words/r1/c1", 1, 1, 2),
        ("rank/d13/words/r1/c2", 1, 2, 2), ("rank/d13/words/r1/c3", 1, 3, 2),
        ("rank/d13/words/r2/c0", 2, 0, 4), ("rank/d13/words/r2/c1", 2, 1, 4),
        ("train/d13/words1/s1", None, 0, None), ("evaluate/d13/words1/s1", None, 0, None),
        ("train/d13/words1/s2", None, 0, None), ("evaluate/d13/words1/s2", None, 0, None)]
    assert plan.stages[-1].needs[:8] == [s.id for s in plan.stages[:8]]  # the whole ranking decides its pattern
    costs = plan.search_costs["words"]
    assert (costs["halving"].optimizer_steps, costs["full"].optimizer_steps) == (16, 16)  # 4·2 + 2·4; 4 × 4 steps


def test_plan_prints_both_rankings_costs(tmp_path, model_dirs, capsys):
    from promptlang.cli import main

    spec = write(tmp_path, model_dirs, "masked", _method(WORDS.replace("candidates 4", "candidates 20")))
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "  rank/d13/words/r2/c1                 round 2: candidate 2 of the ranking so far, 4 steps; 1 model " \
           "trained, 4 optimizer steps, 5 forward passes, 16 examples read" in out
    assert out.rstrip().endswith(
        "label-word search: 6 models trained, 16 optimizer steps, 24 forward passes, 96 examples read (rank "
        "halving); rank full would take 20 models trained, 80 optimizer steps, 102 forward passes, 336 examples read")


# ---------------------------------------------------------------- runs


def test_a_label_word_search_runs_end_to_end_and_resumes(tmp_path, model_dirs):
    spec = write(tmp_path, model_dirs, "masked", _method(WORDS))
    out = tmp_path / "out"
    first = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    assert first.executed == [s.id for s in plan.stages]
    table = (out / "search" / "label_words.tsv").read_text(encoding="utf-8").splitlines()
    assert table[0].split("\t") == ["data_seed", "rank", "candidate", "words_negative", "words_positive",
                                    "train_score", "dev_zero_shot", "dev_round1", "dev_round2"]
    rows = [line.split("\t") for line in table[1:]]
    assert [r[1] for r in rows] == ["1", "2", "3", "4"] and len({r[2] for r in rows}) == 4
    assert all(r[7] for r in rows) and [bool(r[8]) for r in rows] == [True, True, False, False]  # halving's rounds
    best = rows[0][3:5]
    assert best[0] != best[1]
    # the found words are what the output predicts with, and a library another spec can import
    assert plan.patterns["words1"].labels[0].words == [best[0]] and plan.patterns["words1"].labels[1].words == [best[1]]
    library = analyze(out / "found.prompt")
    assert library.ok and library.spec.verbalizers["found_d13"].words == {"negative": [best[0]],
                                                                          "positive": [best[1]]}
    info = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    assert info["pattern"] == "words1"
    from promptlang import load

    written = next(line.split("\t") for line in (out / "predictions.tsv").read_text(encoding="utf-8").splitlines()
                   if line.startswith(info["stage"] + "\t0\t"))  # the best model on the first test sentence
    predicted = load(out).predict([tinymodels.SENTENCES[0][1]])[0]
    assert [round(predicted.probabilities[label], 6) for label in ("negative", "positive")] == \
        [float(x) for x in written[4:6]]
    again = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    assert all(row.reused for row in again.rows) and [r.metrics for r in again.rows] == [r.metrics for r in first.rows]
    # another training seed: the search and its ranking (on the first seed) are reused
    spec.write_text(spec.read_text(encoding="utf-8").replace("seeds 1, 2", "seeds 1, 3"), encoding="utf-8")
    run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    log = (out / "log.txt").read_text(encoding="utf-8")
    reused = [line.split("] ")[1].split(":")[0] for line in log.splitlines() if "finished earlier, reused" in line]
    assert reused == [s.id for s in plan.stages if "s2" not in s.id]


SEARCH_ERRORS = {  # the search block → the error `run` stops with (the tiny BERT's top words per label)
    "top_k 1": "error: the label-word search found no label-word mapping for data seed 13",
    "top_k 2\n    candidates 4\n    keep 4":
        "error: the label-word search found 2 candidates for data seed 13, but `keep` asks for 4",
}


@pytest.mark.parametrize("settings", list(SEARCH_ERRORS))
def test_a_search_that_finds_too_little_is_a_located_error(settings, tmp_path, model_dirs):
    search = f"  label_word_search {{\n    {settings}\n  }}\n"
    spec = write(tmp_path, model_dirs, "masked", _method(search, "1"))
    with pytest.raises(SpecError) as error:
        run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert str(error.value).splitlines()[0] == SEARCH_ERRORS[settings]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_label_words_are_found_for_every_family(family, tmp_path, model_dirs):
    """Found words are whole words, one token where they stand, distinct per mapping, and what the run trains."""
    from promptlang.compiler.tokens import word_tokens

    spec = write(tmp_path, model_dirs, family, _method(WORDS, "1"))
    out = tmp_path / "out"
    run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    rows = [line.split("\t") for line in (out / "search" / "label_words.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    assert len(rows) == 4
    tokenizer = tinymodels.TOKENIZERS[family]()
    for row in rows:
        assert row[3] != row[4] and all(w.isalpha() and len(word_tokens(tokenizer, w, " It was ")) == 1
                                        for w in row[3:5])
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    assert [lw.words for lw in plan.patterns["words1"].labels] == [[rows[0][3]], [rows[0][4]]]


TEMPLATES = "  template_search {{\n    beam 3\n    max_length 4\n    candidates 3\n    start 2\n{more}  }}\n"


def _found_templates(out: Path) -> list[list[str]]:
    lines = (out / "search" / "templates.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["data_seed", "rank", "candidate", "words_negative", "words_positive", "template",
                                    "beam_score", "dev_zero_shot", "dev_round1"]
    return [line.split("\t") for line in lines[1:]]


@pytest.mark.parametrize("family, generator", [("causal", None), ("masked", "seq2seq")])
def test_templates_are_generated_read_as_templates_and_trained(family, generator, tmp_path, model_dirs):
    """The causal search (the spec's own model) and T5's span filling (a generator folder, here for a masked
    LM): each found template is language text with the field and one mask, ranked, trained and importable."""
    more = f'    generator "{model_dirs[generator]}"\n' if generator else ""
    spec = write(tmp_path, model_dirs, family, _method(TEMPLATES.format(more=more), "1"))
    out = tmp_path / "out"
    first = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    assert first.executed[:4] == ["search/d13/templates", "rank/d13/templates/zero-shot", "rank/d13/templates/r1/c0",
                                  "rank/d13/templates/r1/c1"]
    rows = _found_templates(out)
    assert 1 <= len(rows) <= 3 and all(r[3:5] == ["terrible", "great"] for r in rows)  # the verbalizer's words
    for row in rows:
        template = analyze_template(row[5])
        assert [s.kind for s in template.text].count("mask") == 1 and [f.name for f in template.fields] == ["sentence"]
    library = analyze(out / "found.prompt")
    assert library.ok
    best = library.spec.templates["found_d13"]
    other = spec.read_text(encoding="utf-8").replace("promptlang 1\n", 'promptlang 1\nimport "out/found.prompt"\n', 1)
    other = other.replace("method prompt_finetune {", "method prompt_finetune {\n  patterns found_d13")
    (tmp_path / "other.prompt").write_text(other.split("  template_search {")[0] + "}\n", encoding="utf-8")
    imported = analyze(tmp_path / "other.prompt")  # another spec trains the found template as its own
    assert imported.ok, imported.diagnostics
    assert imported.spec.templates["found_d13"] == best and imported.spec.patterns == ["found_d13"]
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    found = plan.patterns["templates1"]
    assert [piece.kind for piece in found.pieces] == [segment.kind for segment in best.text]
    assert library.spec.verbalizers["found_d13"].words == {"negative": ["terrible"], "positive": ["great"]}
    again = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    assert all(row.reused for row in again.rows)


def analyze_template(text: str) -> m.Template:
    from promptlang.stages.candidates import read_templates

    (template,) = read_templates([text.replace("\\n", "\n")])
    assert template is not None, text
    return template


def test_both_searches_templates_around_the_found_words(tmp_path, model_dirs):
    search = WORDS + TEMPLATES.format(more="")
    spec = write(tmp_path, model_dirs, "causal", _method(search, "1"))
    out = tmp_path / "out"
    first = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    assert [s for s in first.executed if s.startswith("search/")] == ["search/d13/words", "search/d13/templates"]
    words = [line.split("\t") for line in (out / "search" / "label_words.tsv").read_text(
        encoding="utf-8").splitlines()[1:]][0][3:5]
    assert all(row[3:5] == words for row in _found_templates(out))  # generated around the best found words
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    assert [lw.words for lw in plan.patterns["templates1"].labels] == [[words[0]], [words[1]]]
    assert [r.pattern for r in first.rows] == ["templates1"]


def test_demonstrations_show_the_found_words(tmp_path, model_dirs):
    """LM-BFF's auto label words with demonstrations: each demonstration is filled in with the found word."""
    demos = dict(templates='template t "[DEMOS]{{ sentence }} It was [MASK]."\n'
                           'template demo "{{ sentence }} It was [MASK].\\n"',
                 extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n")
    spec = write(tmp_path, model_dirs, "causal", _method(WORDS, "1"), **demos)
    out = tmp_path / "out"
    run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    best = [line.split("\t") for line in (out / "search" / "label_words.tsv").read_text(
        encoding="utf-8").splitlines()[1:]][0][3:5]
    info = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    tokenizer = tinymodels.TOKENIZERS["causal"]()
    shown = [tokenizer.decode(one["demos"]) for one in info["extras"]["sets"]]
    assert len(shown) == 2
    for text in shown:  # one demonstration per label, each with its label's found word
        assert sorted(x.split(" It was ")[1].split(".")[0] for x in text.strip().split("\n")) == sorted(best)


def test_an_ensemble_of_the_best_found_templates(tmp_path, model_dirs):
    """`keep 2` + `ensemble true`: both found templates are trained and evaluated, and PET's ensemble stage
    averages their label logits (LM-BFF's ensemble of its top templates)."""
    import numpy as np

    search = TEMPLATES.format(more="    keep 2\n    ensemble true\n")
    spec = write(tmp_path, model_dirs, "causal", _method(search, "1"))
    out = tmp_path / "out"
    first = run(spec, str(out), quiet=True, stages=tmp_path / "stages")
    assert first.executed[-5:] == ["train/d13/templates1/s1", "evaluate/d13/templates1/s1", "train/d13/templates2/s1",
                                   "evaluate/d13/templates2/s1", "ensemble/d13"]
    assert [r.group for r in first.rows] == ["templates1", "templates2", "ensemble"]
    rows = [line.split("\t") for line in (out / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    probs = {stage: np.array([[float(x) for x in r[4:6]] for r in rows if r[0] == stage])
             for stage in ("evaluate/d13/templates1/s1", "evaluate/d13/templates2/s1", "ensemble/d13")}
    mean = (np.log(probs["evaluate/d13/templates1/s1"]) + np.log(probs["evaluate/d13/templates2/s1"])) / 2
    expected = np.exp(mean) / np.exp(mean).sum(axis=1, keepdims=True)
    assert np.allclose(probs["ensemble/d13"], expected, atol=1e-5)


def test_a_search_killed_mid_round_resumes_there_with_the_same_outcome(tmp_path, model_dirs):
    """SIGKILL while a halving round's second candidate trains: the resumed run reuses the search, the
    zero-shot ranking and the first candidate, and ends with the tables and predictions of an
    uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    search = "  label_word_search {\n    top_k 3\n    candidates 4\n    start 4\n    budget 20\n  }\n"
    spec = write(tmp_path, model_dirs, "causal", _method(search, "1"))
    whole, store = tmp_path / "whole", tmp_path / "store"
    run(spec, str(whole), quiet=True, stages=tmp_path / "other-store")
    env = {**os.environ, "PROMPTLANG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "promptlang", "run", str(spec), "--out", str(tmp_path / "out"),
               "--stages", str(store)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((store / "rank" / "d13" / "words" / "r1" / "c1").glob("*.partial-*")) and time.time() < deadline:
        assert process.poll() is None, "the run ended before its second candidate started training"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "out").exists()
    run(spec, str(tmp_path / "out"), quiet=True, stages=store)
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    for stage in ("search/d13/words", "rank/d13/words/zero-shot", "rank/d13/words/r1/c0"):
        assert f"{stage}: finished earlier, reused" in log
    assert "[4/10] rank/d13/words/r1/c1 ..." in log
    for name in ("search/label_words.tsv", "found.prompt", "predictions.tsv", "predictor.json", "plan.json"):
        assert (tmp_path / "out" / name).read_bytes() == (whole / name).read_bytes(), name


@pytest.mark.parametrize("base, expected", [
    ('"[DEMOS]{{ sentence }} Sentiment: [MASK]"', "[DEMOS]{{ sentence }} in [MASK]"),  # causal: before the input
    ('"{{ sentence }} It was [MASK]. [DEMOS]"', "{{ sentence }} in [MASK] [DEMOS]"),  # LM-BFF: after it
    ('"{{ sentence }} It was [MASK]."', "{{ sentence }} in [MASK]"),
])
def test_found_templates_keep_the_demonstrations_where_the_spec_has_them(base, expected):
    from promptlang.stages.search import with_demos

    template = tinymodels.spec_of(tinymodels.spec_text(template=base)).templates["t"]
    assert with_demos(template, "{{ sentence }} in [MASK]") == expected
