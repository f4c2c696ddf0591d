"""The spec model: a validated, position-free description of one experiment.

Every setting carries its help text (shown by `promptlang schema` and in error hints);
choices are `str` enums. `Spec.model_json_schema()` is the JSON Schema.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator


class _Model(BaseModel):
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


class Decoding(str, Enum):
    greedy = "greedy"
    parallel = "parallel"


class Metric(str, Enum):
    accuracy = "accuracy"
    macro_f1 = "macro_f1"
    mcc = "mcc"
    pearson = "pearson"
    spearman = "spearman"
    bleu = "bleu"
    rouge = "rouge"
    exact_match = "exact_match"


# ---------------------------------------------------------------- data and model


class Data(_Model):
    """Where the examples are and how to read them."""

    dataset: Optional[str] = Field(None, description="a Hugging Face dataset name; train/dev/test are then split names")
    dataset_config: Optional[str] = Field(None, description="the dataset's configuration, e.g. sst2 for glue")
    format: Optional[DataFormat] = Field(None, description="file format; by default taken from the file extension")
    train: Optional[str] = Field(None, description="labelled training examples (a file, relative to the spec)")
    dev: Optional[str] = Field(None, description="development examples for model selection")
    test: Optional[str] = Field(None, description="test examples, never sampled from")
    unlabeled: Optional[str] = Field(None, description="unlabelled examples (PET, iPET, distillation)")
    text: list[str] = Field(min_length=1, description="the column(s) holding the input text")
    label: str = Field("label", description="the column holding the label")
    label_values: dict[str, list[str]] = Field(
        default_factory=dict, description="raw values of the label column for each label name")
    shots: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES, description="K: training examples sampled per label")
    dev_shots: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                     description="dev examples sampled per label from the rest of train")
    unlabeled_size: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES, description="how many unlabelled examples to use")
    test_size: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                     description="evaluate on this many test examples (a seeded sample)")
    seeds: list[Seed] = Field([13], min_length=1, description="sampling seeds; one few-shot split per seed")
    bad_rows: BadRows = Field(BadRows.error, description="a data line that does not parse: `error`, or "
                                                         "`skip` it (counted in metrics.json)")


class Model(_Model):
    """The pretrained model: exactly one of `hub`, `path`, `gguf`, `package`."""

    hub: Optional[str] = Field(None, description="a Hugging Face model id, e.g. roberta-large")
    path: Optional[str] = Field(None, description="a local model directory, relative to the spec")
    gguf: Optional[str] = Field(None, description="a local GGUF file, relative to the spec")
    package: Optional[str] = Field(None, description="a Python package that ships the model")
    family: ModelFamily = Field(ModelFamily.auto, description="masked, causal, seq2seq, or auto (from the config)")
    tokenizer: Optional[str] = Field(None, description="a tokenizer to use instead of the model's own")

    @model_validator(mode="after")
    def _one_source(self) -> "Model":
        given = [name for name in ("hub", "path", "gguf", "package") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("model_source")
        return self

    @property
    def source(self) -> tuple[str, str]:
        """(kind, value) of the one source given."""
        kind = next(name for name in ("hub", "path", "gguf", "package") if getattr(self, name))
        return kind, getattr(self, kind)


# ---------------------------------------------------------------- templates and verbalizers


class TextSegment(_Model):
    kind: Literal["text"] = "text"
    text: str


class FieldSegment(_Model):
    kind: Literal["field"] = "field"
    name: str
    transforms: list[Transform] = []
    shorten: Optional[Shorten] = None


class MaskSegment(_Model):
    kind: Literal["mask"] = "mask"
    count: Optional[int] = Field(None, ge=1, le=64, description="mask tokens in the slot; None: as the words need")


class DemosSegment(_Model):
    kind: Literal["demos"] = "demos"


class SoftSegment(_Model):
    kind: Literal["soft"] = "soft"
    count: int = Field(1, ge=1, le=1024)


class SepSegment(_Model):
    kind: Literal["sep"] = "sep"


Segment = Annotated[
    Union[TextSegment, FieldSegment, MaskSegment, DemosSegment, SoftSegment, SepSegment],
    Field(discriminator="kind"),
]


class Template(_Model):
    """A pattern: how an example becomes model input."""

    text: list[Segment] = Field(description="the template: text, {{ fields }}, [MASK], [DEMOS], [SOFT], [SEP]")
    prefix: Optional[str] = Field(None, description="a T5-style task prefix, never shortened")
    target: Optional[list[Segment]] = Field(None, description="seq2seq output; [MASK] stands for the label word")
    verbalizer: Optional[str] = Field(None, description="the verbalizer this template uses")

    @property
    def masks(self) -> list[MaskSegment]:
        return [s for s in self.text if isinstance(s, MaskSegment)]

    @property
    def fields(self) -> list[FieldSegment]:
        return [s for s in [*self.text, *(self.target or [])] if isinstance(s, FieldSegment)]

    def has(self, kind: str) -> bool:
        return any(s.kind == kind for s in self.text)


class Verbalizer(_Model):
    """Label → one or more words; several words' scores are aggregated."""

    words: dict[str, list[str]] = Field(description="label → words")
    aggregate: Optional[Aggregate] = Field(
        None, description="how several words' scores combine: logit_mean (their mean log-score), mean (of their "
                          "probabilities) or max; default: logit_mean for pet and ipet (PET's), mean otherwise")


