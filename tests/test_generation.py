"""Teacher-forcing loss and batched generation on a tiny random T5 and a tiny Llama.

The loss is checked against full forward passes run one unpadded example at a time (and against
transformers' own loss with labels -100 on the prompt and padding); batched generation against
`model.generate` called on each example alone, with nothing padded.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from promptlang.runtime import generation  # noqa: E402
from promptlang.runtime.batches import pad  # noqa: E402
from promptlang.runtime.generation import Decoding  # noqa: E402

single_thread = tinymodels.single_thread  # one CPU thread while this module runs (an autouse fixture)
FAMILIES = ("seq2seq", "causal")
SEEDS = {"seq2seq": 2, "causal": 0}  # random models whose greedy outputs differ between inputs
# five lengths, so that every batch of two or three is padded
PROMPTS = ["It was", "a fine film", "a great and moving story", "the best movie of the year",
           "Review: a bad film Sentiment:"]
TARGETS = ["great", "a good plot", "It was terrible .", "bad", "the worst movie of the year , just bad"]


@pytest.fixture(scope="module")
def models():
    """Family → (model, tokenizer), in eval mode."""
    return {family: tinymodels.build(family, SEEDS[family]) for family in FAMILIES}


def encoded(tokenizer, texts):
    """Whole model inputs with their special tokens, as the pipeline makes them."""
    return tokenizer(texts)["input_ids"]


def target_ids(tokenizer, texts):
    """Targets' ids without special tokens, the end token appended (the caller's part of the contract)."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]


# ---------------------------------------------------------------- teacher forcing


def reference_log_probs(model, family, prompt, target):
    """log p of each target token (T,) from one unpadded full forward pass and a log-softmax of all logits."""
    if family == "seq2seq":
        start = model.config.decoder_start_token_id
        logits = model(input_ids=torch.tensor([prompt]), decoder_input_ids=torch.tensor([[start] + target[:-1]])).logits[0]
        return torch.log_softmax(logits.float(), dim=-1)[torch.arange(len(target)), target]
    logits = model(input_ids=torch.tensor([prompt + target])).logits[0]  # (L, V)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return torch.stack([log_probs[len(prompt) - 1 + j, token] for j, token in enumerate(target)])


def by_hand(model, family, prompts, targets, pad_id):
    """The mean over every target token of the batch of -log p, each example alone."""
    picked = torch.cat([reference_log_probs(model, family, x, y) for x, y in zip(prompts, targets)])
    return -picked.mean()


def by_transformers(model, family, prompts, targets, pad_id):
    """transformers' own loss: labels -100 on padding (and, causal, on the prompt), right-padded batch."""
    if family == "seq2seq":
        ids, attention = pad(prompts, pad_id)
        labels, _ = pad(targets, -100)
        return model(input_ids=ids, attention_mask=attention, labels=labels).loss
    ids, attention = pad([x + y for x, y in zip(prompts, targets)], pad_id)
    labels, _ = pad([[-100] * len(x) + y for x, y in zip(prompts, targets)], -100)
    return model(input_ids=ids, attention_mask=attention, labels=labels).loss


@pytest.mark.parametrize("reference", [by_hand, by_transformers])
@pytest.mark.parametrize("head", ["split", "full"])
@pytest.mark.parametrize("family", FAMILIES)
def test_target_loss_equals_the_references(models, family, head, reference, monkeypatch):
    model, tokenizer = models[family]
    if head == "full":  # a model whose head cannot run apart: the full logits
        monkeypatch.setattr(generation, "_head_splits", lambda model: False)
    prompts, targets = encoded(tokenizer, PROMPTS), target_ids(tokenizer, TARGETS)
    assert len({len(x) for x in prompts}) == len(prompts) and len({len(y) for y in targets}) > 1
    with torch.no_grad():
        got = generation.target_loss(model, family, prompts, targets, tokenizer.pad_token_id)
        want = reference(model, family, prompts, targets, tokenizer.pad_token_id)
    assert got.dtype == torch.float32 and got.shape == ()
    assert torch.allclose(got, want, atol=1e-5)


def test_the_prompt_carries_no_loss(models):
    """Causal: the loss is not the whole sequence's, and changing the prompt changes it only through the context."""
    model, tokenizer = models["causal"]
    prompts, targets = encoded(tokenizer, PROMPTS[:2]), target_ids(tokenizer, TARGETS[:2])
    pad_id = tokenizer.pad_token_id
    with torch.no_grad():
        got = generation.target_loss(model, "causal", prompts, targets, pad_id)
        ids, attention = pad([x + y for x, y in zip(prompts, targets)], pad_id)
        labels = ids.masked_fill(attention == 0, -100)
        everything = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    assert not torch.allclose(got, everything, atol=1e-3)
    assert torch.allclose(got, by_hand(model, "causal", prompts, targets, pad_id), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_embeddings_and_the_head(models, family):
    model, tokenizer = models[family]
    prompts, targets = encoded(tokenizer, PROMPTS[:3]), target_ids(tokenizer, TARGETS[:3])
    model.zero_grad(set_to_none=True)
    generation.target_loss(model, family, prompts, targets, tokenizer.pad_token_id).backward()
    try:
        for weights in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            assert weights.grad is not None and weights.grad.abs().sum() > 0
    finally:
        model.zero_grad(set_to_none=True)


def test_a_bfloat16_model_gets_a_float32_loss(models):
    model, tokenizer = models["causal"]
    prompts, targets = encoded(tokenizer, PROMPTS), target_ids(tokenizer, TARGETS)
    half = tinymodels.build("causal", SEEDS["causal"])[0].to(torch.bfloat16)
    with torch.no_grad():
        got = generation.target_loss(half, "causal", prompts, targets, tokenizer.pad_token_id)
        want = generation.target_loss(model, "causal", prompts, targets, tokenizer.pad_token_id)
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) < 0.02 * want.item()


