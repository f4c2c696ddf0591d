"""LM-BFF's automatic label words: the vocabulary's log-probabilities at the mask, each label's likeliest
whole words, and label-word mappings ranked by how well they classify (or correlate with) the training set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from promptlang.compiler import plan as p
from promptlang.compiler.tokens import word_tokens
from promptlang.runtime import scoring
from promptlang.runtime.batches import pad
from promptlang.runtime.pipeline import Encoded
from promptlang.runtime.session import Session, _sentinels, scored_rows

EXACT_LIMIT = 100_000  # up to this many mappings every one is scored; beyond, a beam over the labels
BEAM_FACTOR = 10  # the beam keeps BEAM_FACTOR × `candidates` partial mappings
_CHUNK = 1 << 22  # (example, mapping, label) entries scored at once: bounds the memory of a scoring step


@dataclass(frozen=True)
class Mapping:
    """One word per label, as column indices of the candidate score table, and its training-set score
    (accuracy, or Pearson's r for a regression)."""

    words: tuple[int, ...]
    score: float


# ---------------------------------------------------------------- log-probabilities over the vocabulary


def vocabulary_log_probs(session: Session, pattern: p.Pattern, encoded: Encoded, batch_size: int) -> np.ndarray:
    """Log-probabilities over the whole vocabulary at the (first) mask of each encoded example.

    Masked LMs: at the mask, the head at the mask only. Causal LMs: the next token after the text before
    the mask, the head at that prompt's last position only (a 262k vocabulary is never computed at every
    position). Seq2seq: the first token of the word in the decoder: after `[decoder start, <extra_id_0>]`
    when the mask is in the input and the tokenizer has sentinels (T5's span format, as
    `scoring.seq2seq_targets` writes the targets), else after the target template's text before its mask.

    LM-BFF ranks words by their mean logit over a label's examples; at one mask a logit and a
    log-probability differ by a constant per example (its log-partition), so per-label means of either
    rank the words identically.

    Args:
        session: the model, tokenizer and plan (its device, precision and processes).
        pattern: the compiled pattern the examples were encoded with; it must have a mask.
        encoded: the examples, each with a mask.
        batch_size: examples per forward pass (in batches of similar length).

    Returns:
        (N, V) float32, in the examples' order.
    """
    if not len(encoded):
        vocabulary = getattr(session.model.config, "vocab_size", None) or len(session.tokenizer)
        return np.zeros((0, int(vocabulary)), dtype=np.float32)
    family = {"masked": _masked, "causal": _causal, "seq2seq": _seq2seq}[session.family]
    lengths = encoded.mask_at if session.family == "causal" else [len(ids) for ids in encoded.ids]

    def score(rows: list[int]) -> torch.Tensor:
        with torch.no_grad(), session.placement.autocast():
            return family(session, pattern, encoded, rows)

    return scored_rows(session, len(encoded), list(lengths), batch_size, score).astype(np.float32, copy=False)


def _masked(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int]) -> torch.Tensor:
    """(B, V) at each row's first mask."""
    ids, attention = pad([encoded.ids[r] for r in rows], session.plan.tokenizer.pad_id, session.device)
    mask_at = torch.tensor([encoded.mask_at[r] for r in rows], device=session.device)
    return scoring.mask_log_probs(session.model, ids, attention, mask_at, 1)[:, 0]  # (B, V)


def _causal(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int]) -> torch.Tensor:
    """(B, V) after each row's text before the mask; a mask first in the input follows a start token
    (the pad id), as `scoring.causal_scores` scores it."""
    pad_id = session.plan.tokenizer.pad_id
    prompts = [encoded.ids[r][: encoded.mask_at[r]] or [pad_id] for r in rows]
    ids, attention = pad(prompts, pad_id, session.device)
    hidden = scoring.hidden_states(session.model, ids, attention)  # (B, L, H)
    last = hidden[torch.arange(len(rows), device=session.device), attention.sum(1) - 1]  # (B, H)
    return F.log_softmax(scoring.head_logits(session.model, last).float(), dim=-1)  # (B, V)