class Demonstrations(_Model):
    """LM-BFF demonstrations: labelled examples placed in the input."""

    per_label: int = Field(1, ge=1, le=64, description="demonstrations per label")
    select: Selection = Field(Selection.random, description="random, or most similar by a sentence encoder")
    encoder: Optional[str] = Field(None, description="sentence encoder for `select similar`")
    top: float = Field(1.0, gt=0, le=1, description="keep this top fraction per label before sampling")
    template: Optional[str] = Field(None, description="template for one demonstration (default: the pattern)")
    sets: int = Field(1, ge=1, le=1024, description="demonstration sets sampled and averaged at inference")


# ---------------------------------------------------------------- methods


class Loss(_Model):
    ce: float = Field(1.0, ge=0, le=1000, description="weight of the cross-entropy over label scores")
    mlm: float = Field(0.0, ge=0, le=1000, description="weight of PET's auxiliary masked-LM loss")
    multi_token: Optional[MultiTokenLoss] = Field(
        None, description="the label loss when a label word has several tokens: ce, or hinge over the words' "
                          "sequence scores; default: hinge for pet and ipet (PET's), ce otherwise")


class Training(_Model):
    """Settings shared by every method that trains."""

    optimizer: Optimizer = Field(Optimizer.adamw, description="the optimizer")
    learning_rate: float = Field(1e-5, gt=0, le=1, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, le=10, description="decoupled weight decay")
    schedule: Schedule = Field(Schedule.linear, description="learning-rate schedule after warm-up")
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of steps spent warming up")
    epochs: Optional[int] = Field(None, ge=1, le=10_000, description="passes over the training set")
    steps: Optional[int] = Field(None, ge=1, le=100_000_000, description="optimizer steps (instead of epochs)")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="examples per optimizer step, before accumulation")
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH, description="batches accumulated per optimizer step")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, le=1e6, description="gradient clipping norm")
    max_length: int = Field(256, ge=8, le=32768, description="tokens per input")
    eval_batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="examples per evaluation batch")
    seeds: list[Seed] = Field([42], min_length=1, description="training seeds (PET repetitions)")
    select_model: ModelSelection = Field(ModelSelection.dev, description="the state kept: the best on dev data "
                                         "(when there is dev data), or the last")


class Distill(Training):
    """The final classifier trained on the ensemble's soft labels."""

    temperature: float = Field(2.0, gt=0, le=100, description="softmax temperature for the soft labels (KL · T²)")
    select_model: ModelSelection = Field(ModelSelection.last, description="the state kept: the last (PET's fixed "
                                         "number of steps), or the best on dev data")
    model: Optional[str] = Field(None, description="another model for the classifier (default: the spec's)")


class IpetSettings(_Model):
    generations: int = Field(3, ge=1, le=20, description="iPET generations")
    scale_factor: float = Field(5.0, gt=1, le=100, description="training set growth per generation")
    logits_percentage: float = Field(0.25, gt=0, le=1, description="share of other models whose ensemble labels")
    n_most_likely: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                         description="keep only the most confident examples per label")


