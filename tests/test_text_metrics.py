"""T5's text metrics: each against its library called directly, one hand-worked value each, the STS-B
rounding and parsing tables, the answer and sentence splitting, and the errors' exact messages."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer, scoring
from scipy import stats

from promptlang.runtime.text_metrics import (bleu, correlations, normalize_answer, parse_score, rouge,
                                             score_text, split_answers, split_sentences, squad,
                                             text_accuracy, token_f1)

# corpora (predictions, references) scored by the module and by the library directly
BLEU_CORPORA = [
    (["The cat sat on the mat."], ["The cat is sitting on the mat."]),
    (["Gutach: Mehr Sicherheit für Fußgänger", "Sie stehen 100 Meter entfernt."],
     ["Gutach: Noch mehr Sicherheit für Fußgänger", "Sie stehen keine 100 Meter voneinander entfernt."]),
    (["Hello, world!", "no overlap at all", "A B C D E"], ["hello, world!", "something else", "A B C D E"]),
]

# prediction, reference, BLEU worked by hand (one sentence: the geometric mean of the 1–4-gram
# precisions, a 4-gram count of 0 smoothed to 1 / (2 · total), times the brevity penalty)
BLEU_BY_HAND = [
    ("a b c d", "a b c e", 100 * (3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25),  # p4 = 0/1 → 1/2
    ("a b c d", "a b c d e f", 100 * math.exp(1 - 6 / 4)),  # all precisions 1, BP = e^(1 − r/c)
    ("a b c d e", "a b c d e", 100.0),
]

GREEK = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
# 15 pairs, the i-th prediction sharing i + 1 of the reference's 16 words: the bootstrap's median moves
# with the seed
MANY_SCORES = ([" ".join(GREEK[:i + 1] + ["zzz"] * (15 - i)) for i in range(15)], [" ".join(GREEK)] * 15)

# predictions, references, and the same texts with a line break after each sentence, written by hand
ROUGE_CORPORA = [
    (*MANY_SCORES, *MANY_SCORES),  # no sentence ends
    (["The cat sat. It was happy."], ["A cat was sitting. The cat was happy!"],
     ["The cat sat.\nIt was happy."], ["A cat was sitting.\nThe cat was happy!"]),
    (["Police arrested two men. They were released later.", "Rain is expected on Monday.", "nothing"],
     ["Two men were arrested by police. Both were later released.", "Monday will bring heavy rain.",
      "The council voted on Tuesday. The plan was rejected."],
     ["Police arrested two men.\nThey were released later.", "Rain is expected on Monday.", "nothing"],
     ["Two men were arrested by police.\nBoth were later released.", "Monday will bring heavy rain.",
      "The council voted on Tuesday.\nThe plan was rejected."]),
]

# prediction, reference, {rouge type: F × 100} worked by hand
ROUGE_BY_HAND = [
    # unigrams: the, cat shared; P = 2/3, R = 2/4, F = 4/7. bigrams: "the cat"; P = 1/2, R = 1/3, F = 2/5.
    ("the cat sat", "the cat was sitting", {"rouge1": 400 / 7, "rouge2": 40.0, "rougeLsum": 400 / 7}),
    # each reference sentence is a whole predicted sentence: LCS summed over sentences = 4 of 4 words
    ("A b. C d.", "C d. A b.", {"rouge1": 100.0, "rouge2": 200 / 3, "rougeLsum": 100.0}),
]

SENTENCES = [
    ("He left. She stayed.", "He left.\nShe stayed."),
    ('She said "no." Then she went!  Why? Because.', 'She said "no."\nThen she went!\nWhy?\nBecause.'),
    ("U.S. officials met e.g. the mayor.", "U.S. officials met e.g. the mayor."),  # a lower-case word follows
    ("Mr. Smith came (late.) And 3.5 million left.", "Mr.\nSmith came (late.)\nAnd 3.5 million left."),
    ("one line\nand another. Last", "one line\nand another.\nLast"),
    ("No end here", "No end here"),
    ("Trailing. ", "Trailing. "),
    ("a . b . C", "a . b .\nC"),
]

# predictions, gold answer lists, exact match and F1 (× 100) worked by hand
SQUAD_BY_HAND = [
    (["The Cat sat!"], [["cat sat", "a dog"]], 100.0, 100.0),
    (["big cat"], [["the cat"]], 0.0, 200 / 3),  # "big cat" vs "cat": P = 1/2, R = 1, F1 = 2/3
    (["The Cat sat!", "big cat"], [["cat sat", "a dog"], ["the cat"]], 50.0, 250 / 3),
    (["February 7"], [["February 7, 2016", "February 7", "February 7, 2016"]], 100.0, 100.0),
    (["in 1990"], [["1990s", "the 1980s"]], 0.0, 0.0),
    (["an apple a day"], [["apple day"]], 100.0, 100.0),
    (["cat cat"], [["cat"]], 0.0, 200 / 3),  # the overlap is a multiset: 1 shared, P = 1/2, R = 1
]

NORMALIZED = [
    ("The Cat's hat!", "cats hat"),
    ("  An   apple, a pear & the  plum. ", "apple pear plum"),
    ("theatre another", "theatre another"),  # articles only as whole words
    ("U.S.A.", "usa"),
    ("", ""),
]

ANSWERS = [
    ("February 7, 2016 ||| February 7 ||| February 7, 2016", ["February 7, 2016", "February 7", "February 7, 2016"]),
    ("Denver Broncos", ["Denver Broncos"]),
    ("  a  |||  b ", ["a", "b"]),
    ("a|||b", ["a", "b"]),
    ("a ||| ||| b |||", ["a", "b"]),
    ("", []),
    (" ||| ", []),
]

# score, T5's target text (round(score · 5) / 5, half to even, one decimal)
STSB_TARGETS = [
    (2.5, "2.4"),  # 12.5 → 12
    (2.7, "2.8"),  # 13.5 → 14
    (3.3, "3.2"),  # 16.5 → 16
    (0.3, "0.4"),  # 1.5 → 2 (dividing by 0.2 would give 1.4999… → "0.2")
    (0.1, "0.0"),  # 0.5 → 0
    (0.5, "0.4"),
    (4.99, "5.0"),
    (5.0, "5.0"),
    (0.0, "0.0"),
    (3.8, "3.8"),
    (1.267, "1.2"),
    (-0.1, "0.0"),  # never "-0.0"
    (-0.3, "-0.4"),  # out of range: not clipped, as in T5
    (5.3, "5.2"),
    (6.0, "6.0"),
]

# step, score, text
OTHER_STEPS = [
    (0.5, 2.25, "2.0"),  # 4.5 → 4
    (0.5, 2.75, "3.0"),  # 5.5 → 6
    (1.0, 2.5, "2.0"),
    (0.1, 0.25, "0.2"),  # 2.5 → 2
]

SCORES = [
    ("3.8", 3.8),
    (" 4 ", 4.0),
    ("4\n", 4.0),
    ("-0.4", -0.4),
    ("1e0", 1.0),
    ("abc", -1.0),
    ("", -1.0),
    ("3.8 ", 3.8),
    ("3.8.1", -1.0),
    ("3,8", -1.0),
    ("nan", -1.0),  # T5 would give NaN; a NaN would poison the correlation
    ("inf", -1.0),
    ("-Infinity", -1.0),
]

ACCURACY = [
    (["entailment", "neutral"], ["entailment", "neutral"], 1.0),
    ([" entailment\n", "neutral"], ["entailment", "contradiction"], 0.5),
    (["Entailment"], ["entailment"], 0.0),  # case counts
    (["entailment."], ["entailment"], 0.0),  # no label word: wrong
    (["", "neutral", "x"], ["neutral", "neutral", "neutral"], 1 / 3),
]

# call, exact message
ERRORS = [
    (lambda: bleu([], []), "no predictions to score"),
    (lambda: bleu(["a"], ["a", "b"]), "1 predictions but 2 references"),
    (lambda: rouge([], []), "no predictions to score"),
    (lambda: rouge(["a", "b"], ["a"]), "2 predictions but 1 references"),
    (lambda: squad([], []), "no predictions to score"),
    (lambda: squad(["a"], []), "1 predictions but 0 answer lists"),
    (lambda: squad(["a", "b"], [["a"], []]), "example 1 has no gold answer"),
    (lambda: text_accuracy([], []), "no predictions to score"),
    (lambda: text_accuracy(["a"], ["a", "b"]), "1 predictions but 2 gold texts"),
    (lambda: correlations([], []), "no predictions to score"),
    (lambda: correlations(["1", "2"], [1.0]), "2 predictions but 1 gold scores"),
    (lambda: score_text(float("nan")), "a score must be a finite number, got nan"),
    (lambda: score_text(float("inf")), "a score must be a finite number, got inf"),
    (lambda: score_text(3.0, step=0), "the rounding step must be above 0, got 0"),
]


@pytest.mark.parametrize("predictions, references", BLEU_CORPORA)
def test_bleu_is_sacrebleus_corpus_bleu_with_t5s_settings(predictions, references):
    expected = sacrebleu.corpus_bleu(predictions, [references], smooth_method="exp", force=False,
                                     lowercase=False, tokenize="intl", use_effective_order=False)
    assert bleu(predictions, references) == {
        "bleu": pytest.approx(expected.score, abs=1e-9),
        "bleu_signature": f"nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:{sacrebleu.__version__}"}


@pytest.mark.parametrize("prediction, reference, expected", BLEU_BY_HAND)
def test_bleu_by_hand(prediction, reference, expected):
    assert bleu([prediction], [reference])["bleu"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("predictions, references, split_predictions, split_references", ROUGE_CORPORA)
def test_rouge_is_rouge_scores_bootstrap_mid(predictions, references, split_predictions, split_references):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"])
    aggregator = scoring.BootstrapAggregator()
    for prediction, reference in zip(split_predictions, split_references):
        aggregator.add_scores(scorer.score(target=reference, prediction=prediction))
    np.random.seed(7)
    expected = aggregator.aggregate()
    got = rouge(predictions, references, seed=7)
    assert got == {name: pytest.approx(100 * expected[name].mid.fmeasure, abs=1e-9) for name in expected}


@pytest.mark.parametrize("prediction, reference, expected", ROUGE_BY_HAND)
def test_rouge_by_hand(prediction, reference, expected):
    assert rouge([prediction], [reference]) == {name: pytest.approx(value) for name, value in expected.items()}


def test_rouge_lsum_needs_the_sentences_split():
    unsplit = rouge_scorer.RougeScorer(["rougeLsum"]).score(target="C d. A b.", prediction="A b. C d.")
    assert unsplit["rougeLsum"].fmeasure == pytest.approx(0.5)  # one line: the LCS is 2 of 4 words
    assert rouge(["A b. C d."], ["C d. A b."])["rougeLsum"] == pytest.approx(100.0)


def test_rouge_stems_only_when_asked():
    plain = rouge(["the cats were running"], ["a cat runs"])
    stemmed = rouge(["the cats were running"], ["a cat runs"], use_stemmer=True)
    # stemmed: "the cat were run" against "a cat run": 2 shared, P = 2/4, R = 2/3, F = 4/7
    assert (plain["rouge1"], stemmed["rouge1"]) == (0.0, pytest.approx(400 / 7))


def test_rouge_bootstrap_follows_the_seed():
    assert rouge(*MANY_SCORES, seed=0)["rouge1"] != rouge(*MANY_SCORES, seed=7)["rouge1"]


def test_rouge_is_reproducible_and_leaves_numpys_generator_alone():
    predictions, references = MANY_SCORES
    np.random.seed(123)
    first = rouge(predictions, references)
    after = np.random.random()
    np.random.seed(123)
    assert rouge(predictions, references) == first
    assert np.random.random() == after


@pytest.mark.parametrize("text, expected", SENTENCES)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("predictions, answers, exact_match, f1", SQUAD_BY_HAND)
def test_squad_by_hand(predictions, answers, exact_match, f1):
    assert squad(predictions, answers) == {"exact_match": pytest.approx(exact_match), "f1": pytest.approx(f1)}


@pytest.mark.parametrize("text, expected", NORMALIZED)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_token_f1_of_nothing_shared_is_zero():
    assert (token_f1("", "cat"), token_f1("dog", "cat"), token_f1("a b", "b a")) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("text, expected", ANSWERS)
def test_split_answers(text, expected):
    assert split_answers(text) == expected


@pytest.mark.parametrize("score, expected", STSB_TARGETS)
def test_score_text(score, expected):
    assert score_text(score) == expected


@pytest.mark.parametrize("step, score, expected", OTHER_STEPS)
def test_score_text_other_steps(step, score, expected):
    assert score_text(score, step=step) == expected


def test_score_text_is_t5s_float32_rounding_on_a_fine_grid():
    scores = np.arange(0, 50001) / 10000  # 0.0000 … 5.0000
    t5 = np.round(scores.astype(np.float32) * np.float32(5)) / np.float32(5)  # tf.round: half to even
    assert [score_text(float(s)) for s in scores] == [f"{value:.1f}" for value in t5]


@pytest.mark.parametrize("text, expected", SCORES)
def test_parse_score(text, expected):
    assert parse_score(text) == expected


def test_parse_score_default():
    assert (parse_score("abc", default=0.0), parse_score("2.4", default=0.0)) == (0.0, 2.4)


def test_score_text_round_trips_through_parse_score():
    assert [parse_score(score_text(step / 5)) for step in range(26)] == [step / 5 for step in range(26)]


@pytest.mark.parametrize("predictions, gold, expected", ACCURACY)
def test_text_accuracy(predictions, gold, expected):
    assert text_accuracy(predictions, gold) == pytest.approx(expected)


def test_correlations_are_scipys_on_the_parsed_predictions():
    predictions, gold = ["3.8", "1.0", "oops", " 4.4", "2.2"], [4.0, 0.8, 2.0, 5.0, 1.6]
    parsed = [3.8, 1.0, -1.0, 4.4, 2.2]  # "oops" is no number: -1, as in T5
    assert correlations(predictions, gold) == {"pearson": pytest.approx(stats.pearsonr(parsed, gold)[0]),
                                               "spearman": pytest.approx(stats.spearmanr(parsed, gold)[0])}


def test_correlations_by_hand():
    assert correlations(["1", "2", "3"], [2.0, 4.0, 6.0]) == {"pearson": pytest.approx(1.0),
                                                               "spearman": pytest.approx(1.0)}
    # deviations (1, 0, −1) and (−3, −2, 5): r = −8 / √(2 · 38); the ranks are exactly reversed
    assert correlations(["3", "2", "1"], [1.0, 2.0, 9.0]) == {"pearson": pytest.approx(-8 / 76 ** 0.5),
                                                               "spearman": pytest.approx(-1.0)}


@pytest.mark.parametrize("predictions, gold", [
    (["2.0", "2.0", "2.0"], [1.0, 2.0, 3.0]),  # constant predictions
    (["x", "y"], [1.0, 4.0]),  # all unparsable: constant -1
    (["1", "2"], [3.0, 3.0]),  # constant gold
    (["1"], [3.0]),  # one example
    (["1", "2", "3"], [None, 2.0, None]),  # one example with a gold score
])
def test_undefined_correlations_are_zero(predictions, gold):
    assert correlations(predictions, gold) == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize("call, message", ERRORS)
def test_errors(call, message):
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message


def test_importing_the_module_loads_no_metric_library():
    code = ("import sys, promptlang.runtime.text_metrics; "
            "print(sorted(m for m in ('sacrebleu', 'rouge_score', 'nltk', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
