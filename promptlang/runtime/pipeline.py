"""The tokenized pipeline: examples through a compiled pattern → token ids with known mask positions.

Fields are transformed, then tokenized one field at a time over the whole batch with the
fast tokenizer; template text was tokenized once at compile time. Only fields marked
`shorten` lose tokens when an input is too long (every field, from its tail, when none is
marked); template text, masks and special tokens are never cut. Field text never becomes a
special token: "[MASK]" or "</s>" in the data is tokenized as the characters it is.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import string
import tempfile
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from promptlang.compiler import plan as p
from promptlang.runtime.data import Example
from promptlang.compiler.tokens import without_dummy_prefix
from promptlang.runtime.data_tokens import text_ids

_PUNCT = string.punctuation
ENCODING_VERSION = 3  # part of the cache key: raise it when what `encode` makes of an example changes
KEY_FORMAT = "tokens-2"  # how `encode_cached` hashes its inputs (a new format: new keys, same encodings)


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


@contextmanager
def gc_paused():
    """Garbage collection off around a bulk step that allocates many small objects and no cycles
    (at 60k examples the collector's passes cost more than the step); on again after, if it was on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        mask_count = 1 if self.family == "seq2seq" else self.pattern.mask_count
        runs = _runs(self.pattern, self.info, self.mask_id, mask_count)
        fixed = sum(len(run.ids) for run in runs)
        columns = list(self.fields.values())
        out = Encoded(mask_count=mask_count)
        label_index = {name: i for i, name in enumerate(self.labels)}
        with gc_paused():
            for at, row in enumerate(rows):
                shown = demos[at] if demos else []
                excess = fixed + len(shown) + sum(len(column[row]) for column in columns) - self.max_length
                ids, mask_at, soft_at = self._input(runs, row, self._kept(row, excess) if excess > 0 else None, shown)
                out.ids.append(ids)
                out.mask_at.append(mask_at)
                out.soft_at.append(soft_at)
                out.labels.append(label_index.get(self.examples[row].label, -1))
        return out

    def _kept(self, row: int, excess: int) -> dict[int, int]:
        """Piece index → how many of row's field tokens stay when `excess` must go (PET's rule)."""
        lengths = {i: len(column[row]) for i, column in self.fields.items()}
        shortenable = [i for i in self.fields if self.pattern.pieces[i].shorten] or list(self.fields)
        lengths.update(zip(shortenable, shortened([lengths[i] for i in shortenable], excess)))
        return lengths

    def _input(self, runs: list[_Run], row: int, kept: dict[int, int] | None, shown: list[int]):
        """(ids, mask position, soft prompt positions) of one example, its fields cut to `kept` (None: whole)."""
        ids: list[int] = []
        mask_at, soft_at = -1, []
        for run in runs:
            if run.piece >= 0:
                value = self.fields[run.piece][row]
                ids += value if kept is None else _cut(value, kept[run.piece], run.policy)
            elif run.demos:
                ids += shown
            else:
                if run.mask >= 0 and mask_at < 0:
                    mask_at = len(ids) + run.mask
                if run.soft:
                    soft_at += [len(ids) + offset for offset in run.soft]
                ids += run.ids
        return ids, mask_at, soft_at


@dataclass
class _Run:
    """A stretch of a pattern's input: a field (`piece`: its index), the demonstrations, or fixed ids
    (template text, masks, soft and separator tokens, special tokens) with where its first mask and
    its soft tokens are in it."""

    ids: list[int] = field(default_factory=list)
    piece: int = -1
    policy: str = "tail"
    demos: bool = False
    mask: int = -1
    soft: list[int] = field(default_factory=list)


def _runs(pattern: p.Pattern, info: p.Tokenizer, mask_id: int, mask_count: int) -> list[_Run]:
    """The pattern as runs, consecutive fixed pieces merged into one: an input is their ids in order."""
    runs = [_Run(list(info.prefix))]
    for index, piece in enumerate(pattern.pieces):
        if piece.kind == "field":
            runs += [_Run(piece=index, policy=piece.shorten or "tail"), _Run()]
        elif piece.kind == "demos":
            runs += [_Run(demos=True), _Run()]
        else:
            _add_fixed(runs[-1], piece, info, mask_id, mask_count)
    runs[-1].ids += info.suffix
    return [run for run in runs if run.piece >= 0 or run.demos or run.ids or run.mask >= 0]


def _add_fixed(run: _Run, piece: p.Piece, info: p.Tokenizer, mask_id: int, mask_count: int) -> None:
    """Append a text, mask, soft or separator piece's ids to a fixed run."""
    if piece.kind == "text":
        run.ids += piece.ids
    elif piece.kind == "mask":
        run.mask = len(run.ids) if run.mask < 0 else run.mask
        run.ids += [mask_id] * mask_count
    elif piece.kind == "soft":
        run.soft += range(len(run.ids), len(run.ids) + piece.count)
        run.ids += [info.unk_id if info.unk_id is not None else info.pad_id] * piece.count
    elif piece.kind == "sep":
        run.ids.append(info.sep_id if info.sep_id is not None else info.suffix[-1] if info.suffix else info.pad_id)


def prepare(pattern: p.Pattern, examples: list[Example], tokenizer, info: p.Tokenizer, max_length: int,
            labels: list[str], family: str) -> Prepared:
    """Examples through a pattern with their fields tokenized, to assemble later (see `Prepared`)."""
    with gc_paused():
        fields = _tokenized_fields(pattern, examples, tokenizer)
    return Prepared(pattern, examples, fields, _mask_id(info, tokenizer, family), info, max_length, labels, family)


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
    path = cache / "tokens" / f"{encoding_key(pattern, examples, info, max_length, labels, family, demos)}.json"
    found = read_encoded(path, len(examples))
    if found is not None:
        return found
    encoded = encode(pattern, examples, tokenizer, info, max_length, labels, family, demos)
    write_encoded(path, encoded)
    return encoded


def encoding_key(pattern: p.Pattern, examples: list[Example], info: p.Tokenizer, max_length: int,
                 labels: list[str], family: str, demos: list[list[int]] | None) -> str:
    """The cache key of an encoding: the settings as JSON, then the examples as sections in one pass of
    C loops (no JSON per example), each section length-prefixed: per example its field count and
    label, then every field name and value with their lengths, so no text in the data can forge a seam."""
    digest = hashlib.sha256()
    for part in (json.dumps([KEY_FORMAT, ENCODING_VERSION, pattern.model_dump(), info.model_dump(), max_length,
                             labels, family, demos], sort_keys=True, default=str).encode(), *_example_sections(examples)):
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()[:24]


def _example_sections(examples: list[Example]) -> list[bytes]:
    """Examples' fields (in their order) and labels as bytes; a value that is not text is its JSON, marked."""
    fields = [e.fields for e in examples]
    names = list(itertools.chain.from_iterable(fields))
    values = list(itertools.chain.from_iterable(map(dict.values, fields)))
    odd = [] if set(map(type, values)) <= {str} else [i for i, v in enumerate(values) if type(v) is not str]
    for i in odd:
        values[i] = json.dumps(values[i], sort_keys=True, default=str)
    return [array("q", map(len, fields)).tobytes(), json.dumps([e.label for e in examples], default=str).encode(),
            json.dumps(odd).encode(), array("q", map(len, names)).tobytes(), array("q", map(len, values)).tobytes(),
            "".join(names).encode("utf-8", "surrogatepass"), "".join(values).encode("utf-8", "surrogatepass")]


_FIELDS = {"ids": list, "mask_at": list, "soft_at": list, "labels": list, "mask_count": int}


def read_encoded(path: Path, n: int) -> Encoded | None:
    """A cached encoding (plain JSON: reading it runs nothing), or None when it is missing, unreadable,
    or not an encoding of `n` examples."""
    try:
        with gc_paused():
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or not JSON / not UTF-8
        return None
    if not isinstance(data, dict) or set(data) != set(_FIELDS) or \
            not all(type(data[name]) is kind for name, kind in _FIELDS.items()):
        return None
    if any(len(data[name]) != n for name in ("ids", "mask_at", "soft_at", "labels")):
        return None
    if not (_lists_of_ints(data["ids"]) and _lists_of_ints(data["soft_at"]) and _ints(data["mask_at"])
            and _ints(data["labels"])):
        return None
    return Encoded(**data)


def _ints(values: list) -> bool:
    """Whether every item is an int (not a bool, a float or anything else); one pass in C."""
    return set(map(type, values)) <= {int}


def _lists_of_ints(rows: list) -> bool:
    return set(map(type, rows)) <= {list} and _ints(itertools.chain.from_iterable(rows))


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
