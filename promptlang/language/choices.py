"""The spec's building blocks: the base model, the bounds on numbers, and the `str` enums of its choices."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class SpecModel(BaseModel):
    """The base of every spec setting: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False)


# Upper bounds: a value past them is a typo, and would crash or silently ruin a run.
MAX_SEED = 2**32 - 1  # numpy and torch take seeds in 0 .. 2³²−1
MAX_EXAMPLES = 100_000_000
MAX_BATCH = 65_536
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


# ---------------------------------------------------------------- choices


class DataFormat(str, Enum):
    tsv = "tsv"
    csv = "csv"
    jsonl = "jsonl"


class BadRows(str, Enum):
    """What to do with a data line that does not parse as a row."""

    error = "error"
    skip = "skip"


class ModelFamily(str, Enum):
    auto = "auto"
    masked = "masked"
    causal = "causal"
    seq2seq = "seq2seq"


class Transform(str, Enum):
    """Field transforms from PET and LM-BFF templates."""

    lower_first = "lower_first"
    upper_first = "upper_first"
    lower = "lower"
    no_final_punct = "no_final_punct"
    add_space = "add_space"
    strip_space = "strip_space"


class Shorten(str, Enum):
    """Which end of a too-long field loses tokens."""

    head = "head"
    tail = "tail"


class Aggregate(str, Enum):
    """How a label's several words' scores combine: `logit_mean` averages their log-scores (PET),
    `mean` is the log of the mean of their probabilities, `max` the best word's."""

    logit_mean = "logit_mean"
    mean = "mean"
    max = "max"


class Selection(str, Enum):
    random = "random"
    similar = "similar"


class Optimizer(str, Enum):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Schedule(str, Enum):
    linear = "linear"
    constant = "constant"
    cosine = "cosine"


class Reduction(str, Enum):
    mean = "mean"
    weighted = "weighted"


class ModelSelection(str, Enum):
    """Which state a trained model keeps: the one after the `last` step, or the best on `dev` data."""

    last = "last"
    dev = "dev"


class MultiTokenLoss(str, Enum):
    """The label loss when some label word has several tokens: cross-entropy, or PET's hinge loss."""

    ce = "ce"
    hinge = "hinge"


class Ranking(str, Enum):
    """How an LM-BFF search ranks its candidates: successive `halving` under a budget, or LM-BFF's `full`
    fine-tuning of every candidate."""

    halving = "halving"
    full = "full"


class Decoding(str, Enum):
    greedy = "greedy"
    parallel = "parallel"


class Precision(str, Enum):
    """The precision of forward passes: fp32, or mixed bf16 / fp16 (autocast; fp16 with a gradient scaler)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Metric(str, Enum):
    accuracy = "accuracy"
    macro_f1 = "macro_f1"
    mcc = "mcc"
    pearson = "pearson"
    spearman = "spearman"
    bleu = "bleu"
    rouge = "rouge"
    exact_match = "exact_match"
    f1 = "f1"
