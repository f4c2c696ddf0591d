"""The `dataset` data source: read through `datasets.load_dataset` (the `hub` extra), here from a local folder
with the hub offline; located errors when `datasets` is missing or the dataset cannot be loaded."""

from __future__ import annotations

import builtins
import subprocess
import sys
from pathlib import Path

import pytest

from promptlang.api import analyze
from promptlang.cli import main
from promptlang.runtime.data import DataError, read_splits

SPEC = """promptlang 1

labels negative, positive

data {
  dataset "reviews"
  train   "train"
  test    "{test}"
  text    sentence
}

model {
  hub "roberta-large"
}

template t "{{ sentence }} It was [MASK]."

verbalizer v {
  negative -> "bad"
  positive -> "good"
}

method zero_shot {}
"""
ROWS = "label,sentence\npositive,a fine film\nnegative,a dull mess\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "reviews").mkdir()
    for split in ("train", "test"):
        (tmp_path / "reviews" / f"{split}.csv").write_text(ROWS, encoding="utf-8")
    return tmp_path


def spec_in(folder: Path, test: str = "test"):
    path = folder / "spec.prompt"
    path.write_text(SPEC.replace("{test}", test), encoding="utf-8")
    analysis = analyze(path)
    assert analysis.ok, analysis.diagnostics
    return analysis.spec


def test_a_local_dataset_folder_is_read_through_datasets(folder):
    pytest.importorskip("datasets")
    read = read_splits(spec_in(folder), folder)
    assert [(e.label, e.fields["sentence"]) for e in read["test"]] == [("positive", "a fine film"),
                                                                       ("negative", "a dull mess")]
    assert len(read["train"]) == 2 and read["dev"] == []


def test_a_split_the_dataset_lacks_is_located_at_dataset(folder):
    pytest.importorskip("datasets")
    with pytest.raises(DataError) as raised:
        read_splits(spec_in(folder, test="validation"), folder)
    assert str(raised.value) == ("cannot load split `validation` of the dataset `reviews`: "
                                 "Unknown split \"validation\". Should be one of ['train', 'test'].")
    assert raised.value.path == ("data", "dataset")


def test_an_unreachable_hub_dataset_is_located_at_dataset(folder):
    pytest.importorskip("datasets")
    spec = spec_in(folder)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dataset": "no-such-org/no-such-data"})})
    with pytest.raises(DataError) as raised:
        read_splits(spec, folder)
    assert str(raised.value).startswith("cannot load split `train` of the dataset `no-such-org/no-such-data`: ")
    assert "\n" not in str(raised.value)


@pytest.fixture
def without_datasets(monkeypatch):
    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "datasets" or name.startswith("datasets."):
            raise ImportError("No module named 'datasets'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)


def test_without_datasets_the_error_names_the_extra(folder, without_datasets):
    with pytest.raises(DataError) as raised:
        read_splits(spec_in(folder), folder)
    assert (str(raised.value), raised.value.path, raised.value.hint) == (
        "reading a Hugging Face `dataset` needs the `datasets` package", ("data", "dataset"),
        "install it with `pip install 'promptlang[hub]'`")


def test_plan_without_datasets_points_at_the_dataset_line(folder, without_datasets, monkeypatch, capsys):
    pytest.importorskip("transformers")
    spec_in(folder)
    monkeypatch.chdir(folder)
    assert main(["plan", "spec.prompt"]) == 1
    assert capsys.readouterr().out == (
        "error: reading a Hugging Face `dataset` needs the `datasets` package\n  --> spec.prompt:6:11\n  |\n"
        '6 |   dataset "reviews"\n  |           ^^^^^^^^^\n'
        "  = help: install it with `pip install 'promptlang[hub]'`\n")


def test_check_does_not_import_datasets(folder):
    spec_in(folder)
    code = ("import sys; from promptlang.cli import main; main(['check', 'spec.prompt']); "
            "print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=folder)
    assert out.stdout.strip().splitlines()[-1] == "False"
