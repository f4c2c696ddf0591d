"""The tokenized pipeline: examples through a compiled pattern → token ids with known mask positions.

Fields are transformed, then tokenized one field at a time over the whole batch with the
fast tokenizer; template text was tokenized once at compile time. Only fields marked
`shorten` lose tokens when an input is too long (every field, from its tail, when none is
marked); template text, masks and special tokens are never cut.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import string
from dataclasses import dataclass, field
from pathlib import Path

from promptlang import plan as p
from promptlang.data import Example
from promptlang.tokens import without_dummy_prefix

_PUNCT = string.punctuation
ENCODING_VERSION = 2  # part of the cache key: raise it when what `encode` makes of an example changes


class TooLong(Exception):
    """A pattern leaves no room for an example's fields at `max_length`."""


@dataclass
class Encoded:
    """Examples encoded through one pattern.

    `ids[i]` is the whole model input (special tokens included); its `mask_count` mask
    tokens start at `mask_at[i]` (-1: no mask). `soft_at[i]` lists the positions of soft
    prompt tokens. `labels[i]` is the label's index, or -1 when unknown.
    """

    ids: list[list[int]] = field(default_factory=list)
    mask_at: list[int] = field(default_factory=list)
    soft_at: list[list[int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    mask_count: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def transform(value: str, transforms: list[str]) -> str:
    """Apply PET / LM-BFF field transforms to a value."""
    for name in transforms:
        if name == "lower_first":
            value = value[:1].lower() + value[1:]
        elif name == "upper_first":
            value = value[:1].upper() + value[1:]
        elif name == "lower":
            value = value.lower()
        elif name == "no_final_punct":
            value = value.rstrip(_PUNCT + string.whitespace)  # "a fine film ." → "a fine film"
        elif name == "add_space":
            value = value if value[:1].isspace() else " " + value
        elif name == "strip_space":
            value = value.strip()
    return value


def shortened(lengths: list[int], excess: int) -> list[int]:
    """New lengths after removing `excess` tokens, always from the longest (PET's rule).

    Raises:
        TooLong: the fields hold fewer than `excess` tokens.
    """
    if excess > sum(lengths):
        raise TooLong(f"{excess} tokens over, but the fields that may be shortened hold {sum(lengths)}")
    new = list(lengths)
    while excess > 0:
        top = max(new)
        tops = [i for i, n in enumerate(new) if n == top]
        below = max((n for n in new if n < top), default=0)
        take = min(excess, (top - below) * len(tops))
        each, extra = divmod(take, len(tops))
        for j, i in enumerate(tops):
            new[i] -= each + (1 if j < extra else 0)
        excess -= take
    return new


def _cut(ids: list[int], keep: int, policy: str) -> list[int]:
    if keep >= len(ids):
        return ids
    return ids[len(ids) - keep:] if policy == "head" else ids[:keep]


def _continues_word(pattern: p.Pattern, index: int) -> bool:
    """Whether the piece at `index` follows text, a field or a mask with no whitespace between them."""
    if index == 0:
        return False
    before = pattern.pieces[index - 1]
    return before.kind in ("field", "mask") or (before.kind == "text" and not before.text[-1:].isspace())


def _tokenized_fields(pattern: p.Pattern, examples: list[Example], tokenizer) -> dict[int, list[list[int]]]:
    """Piece index → token ids of that field for every example (one tokenizer call per field).

    A field glued to what precedes it (`Question:{{ q }}`) loses SentencePiece's dummy space.
    """
    out = {}
    for index, piece in enumerate(pattern.pieces):
        if piece.kind == "field":
            values = [transform(e.fields.get(piece.name, ""), piece.transforms) for e in examples]
            ids = tokenizer(values, add_special_tokens=False)["input_ids"] if values else []
            if _continues_word(pattern, index):
                ids = [row if value[:1].isspace() else without_dummy_prefix(tokenizer, row)
                       for value, row in zip(values, ids)]
            out[index] = ids
    return out


def encode(pattern: p.Pattern, examples: list[Example], tokenizer, info: p.Tokenizer, max_length: int,
           labels: list[str], family: str, demos: list[list[int]] | None = None) -> Encoded:
    """Encode examples through a pattern.

    Args:
        pattern: the compiled pattern.
        examples: the examples.
        tokenizer: the fast tokenizer the pattern was compiled with.
        info: the plan's view of that tokenizer (special tokens).
        max_length: tokens per input, special tokens included.
        labels: the label names, in order.
        family: masked, causal or seq2seq (a seq2seq input holds one sentinel for the mask).
        demos: for each example, the token ids placed at its [DEMOS] slot.

    Raises:
        TooLong: the pattern leaves no room for an example.
    """
    fields = _tokenized_fields(pattern, examples, tokenizer)
    shortenable = [i for i in fields if pattern.pieces[i].shorten] or list(fields)
    mask_count = 1 if family == "seq2seq" else pattern.mask_count
    mask_id = _mask_id(info, tokenizer, family)
    fixed = len(info.prefix) + len(info.suffix) + sum(
        len(piece.ids) if piece.kind == "text" else
        mask_count if piece.kind == "mask" else
        piece.count if piece.kind == "soft" else
        1 if piece.kind == "sep" else 0
        for piece in pattern.pieces)
    out = Encoded(mask_count=mask_count)
    label_index = {name: i for i, name in enumerate(labels)}
    for row, example in enumerate(examples):
        lengths = {i: len(fields[i][row]) for i in fields}
        shown = demos[row] if demos else []
        excess = fixed + len(shown) + sum(lengths.values()) - max_length
        if excess > 0:
            new = shortened([lengths[i] for i in shortenable], excess)
            lengths.update(zip(shortenable, new))
        ids, mask_at, soft_at = list(info.prefix), -1, []
        for index, piece in enumerate(pattern.pieces):
            if piece.kind == "text":
                ids += piece.ids
            elif piece.kind == "field":
                ids += _cut(fields[index][row], lengths[index], piece.shorten or "tail")
            elif piece.kind == "mask":
                mask_at = len(ids) if mask_at < 0 else mask_at
                ids += [mask_id] * mask_count
            elif piece.kind == "soft":
                soft_at += range(len(ids), len(ids) + piece.count)
                ids += [info.unk_id if info.unk_id is not None else info.pad_id] * piece.count
            elif piece.kind == "demos":
                ids += shown
            elif piece.kind == "sep":
                ids.append(info.sep_id if info.sep_id is not None else info.suffix[-1] if info.suffix else info.pad_id)
        ids += info.suffix
        out.ids.append(ids)
        out.mask_at.append(mask_at)
        out.soft_at.append(soft_at)
        out.labels.append(label_index.get(example.label, -1))
    return out


def _mask_id(info: p.Tokenizer, tokenizer, family: str) -> int:
    """The token that marks the mask: [MASK] / <mask>, T5's <extra_id_0>, or a placeholder for causal LMs."""
    if family == "seq2seq":
        sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
        if sentinel is not None and sentinel != info.unk_id:
            return sentinel
    if info.mask_id is not None:
        return info.mask_id
    return info.pad_id  # causal LMs: the scorer cuts the input at the mask, this id is never seen


def cache_key(*parts) -> str:
    """A hash of JSON-able parts (pattern, tokenizer, data, settings)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def encode_cached(cache: Path | None, pattern: p.Pattern, examples: list[Example], tokenizer,
                  info: p.Tokenizer, max_length: int, labels: list[str], family: str,
                  demos: list[list[int]] | None = None) -> Encoded:
    """`encode`, kept on disk under `cache` keyed by a hash of everything it depends on."""
    if cache is None:
        return encode(pattern, examples, tokenizer, info, max_length, labels, family, demos)
    key = cache_key(ENCODING_VERSION, pattern.model_dump(), info.model_dump(), max_length, labels, family, demos,
                    [(e.fields, e.label) for e in examples])
    path = cache / "tokens" / f"{key}.pkl"
    if path.is_file():
        with open(path, "rb") as handle:
            return pickle.load(handle)
    encoded = encode(pattern, examples, tokenizer, info, max_length, labels, family, demos)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{id(encoded)}.tmp")
    with open(temporary, "wb") as handle:
        pickle.dump(encoded, handle)
    temporary.replace(path)
    return encoded
