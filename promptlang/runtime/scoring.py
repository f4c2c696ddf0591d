"""Label scoring: how much a model likes each label's words for each encoded example.

One function per model family turns a batch of encoded examples into label log-scores
(B, C), normalised over the labels by the caller (softmax / cross-entropy). The LM head
is computed only where it is needed: at mask positions (masked LMs), at the positions
that predict a continuation (causal LMs), and only at the label words' rows when one
token per word is all that is scored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.runtime import causal
from promptlang.runtime.batches import device_of, pad
from promptlang.runtime.pipeline import Encoded


def _base_and_head(model):
    """The model without its LM head, and the head (None when they cannot be separated)."""
    base = getattr(model, model.base_model_prefix, None)
    for name in ("lm_head", "cls", "predictions"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module) and base is not None:
            return base, head
    return None, None


def hidden_states(model, ids: torch.Tensor, attention: torch.Tensor, soft: "SoftPrompt | None" = None,
                  soft_at: list[list[int]] | None = None) -> torch.Tensor:
    """Last hidden states (B, L, H) of the model's base, soft prompt embeddings swapped in."""
    base, _ = _base_and_head(model)
    if soft is None or not any(soft_at or []):
        return base(input_ids=ids, attention_mask=attention).last_hidden_state
    embeds = model.get_input_embeddings()(ids)  # (B, L, H)
    embeds = soft.place(embeds, soft_at)
    return base(inputs_embeds=embeds, attention_mask=attention).last_hidden_state


