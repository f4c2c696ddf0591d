"""Data files: damaged files get an error naming the file and the line, and no row is ever lost silently.

Tables of damaged files and their exact messages (`datafiles.read_table`), files that read
despite oddities (a BOM, CRLF, blank lines, a field over csv's 128 KiB limit), the shipped
`data/`, the runtime path (`prepare`, `promptlang render` / `run`: a located error before any
model work), `check` finding label values that are not labels, `bad_rows skip`, and a fuzz
test of random damage. Check-time cases of the same kind are in `tests/errors/data.txt`.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlang import analyze
from promptlang.language import spec as m
from promptlang.cli import main
from promptlang.runtime.data import DataError, read_split, read_splits, sample_splits
from promptlang.language.datafiles import DataFileError, column_values, read_columns, read_table

ROOT = Path(__file__).resolve().parent.parent
UTF8 = "save the file as UTF-8 text"
QUOTE = ("an unbalanced quote is the usual cause: close it, or double a quote inside a quoted field (`\"\"`); "
         "a field that holds a line break cannot be read")
CSV_FIELDS = "every line holds one value per column; a value with a `,` in it must be quoted: `\"a, b\"`"
TSV_FIELDS = ("every line holds one value per column, separated by tabs; a tab inside a text adds a field "
              "(replace it with a space)")
JSON_ROW = 'each line of a JSON-lines file is one object, written on that line: {"label": ..., "sentence": ...}'
FILLER = "".join(f"positive\treview number {i}, long enough to fill a few kilobytes\n" for i in range(300))

# name, format, file bytes, message, hint
DAMAGED = [
    ("csv-unbalanced-quote", "csv", b'label,sentence\npositive,"a fine film\nnegative,a bad film\n',
     "`f` line 2: a quoted field is not closed on its line (a row cannot span lines)", QUOTE),
    ("csv-quote-then-text", "csv", b'label,sentence\npositive,"a fine" film\n',
     "`f` line 2: a quoted field is followed by more text before the next `,`", QUOTE),
    ("csv-quoted-line-break", "csv", b'label,sentence\npositive,"a fine\nfilm"\n',
     "`f` line 2: a quoted field is not closed on its line (a row cannot span lines)", QUOTE),
    ("csv-short-row", "csv", b"label,sentence\npositive,a fine film\nnegative\n",
     "`f` line 3: 1 field, but the header has 2", CSV_FIELDS),
    ("csv-long-row", "csv", b"label,sentence\npositive,a fine, warm film\n",
     "`f` line 2: 3 fields, but the header has 2", CSV_FIELDS),
    ("csv-lone-carriage-return", "csv", b"label,sentence\npositive,a fine\rfilm\n",
     "`f` line 2: the line holds a lone carriage return (`\\r`)", QUOTE),
    ("tsv-short-row", "tsv", b"label\tsentence\npositive\n",
     "`f` line 2: 1 field, but the header has 2", TSV_FIELDS),
    ("tsv-tab-in-text", "tsv", b"label\tsentence\npositive\ta fine\tfilm\n",
     "`f` line 2: 3 fields, but the header has 2", TSV_FIELDS),
    ("tsv-bad-byte-past-8-kb", "tsv", b"label\tsentence\n" + FILLER.encode() + b"negative\tna\xefve\n",
     "`f` line 302: byte 0xef (at byte 12 of the line) is not UTF-8", UTF8),
    ("tsv-nul", "tsv", b"label\tsentence\npositive\ta fine\x00 film\n",
     "`f` line 2: the line holds a NUL byte", "the file may be UTF-16 or binary; " + UTF8),
    ("tsv-utf16", "tsv", "label\tsentence\n".encode("utf-16"),
     "`f` line 1: byte 0xff (at byte 1 of the line) is not UTF-8", UTF8),
    ("tsv-header-column-twice", "tsv", b"label\tlabel\npositive\tpositive\n",
     "`f` line 1: the column `label` is named twice", "give each column its own name"),
    ("tsv-blank-first-line", "tsv", b"\nlabel\tsentence\n",
     "`f` starts with a blank line, not the column names",
     "the first line holds the column names, separated by tabs: `label<TAB>sentence`"),
    ("tsv-empty", "tsv", b"", "`f` is empty",
     "the first line holds the column names, separated by tabs: `label<TAB>sentence`"),
    ("jsonl-bad-line", "jsonl", b'{"label": "positive"}\n{"label": "negative"\n',
     "`f` line 2: not valid JSON (Expecting ',' delimiter at column 21)", JSON_ROW),
    ("jsonl-list-line", "jsonl", b'{"label": "positive"}\n[1, 2]\n', "`f` line 2: a JSON list, not an object", JSON_ROW),
    ("jsonl-string-line", "jsonl", b'{"label": "positive"}\n\n"negative"\n',
     "`f` line 3: a JSON string, not an object", JSON_ROW),
    ("jsonl-first-line-a-number", "jsonl", b"5\n", "cannot read the column names of `f`",
     'the first line of a JSON-lines file is an object: {"label": ..., "sentence": ...}'),
    ("jsonl-a-json-array", "jsonl", b'[\n{"label": "positive"}\n]\n', "`f` line 1: not valid JSON (Expecting value at column 2)",
     'the first line of a JSON-lines file is an object: {"label": ..., "sentence": ...}'),
]


@pytest.mark.parametrize("name, fmt, content, message, hint", DAMAGED, ids=[case[0] for case in DAMAGED])
def test_a_damaged_file_is_an_error_naming_the_file_and_line(tmp_path, name, fmt, content, message, hint):
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(DataFileError) as raised:
        read_table(path, fmt)
    assert (str(raised.value), raised.value.hint) == (message, hint)
    with pytest.raises(DataFileError) as again:
        column_values(path, fmt, "label")  # check's fast path fails the same way
    assert str(again.value) == message


# name, format, file bytes, the rows (line, values) it reads to
READS = [
    ("bom-dropped", "tsv", b"\xef\xbb\xbflabel\tsentence\npositive\tfine\n", [(2, ["positive", "fine"])]),
    ("crlf", "csv", b"label,sentence\r\npositive,fine\r\n\r\nnegative,bad", [(2, ["positive", "fine"]),
                                                                            (4, ["negative", "bad"])]),
    ("blank-lines-skipped", "tsv", b"label\tsentence\n\npositive\tfine\n\n", [(3, ["positive", "fine"])]),
    ("tsv-quoted-field-unquoted", "tsv", b'label\tsentence\npositive\t"""Fine"" film, it said"\n',
     [(2, ["positive", '"Fine" film, it said'])]),
    ("tsv-stray-quotes-are-text", "tsv", b'label\tsentence\npositive\t"Fine," it said\tx\n'[:-3] + b"\n",
     [(2, ["positive", '"Fine," it said'])]),
    ("csv-quoted-comma", "csv", b'label,sentence\npositive,"fine, warm"\n', [(2, ["positive", "fine, warm"])]),
    ("csv-quote-inside-a-field", "csv", b'label,sentence\npositive,a "fine" film\n',
     [(2, ["positive", 'a "fine" film'])]),
    ("csv-field-over-128-kib", "csv", b"label,sentence\npositive," + b"x" * 200_000 + b"\n",
     [(2, ["positive", "x" * 200_000])]),
    ("jsonl-values", "jsonl", b'{"label": 1, "sentence": null}\n\n{"sentence": "x", "label": true}\n',
     [(1, ["1", ""]), (3, ["True", "x"])]),
]


