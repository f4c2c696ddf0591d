"""Text-to-text with any seq2seq or causal LM: the teacher-forcing loss on a target, and batched generation.

Both work on token ids as the pipeline makes them: `inputs` are whole model inputs with their special
tokens (for T5 ending in `</s>`, for a causal LM starting with `<bos>`), and a target's ids end with the
model's end token, which the caller appends. Generation goes through transformers' own `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from promptlang.runtime import causal, scoring
from promptlang.runtime.batches import device_of, pad


# transformers' own defaults for the sampling settings, set explicitly: `generate` fills every setting left
# unset from the model's `generation_config` (gemma's says top_k 64, top_p 0.95), which greedy and beam
# search do not use and transformers then warns about
NO_SAMPLING = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}


@dataclass(frozen=True)
class Decoding:
    """How to generate: greedy (`beams` 1) or beam search, at most `max_new_tokens` new tokens, the text cut
    at the first of the `stop` strings."""

    max_new_tokens: int = 64
    beams: int = 1
    length_penalty: float = 1.0  # beam search only: a finished beam's score is divided by length ** this
    stop: tuple[str, ...] = ()


# ---------------------------------------------------------------- teacher forcing


def target_loss(model, family: str, inputs: list[list[int]], targets: list[list[int]], pad_id: int) -> torch.Tensor:
    """The mean negative log-likelihood of the targets' tokens given the inputs (teacher forcing).

    As transformers computes it with labels -100 on padding: cross-entropy averaged over every target
    token of the batch (not per example first). The log-softmax runs in float32 at any precision.

    Args:
        model: a seq2seq LM (`family` "seq2seq": the encoder reads the input, the decoder the target shifted
            right with its decoder start token) or a causal LM (any other family: one sequence input + target,
            the input's tokens carry no loss).
        inputs: B whole model inputs with their special tokens.
        targets: B targets' ids, each ending with the end token (the caller appends it; at least that token).
        pad_id: the tokenizer's padding id (batches are right-padded).

    Returns:
        A scalar tensor, differentiable.

    Raises:
        ValueError: when the lists differ in length, are empty, or a target has no token.
    """
    if len(inputs) != len(targets) or not targets or not all(targets):
        raise ValueError("target_loss needs as many targets as inputs, each with at least its end token")
    if family == "seq2seq":
        return _seq2seq_loss(model, inputs, targets, pad_id)
    return _causal_loss(model, inputs, targets, pad_id)


def _seq2seq_loss(model, inputs: list[list[int]], targets: list[list[int]], pad_id: int) -> torch.Tensor:
    """Encoder on the padded inputs, decoder on the targets shifted right (the model's own shift)."""
    device = device_of(model)
    ids, attention = pad(inputs, pad_id, device)  # (B, L)
    labels, _ = pad(targets, -100, device)  # (B, T), -100 on padding
    if hasattr(model, "prepare_decoder_input_ids_from_labels"):  # the shift without computing the model's loss
        decoder_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)  # (B, T)
        logits = model(input_ids=ids, attention_mask=attention, decoder_input_ids=decoder_ids).logits
    else:
        logits = model(input_ids=ids, attention_mask=attention, labels=labels).logits  # (B, T, V)
    used = labels != -100
    log_probs = F.log_softmax(logits[used].float(), dim=-1)  # (P, V)
    return -log_probs.gather(1, labels[used].unsqueeze(1)).mean()


def _causal_loss(model, inputs: list[list[int]], targets: list[list[int]], pad_id: int) -> torch.Tensor:
    """One right-padded sequence per example; each target token predicted from the position before it."""
    device = device_of(model)
    ids, attention = pad([i + t for i, t in zip(inputs, targets)], pad_id, device)  # (B, L)
    wanted, valid = pad(targets, pad_id, device)  # (B, T)
    used = valid.bool()
    starts = torch.tensor([len(i) for i in inputs], device=device)
    before = starts.unsqueeze(1) - 1 + torch.arange(wanted.shape[1], device=device).unsqueeze(0)  # (B, T)
    rows = torch.arange(len(inputs), device=device).unsqueeze(1).expand_as(used)[used]  # (P,)
    columns = before[used]  # (P,): where each target token is predicted
    if _head_splits(model):  # the LM head only where a target token is predicted (gemma's head is 262k wide)
        hidden = scoring.hidden_states(model, ids, attention)[rows, columns]  # (P, H)
        vocabulary = getattr(model.config, "vocab_size", None) or 1  # only sizes the head's chunks
        log_probs = causal.token_log_probs(lambda h: scoring.head_logits(model, h), hidden,
                                           wanted[used].unsqueeze(1), vocabulary)  # (P, 1)
    else:
        logits = model(input_ids=ids, attention_mask=attention).logits[rows, columns]  # (P, V)
        log_probs = F.log_softmax(logits.float(), dim=-1).gather(1, wanted[used].unsqueeze(1))  # (P, 1)
    return -log_probs.mean()


def _head_splits(model) -> bool:
    """Whether the model's base and its LM head can run apart (as `scoring` runs them)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return isinstance(base, torch.nn.Module) and isinstance(getattr(model, "lm_head", None), torch.nn.Module)


# ---------------------------------------------------------------- generation


def generate(model, tokenizer, family: str, inputs: list[list[int]], decoding: Decoding, batch_size: int,
             pad_id: int) -> list[str]:
    """Generated texts for some inputs, in their order: the new tokens decoded without special tokens, cut
    at the first stop string, stripped.

    Args:
        model: a seq2seq or causal LM in eval mode (`family` "seq2seq" or any other: causal).
        tokenizer: its tokenizer (decodes; finds the stop strings' tokens).
        inputs: N whole model inputs with their special tokens, as `target_loss` takes them.
        decoding: greedy or beam search, the new tokens' limit, the stop strings.
        batch_size: examples per `generate` call.
        pad_id: the tokenizer's padding id.
    """
    ids = generated_ids(model, tokenizer, family, inputs, decoding, batch_size, pad_id)
    return [cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), decoding.stop).strip() for row in ids]


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text before the earliest of the stop strings (all of it when none occurs)."""
    found = [text.find(s) for s in stop if s and s in text]
    return text[: min(found)] if found else text


@torch.no_grad()
def generated_ids(model, tokenizer, family: str, inputs: list[list[int]], decoding: Decoding, batch_size: int,
                  pad_id: int) -> list[list[int]]:
    """The new tokens generated for each input, in the inputs' order, up to (without) the end token.

    The inputs run longest first in batches of `batch_size`, so that little of a batch is padding; causal
    inputs are left-padded (generation continues at the right end), seq2seq inputs right-padded.
    """
    config = generation_config(model, tokenizer, decoding, pad_id)
    ends = _end_ids(config)
    filler = pad_id if decoding.stop else None  # only a row ended by a stop string has padding and no end token
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i]), i))
    done: dict[int, list[int]] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        new = _generate_batch(model, tokenizer, family, [inputs[r] for r in rows], config, pad_id)  # (b, T)
        done.update((r, _trimmed(tokens, ends, filler)) for r, tokens in zip(rows, new.tolist()))
    return [done[i] for i in range(len(inputs))]


