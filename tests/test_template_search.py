"""LM-BFF's automatic templates: the beam search on a fixed distribution (beams and scores worked out by
hand), T5's spans, template text that parses, and the T5 and causal searches against full forward passes
of the tiny models of tests/tinymodels.py."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from promptlang.compiler.tokens import ids_of  # noqa: E402
from promptlang.language import syntax as s  # noqa: E402
from promptlang.language.diagnostics import Diagnostics  # noqa: E402
from promptlang.language.parser import parse, parse_template  # noqa: E402
from promptlang.language.source import Source  # noqa: E402
from promptlang.runtime import template_search as ts, template_text as tt  # noqa: E402

EXAMPLES = [{"sentence": sentence} for _, sentence in tinymodels.SENTENCES]
WORDS = ["great" if label == "positive" else "terrible" for label, _ in tinymodels.SENTENCES]
single_thread = tinymodels.single_thread  # one CPU thread while this module runs (an autouse fixture)
PAIRS = [{"premise": a["sentence"], "hypothesis": b["sentence"]} for a, b in zip(EXAMPLES, EXAMPLES[::-1])]


@pytest.fixture(scope="module")
def models():
    return {family: tinymodels.build(family) for family in ("causal", "seq2seq")}


def parsed(text: str) -> s.TemplateText:
    diagnostics = Diagnostics()
    template = parse_template(Source(text, "found.prompt"), text, 0, diagnostics)
    assert template is not None and not diagnostics.errors, (text, diagnostics)
    return template


def assert_template(text: str, fields: list[str]) -> None:
    """The text parses, with exactly one [MASK] and each field once."""
    pieces = parsed(text).pieces
    assert [p.kind for p in pieces if isinstance(p, s.Slot)] == ["mask"]
    assert sorted(p.name for p in pieces if isinstance(p, s.FieldRef)) == sorted(fields)


# ---------------------------------------------------------------- the beam search

# Tokens a=0, b=1, E=2 (ends an item), F=3; every step's distribution is the same: p = .4, .1, .3, .2.
P = [0.4, 0.1, 0.3, 0.2]


def fixed_step(prefixes):
    return torch.log(torch.tensor(P, dtype=torch.float64)).expand(len(prefixes), -1)


@pytest.mark.parametrize("settings, expected", [
    # beam 3, F forbidden. Step 1: a .4, E .3, b .1 (E finished). Step 2: E .3, aa .16, aE .12 survive
    # (ab, ba .04 ...). Step 3: aa → aaa .064, aaE .048: E, aE, aaa survive; aaa is unfinished at 3 tokens.
    (dict(beam=3, forbidden={3}), [([2], (.3,)), ([0, 2], (.4, .3))]),
    # beam 1: a, aa, aaa, greedy, never ends in time
    (dict(beam=1, forbidden={3}), []),
    # F allowed (.2 beats b): step 1 keeps a, E; step 2 E .3, aa .16; step 3 E .3, aaa .064
    (dict(beam=2), [([2], (.3,))]),
    # apart (not shared): step 1 done [E], live [a, b]; step 2 done [E, aE .12, bE .03], live [aa .16,
    # ab .04, ba .04]; step 3 adds aaE .048 (abE, baE .012 fall off), the live ones run out of length
    (dict(beam=3, forbidden={3}, shared=False), [([2], (.3,)), ([0, 2], (.4, .3)), ([0, 0, 2], (.4, .4, .3))]),
    # apart, a may not follow a: step 2 live [ab, ba .04, bb .01], done [E, aE, bE .03];
    # step 3's abE, baE .012 and bbE .003 stay below bE
    (dict(beam=3, forbidden={3}, shared=False, no_repeat={0}), [([2], (.3,)), ([0, 2], (.4, .3)), ([1, 2], (.1, .3))]),
    # apart, beam 1 with E always tried: step 1 done [E .3], live [a .4]; step 2 aE .12 loses to E,
    # live [aa .16] can no longer beat .3: the search stops
    (dict(beam=1, forbidden={3}, shared=False, stops={2}), [([2], (.3,))]),
    # the same without the stop: a, aa, aaa and nothing finished
    (dict(beam=1, forbidden={3}, shared=False), []),
], ids=["shared", "greedy", "f-allowed", "apart", "no-repeat", "stops", "no-stops"])
def test_beam_search_on_a_fixed_distribution(settings, expected):
    found = ts.averaged_beam_search(fixed_step, max_length=3, ends=lambda t: t[-1] == 2, **settings)
    assert [tokens for tokens, _ in found] == [tokens for tokens, _ in expected]
    for (_, score), (_, probabilities) in zip(found, expected):
        assert score == pytest.approx(sum(math.log(p) for p in probabilities), abs=1e-12)


def test_beam_search_breaks_ties_by_the_smaller_sequence():
    # items end at two tokens: aa .16, then aE and Ea .12 (a tie: aE first), EE .09, then ab (ab and ba .04)
    found = ts.averaged_beam_search(fixed_step, 5, 2, lambda t: len(t) == 2, forbidden={3})
    assert [tokens for tokens, _ in found] == [[0, 0], [0, 2], [2, 0], [2, 2], [0, 1]]
    assert found[1][1] == found[2][1]


# ---------------------------------------------------------------- spans and template text

S0, S1, S2, EOS = 10, 11, 12, 1


@pytest.mark.parametrize("tokens, spans", [
    ([5, 6, S1, 7, S2], [[5, 6], [7]]),
    ([S1, S2], [[], []]),
    ([5, S1, 7, 8, EOS], [[5], [7, 8]]),
    ([5, S1, 7], [[5], [7]]),  # Y ran out of length
    ([5, 6], None),  # X never closed: no mask
], ids=["two-spans", "empty", "eos", "ran-out", "no-mask"])
def test_t5_spans(tokens, spans):
    assert tt.t5_spans(tokens, (S0, S1, S2), EOS) == spans


ONE = tt.t5_shapes(["sentence"])
PAIR = tt.t5_shapes(["premise", "hypothesis"])[0]
CAUSAL = tt.causal_shape(["sentence"])


@pytest.mark.parametrize("shape, spans, text, literal", [
    (ONE[0], [" It was", "."], "{{ sentence }} It was [MASK].", [" It was ", "."]),
    (ONE[1], [" It was", "!"], "It was [MASK]! {{ sentence }}", ["It was ", "! "]),
    (ONE[0], [".", ""], "{{ sentence }}. [MASK]", [". "]),
    (PAIR, ["?", ","], "{{ premise }}? [MASK], {{ hypothesis }}", ["? ", ", "]),
    (CAUSAL, [' {x} [y] "q" a\\b\n\tc'], '{{ sentence }} \\{x} \\[y] "q" a\\\\b\\n\\tc [MASK]',
     [' {x} [y] "q" a\\b\n\tc ']),
    (tt.causal_shape(["premise", "hypothesis"]), [" Yes"], "{{ premise }} {{ hypothesis }} Yes [MASK]", [" ", " Yes "]),
    (ONE[0], ["", " "], None, None),  # nothing found
    (CAUSAL, [" ring\x07"], None, None),  # a control character a template cannot hold
    (CAUSAL, [" \ufffd"], None, None),  # half of a character (a byte token)
], ids=["s-x-mask-y", "x-mask-y-s", "glued", "pair", "escapes", "causal-pair", "empty", "control", "byte"])
def test_render(shape, spans, text, literal):  # literal: the text pieces, unescaped, with the spaces rendered
    assert tt.render(shape, spans) == text
    if text is not None:
        fields = [value for kind, value in shape if kind == "field"]
        assert_template(text, fields)
        assert [p.text for p in parsed(text).pieces if isinstance(p, s.Text)] == literal
        # inside a spec's string, its quotes escaped (as `stages.candidates.string_literal` writes it)
        nodes, diagnostics = parse('promptlang 1\ntemplate found "' + text.replace('"', '\\"') + '"\n')
        assert nodes is not None and not diagnostics.errors, diagnostics
        [value] = nodes.statements[0].entries[0].values
        assert [p.text for p in value.text.pieces if isinstance(p, s.Text)] == literal


@pytest.mark.parametrize("family, text, decoded", [
    ("seq2seq", " It was", " It was"),
    ("seq2seq", "It was", " It was"),  # SentencePiece writes a space before every word
    ("causal", " It was", " It was"),
    ("causal", "It was", "It was"),  # byte-level BPE: no Ġ, no space
])
def test_span_text_keeps_the_leading_space(family, text, decoded):
    tokenizer = tinymodels.TOKENIZERS[family]()
    assert tt.span_text(tokenizer, ids_of(tokenizer, text)) == decoded


def test_degenerate_tokens_of_the_tiny_t5():
    tokenizer = tinymodels.t5_tokenizer()
    # <pad> </s> <unk>, the lone ▁ (decodes to nothing), "\n" (only whitespace), the eight sentinels
    assert sorted(tt.degenerate_ids(tokenizer)) == [0, 1, 2, 3, 49, *range(112, 120)]
    assert tt.period_ids(tokenizer) == {tokenizer.convert_tokens_to_ids(".")}


@pytest.mark.parametrize("search", [ts.t5_templates, ts.causal_templates], ids=["t5", "causal"])
@pytest.mark.parametrize("examples, words, fields, message", [
    ([], [], ["sentence"], "a template search needs examples and one label word each, not 0 examples and 0 words"),
    (EXAMPLES, WORDS[:3], ["sentence"],
     "a template search needs examples and one label word each, not 8 examples and 3 words"),
    (EXAMPLES, WORDS, ["a", "b", "c"], "a template search takes one or two text fields, not 3"),
], ids=["no-examples", "words", "fields"])
def test_bad_arguments_are_refused(search, examples, words, fields, message):
    with pytest.raises(ValueError) as error:
        search(None, None, examples, words, fields, beam=2, max_length=2, device="cpu")
    assert str(error.value) == message


# ---------------------------------------------------------------- T5


@torch.no_grad()
def full_t5_log_probs(model, inputs, decoder):
    """log p(next | input, decoder ids) (V,) from one whole forward pass, unpadded."""
    logits = model(input_ids=torch.tensor([inputs]), decoder_input_ids=torch.tensor([decoder])).logits
    return torch.log_softmax(logits[0, -1].float(), dim=-1)


def test_t5_log_probs_are_the_mean_of_full_forward_passes(models):
    model, tokenizer = models["seq2seq"]
    shape = tt.t5_shapes(["sentence"])[0]
    sentinels = tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"])
    inputs = [tt.t5_input(tokenizer, shape, e, w, sentinels, 256) for e, w in zip(EXAMPLES, WORDS)]
    memory = ts._encode(model, inputs, tokenizer.pad_token_id, "cpu", 3)
    start = [model.config.decoder_start_token_id, sentinels[0]]
    prefixes = [[], [6], [6, 38, sentinels[1]]]
    with torch.no_grad():
        got = ts.t5_log_probs(model, memory, start, prefixes, batch_size=5)  # rows cut across examples
        for row, prefix in enumerate(prefixes):
            expected = torch.stack([full_t5_log_probs(model, ids, start + prefix) for ids in inputs]).mean(0)
            torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=1e-5)
    assert tokenizer.decode(inputs[0]) == "a fine film<extra_id_0> great<extra_id_1></s>"


@pytest.mark.parametrize("fields, examples", [(["sentence"], EXAMPLES), (["premise", "hypothesis"], PAIRS)],
                         ids=["one", "pair"])
def test_t5_templates(models, fields, examples):
    model, tokenizer = models["seq2seq"]
    found = ts.t5_templates(model, tokenizer, examples, WORDS, fields, beam=4, max_length=6, device="cpu")
    again = ts.t5_templates(model, tokenizer, examples, WORDS, fields, beam=4, max_length=6, device="cpu")
    assert found == again and found
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert len({c.text for c in found}) == len(found)
    closing = tokenizer.convert_tokens_to_ids(["<extra_id_2>", "</s>"])
    for candidate in found:
        assert_template(candidate.text, fields)
        assert len(candidate.tokens) <= 6 and candidate.tokens[-1] in closing
    if len(fields) == 1:  # both shapes: the sentence first and last
        assert {c.text.startswith("{{") for c in found} == {True, False}


# ---------------------------------------------------------------- causal LMs


@torch.no_grad()
def full_causal_log_probs(model, ids):
    """log p(token t | tokens before) (L, V) from one whole forward pass, unpadded."""
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)


def hand_score(model, prompts, words, x):
    """mean over examples of log P(X | S) + log P(word | S X), from full forward passes."""
    total = 0.0
    for prompt, word in zip(prompts, words):
        full = prompt + x + word
        log_probs = full_causal_log_probs(model, full)
        total += sum(float(log_probs[q - 1, full[q]]) for q in range(len(prompt), len(full)))
    return total / len(prompts)


def causal_setup(models, words):
    model, tokenizer = models["causal"]
    prompts = [tt.causal_input(tokenizer, e, ["sentence"], 256) for e in EXAMPLES]
    word_ids = [tt.word_ids(tokenizer, w) for w in words]
    return model, tokenizer, prompts, word_ids


MIXED = ["greatness" if w == "great" else w for w in WORDS]  # great + ness: two tokens


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "whole-sequences"])
def test_causal_log_probs_are_the_mean_of_full_forward_passes(models, cached):
    model, tokenizer, prompts, word_ids = causal_setup(models, MIXED)
    assert tokenizer.convert_ids_to_tokens(word_ids[0]) == ["Ġgreat", "ness"]
    state = ts.prompt_states(model, prompts, tokenizer.pad_token_id, "cpu", room=8)
    assert state.cache is not None
    if not cached:
        state.cache = None
    prefixes = [[], ids_of(tokenizer, " It"), ids_of(tokenizer, " It was")]  # different lengths in one call
    with torch.no_grad():
        following, word = ts.causal_log_probs(model, state, word_ids, prefixes, batch_size=5)
        for row, x in enumerate(prefixes):
            expected = torch.stack([full_causal_log_probs(model, p + x)[-1] for p in prompts]).mean(0)
            torch.testing.assert_close(following[row], expected, atol=1e-5, rtol=1e-5)
            assert float(word[row]) == pytest.approx(hand_score(model, prompts, word_ids, x)
                                                     - hand_score(model, prompts, [[]] * len(prompts), x), abs=1e-5)


def test_a_causal_item_scores_as_a_full_forward_pass(models):
    model, tokenizer, prompts, word_ids = causal_setup(models, MIXED)
    state = ts.prompt_states(model, prompts, tokenizer.pad_token_id, "cpu", room=8)
    step = ts.causal_step(model, state, word_ids, max_length=3, batch_size=7)
    x = ids_of(tokenizer, " It was")
    with torch.no_grad():  # the summed steps of X = " It was" then the end: the item's score
        summed = float(step([[]])[0, x[0]] + step([x[:1]])[0, x[1]] + step([x])[0, -1])
    assert summed == pytest.approx(hand_score(model, prompts, word_ids, x), abs=1e-5)
    found = ts.causal_templates(model, tokenizer, EXAMPLES, MIXED, ["sentence"], beam=3, max_length=3, device="cpu")
    for candidate in found:
        assert candidate.score == pytest.approx(hand_score(model, prompts, word_ids, list(candidate.tokens)), abs=1e-5)
        assert candidate.text == "{{ sentence }}" + tt.span_text(tokenizer, list(candidate.tokens)) + " [MASK]"


@pytest.mark.parametrize("fields, examples", [(["sentence"], EXAMPLES), (["premise", "hypothesis"], PAIRS)],
                         ids=["one", "pair"])
def test_causal_templates(models, fields, examples):
    model, tokenizer = models["causal"]
    found = ts.causal_templates(model, tokenizer, examples, WORDS, fields, beam=4, max_length=4, device="cpu")
    again = ts.causal_templates(model, tokenizer, examples, WORDS, fields, beam=4, max_length=4, device="cpu")
    assert found == again and len(found) == 4
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert len({c.text for c in found}) == len(found)
    for candidate in found:
        assert_template(candidate.text, fields)
        assert 1 <= len(candidate.tokens) <= 4
        assert not set(candidate.tokens) & tt.degenerate_ids(tokenizer)
