"""Data: read a spec's splits (TSV, CSV, JSON lines, a Hugging Face dataset) and sample few-shot sets."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.datafiles import DataFileError, Table, data_format, label_values_hint, read_table
from promptlang.language.scores import SCORE_HINT, read_score

SPLITS = ("train", "dev", "test", "unlabeled")
LABELLED = ("train", "dev", "test")


@dataclass(frozen=True)
class Example:
    """One example: its text fields, its label name (None when unlabeled), where it came from, and its score
    (regression: the number; its `label` is then its pole)."""

    fields: dict[str, str]
    label: str | None = None
    source: str = ""
    score: float | None = None


@dataclass
class Splits:
    """The examples of one few-shot sample (one data seed), and the lines skipped per data file."""

    seed: int
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    unlabeled: list[Example] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


@dataclass
class Read:
    """Every split as read (before sampling), and how many lines of each file `bad_rows skip` skipped."""

    examples: dict[str, list[Example]]
    skipped: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, split: str) -> list[Example]:
        return self.examples[split]


class DataError(Exception):
    """A data file that cannot be read as the spec describes; carries the spec path of the setting."""

    def __init__(self, message: str, path: tuple = ("data",), hint: str | None = None):
        super().__init__(message)
        self.path = path
        self.hint = hint


HUB_HINT = "install it with `pip install 'promptlang[hub]'`"


def _hub_rows(data: m.Data, split_name: str, directory: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of one split of a Hugging Face dataset (a hub name, or a dataset folder beside the spec).

    Raises:
        DataError: `datasets` is not installed, or the dataset or split cannot be loaded (located at `dataset`).
    """
    try:
        from datasets import load_dataset  # only for specs that name a hub dataset (the `hub` extra)
    except ImportError:
        raise DataError("reading a Hugging Face `dataset` needs the `datasets` package", ("data", "dataset"),
                        HUB_HINT) from None
    local = directory / data.dataset
    name = str(local) if local.is_dir() else data.dataset
    try:
        dataset = load_dataset(name, data.dataset_config, split=split_name)
    except Exception as error:  # datasets raises many kinds (offline, no such dataset or split): all mean "cannot load"
        raise DataError(f"cannot load split `{split_name}` of the dataset `{data.dataset}`: {_first_line(error)}",
                        ("data", "dataset"), "check the name and the split; a hub dataset needs the network "
                                             "or a filled cache, a local one is a folder beside the spec") from None
    return [(i, {k: str(v) for k, v in row.items()}) for i, row in enumerate(dataset, 1)]


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def label_map(spec: m.Spec) -> dict[str, str]:
    """Raw label value → label name (`label_values`, else the names themselves)."""
    mapping = {label: label for label in spec.labels}
    for label, values in spec.data.label_values.items():
        for value in values:
            mapping[value] = label
    return mapping


def read_file(spec: m.Spec, split: str, directory: Path) -> Table:
    """The table of one split's file, its columns checked against the spec.

    Raises:
        DataError: the file cannot be read, a line does not parse (with `bad_rows error`), or a
            column the spec names is missing.
    """
    data = spec.data
    where = getattr(data, split)
    try:
        table = read_table(directory / where, data_format(data, where) or "tsv", where,
                           skip_bad=data.bad_rows is m.BadRows.skip)
    except DataFileError as error:
        raise DataError(str(error), ("data", split), error.hint) from None
    for i, column in enumerate(data.text):
        if column not in table.columns:
            raise DataError(f"`{where}` has no column `{column}`", ("data", "text", i),
                            f"its columns are: {', '.join(table.columns)}")
    if split in LABELLED and spec.task is not None and spec.task.score not in table.columns:
        raise DataError(f"`{where}` has no score column `{spec.task.score}`", ("task", "score"),
                        f"its columns are: {', '.join(table.columns)}")
    if split in LABELLED and spec.labels and spec.task is None and data.label not in table.columns:
        raise DataError(f"`{where}` has no label column `{data.label}`", ("data", "label"),
                        f"its columns are: {', '.join(table.columns)}")
    return table


def read_split(spec: m.Spec, split: str, directory: Path, skipped: dict[str, int] | None = None) -> list[Example]:
    """The examples of one split as the spec describes it (empty when the split is not given).

    A regression's examples carry their `score` but no label yet: `read_splits` gives them their poles,
    which depend on the training file's median.

    Args:
        skipped: where to count the lines `bad_rows skip` skipped, by file.

    Raises:
        DataError: the file cannot be read, a missing column, no examples, an unknown label value, or a
            score that is not a finite number within the range.
    """
    data = spec.data
    where = getattr(data, split)
    if not where:
        return []
    if data.dataset:
        rows = _hub_rows(data, where, directory)
    else:
        table = read_file(spec, split, directory)
        rows = table.dicts()
        if table.skipped and skipped is not None:
            skipped[where] = len(table.skipped)
    if not rows and split in ("dev", "test"):  # (an empty train split is the method's to refuse)
        raise DataError(f"`{where}` has no examples", ("data", split),
                        None if data.dataset else "a data file holds a header and then one example per line")
    labels = label_map(spec) if split != "unlabeled" and spec.labels and spec.task is None else None
    return [_example(spec, split, labels, number, row) for number, row in rows]


