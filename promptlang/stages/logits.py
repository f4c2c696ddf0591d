"""Logits files: a stage's label logits on one split, as TSV (and, for a model that writes text, what
it wrote for each example).

A header `index  source  gold  <label>...`, then one row per example in the split's order: its
position, where it came from (`file:row`), its gold label name (a regression's gold score; empty
when unknown), and one
logit per label (label log-scores: softmax over a row gives the model's label probabilities).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from promptlang.runtime.data import Example


CHUNK = 4096  # examples scored at a time: what scoring a split holds in memory does not grow with the split


def write_logits(path: Path, examples: list[Example], logits: np.ndarray, labels: list[str]) -> None:
    """A split's logits file from its (N, C) logits."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        _write_rows(_header(out, labels), examples, logits, 0)


def write_scored(path: Path, examples: list[Example], score: Callable[[list[Example]], np.ndarray],
                 labels: list[str], chunk: int = CHUNK) -> None:
    """A split's logits file, scoring `chunk` examples at a time with `score(examples) -> (n, C)` and
    writing their rows before the next chunk is encoded: a soft-labelled set of 100k examples costs the
    memory of one chunk's tokens and logits."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = _header(out, labels)
        for start in range(0, len(examples), chunk):
            part = examples[start : start + chunk]
            _write_rows(writer, part, score(part), start)


def _header(out, labels: list[str]):
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", "source", "gold", *labels])
    return writer


def _write_rows(writer, examples: list[Example], logits: np.ndarray, start: int) -> None:
    for i, (example, row) in enumerate(zip(examples, logits), start):
        writer.writerow([i, example.source, gold_text(example), *[f"{float(x):.9g}" for x in row]])


def gold_text(example: Example) -> str:
    """What the logits files write as an example's gold value: its score (a regression), else its label."""
    return f"{example.score:g}" if example.score is not None else example.label or ""


def write_texts(path: Path, examples: list[Example], texts: list[str]) -> None:
    """A split's generated-text file: `index  source  gold  text`, one row per example (CSV-quoted where a
    text holds a tab, a line break or a quote); `gold` as the logits files write it (empty for text
    generation, whose task fills the gold in from the template's target)."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "source", "gold", "text"])
        for i, (example, text) in enumerate(zip(examples, texts)):
            writer.writerow([i, example.source, gold_text(example), text])


def read_texts(path: Path) -> list[str]:
    """The texts of a generated-text file, in the split's order."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle, delimiter="\t")]


def read_logits(path: Path) -> np.ndarray:
    """The (N, C) logits of a logits file."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    width = len(rows[0]) - 3
    return np.array([[float(x) for x in row[3:]] for row in rows[1:]], dtype=np.float64).reshape(-1, width)