def head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head over some hidden states: (..., H) → (..., V), with the model's logit soft-capping."""
    _, head = _base_and_head(model)
    logits = head(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def row_logits(model, hidden: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Logits of only some vocabulary rows: (B, H) × (W,) → (B, W); for tied, bias-free heads."""
    head = model.get_output_embeddings()
    logits = hidden @ head.weight[token_ids].T  # (B, W)
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[token_ids]
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


class SoftPrompt(torch.nn.Module):
    """Trainable prompt embeddings for a pattern's [SOFT] tokens (initialised from random vocabulary rows)."""

    def __init__(self, model, count: int, seed: int = 0):
        super().__init__()
        embeddings = model.get_input_embeddings().weight
        rows = torch.randperm(embeddings.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
        self.weight = torch.nn.Parameter(embeddings[rows].detach().clone())  # (S, H)

    def place(self, embeds: torch.Tensor, soft_at: list[list[int]]) -> torch.Tensor:
        out = embeds.clone()
        for row, positions in enumerate(soft_at):
            if positions:
                out[row, positions] = self.weight[: len(positions)].to(out.dtype)
        return out


# ---------------------------------------------------------------- label words


def word_table(pattern: p.Pattern, device: torch.device | str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All label words as a padded table, on `device` (the CPU when None).

    Returns:
        tokens (W, K) padded with 0, lengths (W,), owner (W,): the label index of each word.
    """
    words = [(c, ids) for c, lw in enumerate(pattern.labels) for ids in lw.ids]
    width = max(1, max(len(ids) for _, ids in words))
    tokens = torch.tensor([ids + [0] * (width - len(ids)) for _, ids in words], dtype=torch.long, device=device)
    lengths = torch.tensor([len(ids) for _, ids in words], device=device)
    owner = torch.tensor([c for c, _ in words], device=device)
    return tokens, lengths, owner


def aggregate(word_scores: torch.Tensor, owner: torch.Tensor, labels: int, how: str) -> torch.Tensor:
    """Word log-scores (B, W) → label log-scores (B, C).

    `logit_mean`: the mean of the words' log-scores (PET's average of the words' logits: at one
    mask, logits and log-probabilities differ by the same constant for every word); `mean`: the
    log of the mean of the words' probabilities; `max`: the best word's. With one word per
    label all three are that word's score.
    """
    out = []
    for c in range(labels):
        scores = word_scores[:, owner == c]  # (B, W_c)
        if how == "max":
            out.append(scores.max(dim=1).values)
        elif how == "logit_mean":
            out.append(scores.mean(dim=1))
        else:
            out.append(torch.logsumexp(scores, dim=1) - math.log(scores.shape[1]))
    return torch.stack(out, dim=1)  # (B, C)


# ---------------------------------------------------------------- masked LMs


def mask_log_probs(model, ids, attention, mask_at: torch.Tensor, count: int, soft=None, soft_at=None) -> torch.Tensor:
    """Log-probabilities over the vocabulary at each mask: (B, L) → (B, K, V); the head runs at the masks only."""
    positions = (mask_at.unsqueeze(1) + torch.arange(count, device=ids.device).unsqueeze(0)
                 ).clamp(max=ids.shape[1] - 1)  # (B, K)
    base, _ = _base_and_head(model)
    if base is None:  # a model whose head cannot be split off: full logits, then gather
        logits = model(input_ids=ids, attention_mask=attention).logits  # (B, L, V)
        return F.log_softmax(logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float(),
                             dim=-1)
    hidden = hidden_states(model, ids, attention, soft, soft_at)  # (B, L, H)
    at_masks = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (B, K, H)
    return F.log_softmax(head_logits(model, at_masks).float(), dim=-1)  # (B, K, V), in fp32 at any precision


def masked_parallel(model, pattern: p.Pattern, encoded: Encoded, rows: list[int], pad_id: int,
                    soft=None, trim: bool = False) -> torch.Tensor:
    """Every label's words scored in parallel, each token at its mask from one forward pass.

    Untrimmed (PET's training), all words share one pass over the full slot and a word of n
    tokens uses the first n masks. Trimmed (PET's `parallel` decoding), a word of n tokens is
    scored on an input whose slot holds just n masks: one pass per distinct word length.
    """
    tokens, lengths, owner = word_table(pattern, device_of(model))  # (W, K'), (W,), (W,)
    if not trim:
        word_scores = _parallel_word_scores(model, encoded, rows, pad_id, soft, tokens, lengths, encoded.mask_count)
        return aggregate(word_scores, owner, len(pattern.labels), pattern.aggregate)
    word_scores = torch.zeros((len(rows), len(owner)), device=tokens.device)  # (B, W)
    for n in sorted({int(x) for x in lengths}):
        same = lengths == n
        keep = min(n, encoded.mask_count)
        word_scores[:, same] = _parallel_word_scores(model, encoded, rows, pad_id, soft, tokens[same], lengths[same],
                                                     keep)
    return aggregate(word_scores, owner, len(pattern.labels), pattern.aggregate)


def _parallel_word_scores(model, encoded: Encoded, rows: list[int], pad_id: int, soft, tokens: torch.Tensor,
                          lengths: torch.Tensor, keep: int) -> torch.Tensor:
    """Word log-scores (B, W) from one pass over the inputs with the slot cut to its first `keep` masks."""
    count = encoded.mask_count
    sequences = [_with_masks(encoded.ids[r], encoded.mask_at[r], count, keep) for r in rows]
    soft_at = [_soft_with_masks(encoded.soft_at[r], encoded.mask_at[r], count, keep) for r in rows]
    ids, attention = pad(sequences, pad_id, tokens.device)
    mask_at = torch.tensor([encoded.mask_at[r] for r in rows], device=tokens.device)
    log_probs = mask_log_probs(model, ids, attention, mask_at, keep, soft, soft_at)  # (B, keep, V)
    k = min(tokens.shape[1], keep)
    picked = log_probs[:, :k, :].gather(2, tokens[:, :k].T.unsqueeze(0).expand(len(rows), -1, -1))  # (B, k, W)
    used = (torch.arange(k, device=tokens.device).unsqueeze(1) < lengths.unsqueeze(0)).to(picked.dtype)  # (k, W)
    return (picked * used).sum(dim=1)  # (B, W)


def _with_masks(ids: list[int], at: int, count: int, keep: int) -> list[int]:
    """The input with only the first `keep` of its `count` masks."""
    return ids[: at + keep] + ids[at + count:]


def _soft_with_masks(soft_at: list[int], at: int, count: int, keep: int) -> list[int]:
    """Soft-prompt positions in that input: those after the slot move back by the masks dropped."""
    return [q if q < at else q - (count - keep) for q in soft_at]


@torch.no_grad()
def masked_greedy(model, pattern: p.Pattern, encoded: Encoded, rows: list[int], pad_id: int,
                  batch_size: int, soft=None) -> torch.Tensor:
    """PET's multi-token inference, batched over examples and words.

    For every (example, word) pair, the most confident of the word's unfilled masks is
    filled with its token, and the rest are predicted again, until the word is complete;
    the word's score is the sum of the filled log-probabilities.
    """
    tokens, lengths, owner = word_table(pattern, device_of(model))  # (W, K), (W,), (W,)
    device = tokens.device
    words = tokens.shape[0]
    pairs = [(r, w) for r in rows for w in range(words)]
    # as in PET, a word of n tokens is decoded with n masks: the slot's extra masks are dropped for it
    sequences = [_with_masks(encoded.ids[r], encoded.mask_at[r], encoded.mask_count, int(lengths[w]))
                 for r, w in pairs]
    filled = torch.zeros((len(pairs), encoded.mask_count), dtype=torch.bool, device=device)
    scores = torch.zeros(len(pairs), device=device)
    steps = int(lengths.max())
    for _ in range(steps):
        active = [i for i, (_, w) in enumerate(pairs) if int(filled[i].sum()) < int(lengths[w])]
        for start in range(0, len(active), batch_size):
            chunk = active[start : start + batch_size]
            ids, attention = pad([sequences[i] for i in chunk], pad_id, device)
            mask_at = torch.tensor([encoded.mask_at[pairs[i][0]] for i in chunk], device=device)
            soft_at = [_soft_with_masks(encoded.soft_at[pairs[i][0]], encoded.mask_at[pairs[i][0]],
                                        encoded.mask_count, int(lengths[pairs[i][1]])) for i in chunk]
            log_probs = mask_log_probs(model, ids, attention, mask_at, encoded.mask_count, soft, soft_at)  # (A, K, V)
            word_ids = torch.tensor([pairs[i][1] for i in chunk], device=device)
            wanted = tokens[word_ids]  # (A, K)
            k = wanted.shape[1]
            lp = log_probs[:, :k, :].gather(2, wanted.unsqueeze(-1)).squeeze(-1)  # (A, k)
            blocked = filled[chunk][:, :k] | (torch.arange(k, device=device).unsqueeze(0)
                                              >= lengths[word_ids].unsqueeze(1))
            lp = lp.masked_fill(blocked, float("-inf"))
            best = lp.argmax(dim=1)  # (A,)
            rows_at = torch.tensor(chunk, device=device)
            scores[rows_at] += lp.gather(1, best.unsqueeze(1)).squeeze(1)
            filled[rows_at, best] = True
            chosen = wanted.gather(1, best.unsqueeze(1)).squeeze(1).tolist()  # one transfer per chunk
            for j, (i, position) in enumerate(zip(chunk, best.tolist())):
                sequences[i][encoded.mask_at[pairs[i][0]] + position] = chosen[j]
    word_scores = scores.view(len(rows), words)  # (B, W)
    return aggregate(word_scores, owner, len(pattern.labels), pattern.aggregate)


# ---------------------------------------------------------------- causal LMs


def _prompt(ids: list[int], at: int, start: int) -> list[int]:
    """The text before the mask; a mask at the very start (no BOS, as with GPT-2) follows a start token."""
    return ids[:at] or [start]


def _continuations(pattern: p.Pattern, encoded: Encoded, rows: list[int], suffix: int, start: int):
    """(prompt, continuation, owner, soft positions) for every (example, word): the word then the text
    after the mask; soft tokens after the mask move with the word's length."""
    out = []
    for r in rows:
        ids, at, count = encoded.ids[r], encoded.mask_at[r], encoded.mask_count
        after, prompt = ids[at + count : len(ids) - suffix], _prompt(ids, at, start)
        for c, lw in enumerate(pattern.labels):
            for word in lw.ids:
                soft = [q if q < at else q - at - count + len(prompt) + len(word) for q in encoded.soft_at[r]]
                out.append((prompt, word + after, c, soft))
    return out


def causal_scores(model, pattern: p.Pattern, encoded: Encoded, rows: list[int], pad_id: int,
                  suffix: int = 0, soft=None) -> torch.Tensor:
    """log P(word + text after the mask | text before it), summed over the continuation's tokens.

    One token per word with the mask last: one pass and the head at the words' rows (normalised over
    the words). Otherwise each prompt runs once and its words continue from its key/value cache
    (`causal.continuation_scores`), with gradients when they are on; full sequences, one per
    (example, word), where a cache cannot serve (`causal.cache_applies`).
    """
    tokens, lengths, owner = word_table(pattern, device_of(model))
    single = bool((lengths == 1).all()) and all(
        encoded.mask_at[r] + encoded.mask_count == len(encoded.ids[r]) - suffix for r in rows)
    if single:
        word_scores = _last_token_scores(model, encoded, rows, pad_id, soft, tokens)
    else:
        items = _continuations(pattern, encoded, rows, suffix, pad_id)
        base, _ = _base_and_head(model)
        longest = max(len(prompt) for prompt, *_ in items) + max(len(cont) for _, cont, *_ in items)
        cached = causal.cache_applies(model, base, longest)
        word_scores = (_cached_scores if cached else _full_sequence_scores)(model, items, len(rows), pad_id, soft)
    return aggregate(word_scores, owner, len(pattern.labels), pattern.aggregate)


def _last_token_scores(model, encoded: Encoded, rows: list[int], pad_id: int, soft, tokens) -> torch.Tensor:
    """Word log-scores (B, W) from one pass over the prompts, the head at the last position and the words' rows."""
    ids, attention = pad([_prompt(encoded.ids[r], encoded.mask_at[r], pad_id) for r in rows], pad_id, tokens.device)
    hidden = hidden_states(model, ids, attention, soft, [encoded.soft_at[r] for r in rows])  # (B, L, H)
    last = hidden[torch.arange(len(rows), device=tokens.device), attention.sum(1) - 1]  # (B, H)
    word_scores = row_logits(model, last, tokens[:, 0])  # (B, W)
    return word_scores - torch.logsumexp(word_scores, dim=1, keepdim=True)


def _cached_scores(model, items, count: int, pad_id: int, soft) -> torch.Tensor:
    """Word log-scores (B, W): each prompt once, its continuations from its key/value cache."""
    base, _ = _base_and_head(model)
    words = len(items) // count
    prompts = [items[i * words][0] for i in range(count)]
    prompt_at = [[q for q in items[i * words][3] if q < len(prompts[i])] for i in range(count)]
    continuation_at = [[q - len(prompt) for q in positions if q >= len(prompt)] for prompt, _, _, positions in items]
    vocabulary = getattr(model.config, "vocab_size", None) or 1  # only sizes the head's chunks
    return causal.continuation_scores(base, model.get_input_embeddings(), lambda h: head_logits(model, h), vocabulary,
                                      prompts, [cont for _, cont, *_ in items], pad_id,
                                      None if soft is None else soft.weight, (prompt_at, continuation_at))


def _full_sequence_scores(model, items, count: int, pad_id: int, soft) -> torch.Tensor:
    """Word log-scores (B, W) from one full sequence (prompt + continuation) per (example, word)."""
    device = device_of(model)
    ids, attention = pad([prompt + cont for prompt, cont, _, _ in items], pad_id, device)
    hidden = hidden_states(model, ids, attention, soft, [positions for *_, positions in items])  # (N, L, H)
    starts = torch.tensor([len(prompt) for prompt, *_ in items], device=device)
    width = max(len(cont) for _, cont, *_ in items)
    positions = (starts.unsqueeze(1) - 1 + torch.arange(width, device=device).unsqueeze(0)
                 ).clamp(max=ids.shape[1] - 1)  # (N, T)
    targets, valid = pad([cont for _, cont, *_ in items], 0, device)
    picked = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (N, T, H)
    log_probs = F.log_softmax(head_logits(model, picked), dim=-1)  # (N, T, V)
    token_scores = log_probs.gather(2, targets.unsqueeze(-1)).squeeze(-1) * valid.float()  # (N, T)
    return token_scores.sum(dim=1).view(count, len(items) // count)  # (B, W)


# ---------------------------------------------------------------- seq2seq


def seq2seq_targets(pattern: p.Pattern, eos: int, sentinels: tuple[int, int] | None) -> list[list[int]]:
    """Decoder targets for each word.

    When the mask is in the input (a T5 sentinel there), the target is T5's span format,
    `<extra_id_0> word <extra_id_1>`; otherwise the template's `target` with the word at its mask.
    """
    out = []
    target_pieces = pattern.target or [p.Piece(kind="mask")]
    for lw in pattern.labels:
        for word in lw.ids:
            ids: list[int] = []
            for piece in target_pieces:
                ids += word if piece.kind == "mask" else piece.ids
            if sentinels is not None and pattern.target is None:
                ids = [sentinels[0], *ids, sentinels[1]]
            out.append(ids + [eos])
    return out


def seq2seq_scores(model, pattern: p.Pattern, encoded: Encoded, rows: list[int], pad_id: int,
                   targets: list[list[int]], soft=None) -> torch.Tensor:
    """log P(target with the word | input): the encoder runs once per example, the decoder once per word."""
    _, _, owner = word_table(pattern, device_of(model))
    ids, attention = pad([encoded.ids[r] for r in rows], pad_id, owner.device)
    soft_at = [encoded.soft_at[r] for r in rows]
    if soft is not None and any(soft_at):  # the soft prompt's vectors where its placeholders are
        embeds = soft.place(model.get_input_embeddings()(ids), soft_at)  # (B, L, H)
        encoder_out = model.get_encoder()(inputs_embeds=embeds, attention_mask=attention)
    else:
        encoder_out = model.get_encoder()(input_ids=ids, attention_mask=attention)
    words = len(targets)
    hidden = encoder_out.last_hidden_state.repeat_interleave(words, dim=0)  # (B*W, L, H)
    mask = attention.repeat_interleave(words, dim=0)
    labels, valid = pad([t for _ in rows for t in targets], pad_id, owner.device)
    labels = labels.masked_fill(valid == 0, -100)
    logits = model(encoder_outputs=(hidden,), attention_mask=mask, labels=labels).logits  # (B*W, T, V)
    log_probs = F.log_softmax(logits.float(), dim=-1)
    token_scores = log_probs.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid  # (B*W, T)
    word_scores = token_scores.sum(dim=1).view(len(rows), words)  # (B, W)
    return aggregate(word_scores, owner, len(pattern.labels), pattern.aggregate)
