"""Text from the data as token ids, all texts in one tokenizer call, never producing a special token."""

from __future__ import annotations

import functools

from promptlang.compiler.tokens import ids_of, without_dummy_prefix

# The methods a tokenizer class could override to change what a call returns (see `_plain_backend`).
_ENCODING_METHODS = ("__call__", "_call_one", "encode_plus", "batch_encode_plus", "_encode_plus", "_batch_encode_plus")


@functools.lru_cache(maxsize=32)
def special_ids(tokenizer) -> frozenset[int]:
    """The ids that text from the data must never produce: the tokenizer's special tokens (its
    unknown token only when that is also a structural one, as GPT-2's `<|endoftext|>` is)."""
    banned = set(tokenizer.all_special_ids)
    banned |= {i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special}
    structural = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id,
                  tokenizer.cls_token_id, tokenizer.mask_token_id}
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id not in structural:
        banned.discard(tokenizer.unk_token_id)
    return frozenset(banned)


def text_ids(tokenizer, values: list[str]) -> list[list[int]]:
    """Token ids of texts from the data, with no special tokens: "[MASK]" in a review is `[ mask ]`.

    The fast tokenizer's `split_special_tokens` stops it from matching special tokens' text; a
    vocabulary that holds such a text as an ordinary piece (a Unigram `</s>`) is spelled out
    character by character at that token.
    """
    if not values:
        return []
    rows = _plain_ids(tokenizer, values)
    banned = special_ids(tokenizer)
    return [row if banned.isdisjoint(row) else _spelled(tokenizer, value, banned) for value, row in zip(values, rows)]


def _plain_ids(tokenizer, values: list[str]) -> list[list[int]]:
    """What `tokenizer(values, add_special_tokens=False, split_special_tokens=True)` gives as input ids,
    straight from the Rust tokenizer when nothing in the Python class can change them: the call
    would also build attention masks and type ids, and a dict per text, for half of the time."""
    backend = _plain_backend(tokenizer)
    if backend is None:
        return tokenizer(values, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if backend.truncation is not None:  # what the call does first when asked for no truncation ...
        backend.no_truncation()
    if backend.padding is not None:  # ... and no padding
        backend.no_padding()
    before = backend.encode_special_tokens
    backend.encode_special_tokens = True  # split_special_tokens
    try:
        return [encoding.ids for encoding in backend.encode_batch_fast(values, add_special_tokens=False)]
    finally:
        backend.encode_special_tokens = before


def _plain_backend(tokenizer):
    """The Rust tokenizer of a fast tokenizer whose class encodes as the library's base class does, else None."""
    from transformers import PreTrainedTokenizerFast

    kind = type(tokenizer)
    if not isinstance(tokenizer, PreTrainedTokenizerFast) or any(
            getattr(kind, name, None) is not getattr(PreTrainedTokenizerFast, name, None) for name in _ENCODING_METHODS):
        return None
    backend = tokenizer.backend_tokenizer
    return backend if hasattr(backend, "encode_batch_fast") else None


def _spelled(tokenizer, value: str, banned: frozenset[int]) -> list[int]:
    """`value`'s ids with each special token replaced by the ids of its characters."""
    encoded = tokenizer(value, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    out: list[int] = []
    for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if token not in banned:
            out.append(token)
            continue
        for char in value[start:end]:
            out += [i for i in without_dummy_prefix(tokenizer, _char_ids(tokenizer, char)) if i not in banned]
    return out


def _char_ids(tokenizer, char: str) -> list[int]:
    return tokenizer(char, add_special_tokens=False, split_special_tokens=True)["input_ids"] if char.strip() \
        else ids_of(tokenizer, char)
