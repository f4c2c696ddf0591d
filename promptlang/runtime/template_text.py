"""The template search's shapes (the order of fields, searched spans and the mask), each shape's model inputs, the tokens a span may not hold, and the spans decoded in place and escaped as promptlang template text."""

from __future__ import annotations

import functools
import unicodedata

from promptlang.compiler.tokens import ids_of, special_tokens, word_tokens

# A shape is the order of a template's parts: ("field", name), ("span", i) for the i-th searched span, ("mask", "").
Part = tuple[str, object]
MASK: Part = ("mask", "")
# A template's own escapes; a quote stays as it is (a spec's string escapes it: `stages.candidates.string_literal`).
_ESCAPES = {"\\": "\\\\", "{": "\\{", "[": "\\[", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def t5_shapes(fields: list[str]) -> list[tuple[Part, ...]]:
    """LM-BFF's T5 shapes: one sentence `S X [MASK] Y` and `X [MASK] Y S`; a pair `S1 X [MASK] Y S2`.

    Raises:
        ValueError: for other than one or two fields.
    """
    x, y = ("span", 0), ("span", 1)
    if len(fields) == 1:
        field = ("field", fields[0])
        return [(field, x, MASK, y), (x, MASK, y, field)]
    if len(fields) == 2:
        return [(("field", fields[0]), x, MASK, y, ("field", fields[1]))]
    raise ValueError(f"a template search takes one or two text fields, not {len(fields)}")


def causal_shape(fields: list[str]) -> tuple[Part, ...]:
    """The causal search's shape: the input's fields in order, then the searched span, then the mask (`S1 S2 X [MASK]`).

    Raises:
        ValueError: for other than one or two fields.
    """
    if len(fields) not in (1, 2):
        raise ValueError(f"a template search takes one or two text fields, not {len(fields)}")
    return (*[("field", name) for name in fields], ("span", 0), MASK)


# ---------------------------------------------------------------- inputs


def word_ids(tokenizer, word: str) -> list[int]:
    """A label word's ids after a space, as the found template's ` [MASK]` puts it."""
    return word_tokens(tokenizer, word, " ")


def t5_input(tokenizer, shape: tuple[Part, ...], example: dict[str, str], word: str, sentinels, max_input: int) -> list[int]:
    """One example's T5 encoder ids for a shape: its fields, `<extra_id_0>` for X, the word, `<extra_id_1>` for Y.

    Args:
        shape: one of `t5_shapes`; example: the example's text fields; word: its label word.
        sentinels: the ids of `<extra_id_0>`, `<extra_id_1>` (and `<extra_id_2>`).
        max_input: the most tokens of each field (those nearest the spans kept).
    """
    ids: list[int] = []
    for position, (kind, value) in enumerate(shape):
        if kind == "field":
            ids += _field_ids(tokenizer, example[value], not ids, keep_end=position == 0, max_input=max_input)
        elif kind == "span":
            ids.append(sentinels[value])
        else:
            ids += word_ids(tokenizer, word)
    prefix, suffix = special_tokens(tokenizer)
    return prefix + ids + suffix


def causal_input(tokenizer, example: dict[str, str], fields: list[str], max_input: int) -> list[int]:
    """An example's causal input S: the tokenizer's prefix (`<s>`), then its fields, a space between them.

    Args:
        example: the example's text fields; fields: the fields in order;
        max_input: the most tokens of each field (its end kept).
    """
    prefix, _ = special_tokens(tokenizer)
    ids = prefix + [i for n, name in enumerate(fields) for i in _field_ids(tokenizer, example[name], n == 0, True, max_input)]
    return ids or [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]


def _field_ids(tokenizer, text: str, first: bool, keep_end: bool, max_input: int) -> list[int]:
    """A field's ids (after a space unless first), cut to `max_input` tokens: its end kept where the
    searched text follows it, its start where the searched text comes before it (as LM-BFF cuts)."""
    ids = ids_of(tokenizer, text if first else " " + text)
    if len(ids) <= max_input:
        return ids
    return ids[len(ids) - max_input:] if keep_end else ids[:max_input]


def t5_spans(tokens: list[int], sentinels: tuple[int, int, int], eos: int) -> list[list[int]] | None:
    """The spans X and Y of T5's output `X <extra_id_1> Y <extra_id_2>` (after the decoder's `<extra_id_0>`).

    Args:
        tokens: the generated ids after `<extra_id_0>`.
        sentinels: the ids of `<extra_id_0>`, `<extra_id_1>`, `<extra_id_2>`.
        eos: `</s>`, which also ends the last span.

    Returns:
        [X, Y], or None when X never ended (the template would have no mask). Y ends at `<extra_id_2>`,
        `</s>` or the end of `tokens`.
    """
    first, second = sentinels[1], sentinels[2]
    if first not in tokens:
        return None
    cut = tokens.index(first)
    rest = tokens[cut + 1:]
    ends = [i for i, token in enumerate(rest) if token in (second, eos)]
    return [tokens[:cut], rest[: ends[0]] if ends else rest]


def span_text(tokenizer, ids: list[int]) -> str:
    """A span's text as the tokenizer decodes it after other text, its leading space kept (`▁It ▁was` → " It was").

    The span is decoded after an anchor word and the anchor's own text taken off, so that no
    tokenizer's space marker (`Ġ`, `▁`) needs to be known.
    """
    if not ids:
        return ""
    anchor = ids_of(tokenizer, "a")
    before = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    joined = tokenizer.decode(anchor + list(ids), clean_up_tokenization_spaces=False)
    if joined.startswith(before):
        return joined[len(before):]
    return tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)


