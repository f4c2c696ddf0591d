"""The tokenized pipeline: examples through a compiled pattern → token ids with known mask positions.

Fields are transformed, then tokenized one field at a time over the whole batch with the
fast tokenizer; template text was tokenized once at compile time. Only fields marked
`shorten` lose tokens when an input is too long (every field, from its tail, when none is
marked); template text, masks and special tokens are never cut. Field text never becomes a
special token: "[MASK]" or "</s>" in the data is tokenized as the characters it is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from promptlang.compiler import plan as p
from promptlang.runtime.data import Example
from promptlang.compiler.tokens import ids_of, without_dummy_prefix

_PUNCT = string.punctuation
ENCODING_VERSION = 3  # part of the cache key: raise it when what `encode` makes of an example changes


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
    rows = tokenizer(values, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    banned = special_ids(tokenizer)
    return [row if banned.isdisjoint(row) else _spelled(tokenizer, value, banned) for value, row in zip(values, rows)]


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


def _tokenized_fields(pattern: p.Pattern, examples: list[Example], tokenizer) -> dict[int, list[list[int]]]:
    """Piece index → token ids of that field for every example (one tokenizer call per field).

    A field glued to what precedes it (`Question:{{ q }}`) loses SentencePiece's dummy space.
    """
    out = {}
    for index, piece in enumerate(pattern.pieces):
        if piece.kind == "field":
            values = [transform(e.fields.get(piece.name, ""), piece.transforms) for e in examples]
            ids = text_ids(tokenizer, values)
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
    prepared = prepare(pattern, examples, tokenizer, info, max_length, labels, family)
    return prepared.assemble(list(range(len(examples))), demos)


@dataclass
class Prepared:
    """Examples with their fields tokenized once, assembled into inputs on demand: a training batch
    gets freshly drawn demonstrations each time without tokenizing anything again."""

    pattern: p.Pattern
    examples: list[Example]
    fields: dict[int, list[list[int]]]  # piece index → each example's field ids
    mask_id: int
    info: p.Tokenizer
    max_length: int
    labels: list[str]
    family: str

    def assemble(self, rows: list[int], demos: list[list[int]] | None = None) -> Encoded:
        """The inputs of examples `rows` (in that order), `demos[i]` at row i's [DEMOS] slot.

        Raises:
            TooLong: the pattern leaves no room for an example.
        """
        pattern, info = self.pattern, self.info
        shortenable = [i for i in self.fields if pattern.pieces[i].shorten] or list(self.fields)
        mask_count = 1 if self.family == "seq2seq" else pattern.mask_count
        fixed = len(info.prefix) + len(info.suffix) + sum(
            len(piece.ids) if piece.kind == "text" else
            mask_count if piece.kind == "mask" else
            piece.count if piece.kind == "soft" else
            1 if piece.kind == "sep" else 0
            for piece in pattern.pieces)
        out = Encoded(mask_count=mask_count)
        label_index = {name: i for i, name in enumerate(self.labels)}
        for at, row in enumerate(rows):
            lengths = {i: len(self.fields[i][row]) for i in self.fields}
            shown = demos[at] if demos else []
            excess = fixed + len(shown) + sum(lengths.values()) - self.max_length
            if excess > 0:
                new = shortened([lengths[i] for i in shortenable], excess)
                lengths.update(zip(shortenable, new))
            ids, mask_at, soft_at = self._input(row, lengths, shown, mask_count)
            out.ids.append(ids)
            out.mask_at.append(mask_at)
            out.soft_at.append(soft_at)
            out.labels.append(label_index.get(self.examples[row].label, -1))
        return out

    def _input(self, row: int, lengths: dict[int, int], shown: list[int], mask_count: int):
        """(ids, mask position, soft prompt positions) of one example, its fields cut to `lengths`."""
        info = self.info
        ids, mask_at, soft_at = list(info.prefix), -1, []
        for index, piece in enumerate(self.pattern.pieces):
            if piece.kind == "text":
                ids += piece.ids
            elif piece.kind == "field":
                ids += _cut(self.fields[index][row], lengths[index], piece.shorten or "tail")
            elif piece.kind == "mask":
                mask_at = len(ids) if mask_at < 0 else mask_at
                ids += [self.mask_id] * mask_count
            elif piece.kind == "soft":
                soft_at += range(len(ids), len(ids) + piece.count)
                ids += [info.unk_id if info.unk_id is not None else info.pad_id] * piece.count
            elif piece.kind == "demos":
                ids += shown
            elif piece.kind == "sep":
                ids.append(info.sep_id if info.sep_id is not None else info.suffix[-1] if info.suffix else info.pad_id)
        return ids + info.suffix, mask_at, soft_at


def prepare(pattern: p.Pattern, examples: list[Example], tokenizer, info: p.Tokenizer, max_length: int,
            labels: list[str], family: str) -> Prepared:
    """Examples through a pattern with their fields tokenized, to assemble later (see `Prepared`)."""
    return Prepared(pattern, examples, _tokenized_fields(pattern, examples, tokenizer),
                    _mask_id(info, tokenizer, family), info, max_length, labels, family)


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
    path = cache / "tokens" / f"{key}.json"
    found = read_encoded(path, len(examples))
    if found is not None:
        return found
    encoded = encode(pattern, examples, tokenizer, info, max_length, labels, family, demos)
    write_encoded(path, encoded)
    return encoded


_FIELDS = {"ids": list, "mask_at": list, "soft_at": list, "labels": list, "mask_count": int}


def read_encoded(path: Path, n: int) -> Encoded | None:
    """A cached encoding (plain JSON: reading it runs nothing), or None when it is missing, unreadable,
    or not an encoding of `n` examples."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or not JSON / not UTF-8
        return None
    if not isinstance(data, dict) or set(data) != set(_FIELDS) or \
            not all(isinstance(data[name], kind) for name, kind in _FIELDS.items()):
        return None
    if any(len(data[name]) != n for name in ("ids", "mask_at", "soft_at", "labels")):
        return None
    if not all(_ints(row) for name in ("ids", "soft_at") for row in data[name]) or \
            not _ints(data["mask_at"]) or not _ints(data["labels"]):
        return None
    return Encoded(**data)


def _ints(values) -> bool:
    return isinstance(values, list) and all(type(x) is int for x in values)


def write_encoded(path: Path, encoded: Encoded) -> None:
    """Write an encoding as JSON beside its place, then move it there in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({name: getattr(encoded, name) for name in _FIELDS}, out)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
