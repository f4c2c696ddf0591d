"""Hostile and careless inputs through the command line: each gets a located message, never a traceback.

One row per input that once ended in `promptlang: internal error` or in a silent wrong result
(issue 8). Each row builds its files in a temporary folder and runs one command; the test holds
the exit code and the first line the user sees, that nothing says "internal error" or shows a
traceback, that a located message (exit 1) names the file and line, and that nothing was written
outside the folder the command was asked to write. `test_the_count` prints the tally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from promptlang.cli import main

SPEC = """promptlang 1

labels negative, positive

data {{
  train "train.tsv"
  test  "test.tsv"
  text  sentence
{data}}}

model {{
  {model}
}}

template t "{{{{ sentence }}}} It was [MASK]."

verbalizer v {{
  negative -> "bad"
  positive -> "good"
}}

method {method}
"""
ROWS = "label\tsentence\npositive\ta gorgeous film\nnegative\ta dull mess\npositive\tgreat fun\nnegative\tboring\n"


def spec(folder: Path, data: str = "", model: str = 'hub "no-such/model"', method: str = "zero_shot {}",
         train: str = ROWS, test: str = ROWS) -> Path:
    # a lone surrogate in a row stands for a byte that is not UTF-8
    (folder / "train.tsv").write_text(train, encoding="utf-8", errors="surrogateescape")
    (folder / "test.tsv").write_text(test, encoding="utf-8", errors="surrogateescape")
    path = folder / "spec.prompt"
    path.write_text(SPEC.format(data=data, model=model, method=method), encoding="utf-8")
    return path


def nested(folder: Path) -> list[str]:
    path = folder / "spec.prompt"
    path.write_text("promptlang 1\nmethod pet {\n" + "a {\n" * 400 + "}\n" * 401, encoding="utf-8")
    return ["check", str(path)]


def long_number(folder: Path) -> list[str]:
    return ["check", str(spec(folder, method="pet {\n  steps " + "9" * 5000 + "\n}"))]


def bad_escape(folder: Path) -> list[str]:
    path = spec(folder)
    path.write_text(path.read_text().replace("It was [MASK].", "It was \\UFFFFFFFF [MASK]."), encoding="utf-8")
    return ["check", str(path)]


def loop(folder: Path, name: str) -> Path:
    os.symlink(folder / name, folder / name)  # a link to itself
    return folder / name


def import_loop(folder: Path) -> list[str]:
    path = spec(folder)
    loop(folder, "lib.prompt")
    path.write_text(path.read_text().replace("labels", 'import "lib.prompt"\n\nlabels'), encoding="utf-8")
    return ["check", str(path)]


def data_loop(folder: Path) -> list[str]:
    path = spec(folder)
    loop(folder, "loop.tsv")
    path.write_text(path.read_text().replace('test  "test.tsv"', 'test  "loop.tsv"'), encoding="utf-8")
    return ["check", str(path)]


def model_loop(folder: Path) -> list[str]:
    loop(folder, "model")
    return ["check", str(spec(folder, model='path "model"'))]


def number(setting: str):
    def build(folder: Path) -> list[str]:
        return ["check", str(spec(folder, method="pet {\n  " + setting + "\n}"))]
    return build


def run_with(**files):
    """`promptlang run` on data files as given (the model is never reached: data is read first)."""
    def build(folder: Path) -> list[str]:
        path = spec(folder, **{k: v for k, v in files.items() if k in ("train", "test", "data")})
        return ["run", "--out", str(folder / "out"), str(path)]
    return build


def run_jsonl(test: str):
    def build(folder: Path) -> list[str]:
        path = spec(folder)
        (folder / "test.jsonl").write_text(test, encoding="utf-8")
        path.write_text(path.read_text().replace('"test.tsv"', '"test.jsonl"'), encoding="utf-8")
        return ["run", "--out", str(folder / "out"), str(path)]
    return build


def checked(**files):
    def build(folder: Path) -> list[str]:
        return ["check", str(spec(folder, **files))]
    return build


def output_setting(value: str):
    def build(folder: Path) -> list[str]:
        path = spec(folder)
        path.write_text(path.read_text() + f"\nevaluate {{\n  output {value}\n}}\n", encoding="utf-8")
        return ["run", str(path)]
    return build


def out(target: str):
    def build(folder: Path) -> list[str]:
        return ["run", "--out", target, str(spec(folder))]
    return build


def package_beside_spec(folder: Path) -> list[str]:
    """A module named like the spec's model package, beside the spec and in the current folder: never run."""
    (folder / "evil_model.py").write_text("open('ran', 'w').write('code from the spec folder ran')\n")
    return ["plan", str(spec(folder, model='package "evil-model"'))]


