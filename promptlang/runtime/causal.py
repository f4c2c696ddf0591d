"""Continuations of a causal LM scored from their prompt's key/value cache: the prompt runs once per example.

Each example's prompt (the text before the mask) goes through the model once, right-padded in a
batch; its key/value cache is then repeated once per continuation (a label word, then the text
after the mask), and the continuations run on it with their true positions and a mask that hides
the prompt's padding. The LM head runs only where a continuation token is predicted, in chunks, and
once per prompt for all its continuations' first tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from promptlang.runtime.batches import pad

HEAD_ELEMENTS = 1 << 25  # logits computed at once (32M floats, 128 MB in float32): the head runs in chunks


def cache_applies(model, base, longest: int) -> bool:
    """Whether continuations can run on a cache: not while gradient checkpointing trains (it turns the
    cache off), and not past a sliding attention window (padding would shift the window)."""
    if model.training and getattr(base, "gradient_checkpointing", False):
        return False
    window = getattr(model.config, "sliding_window", None)
    return not (isinstance(window, int) and longest > window)


def place(embeds: torch.Tensor, weight: torch.Tensor, positions: list[list[int]], first: list[int]) -> torch.Tensor:
    """Embeddings (N, L, H) with soft vectors `weight[first[n]:]` at row n's `positions[n]`."""
    out = embeds.clone()
    for row, (at, start) in enumerate(zip(positions, first)):
        if at:
            out[row, at] = weight[start : start + len(at)].to(out.dtype)
    return out


def _run(base, embed, ids, attention, soft, positions, first, **extra):
    """Last hidden states (N, L, H) of the base, soft vectors (a weight (S, H) or None) placed."""
    if soft is None or not any(positions):
        return base(input_ids=ids, attention_mask=attention, **extra).last_hidden_state
    embeds = place(embed(ids), soft, positions, first)
    return base(inputs_embeds=embeds, attention_mask=attention, **extra).last_hidden_state


def token_log_probs(head: Callable, hidden: torch.Tensor, targets: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """log p(targets) (P, K) from hidden states (P, H), normalised over the whole vocabulary, in chunks."""
    step = max(1, HEAD_ELEMENTS // max(1, vocabulary))
    out = []
    for start in range(0, hidden.shape[0], step):
        logits = head(hidden[start : start + step]).float()  # (p, V)
        picked = logits.gather(1, targets[start : start + step])  # (p, K)
        out.append(picked - torch.logsumexp(logits, dim=1, keepdim=True))
    return torch.cat(out)


def continuation_scores(base, embed, head: Callable, vocabulary: int, prompts: list[list[int]],
                        continuations: list[list[int]], pad_id: int, soft: torch.Tensor | None = None,
                        soft_at: tuple[list[list[int]], list[list[int]]] | None = None) -> torch.Tensor:
    """Summed log-probabilities (B, W) of W continuations per prompt (`continuations` row-major, B·W).

    The head runs once per prompt for the continuations' first tokens (one distribution serves all W),
    then once per later continuation token.

    Args:
        base: the model without its head; embed: its input embeddings; head: hidden (..., H) → logits.
        soft: soft prompt vectors (S, H) or None; soft_at: their positions in each prompt (B lists) and
            in each continuation (B·W lists), the continuation's vectors following the prompt's.
    """
    device = embed.weight.device
    count, words = len(prompts), len(continuations) // len(prompts)
    prompt_at, continuation_at = soft_at or ([[]] * count, [[]] * len(continuations))
    ids, attention = pad(prompts, pad_id, device)
    cache = _new_cache()
    hidden = _run(base, embed, ids, attention, soft, prompt_at, [0] * count, cache=cache, use_cache=True)
    lengths = attention.sum(1)  # (B,)
    last = hidden[torch.arange(count, device=device), lengths - 1]  # (B, H): predicts every first token
    targets, valid = pad(continuations, pad_id, device)  # (N, T)
    scores = token_log_probs(head, last, targets[:, 0].view(count, words), vocabulary)  # (B, W)
    if targets.shape[1] == 1:
        return scores
    cache.batch_repeat_interleave(words)  # the rest from the continuations' own states (the last predicts nothing)
    inputs = targets[:, :-1]
    positions = lengths.repeat_interleave(words).unsqueeze(1) + torch.arange(inputs.shape[1], device=device)
    mask = torch.cat([attention.repeat_interleave(words, 0), valid[:, :-1]], dim=1)
    first = [len(at) for at in prompt_at for _ in range(words)]
    at = [[q for q in row if q < inputs.shape[1]] for row in continuation_at]
    states = _run(base, embed, inputs, mask, soft, at, first, cache=cache, use_cache=True,
                  position_ids=positions)  # (N, T-1, H)
    used = valid[:, 1:].bool()
    rest = token_log_probs(head, states[used], targets[:, 1:][used].unsqueeze(1), vocabulary).squeeze(1)  # (P,)
    owner = torch.arange(len(continuations), device=device).unsqueeze(1).expand_as(used)[used]
    summed = torch.zeros(len(continuations), dtype=rest.dtype, device=device).index_add(0, owner, rest)
    return scores + summed.view(count, words)  # (B, W)


def _new_cache():
    """An empty key/value cache of full (non-sliding) layers, which the forward passes fill."""
    from transformers import DynamicCache

    return DynamicCache()