def _example(spec: m.Spec, split: str, labels: dict[str, str] | None, number: int, row: dict[str, str]) -> Example:
    """One row (from line `number`) as an example; `labels` maps raw label values (None: unlabelled)."""
    data = spec.data
    where = getattr(data, split)
    for i, column in enumerate(data.text):
        if row.get(column) is None:
            raise DataError(f"`{where}` line {number} has no `{column}`", ("data", "text", i))
    label = None
    if labels is not None:
        raw = row.get(data.label)
        if raw in (None, ""):
            raise DataError(f"`{where}` line {number} has no label", ("data", split),
                            "every example of a labelled split needs one; unlabelled examples go in `unlabeled`")
        if raw not in labels:
            raise DataError(f"`{where}` line {number}: label value `{raw}` is not a label", ("data", split),
                            label_values_hint(spec, [raw]))
        label = labels[raw]
    score = _score(spec, split, number, row) if spec.task is not None and split in LABELLED else None
    return Example({c: v for c, v in row.items() if v is not None}, label, f"{where}:{number}", score)


def _score(spec: m.Spec, split: str, number: int, row: dict[str, str]) -> float:
    """The score of one row of a labelled split of a regression spec."""
    try:
        return read_score(row.get(spec.task.score) or "", spec.task)
    except ValueError as error:
        raise DataError(f"`{getattr(spec.data, split)}` line {number}: {error}", ("data", split), SCORE_HINT) from None


def pole_threshold(spec: m.Spec, train: list[Example]) -> float:
    """Where a regression's examples split into the two poles: the median of the training file's scores
    (the whole file, before sampling), or the middle of the range when there is no training file."""
    scores = [example.score for example in train if example.score is not None]
    return statistics.median(scores) if scores else (spec.task.lower + spec.task.upper) / 2


def with_poles(spec: m.Spec, examples: list[Example], threshold: float) -> list[Example]:
    """Each scored example labelled with its pole: `high` from the threshold up (LM-BFF's `<` for `low`), else `low`."""
    low, high = spec.labels
    return [replace(e, label=high if e.score >= threshold else low) if e.score is not None else e for e in examples]


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


def drawn(examples: list[Example], size: int | None, rng: random.Random,
          exclude: set[int] = frozenset()) -> tuple[list[Example], set[int]]:
    """`size` examples drawn at random (`train_size`, `dev_size`), in the order drawn; all of them (but
    `exclude`) in file order when `size` is None or not below what there is."""
    order = [i for i in range(len(examples)) if i not in exclude]
    if size is not None and size < len(order):
        order = rng.sample(order, size)
    return [examples[i] for i in order], set(order) if size is not None else set()


def read_splits(spec: m.Spec, directory: Path) -> Read:
    """Every split the spec names, read once (sampling for each data seed then reuses them).

    Raises:
        DataError: the first problem in the data, at the spec line of the setting it concerns.
    """
    skipped: dict[str, int] = {}
    examples = {split: read_split(spec, split, directory, skipped) for split in SPLITS}
    if spec.task is not None:  # regression: the poles are the labels, split at the training scores' median
        threshold = pole_threshold(spec, examples["train"])
        examples.update({split: with_poles(spec, examples[split], threshold) for split in LABELLED})
    return Read(examples, skipped)


def sample_splits(spec: m.Spec, read: Read, seed: int) -> Splits:
    """Draw the few-shot sample for one data seed from the splits as read, as LM-BFF does.

    Train: `shots` per label from the training file (or `train_size` drawn at random, or all of it);
    dev: `dev_shots` per label from what is left (or the dev file, `dev_size` of it drawn at random;
    without a dev file, `dev_size` drawn from what is left of train); unlabeled: the first `unlabeled_size` after a seeded shuffle;
    test: all, or a `test_size` sample that is the same for every seed.
    """
    data = spec.data
    rng = random.Random(seed)
    train_all = read["train"]
    splits = Splits(seed, test=read["test"], skipped=dict(getattr(read, "skipped", {})))
    if data.test_size and data.test_size < len(splits.test):
        splits.test = random.Random(0).sample(splits.test, data.test_size)
    used: set[int] = set()
    if data.shots:
        splits.train, used = per_label(train_all, spec.labels, data.shots, rng)
    else:
        splits.train, used = drawn(train_all, data.train_size, rng)
    if data.dev_shots:
        splits.dev, _ = per_label(train_all, spec.labels, data.dev_shots, rng, exclude=used)
    elif data.dev_size and not read["dev"]:  # (from the rest of train)
        splits.dev, _ = drawn(train_all, data.dev_size, rng, exclude=used)
    else:
        splits.dev, _ = drawn(read["dev"], data.dev_size, rng)
    unlabeled = list(read["unlabeled"])  # a copy: the shuffle must not reorder what other seeds read
    if unlabeled:
        rng.shuffle(unlabeled)
        splits.unlabeled = unlabeled[: data.unlabeled_size] if data.unlabeled_size else unlabeled
    return splits


def load_splits(spec: m.Spec, directory: Path, seed: int) -> Splits:
    """Read every split and draw the few-shot sample for one data seed."""
    return sample_splits(spec, read_splits(spec, directory), seed)