def escaped(text: str) -> str | None:
    """Text as a template writes it (`{`, `[`, `\\`, line breaks and tabs escaped); None when it holds a
    character a template cannot (another control character, a lone surrogate, an undecodable byte)."""
    if any(_unwritable(char) for char in text):
        return None
    return "".join(_ESCAPES.get(char, char) for char in text)


def _unwritable(char: str) -> bool:
    return char == "\ufffd" or (unicodedata.category(char) in ("Cc", "Cs") and char not in "\n\t\r")


def render(shape: tuple[Part, ...], spans: list[str]) -> str | None:
    """Template text for a shape with its spans' decoded texts: `{{ name }}` for a field, `[MASK]` for the mask.

    A field and the mask follow what comes before them after a space (as the search's inputs had it:
    the word was scored as " word"); a span keeps the spacing it was decoded with, except at the
    very start. None when every span is empty (nothing was found) or a span cannot be written.
    """
    if not any(text.strip() for text in spans):
        return None
    out: list[str] = []
    for kind, value in shape:
        if kind == "span":
            text = escaped(spans[value])
            if text is None:
                return None
            out.append(text if out else text.lstrip())
        else:
            piece = "[MASK]" if kind == "mask" else "{{ " + str(value) + " }}"
            out.append(" " + piece if out else piece)
    return "".join(out)


def template_text(tokenizer, shape: tuple[Part, ...], spans: list[list[int]]) -> str | None:
    """Template text for a shape with its spans' token ids (see `render`); None for a degenerate candidate."""
    return render(shape, [span_text(tokenizer, ids) for ids in spans])


@functools.lru_cache(maxsize=8)
def degenerate_ids(tokenizer) -> frozenset[int]:
    """Tokens a searched span may not hold: special and added tokens (`<s>`, sentinels, `<pad>`, ...),
    tokens that decode to nothing or only whitespace (SentencePiece's lone `▁`), runs of dots
    (`...`, as LM-BFF forbids), and tokens a template cannot write (undecodable bytes, control characters)."""
    texts = _token_texts(tokenizer)
    bad = {i for i, text in enumerate(texts) if not text.strip() or (len(text.strip()) > 1 and set(text.strip()) == {"."})
           or any(_unwritable(char) for char in text)}
    return frozenset(bad | set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {})))


@functools.lru_cache(maxsize=8)
def period_ids(tokenizer) -> frozenset[int]:
    """Tokens that are a full stop (`.`, `▁.`): one may not follow another (LM-BFF forbids a repeated `.`)."""
    return frozenset(i for i, text in enumerate(_token_texts(tokenizer)) if text.strip() == ".")


@functools.lru_cache(maxsize=8)
def _token_texts(tokenizer) -> tuple[str, ...]:
    """Every token's text decoded alone, in id order (one batched call)."""
    return tuple(tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False))
