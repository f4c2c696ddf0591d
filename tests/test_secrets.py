"""Diagnostics never leak a file that is not a spec, nor carry terminal control characters.

A spec may name any file: `import "/proc/self/environ"`, `train "/etc/passwd"`. Whatever
the output format (text, json, github), promptlang names such a file and says what is
wrong, but never shows a byte of it. Lines of real specs are shown with control
characters escaped, and the caret still points at the right character.
"""

from __future__ import annotations

import os
import sys

import pytest

from promptlang.cli import main
from promptlang.language.diagnostics import printable

SECRET = "hunter2-SECRET"
FORMATS = ["text", "json", "github"]
BASE = """promptlang 1
{imports}
labels negative, positive

data {{
  train "{train}"
  test  "test.tsv"
  {data}text  sentence
}}

model {{
  hub "roberta-large"
}}

template it_was "{{{{ sentence }}}} It was [MASK]."

verbalizer sentiment {{
  negative -> "terrible"
  positive -> "great"
}}

method pet {{
  steps 250
}}
"""
SECRET_FILES = {
    "secret.env": f"AWS_SECRET={SECRET}\n",
    "environ": f"HOME=/root\0AWS_SECRET={SECRET}\0PATH=/bin\0",  # as /proc/self/environ reads
    "passwd": f"root:x:0:0:{SECRET}:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n",
}


