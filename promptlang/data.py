"""Data: read a spec's splits (TSV, CSV, JSON lines, a Hugging Face dataset) and sample few-shot sets."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from promptlang import spec as m
from promptlang.checks import data_format

SPLITS = ("train", "dev", "test", "unlabeled")


@dataclass(frozen=True)
class Example:
    """One example: its text fields, its label name (None when unlabeled), and where it came from."""

    fields: dict[str, str]
    label: str | None = None
    source: str = ""


@dataclass
class Splits:
    """The examples of one few-shot sample (one data seed)."""

    seed: int
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    unlabeled: list[Example] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


class DataError(Exception):
    """A data file that cannot be read as the spec describes; carries the spec path of the setting."""

    def __init__(self, message: str, path: tuple = ("data",)):
        super().__init__(message)
        self.path = path


def read_rows(path: Path, fmt: str) -> list[dict[str, str]]:
    """All rows of a data file as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            return [{k: "" if v is None else str(v) for k, v in json.loads(line).items()}
                    for line in handle if line.strip()]
        return list(csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ","))


def _hub_rows(data: m.Data, split_name: str) -> list[dict[str, str]]:
    from datasets import load_dataset  # only for specs that name a hub dataset

    dataset = load_dataset(data.dataset, data.dataset_config, split=split_name)
    return [{k: str(v) for k, v in row.items()} for row in dataset]


def _label_map(spec: m.Spec) -> dict[str, str]:
    """Raw label value → label name (`label_values`, else the names themselves)."""
    mapping = {label: label for label in spec.labels}
    for label, values in spec.data.label_values.items():
        for value in values:
            mapping[value] = label
    return mapping


def read_split(spec: m.Spec, split: str, directory: Path) -> list[Example]:
    """The examples of one split as the spec describes it (empty when the split is not given).

    Raises:
        DataError: a missing column or an unknown label value.
    """
    data = spec.data
    where = getattr(data, split)
    if not where:
        return []
    rows = _hub_rows(data, where) if data.dataset else read_rows(directory / where, data_format(data, where))
    labels = _label_map(spec)
    examples = []
    for number, row in enumerate(rows, 2):
        missing = [c for c in data.text if c not in row]
        if missing:
            raise DataError(f"`{where}` has no column `{missing[0]}` (row {number})", ("data", "text"))
        raw = row.get(data.label)
        label = None
        if split != "unlabeled" and spec.labels and raw not in (None, ""):
            if raw not in labels:
                raise DataError(f"`{where}` row {number}: label value `{raw}` is not a label; "
                                f"map it with `label_values`", ("data", "label"))
            label = labels[raw]
        examples.append(Example({c: row[c] or "" for c in row if c is not None}, label, f"{where}:{number}"))
    return examples


def per_label(examples: list[Example], labels: list[str], k: int, rng: random.Random,
              exclude: set[int] = frozenset()) -> tuple[list[Example], set[int]]:
    """K examples per label (or fewer where a label has fewer), in a seeded random order."""
    order = [i for i in range(len(examples)) if i not in exclude]
    rng.shuffle(order)
    taken: dict[str, int] = {label: 0 for label in labels}
    chosen: list[int] = []
    for i in order:
        label = examples[i].label
        if label in taken and taken[label] < k:
            taken[label] += 1
            chosen.append(i)
    return [examples[i] for i in chosen], set(chosen)


def read_splits(spec: m.Spec, directory: Path) -> dict[str, list[Example]]:
    """Every split the spec names, read once (sampling for each data seed then reuses them)."""
    return {split: read_split(spec, split, directory) for split in SPLITS}


def sample_splits(spec: m.Spec, read: dict[str, list[Example]], seed: int) -> Splits:
    """Draw the few-shot sample for one data seed from the splits as read, as LM-BFF does.

    Train: `shots` per label from the training file; dev: `dev_shots` per label from what
    is left (or the dev file); unlabeled: the first `unlabeled_size` after a seeded shuffle;
    test: all, or a `test_size` sample that is the same for every seed.
    """
    data = spec.data
    rng = random.Random(seed)
    train_all = read["train"]
    splits = Splits(seed, test=read["test"])
    if data.test_size and data.test_size < len(splits.test):
        splits.test = random.Random(0).sample(splits.test, data.test_size)
    used: set[int] = set()
    if data.shots:
        splits.train, used = per_label(train_all, spec.labels, data.shots, rng)
    else:
        splits.train = train_all
    if data.dev_shots:
        splits.dev, _ = per_label(train_all, spec.labels, data.dev_shots, rng, exclude=used)
    else:
        splits.dev = read["dev"]
    unlabeled = list(read["unlabeled"])  # a copy: the shuffle must not reorder what other seeds read
    if unlabeled:
        rng.shuffle(unlabeled)
        splits.unlabeled = unlabeled[: data.unlabeled_size] if data.unlabeled_size else unlabeled
    return splits


def load_splits(spec: m.Spec, directory: Path, seed: int) -> Splits:
    """Read every split and draw the few-shot sample for one data seed."""
    return sample_splits(spec, read_splits(spec, directory), seed)