def predict_dir(damage):
    """`promptlang predict` on an output directory damaged by `damage(folder)`."""
    def build(folder: Path) -> list[str]:
        out = folder / "out"
        out.mkdir()
        (out / ".promptlang-output").write_text("{}", encoding="utf-8")
        (out / "predictor.json").write_text(json.dumps({"method": "zero_shot", "pattern": "t", "family": "masked",
                                                        "labels": ["negative", "positive"], "extras": {}}))
        (out / "plan.json").write_text("{}", encoding="utf-8")
        damage(out)
        (folder / "in.tsv").write_text("sentence\nfine\n", encoding="utf-8")
        return ["predict", str(out), "--input", str(folder / "in.tsv")]
    return build


HOSTILE = {
    # the spec itself
    "nesting-400-deep": nested,
    "a-5000-digit-number": long_number,
    "escape-beyond-unicode": bad_escape,
    "import-symlink-loop": import_loop,
    "data-symlink-loop": data_loop,
    "model-symlink-loop": model_loop,
    "temperature-inf": number("distill {\n    temperature inf\n  }"),
    "learning-rate-nan": number("learning_rate nan"),
    "loss-1e999": number("loss ce 1e999"),
    "seed-beyond-2-32": number("seeds 4294967296"),
    # data files, read before any model work
    "empty-test-split": run_with(test="label\tsentence\n"),
    "test-without-label-column": run_with(test="sentence\nfine\n"),
    "unbalanced-quote-csv": run_with(data='  format csv\n', test='label,sentence\npositive,"a fine\nnegative,bad\n'
                                     'positive,good\nnegative,"dull\n'),
    "short-csv-row": run_with(data='  format csv\n', test="label,sentence\npositive\nnegative,bad\n"),
    "bad-byte-past-8kb": run_with(test=ROWS + "positive\tfine film\n" * 600 + "negative\tbad \udcff byte\n"),
    "jsonl-bad-line": run_jsonl('{"label": "positive", "sentence": "fine"}\n{"label": "negative", "sen\n'),
    "jsonl-non-object-line": run_jsonl('{"label": "positive", "sentence": "fine"}\n["negative", "bad"]\n'),
    "label-value-not-a-label": checked(test="label\tsentence\n5\tgreat\n1\tawful\n"),
    # inputs that are fine, however odd: read in full, no error
    "field-over-128kib": checked(test="label\tsentence\npositive\t" + "a" * 140_000 + "\n"),
    "bom-in-one-file-only": checked(test="\ufeff" + ROWS),
    # where results go, refused before any work
    "output-dot": output_setting('"."'),
    "output-escapes-the-spec-folder": output_setting('"../../elsewhere"'),
    "out-dot": out("."),
    "out-root": out("/"),
    # code a spec could smuggle in
    "package-module-beside-the-spec": package_beside_spec,
    # output directories
    "predict-predictor-not-json": predict_dir(lambda out: (out / "predictor.json").write_text("{not json")),
    "predict-plan-not-a-plan": predict_dir(lambda out: None),
    "predict-unknown-method": predict_dir(lambda out: (out / "predictor.json").write_text('{"method": "../x"}')),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_gets_a_located_message(name, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(folder)
    args = HOSTILE[name](folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    code = main(args)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "internal error" not in output and "Traceback" not in output, output
    first = output.strip().splitlines()[0].replace(str(folder), "{work}")
    if code == 1:
        assert f"--> {folder}" in output, output
    assert (first, code) == EXPECTED[name], output
    after = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert after == before, "a refused command wrote files"


EXPECTED: dict[str, tuple[str, int]] = {  # the first line of the output, and the exit code
    'nesting-400-deep': ('error: blocks are nested more than 32 deep', 1),
    'a-5000-digit-number': ('error: this number has 5000 digits', 1),
    'escape-beyond-unicode': ('error: `\\UFFFFFFFF` is not a Unicode character', 1),
    'import-symlink-loop': ('error: cannot import `lib.prompt`: its path is a loop of symbolic links', 1),
    'data-symlink-loop': ('error: data file `loop.tsv` is a symbolic link that leads back to itself', 1),
    'model-symlink-loop': ('error: model folder `model` is a symbolic link that leads back to itself', 1),
    'temperature-inf': ('error: `temperature` must be a finite number, got `inf`', 1),
    'learning-rate-nan': ('error: `learning_rate` must be a finite number, got `nan`', 1),
    'loss-1e999': ('error: `1e999` is too large to be a number', 1),
    'seed-beyond-2-32': ('error: each value of `seeds` must be at most 4294967295, got `4294967296`', 1),
    'empty-test-split': ('error: `test.tsv` has no examples', 1),
    'test-without-label-column': ('error: `test.tsv` has no column `label`', 1),
    'unbalanced-quote-csv': ('error: `test.tsv` line 2: a quoted field is not closed on its line (a row cannot span lines)', 1),
    'short-csv-row': ('error: `test.tsv` line 2: 1 field, but the header has 2', 1),
    'bad-byte-past-8kb': ('error: `test.tsv` line 606: byte 0xff (at byte 14 of the line) is not UTF-8', 1),
    'jsonl-bad-line': ('error: `test.jsonl` line 2: not valid JSON (Unterminated string starting at column 23)', 1),
    'jsonl-non-object-line': ('error: `test.jsonl` line 2: a JSON list, not an object', 1),
    'label-value-not-a-label': ('error: the label column `label` of `test.tsv` holds `5`, `1`, which are not labels (the first on line 2)', 1),
    'field-over-128kib': ('checked 1 file: no problems', 0),
    'bom-in-one-file-only': ('checked 1 file: no problems', 0),
    'output-dot': ("error: `output` is the spec's own folder: a run would replace the spec and its data with results", 1),
    'output-escapes-the-spec-folder': ("error: `output` leads out of the spec's folder: `../../elsewhere`", 1),
    'out-dot': ('promptlang: error: the output directory . holds {work}/spec.prompt, which the run reads: replacing it would delete it; choose a new folder, like --out results/NAME', 2),
    'out-root': ('promptlang: error: the output directory / is the filesystem root; choose a new folder, like --out results/NAME', 2),
    'package-module-beside-the-spec': ('error: the model package `evil-model` is not installed', 1),
    'predict-predictor-not-json': ('promptlang: error: {work}/out: predictor.json is not JSON', 2),
    'predict-plan-not-a-plan': ('promptlang: error: {work}/out: plan.json is not what promptlang writes (`spec` is missing); run the spec again to write the directory anew', 2),
    'predict-unknown-method': ('promptlang: error: {work}/out: predictor.json is not what promptlang writes (`method` is not valid); run the spec again to write the directory anew', 2),
}


def test_the_count(capsys):
    """The tally for the record: inputs tried, handled with a located message or a usage error, lost."""
    located = sum(code == 1 for _, code in EXPECTED.values())
    usage = sum(code == 2 for _, code in EXPECTED.values())
    fine = sum(code == 0 for _, code in EXPECTED.values())
    assert set(EXPECTED) == set(HOSTILE)
    with capsys.disabled():
        print(f"\nhostile inputs: {len(HOSTILE)} tried, {located} located errors, {usage} usage errors, "
              f"{fine} read in full, 0 internal errors")