@pytest.mark.parametrize("name, fmt, content, rows", READS, ids=[case[0] for case in READS])
def test_a_file_reads_to_one_row_per_line(tmp_path, name, fmt, content, rows):
    path = tmp_path / "f"
    path.write_bytes(content)
    assert read_table(path, fmt).rows == rows
    assert read_columns(path, fmt) == ["label", "sentence"]


def test_csvs_field_limit_is_restored_after_reading(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"label\n" + b"x" * 200_000 + b"\n")
    before = csv.field_size_limit()
    read_table(path, "csv")
    assert csv.field_size_limit() == before


def test_a_symbolic_link_loop_is_an_error(tmp_path):
    os.symlink(tmp_path / "loop.tsv", tmp_path / "loop.tsv")
    with pytest.raises(DataFileError, match=r"^cannot read `loop.tsv`: it is a symbolic link that leads back to itself$"):
        read_table(tmp_path / "loop.tsv", "tsv")


def test_skip_bad_rows_lists_the_lines_it_skipped(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b'label,sentence\npositive,"open\nnegative,bad\nnegative\npositive,\xff\n')
    table = read_table(path, "csv", skip_bad=True)
    assert (table.rows, table.skipped) == ([(3, ["negative", "bad"])], [2, 4, 5])


@pytest.mark.parametrize("content, values", [
    (b"label\tsentence\npositive\ta\nnegative\tb\npositive\tc\n", {"positive": 2, "negative": 3}),
    (b"sentence\tlabel\r\na\tnegative\r\nb\tpositive\r\n", {"negative": 2, "positive": 3}),
    (b"label\tsentence\npositive\ta\n5\tb\n", {"positive": 2, "5": 3}),
    (b'label\tsentence\n"positive"\ta\nnegative\tb\n', {"positive": 2, "negative": 3}),
    (b"id\tlabel\tsentence\n1\tnegative\ta\n2\tnegative\tb\n", {"negative": 2}),
    (b"label\tsentence\n", {}),
], ids=["label-first", "label-last-crlf", "a-value-not-expected", "quoted-label", "three-columns", "no-rows"])
def test_checks_label_scan_finds_each_value_and_its_first_line(tmp_path, content, values):
    path = tmp_path / "f.tsv"
    path.write_bytes(content)
    assert column_values(path, "tsv", "label", expected=("negative", "positive")) == values
    assert column_values(path, "tsv", "label") == values


