"""Reference label scores, written plainly: the whole model on one unpadded input at a time, full logits.

The scorers in `promptlang.scoring` batch, pad, and compute the LM head only where it is
needed; these are what they must equal. Import from a test module with `import reference`.
"""

from __future__ import annotations

import math

import torch


def combine(word_scores: list[torch.Tensor], how: str) -> torch.Tensor:
    """A label's score from its words' log-probabilities: their mean (logit_mean), log of their mean
    probability (mean), or the max."""
    stacked = torch.stack([torch.as_tensor(x) for x in word_scores])
    if how == "logit_mean":
        return stacked.mean()
    return stacked.max() if how == "max" else torch.logsumexp(stacked, 0) - math.log(len(word_scores))


@torch.no_grad()
def log_probs(model, ids: list[int]) -> torch.Tensor:
    """log_softmax of the full logits of one unpadded input: (L, V)."""
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)


def masked(model, pattern, encoded) -> torch.Tensor:
    """PET's parallel scores (B, C): a word of n tokens is the sum of log p(w_j) at the first n masks."""
    out = []
    for ids, at in zip(encoded.ids, encoded.mask_at):
        lp = log_probs(model, ids)
        out.append(torch.stack([
            combine([sum(lp[at + j, token] for j, token in enumerate(word)) for word in lw.ids], pattern.aggregate)
            for lw in pattern.labels]))
    return torch.stack(out)


def causal(model, pattern, encoded, suffix: int = 0) -> torch.Tensor:
    """log P(word + the text after the mask | the text before it) (B, C), from each continuation's full logits."""
    out = []
    for ids, at in zip(encoded.ids, encoded.mask_at):
        after = ids[at + encoded.mask_count : len(ids) - suffix]
        labels = []
        for lw in pattern.labels:
            word_scores = []
            for word in lw.ids:
                sequence = ids[:at] + word + after
                lp = log_probs(model, sequence)
                word_scores.append(sum(lp[t - 1, sequence[t]] for t in range(at, len(sequence))))
            labels.append(combine(word_scores, pattern.aggregate))
        out.append(torch.stack(labels))
    return torch.stack(out)


@torch.no_grad()
def seq2seq(model, pattern, encoded, targets_of) -> torch.Tensor:
    """log P(target | input) (B, C) from `model(input_ids, labels=target)`; `targets_of(word)` → target ids."""
    out = []
    for ids in encoded.ids:
        labels = []
        for lw in pattern.labels:
            word_scores = []
            for word in lw.ids:
                target = targets_of(word)
                logits = model(input_ids=torch.tensor([ids]), labels=torch.tensor([target])).logits[0]
                lp = torch.log_softmax(logits, dim=-1)
                word_scores.append(sum(lp[i, token] for i, token in enumerate(target)))
            labels.append(combine(word_scores, pattern.aggregate))
        out.append(torch.stack(labels))
    return torch.stack(out)


def span_targets(tokenizer):
    """T5's span format for a word: <extra_id_0> word <extra_id_1> </s>."""
    first, second = tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>"])
    return lambda word: [first, *word, second, tokenizer.eos_token_id]


def scores(family: str, model, tokenizer, pattern, encoded) -> torch.Tensor:
    """The reference label scores for a family (seq2seq: T5's span format when the mask is in the input)."""
    if family == "masked":
        return masked(model, pattern, encoded)
    if family == "causal":
        return causal(model, pattern, encoded)
    if pattern.target is None:
        return seq2seq(model, pattern, encoded, span_targets(tokenizer))
    return seq2seq(model, pattern, encoded, lambda word: [*word, tokenizer.eos_token_id])