def write_spec(folder, imports: str = "", train: str = "train.tsv", data: str = "", name: str = "spec.prompt"):
    (folder / "train.tsv").write_text("label\tsentence\npositive\tgood\n", encoding="utf-8")
    (folder / "test.tsv").write_text("label\tsentence\nnegative\tbad\n", encoding="utf-8")
    for file, text in SECRET_FILES.items():
        (folder / file).write_text(text, encoding="utf-8")
    path = folder / name
    path.write_text(BASE.format(imports=imports, train=train, data=data), encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("output", FORMATS)
@pytest.mark.parametrize("secret", sorted(SECRET_FILES))
def test_an_imported_file_that_is_not_a_spec_is_named_not_shown(tmp_path, capsys, secret, output):
    spec = write_spec(tmp_path, imports=f'\nimport "{tmp_path / secret}"\n')
    code, out = run(capsys, "check", "--format", output, str(spec))
    assert code == 1
    assert SECRET not in out and "AWS_SECRET" not in out and "root:x" not in out
    assert secret in out and "this is not a promptlang spec" in out


@pytest.mark.parametrize("output", FORMATS)
@pytest.mark.parametrize("secret", sorted(SECRET_FILES))
@pytest.mark.parametrize("data", ["", "format tsv\n  ", "format csv\n  ", "format jsonl\n  "])
def test_a_data_path_to_a_secret_never_shows_it(tmp_path, capsys, secret, data, output):
    spec = write_spec(tmp_path, train=str(tmp_path / secret), data=data)
    code, out = run(capsys, "check", "--format", output, str(spec))
    assert code == 1
    assert SECRET not in out and "AWS_SECRET" not in out and "root:x" not in out
    assert "internal error" not in out


@pytest.mark.parametrize("command", [["check"], ["check", "--format", "json"], ["check", "--format", "github"],
                                     ["fmt", "--check"], ["dump"]])
@pytest.mark.parametrize("secret", sorted(SECRET_FILES))
def test_a_secret_given_as_the_spec_is_not_shown(tmp_path, capsys, secret, command):
    write_spec(tmp_path)
    code, out = run(capsys, *command, str(tmp_path / secret))
    assert code in (1, 2)
    assert SECRET not in out and "AWS_SECRET" not in out and "root:x" not in out


def test_a_spec_line_with_an_escape_character_is_shown_escaped(tmp_path, capsys):
    spec = write_spec(tmp_path)
    text = spec.read_text(encoding="utf-8").replace('"great"', '"\x1b[2Jgr\x07eat"')
    spec.write_text(text, encoding="utf-8")
    code, out = run(capsys, "check", str(spec))
    assert code == 1
    assert "\x1b" not in out and "\x07" not in out
    lines = out.splitlines()
    shown = [i for i, line in enumerate(lines) if "positive ->" in line]
    assert [lines[i] for i in shown] == [r'19 |   positive -> "\x1b[2Jgr\x07eat"'] * 2
    before = len('  positive -> "')
    assert lines[shown[0] + 1] == "   | " + " " * before + "^^^^"  # the ESC, escaped: 4 characters
    assert lines[shown[1] + 1] == "   | " + " " * (before + len(r"\x1b[2Jgr")) + "^^^^"  # the BEL
    assert "error: a string cannot hold the control character U+001B" in out
    assert "error: a string cannot hold the control character U+0007" in out


def test_control_characters_in_comments_are_escaped_where_a_line_is_shown(tmp_path, capsys):
    spec = write_spec(tmp_path)
    text = spec.read_text(encoding="utf-8").replace("  steps 250\n", "  steps 0  # \x1b]0;pwned\x07 \u202eevil\n")
    spec.write_text(text, encoding="utf-8")
    code, out = run(capsys, "check", str(spec))
    assert code == 1
    assert r"steps 0  # \x1b]0;pwned\x07 \u202eevil" in out
    assert "\x1b" not in out and "\u202e" not in out


@pytest.mark.parametrize("output", FORMATS)
def test_control_characters_in_messages_are_escaped(tmp_path, capsys, output):
    spec = write_spec(tmp_path, train="tr\x1bain.tsv")
    code, out = run(capsys, "check", "--format", output, str(spec))
    assert code == 1
    assert "\x1b" not in out and "internal error" not in out


def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("plain text, é, 日本") == "plain text, é, 日本"
    assert printable("a\tb") == "a\tb"
    assert printable("\x00\x1b\x7f\x9b") == r"\x00\x1b\x7f\x9b"
    assert printable("\u202e\u200b\ufeff") == r"\u202e\u200b\ufeff"
    assert printable("\udc80") == r"\udc80"


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_symbolic_link_loops_are_located_errors(tmp_path, capsys):
    os.symlink("loop.prompt", tmp_path / "loop.prompt")
    os.symlink("loop.tsv", tmp_path / "loop.tsv")
    spec = write_spec(tmp_path, imports='\nimport "loop.prompt"\n', train="loop.tsv")
    code, out = run(capsys, "check", str(spec))
    assert code == 1, out
    assert "internal error" not in out
    assert "error: cannot import `loop.prompt`: its path is a loop of symbolic links" in out
    assert "error: data file `loop.tsv` is a symbolic link that leads back to itself" in out


def test_a_word_that_tokenizes_to_nothing_is_an_error(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from promptlang.api import analyze
    from promptlang.language.builder import build
    from promptlang.language.parser import parse
    from promptlang.language.source import Source
    from promptlang.compiler.tokenizer_checks import check_tokenization

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "was", "great",
                                         "terrible", ".", "good"])}
    model = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    model.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)  # drops zero-width characters
    model.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=model, unk_token="[UNK]",
                                                     mask_token="[MASK]", pad_token="[PAD]")
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text(encoding="utf-8").replace('"great"', '"\u200b"'), encoding="utf-8")
    assert analyze(spec).ok
    source = Source(spec.read_text(encoding="utf-8"), str(spec))
    diagnostics = check_tokenization(build(parse(source)[0], source), tokenizer)
    errors = [(d.span.line, d.span.col, d.message) for d in diagnostics.errors]
    assert errors == [(19, 15, '"\\u200b" is no token at all in template `it_was`: the tokenizer drops all of it')]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_data_path_to_a_pipe_is_an_error_not_a_hang(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.tsv")
    spec = write_spec(tmp_path, train="pipe.tsv")
    code, out = run(capsys, "check", str(spec))
    assert code == 1
    assert "error: data file `pipe.tsv` is not a regular file (a device or a pipe)" in out


def test_a_long_line_is_shown_cut_around_the_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    word = "a" * 100_000
    spec.write_text(spec.read_text(encoding="utf-8").replace("labels negative, positive",
                                                             f"labels {word} b, positive"), encoding="utf-8")
    code, out = run(capsys, "check", str(spec))
    assert code == 1
    lines = out.splitlines()
    shown = next(i for i, line in enumerate(lines) if line.startswith("3 | "))
    assert lines[shown] == "3 | ..." + "a" * 108 + " b, positive"  # the last 120 characters
    assert lines[shown + 1] == "  | " + " " * (3 + 109) + "^"
    assert len(out) < 1000


def test_the_caret_counts_wide_characters_twice(tmp_path, capsys):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text(encoding="utf-8").replace("labels negative, positive", "labels 日本語 x, b"),
                    encoding="utf-8")
    code, out = run(capsys, "check", str(spec))
    lines = out.splitlines()
    shown = lines.index("3 | labels 日本語 x, b")
    assert code == 1 and lines[shown + 1] == "  | " + " " * len("labels 日本語 ") + " " * 3 + "^"