# ---------------------------------------------------------------- the shipped data


@pytest.mark.parametrize("path", sorted((ROOT / "data").rglob("*.tsv")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_data_reads_one_example_per_line_as_the_csv_module_reads_it(path):
    table = read_table(path, "tsv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(table.rows) == len(lines) - 1
    with open(path, encoding="utf-8", newline="") as handle:
        assert [row for _, row in table.dicts()] == list(csv.DictReader(handle, delimiter="\t"))


# ---------------------------------------------------------------- the spec: prepare, render, run, check

SPEC = """promptlang 1

labels negative, positive

data {{
{data}
}}

model {{
  hub    "roberta-large"
  family masked
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
GOOD = "label\tsentence\npositive\ta fine film\nnegative\ta bad film\n"


def write(folder: Path, data: str, files: dict[str, str | bytes]) -> Path:
    for name, text in {"train.tsv": GOOD, "test.tsv": GOOD, **files}.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    spec = folder / "spec.prompt"
    spec.write_text(SPEC.format(data=data), encoding="utf-8")
    return spec


DATA = '  train     "train.tsv"\n  test      "test.tsv"\n  unlabeled "unlabeled.tsv"\n  text      sentence'


def spec_of(path: Path) -> m.Spec:
    analysis = analyze(path)
    assert analysis.ok, analysis.diagnostics
    return analysis.spec


@pytest.mark.parametrize("command", ["render", "run"])
def test_render_and_run_report_a_bad_unlabeled_line_at_its_setting_before_any_model_work(
        tmp_path, capsys, monkeypatch, command):
    import promptlang.runner

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was read")

    monkeypatch.setattr(promptlang.runner, "load_tokenizer", no_model)
    monkeypatch.setattr(promptlang.runner, "load_model", no_model)
    spec = write(tmp_path, DATA, {"unlabeled.tsv": "label\tsentence\n\ta review\n\tanother\treview\n"})
    assert main(["check", str(spec)]) == 0  # check reads the labelled splits only
    assert main([command, str(spec), *(["--out", str(tmp_path / "out")] if command == "run" else [])]) == 1
    shown = capsys.readouterr()
    assert "error: `unlabeled.tsv` line 3: 3 fields, but the header has 2" in shown.out + shown.err
    assert f"--> {spec}:8:13" in shown.out + shown.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("files, message, path", [
    ({"test.tsv": "label\tsentence\n"}, "`test.tsv` has no examples", ("data", "test")),
    ({"test.tsv": "sentence\nfine\n"}, "`test.tsv` has no label column `label`", ("data", "label")),
    ({"test.tsv": "label\tsentence\n5\tfine\n"}, "`test.tsv` line 2: label value `5` is not a label", ("data", "test")),
    ({"test.tsv": "label\tsentence\n\tfine\n"}, "`test.tsv` line 2 has no label", ("data", "test")),
    ({"unlabeled.tsv": "label\n\n"}, "`unlabeled.tsv` has no column `sentence`", ("data", "text", 0)),
    ({"unlabeled.tsv": b"label\tsentence\n\t\xff\n"},
     "`unlabeled.tsv` line 2: byte 0xff (at byte 2 of the line) is not UTF-8", ("data", "unlabeled")),
])
def test_read_splits_finds_what_used_to_surface_after_training(tmp_path, files, message, path):
    spec = spec_of(write(tmp_path, DATA, {"unlabeled.tsv": GOOD}))
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError) as raised:
        read_splits(spec, tmp_path)
    assert (str(raised.value), raised.value.path) == (message, path)


def test_a_bom_in_one_file_only_reads_the_same_columns(tmp_path):
    spec = spec_of(write(tmp_path, DATA, {"train.tsv": b"\xef\xbb\xbf" + GOOD.encode(), "unlabeled.tsv": GOOD}))
    read = read_splits(spec, tmp_path)
    assert read["train"] == [e.__class__(e.fields, e.label, e.source.replace("test", "train")) for e in read["test"]]


def test_bad_rows_skip_counts_the_skipped_lines_for_every_seed(tmp_path):
    damaged = GOOD + 'positive\t"open\tquote\nnegative\n'
    spec = write(tmp_path, DATA + "\n  bad_rows  skip", {"unlabeled.tsv": damaged, "test.tsv": damaged})
    read = read_splits(spec_of(spec), tmp_path)
    assert read.skipped == {"test.tsv": 2, "unlabeled.tsv": 2}
    assert [e.source for e in read["test"]] == ["test.tsv:2", "test.tsv:3"]
    assert sample_splits(spec_of(spec), read, 13).skipped == {"test.tsv": 2, "unlabeled.tsv": 2}


def test_a_run_with_bad_rows_skip_records_the_skipped_lines_in_metrics_json(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import tinymodels
    from promptlang.runner import run

    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    model = tinymodels.save("masked", tmp_path / "model")
    data = tinymodels.write_data(tmp_path)
    data.write_text(data.read_text(encoding="utf-8") + "positive\n\xff\n", encoding="latin-1")
    spec = tmp_path / "spec.prompt"
    spec.write_text(tinymodels.spec_text(path=str(model), data=tinymodels.DATA + "\n  bad_rows skip"), encoding="utf-8")
    run(spec, str(tmp_path / "out"), quiet=True)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["skipped_rows"] == {"data.tsv": 2}
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    assert "  bad_rows skip: skipped 2 line(s) of data.tsv that do not parse\n" in log


def test_check_reports_label_values_that_are_not_labels(tmp_path, capsys):
    spec = write(tmp_path, '  train "train.csv"\n  test  "test.tsv"\n  text  sentence',
                 {"train.csv": "label,sentence\n5,great\n1,awful\n5,fine\n"})
    assert main(["check", str(spec)]) == 1
    out = capsys.readouterr().out
    assert ("error: the label column `label` of `train.csv` holds `5`, `1`, which are not labels "
            "(the first on line 2)") in out
    assert f"--> {spec}:6:9" in out
    assert ('help: map raw values to labels in `data`: `label_values { LABEL -> "5", "1" }`, one line per label; '
            "the labels are: negative, positive") in out


def test_label_values_make_the_numbers_labels(tmp_path):
    spec = write(tmp_path, '  train "train.csv"\n  test  "test.tsv"\n  text  sentence\n'
                 '  label_values {\n    negative -> "1"\n    positive -> "5"\n  }',
                 {"train.csv": "label,sentence\n5,great\n1,awful\n"})
    read = read_splits(spec_of(spec), tmp_path)
    assert [e.label for e in read["train"]] == ["positive", "negative"]


# ---------------------------------------------------------------- fuzz: random damage never loses a row

TALLY: Counter = Counter()
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\x00\ufeff"), max_size=12)
ROWS = st.lists(st.tuples(st.sampled_from(["positive", "negative", "1"]), TEXT), min_size=1, max_size=6)
DAMAGE = ["quote", "drop_field", "extra_field", "bad_byte", "nul", "truncate", "bom", "blank", "huge", "cr"]


def encode(fmt: str, rows: list[tuple[str, str]], label_last: bool) -> list[bytes]:
    """The file's lines, written as a careful writer writes them (header first, except for JSON lines)."""
    def order(label, text):
        return [text, label] if label_last else [label, text]

    if fmt == "jsonl":
        return [json.dumps(dict(zip(order("label", "sentence"), order(label, text)))).encode() for label, text in rows]
    if fmt == "tsv":
        return ["\t".join(order("label", "sentence")).encode()] + [
            "\t".join(order(label, _tsv(text))).encode() for label, text in rows]
    quoted = ['"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text for _, text in rows]
    return [",".join(order("label", "sentence")).encode()] + [
        ",".join(order(label, text)).encode() for (label, _), text in zip(rows, quoted)]


def _tsv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if text.startswith('"') else text


def damage(line: bytes, kind: str, at: int) -> bytes:
    """One line with one kind of damage at position `at`."""
    at = at % (len(line) + 1)
    pieces = {"quote": b'"', "bad_byte": b"\xff", "nul": b"\x00", "bom": b"\xef\xbb\xbf", "cr": b"\r"}
    if kind in pieces:
        return line[:at] + pieces[kind] + line[at:]
    separator = b"," if b"," in line and b"\t" not in line else b"\t"
    if kind == "drop_field":  # (never a blank line: that is a deleted row, which no reader can see)
        fields = line.split(separator)
        return (fields[0] or fields[-1]) if separator in line else line[: max(at, 1)]
    if kind == "extra_field":
        return line + separator + b"more"
    if kind == "truncate":
        return line[: max(at, 1)]
    if kind == "huge":
        return line[:at] + b"x" * 140_000 + line[at:]
    return line  # "blank": the damage is a blank line after it


def fuzz_spec(fmt: str) -> m.Spec:
    """A spec whose train split is `f.FORMAT` (parsed and built only: the file changes per example)."""
    from promptlang.language.builder import build
    from promptlang.language.parser import parse
    from promptlang.language.source import Source

    data = (f'  train "f.{fmt}"\n  text  sentence\n'
            '  label_values {\n    negative -> "negative"\n    positive -> "positive", "1"\n  }')
    nodes, _ = parse(Source(SPEC.format(data=data), "spec.prompt"))
    return build(nodes, Source(SPEC.format(data=data), "spec.prompt")).spec


FUZZ_SPECS = {fmt: fuzz_spec(fmt) for fmt in ("tsv", "csv", "jsonl")}


@FUZZ
@given(st.sampled_from(["tsv", "csv", "jsonl"]), ROWS,
       st.lists(st.tuples(st.integers(0, 6), st.sampled_from(DAMAGE), st.integers(0, 200)), max_size=3),
       st.booleans())
def test_random_damage_never_loses_a_row_silently(tmp_path_factory, fmt, rows, damages, label_last):
    lines = encode(fmt, rows, label_last)
    first = 0 if fmt == "jsonl" else 1
    damaged: set[int] = set()
    blank_after: set[int] = set()
    for index, kind, at in damages:
        index = index % len(lines)  # the header too
        if kind == "blank":
            blank_after.add(index)
            continue
        lines[index] = damage(lines[index], kind, at)
        damaged.add(index)
    content = b"".join(line + b"\n" + (b"\n" if i in blank_after else b"") for i, line in enumerate(lines))
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / f"f.{fmt}").write_bytes(content)
    TALLY["inputs"] += 1
    assert_check_scans_as_the_reader_reads(folder / f"f.{fmt}", fmt)
    try:
        examples = read_split(FUZZ_SPECS[fmt], "train", folder)
    except DataError as error:
        assert str(error).startswith((f"`f.{fmt}`", f"cannot read the column names of `f.{fmt}`")), error
        TALLY["located error"] += 1
        return
    assert len(examples) == len(rows), (content, examples)  # nothing lost, nothing invented
    got = [(e.label, e.fields["sentence"]) for e in examples]
    for i in range(first, len(lines)):
        label, text = rows[i - first]
        if i not in damaged:
            assert got[i - first] == ({"1": "positive"}.get(label, label), text), (content, examples)
    TALLY["read, every row"] += 1


def assert_check_scans_as_the_reader_reads(path: Path, fmt: str) -> None:
    """`check`'s label scan (its fast paths included) finds what the strict reader finds."""
    def outcome(read):
        try:
            return read()
        except DataFileError as error:
            return str(error)

    def by_reader():
        table = read_table(path, fmt)
        return {value: line for line, value in reversed(table.column("label"))} if "label" in table.columns else None

    expected = outcome(by_reader)
    if expected is not None and not (isinstance(expected, dict) and None in expected):
        for labels in [(), ("positive", "negative", "1")]:
            scanned = outcome(lambda: column_values(path, fmt, "label", expected=labels))
            assert scanned == (dict(sorted(expected.items(), key=lambda item: item[1]))
                               if isinstance(expected, dict) else expected)


def test_zz_fuzz_tally():
    """The fuzz test's counts (shown with `pytest -s`): every input was a located error or every row."""
    print(f"\nfuzz over data files: {dict(TALLY)}")
    assert TALLY["inputs"] == TALLY["located error"] + TALLY["read, every row"]
