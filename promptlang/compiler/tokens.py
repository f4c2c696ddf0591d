"""Tokenizing text the way it appears in place, across WordPiece, byte-level BPE and SentencePiece.

A word after "It was " is " great" to a BPE tokenizer (`Ġgreat`) and to SentencePiece
(`▁great`); tokenized alone it would be `great`. These helpers take the context into
account, so label words and template text get the ids they have inside a full input.
"""

from __future__ import annotations

import functools


def ids_of(tokenizer, text: str) -> list[int]:
    """Token ids of `text` without special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def word_tokens(tokenizer, word: str, context: str = "") -> list[int]:
    """Token ids of `word` as it appears after `context` (the template text before the mask).

    The word's tokens are those `context + word` has beyond the tokens of the context
    without its trailing spaces, so that the space before the word goes with the word,
    as BPE and SentencePiece write it (" great" → Ġgreat, ▁great): tokenized alone,
    "It was " ends in a token of its own for that space (It Ġwas Ġ). If that is not a
    prefix, the whole context is tried; if neither is (a token spans the seam), the word alone.
    """
    joined = ids_of(tokenizer, context + word)
    for before_text in dict.fromkeys((context.rstrip(" "), context)):
        before = ids_of(tokenizer, before_text)
        if joined[: len(before)] == before and len(joined) > len(before):
            return joined[len(before):]
    return ids_of(tokenizer, word)


@functools.lru_cache(maxsize=32)
def _special_parts(tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    plain = ids_of(tokenizer, "a")
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return tuple(full[:start]), tuple(full[start + len(plain):])
    return (), ()


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single input."""
    prefix, suffix = _special_parts(tokenizer)
    return list(prefix), list(suffix)


@functools.lru_cache(maxsize=32)
def adds_dummy_prefix(tokenizer) -> bool:
    """Whether the tokenizer writes a space before every text (SentencePiece's `add_dummy_prefix`)."""
    return ids_of(tokenizer, "a") == ids_of(tokenizer, " a") and ids_of(tokenizer, "a") != []


def piece_ids(tokenizer, text: str, first: bool) -> list[int]:
    """Token ids of a piece of template text; a SentencePiece dummy space is dropped mid-sentence."""
    ids = ids_of(tokenizer, text)
    if first or text[:1].isspace():
        return ids
    return without_dummy_prefix(tokenizer, ids)


def without_dummy_prefix(tokenizer, ids: list[int]) -> list[int]:
    """The ids of a text that continues a word: SentencePiece's dummy space (`▁`) before the
    first token is dropped, or the first token replaced by its bare form; other tokenizers' ids as they are."""
    if not ids or not adds_dummy_prefix(tokenizer):
        return ids
    head = tokenizer.convert_ids_to_tokens(ids[0])
    if head == "▁":
        return ids[1:]
    if head.startswith("▁"):
        bare = tokenizer.convert_tokens_to_ids(head[1:])
        if bare is not None and bare != tokenizer.unk_token_id:
            return [bare, *ids[1:]]
    return ids