class LabelWordSearch(_Model):
    """LM-BFF automatic label-word search."""

    top_k: int = Field(100, ge=1, le=100_000, description="candidate words per label from the zero-shot model")
    candidates: int = Field(100, ge=1, le=100_000, description="label-word mappings kept after pruning")
    keep: int = Field(1, ge=1, le=1000, description="best mappings by dev accuracy to train with")


class TemplateSearch(_Model):
    """LM-BFF automatic template generation with T5."""

    generator: str = Field("t5-3b", description="the T5 model that fills spans around the label words")
    beam: int = Field(100, ge=1, le=1000, description="beam width")
    candidates: int = Field(20, ge=1, le=10_000, description="generated templates kept for dev evaluation")
    keep: int = Field(1, ge=1, le=1000, description="best templates by dev accuracy to train with")


class _Method(_Model):
    patterns: list[str] = Field(default_factory=list, description="templates to use (default: all)")


class ZeroShot(_Method):
    kind: Literal["zero_shot"] = "zero_shot"
    calibrate: StrictBool = Field(False, description="divide out the content-free prediction (Calibrate before use)")
    eval_batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    max_length: int = Field(256, ge=8, le=32768)
    decoding: Decoding = Field(Decoding.greedy, description="multi-token mask filling")


class InContext(ZeroShot):
    kind: Literal["in_context"] = "in_context"


class Finetune(Training):
    kind: Literal["finetune"] = "finetune"


class PromptFinetune(_Method, Training):
    kind: Literal["prompt_finetune"] = "prompt_finetune"
    loss: Loss = Field(default_factory=Loss)
    decoding: Decoding = Decoding.greedy
    label_word_search: Optional[LabelWordSearch] = None
    template_search: Optional[TemplateSearch] = None


class Pet(_Method, Training):
    kind: Literal["pet"] = "pet"
    loss: Loss = Field(default_factory=Loss)
    decoding: Decoding = Decoding.greedy
    select_model: ModelSelection = Field(ModelSelection.last, description="the state kept: the last (PET's fixed "
                                         "number of steps), or the best on dev data")
    ensemble: Reduction = Field(Reduction.weighted, description="mean, or weighted by accuracy before training")
    distill: Optional[Distill] = Field(None, description="distil a classifier from the ensemble's soft labels")


class IPet(Pet):
    kind: Literal["ipet"] = "ipet"
    ipet: IpetSettings = Field(default_factory=IpetSettings)


Method = Annotated[
    Union[ZeroShot, InContext, Finetune, PromptFinetune, Pet, IPet],
    Field(discriminator="kind"),
]
METHOD_KINDS = ("zero_shot", "in_context", "finetune", "prompt_finetune", "pet", "ipet")
PROMPT_METHODS = ("zero_shot", "in_context", "prompt_finetune", "pet", "ipet")


class Evaluation(_Model):
    metrics: Optional[list[Metric]] = Field(
        None, min_length=1, description="metrics on test; default: accuracy and macro-F1, or exact match for text generation")
    output: Optional[str] = Field(None, description="directory for results, relative to the spec")


# ---------------------------------------------------------------- the spec


class Spec(_Model):
    """One experiment."""

    version: int = Field(1, description="language version")
    labels: list[str] = Field(default_factory=list, description="label names, in order")
    data: Data
    model: Model
    templates: dict[str, Template] = Field(default_factory=dict)
    verbalizers: dict[str, Verbalizer] = Field(default_factory=dict)
    demonstrations: Optional[Demonstrations] = None
    method: Method
    evaluate: Evaluation = Field(default_factory=Evaluation)

    @property
    def patterns(self) -> list[str]:
        """The templates the method uses: its `patterns`, else all but the demonstration template."""
        if self.method.kind == "finetune":
            return []
        if self.method.patterns:
            return [name for name in self.method.patterns if name in self.templates]
        demo = self.demonstrations.template if self.demonstrations else None
        return [name for name in self.templates if name != demo]


class Library(_Model):
    """A file of shared definitions, meant to be imported: templates and verbalizers only."""

    version: int = 1
    templates: dict[str, Template] = Field(default_factory=dict)
    verbalizers: dict[str, Verbalizer] = Field(default_factory=dict)