def _seq2seq(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int]) -> torch.Tensor:
    """(B, V) at the decoder position that predicts the word's first token (the same prefix for every row:
    the head runs at its few positions)."""
    model = session.model
    ids, attention = pad([encoded.ids[r] for r in rows], session.plan.tokenizer.pad_id, session.device)
    prefix = [model.config.decoder_start_token_id, *decoder_prefix(session, pattern)]
    decoder = torch.tensor([prefix] * len(rows), device=session.device)  # (B, T)
    logits = model(input_ids=ids, attention_mask=attention, decoder_input_ids=decoder).logits  # (B, T, V)
    return F.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)


def decoder_prefix(session: Session, pattern: p.Pattern) -> list[int]:
    """What a seq2seq target holds before the word (the decoder start token not included):
    `<extra_id_0>` in T5's span format, else the target template's text before its mask."""
    before: list[int] = []
    for piece in pattern.target or [p.Piece(kind="mask")]:
        if piece.kind == "mask":
            break
        before += piece.ids
    span = pattern.target is None and any(piece.kind == "mask" for piece in pattern.pieces)
    sentinels = _sentinels(session) if span else None
    return [sentinels[0], *before] if sentinels is not None else before


# ---------------------------------------------------------------- candidate words


def word_checker(tokenizer, context: str) -> Callable[[int], str | None]:
    """A test of whether a vocabulary id is a label word at a mask that follows `context`.

    An id counts iff it is in the tokenizer's vocabulary and not a special token, its decoded text
    stripped is alphabetic (`str.isalpha`), and that word tokenized in place after `context`
    (`word_tokens`) is exactly this one id. So a WordPiece continuation (`##ing`), a byte-level BPE token
    without its `Ġ` or a SentencePiece piece without its `▁` never counts after a space, without knowing
    any tokenizer's markers (LM-BFF's `Ġ` test finds no word in BERT's vocabulary). Answers are cached.

    Args:
        tokenizer: a fast tokenizer.
        context: the template text before the mask, e.g. `"It was "`.

    Returns:
        is_word(id) → the word (its decoded text, stripped), or None.
    """
    special = set(tokenizer.all_special_ids)
    size = len(tokenizer)
    seen: dict[int, str | None] = {}

    def is_word(token_id: int) -> str | None:
        token_id = int(token_id)
        if token_id not in seen:
            ok = 0 <= token_id < size and token_id not in special
            seen[token_id] = _word(tokenizer, token_id, context) if ok else None
        return seen[token_id]

    return is_word


def _word(tokenizer, token_id: int, context: str) -> str | None:
    word = tokenizer.decode([token_id]).strip()
    if not word.isalpha():
        return None
    return word if word_tokens(tokenizer, word, context) == [token_id] else None


def label_candidates(log_probs: np.ndarray, labels: Sequence[int], n_labels: int, top_k: int,
                     is_word: Callable[[int], str | None]) -> list[list[tuple[int, str]]]:
    """Each label's `top_k` likeliest words: LM-BFF's candidates.

    Vocabulary ids are ranked by the mean, over the examples of the label, of their log-probability
    (ties: the lower id first); the ranking is walked from the top, keeping the ids `is_word` accepts,
    until `top_k` are kept, so `is_word` sees only the ranking's head. A word may be a candidate of
    several labels (`rank_mappings` keeps a mapping's words distinct).

    Args:
        log_probs: (N, V) from `vocabulary_log_probs`.
        labels: each example's label index, 0 ≤ label < n_labels (for a regression: `regression_poles`).
        n_labels: how many labels.
        top_k: words kept per label.
        is_word: from `word_checker`.

    Returns:
        per label, [(vocabulary id, word)], best first (fewer than `top_k` only if the vocabulary runs out).

    Raises:
        ValueError: a label has no example.
    """
    labels = np.asarray(labels)
    out = []
    for c in range(n_labels):
        rows = log_probs[labels == c]  # (N_c, V)
        if not len(rows):
            raise ValueError(f"label {c} has no training example to rank its words by")
        ranking = np.argsort(-rows.mean(axis=0, dtype=np.float64), kind="stable")  # (V,)
        kept: list[tuple[int, str]] = []
        for token_id in ranking.tolist():
            if len(kept) >= top_k:
                break
            word = is_word(token_id)
            if word is not None:
                kept.append((token_id, word))
        out.append(kept)
    return out