@pytest.mark.parametrize("targets, message", [
    ([[1], []], "target_loss needs as many targets as inputs, each with at least its end token"),
    ([[1]], "target_loss needs as many targets as inputs, each with at least its end token"),
])
def test_target_loss_refuses_missing_targets(models, targets, message):
    model, tokenizer = models["causal"]
    with pytest.raises(ValueError) as caught:
        generation.target_loss(model, "causal", [[0, 5], [0, 6]], targets, tokenizer.pad_token_id)
    assert str(caught.value) == message


# ---------------------------------------------------------------- generation


def alone(model, family, prompt, decoding, eos):
    """The new tokens `model.generate` makes for one unpadded example, up to its end token."""
    beam = {"length_penalty": decoding.length_penalty} if decoding.beams > 1 else {}
    out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=decoding.max_new_tokens, num_beams=decoding.beams, do_sample=False,
                         pad_token_id=model.generation_config.pad_token_id, **beam)[0].tolist()
    new = out[1:] if family == "seq2seq" else out[len(prompt):]
    return new[: new.index(eos)] if eos in new else new


@pytest.mark.parametrize("decoding", [Decoding(max_new_tokens=8), Decoding(max_new_tokens=8, beams=3),
                                      Decoding(max_new_tokens=6, beams=3, length_penalty=0.5)])
@pytest.mark.parametrize("batch_size", [2, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_equals_one_example_at_a_time(models, family, batch_size, decoding):
    model, tokenizer = models[family]
    prompts = encoded(tokenizer, PROMPTS)
    with torch.no_grad():
        want = [alone(model, family, x, decoding, tokenizer.eos_token_id) for x in prompts]
    got = generation.generated_ids(model, tokenizer, family, prompts, decoding, batch_size, tokenizer.pad_token_id)
    assert got == want
    assert len({tuple(w) for w in want}) > 2  # the outputs differ between inputs: the order is checked
    texts = generation.generate(model, tokenizer, family, prompts, decoding, batch_size, tokenizer.pad_token_id)
    assert texts == [tokenizer.decode(w, skip_special_tokens=True).strip() for w in want]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_models_sampling_defaults_are_not_used(models, family, monkeypatch, capfd):
    """A model whose generation config samples (as gemma's does) still decodes greedily, and quietly."""
    model, tokenizer = models[family]
    prompts = encoded(tokenizer, PROMPTS)
    greedy = generation.generated_ids(model, tokenizer, family, prompts, Decoding(8), 2, tokenizer.pad_token_id)
    for name, value in {"do_sample": True, "top_k": 5, "top_p": 0.9, "temperature": 0.7}.items():
        monkeypatch.setattr(model.generation_config, name, value)
    capfd.readouterr()
    assert generation.generated_ids(model, tokenizer, family, prompts, Decoding(8), 2, tokenizer.pad_token_id) == greedy
    assert "generation flags" not in capfd.readouterr().err


def stop_of(text):
    """A stop string that the text holds after its start: its first ASCII letter not seen before, and where."""
    for at, char in enumerate(text):
        if at and char.isascii() and char.isalpha() and char not in text[:at]:
            return char, at
    return None


@pytest.mark.parametrize("family", FAMILIES)
def test_stop_strings_end_generation_and_cut_the_text(models, family):
    model, tokenizer = models[family]
    prompts, pad_id = encoded(tokenizer, PROMPTS), tokenizer.pad_token_id
    free = Decoding(max_new_tokens=8)
    texts = generation.generate(model, tokenizer, family, prompts, free, 2, pad_id)
    row = next(i for i, text in enumerate(texts) if stop_of(text))
    stop, at = stop_of(texts[row])
    stopped = Decoding(max_new_tokens=8, stop=("\x00never", stop))
    cut = generation.generate(model, tokenizer, family, prompts, stopped, 2, pad_id)
    assert cut[row] == texts[row][:at].strip() and stop not in cut[row]
    assert cut == [generation.cut_at_stop(text, (stop,)).strip() for text in texts]
    tokens = generation.generated_ids(model, tokenizer, family, prompts, stopped, 2, pad_id)
    unstopped = generation.generated_ids(model, tokenizer, family, prompts, free, 2, pad_id)
    assert len(tokens[row]) < len(unstopped[row])  # generation ended early, not only the text
    assert tokens[row] == unstopped[row][: len(tokens[row])]


@pytest.mark.parametrize("text, stop, want", [
    ("a b. c. d", (".",), "a b"),
    ("a b. c! d", ("!", "."), "a b"),
    ("a b c", ("!",), "a b c"),
    ("a b c", (), "a b c"),
    ("a b c", ("",), "a b c"),
    ("!a", ("!",), ""),
])
def test_cut_at_stop(text, stop, want):
    assert generation.cut_at_stop(text, stop) == want


@pytest.mark.parametrize("limit", [1, 5])
@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_max_new_tokens_is_respected(models, family, beams, limit):
    model, tokenizer = models[family]
    prompts = encoded(tokenizer, PROMPTS)
    tokens = generation.generated_ids(model, tokenizer, family, prompts, Decoding(limit, beams), 2,
                                      tokenizer.pad_token_id)
    assert all(len(row) <= limit for row in tokens)
    assert any(len(row) == limit for row in tokens)


def test_left_pad():
    ids, attention = generation.left_pad([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]