def generation_config(model, tokenizer, decoding: Decoding, pad_id: int):
    """The `GenerationConfig` of a decoding: deterministic (no sampling, whatever the model's defaults say),
    the KV cache on, the model's end token (the tokenizer's when the model names none), `pad_id` padding."""
    from transformers import GenerationConfig

    own = getattr(model, "generation_config", None)
    eos = getattr(own, "eos_token_id", None)
    settings = dict(max_new_tokens=decoding.max_new_tokens, num_beams=decoding.beams, do_sample=False,
                    use_cache=True, pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id if eos is None else eos,
                    **NO_SAMPLING)
    if decoding.beams > 1:  # a beam-only setting with greedy search would be a warning
        settings["length_penalty"] = decoding.length_penalty
    if decoding.stop:
        settings["stop_strings"] = list(decoding.stop)
    return GenerationConfig(**settings)


def _generate_batch(model, tokenizer, family: str, batch: list[list[int]], config, pad_id: int) -> torch.Tensor:
    """New tokens (b, T) of one batch, padded after their end with `pad_id`."""
    device = device_of(model)
    if family == "seq2seq":
        ids, attention = pad(batch, pad_id, device)  # (b, L)
    else:
        ids, attention = left_pad(batch, pad_id, device)  # (b, L): positions follow from the mask
    extra = {"tokenizer": tokenizer} if config.stop_strings else {}
    out = model.generate(input_ids=ids, attention_mask=attention, generation_config=config, **extra)
    return out[:, 1:] if family == "seq2seq" else out[:, ids.shape[1]:]  # without the decoder start / the prompt


def left_pad(sequences: list[list[int]], pad_id: int, device: torch.device | str | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to the longest sequence: ids (B, L) and attention mask (B, L), every sequence ending at L."""
    ids, attention = pad([s[::-1] for s in sequences], pad_id, device)
    return ids.flip(1), attention.flip(1)


def _end_ids(config) -> set[int]:
    """The end token ids of a generation config (one id or several)."""
    eos = config.eos_token_id
    return set() if eos is None else set(eos if isinstance(eos, (list, tuple)) else [eos])


def _trimmed(tokens: list[int], ends: set[int], filler: int | None) -> list[int]:
    """A generated row up to its first end token, else without the `filler` (padding) that follows a row
    which a stop string ended before the batch's last."""
    for at, token in enumerate(tokens):
        if token in ends:
            return tokens[:at]
    while filler is not None and tokens and tokens[-1] == filler:
        tokens = tokens[:-1]
    return tokens