def regression_poles(scores: Sequence[float]) -> list[int]:
    """A regression's examples as two labels, as LM-BFF splits them: 1 (high) above the median, else 0."""
    values = np.asarray(scores, dtype=np.float64)
    return (values > np.median(values)).astype(int).tolist() if len(values) else []


def candidate_columns(log_probs: np.ndarray, candidates: list[list[tuple[int, str]]]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rank_mappings`'s inputs from `label_candidates`' output: one column per (label, candidate).

    Returns:
        scores (N, W) of the candidates, label-major, each label's best first; owners (W,) the label of
        each column; word_ids (W,) its vocabulary id.
    """
    owners = np.array([c for c, found in enumerate(candidates) for _ in found], dtype=np.int64)
    word_ids = np.array([token_id for found in candidates for token_id, _ in found], dtype=np.int64)
    return log_probs[:, word_ids], owners, word_ids


# ---------------------------------------------------------------- mappings


def rank_mappings(scores: np.ndarray, owners: Sequence[int], targets: Sequence[float], candidates: int,
                  regression: bool, word_ids: Sequence[int] | None = None) -> list[Mapping]:
    """The best label-word mappings on the training set: LM-BFF's search over its candidates.

    A mapping takes one column per label; no two of its columns may share a vocabulary id. Classification:
    its score is the accuracy of argmax over its words' log-probabilities (the lower label on a tie);
    normalising over the mapping's words would not change the argmax. Regression (two labels, low first):
    Pearson's r between p(high) (a softmax over its two words) and the examples' scores; 0 where either
    is constant.

    Every mapping is scored when there are at most `EXACT_LIMIT`. Beyond, a beam runs over the labels in
    order: it keeps `BEAM_FACTOR × candidates` partial mappings, each partial mapping scored on the
    examples of the labels it covers (a regression's one-word partial mappings all score 0), so it may miss
    a mapping the exact search would find.

    Mappings are ordered by score, then by the sum of their words' ranks (a column's position among its
    label's columns), then by their vocabulary ids.

    Args:
        scores: (N, W) log-probabilities (or logits) of the candidate words for each training example.
        owners: (W,) the label of each column; each label's columns best first.
        targets: (N,) each example's label index (-1: unknown, left out), or its score for a regression.
        candidates: how many mappings to return.
        regression: whether `targets` are scores (two labels).
        word_ids: (W,) each column's vocabulary id (default: every column a different word).

    Returns:
        the best `candidates` mappings, best first (fewer if there are fewer distinct mappings).

    Raises:
        ValueError: shapes that do not match, or a regression with other than two labels.
    """
    scores, owners = np.asarray(scores), np.asarray(owners, dtype=np.int64)
    ids = np.arange(len(owners)) if word_ids is None else np.asarray(word_ids, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.float64 if regression else np.int64)
    _check_shapes(scores, owners, ids, targets, regression)
    columns = [np.flatnonzero(owners == c) for c in range(int(owners.max()) + 1 if len(owners) else 0)]
    if not columns or candidates <= 0 or any(len(found) == 0 for found in columns):
        return []
    ranks = np.zeros(len(owners), dtype=np.int64)
    for found in columns:
        ranks[found] = np.arange(len(found))
    table = _Table(scores, targets, regression, ranks, ids)
    if np.prod([float(len(found)) for found in columns]) <= EXACT_LIMIT:
        combos = _distinct(_product(columns), ids)
        values = table.evaluate(combos)
    else:
        combos, values = _beam(table, columns, BEAM_FACTOR * candidates)
    best = table.order(combos, values)[:candidates]
    return [Mapping(tuple(int(w) for w in combos[i]), float(values[i])) for i in best]


def _check_shapes(scores: np.ndarray, owners: np.ndarray, ids: np.ndarray, targets: np.ndarray,
                  regression: bool) -> None:
    if scores.ndim != 2 or scores.shape[1] != len(owners) or len(ids) != len(owners):
        raise ValueError(f"scores {scores.shape} need one column per owner ({len(owners)}) and per word id "
                         f"({len(ids)})")
    if len(targets) != scores.shape[0]:
        raise ValueError(f"{len(targets)} targets for {scores.shape[0]} examples")
    if len(owners) and owners.min() < 0:
        raise ValueError("owners are label indices, 0 or more")
    if regression and len(owners) and int(owners.max()) != 1:
        raise ValueError(f"a regression maps two labels (low, high), not {int(owners.max()) + 1}")


def _product(columns: list[np.ndarray]) -> np.ndarray:
    """Every mapping: (M, C) column indices, the first label varying slowest."""
    grids = np.meshgrid(*columns, indexing="ij")
    return np.stack([grid.reshape(-1) for grid in grids], axis=1)  # (M, C)


def _distinct(combos: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The mappings whose words are different vocabulary ids."""
    words = np.sort(ids[combos], axis=1)  # (M, C)
    return combos[(words[:, 1:] != words[:, :-1]).all(axis=1)]


def _beam(table: "_Table", columns: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Partial mappings grown one label at a time, the `width` best kept after each label."""
    beam = np.zeros((1, 0), dtype=np.int64)  # (P, c)
    values = np.zeros(1)
    for c, found in enumerate(columns):
        grown = np.concatenate([np.repeat(beam, len(found), axis=0), np.tile(found, len(beam))[:, None]], axis=1)
        grown = _distinct(grown, table.ids)  # (P × k_c, c + 1), those with distinct words
        values = table.evaluate(grown)
        kept = table.order(grown, values)[: width if c < len(columns) - 1 else len(grown)]
        beam, values = grown[kept], values[kept]
    return beam, values


@dataclass
class _Table:
    """The candidates' scores on the training examples, and what orders mappings."""

    scores: np.ndarray  # (N, W)
    targets: np.ndarray  # (N,) label indices or regression scores
    regression: bool
    ranks: np.ndarray  # (W,) each column's position among its label's columns
    ids: np.ndarray  # (W,) each column's vocabulary id

    def evaluate(self, combos: np.ndarray) -> np.ndarray:
        """(M,) scores of (M, c) mappings covering the first c labels, in chunks."""
        n, c = self.scores.shape[0], combos.shape[1]
        step = max(1, _CHUNK // max(1, n * c))
        parts = [self._evaluate(combos[i : i + step]) for i in range(0, len(combos), step)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _evaluate(self, combos: np.ndarray) -> np.ndarray:
        picked = self.scores[:, combos].astype(np.float64)  # (N, M, c)
        if self.regression:
            if combos.shape[1] < 2:
                return np.zeros(len(combos))
            high = 0.5 + 0.5 * np.tanh((picked[:, :, 1] - picked[:, :, 0]) / 2)  # (N, M): softmax's p(high)
            return _pearson(high, self.targets)
        covered = (self.targets >= 0) & (self.targets < combos.shape[1])  # (N,) the covered labels' examples
        if not covered.any():
            return np.zeros(len(combos))
        predicted = picked[covered].argmax(axis=2)  # (N_c, M)
        return (predicted == self.targets[covered][:, None]).mean(axis=0)

    def order(self, combos: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Indices of the mappings best first: score, then the sum of ranks, then vocabulary ids."""
        ids = self.ids[combos]  # (M, c)
        keys = [ids[:, j] for j in reversed(range(combos.shape[1]))]
        return np.lexsort([*keys, self.ranks[combos].sum(axis=1), -values])


def _pearson(predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Pearson's r of each column of `predicted` (N, M) with `gold` (N,); 0 where either is constant."""
    x = predicted - predicted.mean(axis=0, keepdims=True)  # (N, M)
    y = gold - gold.mean()  # (N,)
    spread = np.sqrt((x * x).sum(axis=0) * (y * y).sum())  # (M,)
    covariance = (x * y[:, None]).sum(axis=0)
    out = np.zeros(predicted.shape[1])
    np.divide(covariance, spread, out=out, where=spread > 0)
    return out
