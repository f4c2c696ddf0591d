"""What a user would otherwise write by hand with Hugging Face calls, for the benchmarks to time promptlang against.

Each baseline is the strongest plain loop we could write for its job, and is checked to compute what
promptlang computes (a benchmark asserts equal results before it compares times). Import from a test
module with `import baselines`.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def interleaved(ours: Callable[[], object], baseline: Callable[[], object], rounds: int = 5,
                before: Callable[[], None] | None = None,
                sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """Median seconds of `ours` and of `baseline`, timed in alternation in one run (which goes first
    alternates too), so that the machine's load and its warm caches fall on both alike.

    Args:
        ours, baseline: the two jobs; each is called once untimed first (warm-up).
        rounds: timed calls of each.
        before: run untimed before every call (e.g. resetting the weights).
        sync: run before starting and before stopping the clock (`torch.cuda.synchronize` on a GPU).
    """
    before, sync = before or (lambda: None), sync or (lambda: None)
    times: dict[int, list[float]] = {0: [], 1: []}
    jobs = (ours, baseline)
    for job in jobs:
        before()
        job()
    for turn in range(rounds):
        for which in ((0, 1) if turn % 2 == 0 else (1, 0)):
            before()
            sync()
            start = time.perf_counter()
            jobs[which]()
            sync()
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


# ---------------------------------------------------------------- prompt-based fine-tuning


@dataclass
class Recipe:
    """A prompt-based fine-tuning run as a user would configure it: AdamW without weight decay, a linear
    schedule without warm-up, gradient clipping, and PET's auxiliary MLM loss with weight `mlm`."""

    steps: int
    batch_size: int
    learning_rate: float
    max_grad_norm: float
    mlm: float
    seed: int


@dataclass
class TrainingData:
    """Tokenized training examples: each input with one [MASK], where it is, the gold label's index,
    the label words' token ids (one token each), and the ids never chosen as MLM targets."""

    ids: list[list[int]]
    mask_at: list[int]
    targets: list[int]
    words: list[int]
    special: list[int]
    pad_id: int
    mask_id: int


def training_data(encoded, pattern, tokenizer) -> TrainingData:
    """A promptlang encoding of training examples as the plain data the hand-written loop reads."""
    return TrainingData(
        ids=encoded.ids, mask_at=encoded.mask_at, targets=encoded.labels, words=[lw.ids[0][0] for lw in pattern.labels],
        special=[tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id],
        pad_id=tokenizer.pad_token_id, mask_id=tokenizer.mask_token_id)


def padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, L) and their attention mask (B, L), on the CPU."""
    rows = [torch.tensor(s) for s in sequences]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)  # (B, L)
    attention = (torch.arange(ids.shape[1]).unsqueeze(0) < torch.tensor([len(s) for s in sequences]).unsqueeze(1))
    return ids, attention.long()


def label_loss(model, ids: torch.Tensor, attention: torch.Tensor, mask_at: torch.Tensor, words: torch.Tensor,
               targets: torch.Tensor, autocast) -> torch.Tensor:
    """Cross-entropy over the label words' logits at the mask: the base model, then the MLM head at the
    masks only."""
    with autocast():
        hidden = model.base_model(input_ids=ids, attention_mask=attention).last_hidden_state  # (B, L, H)
        logits = model.cls(hidden[torch.arange(len(ids), device=ids.device), mask_at])  # (B, V)
    return F.cross_entropy(logits[:, words].float(), targets)  # over (B, C)


def mlm_loss(model, ids: torch.Tensor, attention: torch.Tensor, data: TrainingData, generator: torch.Generator,
             autocast) -> torch.Tensor:
    """BERT's masked-LM loss on the batch: 15% of the real, non-special tokens are targets, 80% of them
    masked, 10% swapped for a random token; the MLM head at the targets only. Drawn on the CPU with
    `generator`, in the order promptlang draws them (so the two runs see the same corruption)."""
    special = torch.tensor(data.special)
    candidates = attention.bool() & ~torch.isin(ids, special)  # (B, L)
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & candidates
    if not chosen.any():
        return torch.zeros(())
    corrupted = ids.clone()
    roll = torch.rand(ids.shape, generator=generator)
    corrupted[chosen & (roll < 0.8)] = data.mask_id
    random_tokens = torch.randint(model.config.vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    corrupted[swap] = random_tokens[swap]
    device = model.device
    chosen = chosen.to(device)
    with autocast():
        hidden = model.base_model(input_ids=corrupted.to(device), attention_mask=attention.to(device)
                                  ).last_hidden_state  # (B, L, H)
        logits = model.cls(hidden[chosen])  # (N, V)
        return F.cross_entropy(logits, ids.to(device)[chosen])


def fine_tune(model, data: TrainingData, recipe: Recipe,
              autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> list[float]:
    """The training loop a user writes: shuffled batches, label loss + weighted MLM loss, backward,
    clip, AdamW step, linear schedule step. Returns the loss of each step.

    The batches are drawn as `random.Random(seed)` shuffles, the MLM corruption from a CPU generator
    seeded with `seed`: the same as promptlang's for the same seed, so the losses can be compared.
    """
    from transformers import get_linear_schedule_with_warmup

    device = model.device
    order_rng, generator = random.Random(recipe.seed), torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, recipe.steps)
    words, targets = torch.tensor(data.words, device=device), torch.tensor(data.targets)
    losses: list[float] = []
    model.train()
    while len(losses) < recipe.steps:
        order = list(range(len(data.ids)))
        order_rng.shuffle(order)
        for start in range(0, len(order), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            ids, attention = padded([data.ids[r] for r in rows], data.pad_id)  # (B, L), (B, L)
            mask_at = torch.tensor([data.mask_at[r] for r in rows], device=device)
            loss = label_loss(model, ids.to(device), attention.to(device), mask_at, words, targets[rows].to(device),
                              autocast)
            if recipe.mlm > 0:
                loss = loss + recipe.mlm * mlm_loss(model, ids, attention, data, generator, autocast)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if len(losses) == recipe.steps:
                break
    model.eval()
    return losses


# ---------------------------------------------------------------- multi-token decoding


@torch.no_grad()
def pet_greedy(model, words: list[list[int]], ids: list[list[int]], mask_at: list[int], mask_count: int
               ) -> torch.Tensor:
    """PET's multi-token inference as its `MultiMaskTaskHelper.eval_step` does it: one example at a time;
    the label words of each length n together, on the input with n masks; run the whole model (full
    logits), fill the most confident remaining mask with its token, again until every mask is filled.
    A word's score is the sum of the log-probabilities it was filled with (PET also pads every input
    to `max_length`; this loop does not, which only makes it faster).

    Args:
        words: each label's word (token ids), one word per label.
        ids, mask_at, mask_count: each example's input with a slot of `mask_count` masks at `mask_at`.

    Returns:
        (N, C) label scores.
    """
    device = model.device
    scores = torch.zeros(len(ids), len(words))
    for row, (tokens, at) in enumerate(zip(ids, mask_at)):
        for n in sorted({len(w) for w in words}):
            group = [c for c, w in enumerate(words) if len(w) == n]
            inputs = torch.tensor([tokens[: at + n] + tokens[at + mask_count :]] * len(group), device=device)  # (G, L)
            left = [list(range(n)) for _ in group]
            for _ in range(n):
                logits = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits  # (G, L, V)
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                for g, c in enumerate(group):
                    best = max(left[g], key=lambda k: log_probs[g, at + k, words[c][k]].item())
                    scores[row, c] += log_probs[g, at + best, words[c][best]].item()
                    inputs[g, at + best] = words[c][best]
                    left[g].remove(best)
    return scores


# ---------------------------------------------------------------- label scoring


@torch.no_grad()
def mask_scores(model, ids: list[list[int]], mask_at: list[int], words: list[int], pad_id: int, batch_size: int,
                autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> torch.Tensor:
    """Zero-shot label scores (N, C) in data order (batches of consecutive rows): the base model, the MLM
    head at the masks only, log-softmax, the label words' columns."""
    device = model.device
    out = []
    for start in range(0, len(ids), batch_size):
        rows = range(start, min(start + batch_size, len(ids)))
        batch, attention = padded([ids[r] for r in rows], pad_id)  # (B, L)
        at = torch.tensor([mask_at[r] for r in rows], device=device)
        with autocast():
            hidden = model.base_model(input_ids=batch.to(device), attention_mask=attention.to(device)
                                      ).last_hidden_state  # (B, L, H)
            logits = model.cls(hidden[torch.arange(len(rows), device=device), at])  # (B, V)
        out.append(torch.log_softmax(logits.float(), dim=-1)[:, words].cpu())  # (B, C)
    return torch.cat(out)
