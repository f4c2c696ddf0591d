"""The spec model: a validated, position-free description of one experiment.

Every setting carries its help text (shown by `promptlang schema` and in error hints);
choices are `str` enums. `Spec.model_json_schema()` is the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

# The choices and the methods' settings live in their own modules; they are re-exported here, so that
# `spec.Pet`, `spec.Metric` and the rest keep naming the whole spec model in one place.
from promptlang.language.choices import (  # noqa: F401
    MAX_BATCH, MAX_EXAMPLES, MAX_SEED, Aggregate, BadRows, DataFormat, Decoding, Metric, ModelFamily,
    ModelSelection, MultiTokenLoss, Optimizer, Precision, Ranking, Reduction, Schedule, Seed, Selection, Shorten, SpecModel,
    Transform)
from promptlang.language.method_settings import (  # noqa: F401
    METHOD_KINDS, Distill, Finetune, IPet, InContext, IpetSettings, LabelWordSearch, Loss, Method, Pet,
    PromptFinetune, PromptMethod, Search, TemplateSearch, Training, ZeroShot)

# ---------------------------------------------------------------- data and model


class Data(SpecModel):
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
    train_size: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                      description="train on this many training examples, drawn with each data seed "
                                                  "(a spec without labels; with labels, `shots` draws per label)")
    dev_size: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                    description="select models on this many dev examples, drawn with each data seed "
                                                "from the dev file (or, without one, from the rest of train)")
    seeds: list[Seed] = Field([13], min_length=1, description="sampling seeds; one few-shot split per seed")
    bad_rows: BadRows = Field(BadRows.error, description="a data line that does not parse: `error`, or "
                                                         "`skip` it (counted in metrics.json)")


class Model(SpecModel):
    """The pretrained model: exactly one of `hub`, `path`, `gguf`, `package`."""

    hub: Optional[str] = Field(None, description="a Hugging Face model id, e.g. roberta-large")
    path: Optional[str] = Field(None, description="a local model directory, relative to the spec")
    gguf: Optional[str] = Field(None, description="a local GGUF file, relative to the spec")
    package: Optional[str] = Field(None, description="a Python package that ships the model")
    family: ModelFamily = Field(ModelFamily.auto, description="masked, causal, seq2seq, or auto (from the config)")
    tokenizer: Optional[str] = Field(None, description="a tokenizer to use instead of the model's own")
    precision: Precision = Field(Precision.fp32, description="fp32, or mixed precision bf16 / fp16 for forward "
                                 "passes (`--precision` overrides it)")

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


class TextSegment(SpecModel):
    kind: Literal["text"] = "text"
    text: str


class FieldSegment(SpecModel):
    kind: Literal["field"] = "field"
    name: str
    transforms: list[Transform] = []
    shorten: Optional[Shorten] = None


class MaskSegment(SpecModel):
    kind: Literal["mask"] = "mask"
    count: Optional[int] = Field(None, ge=1, le=64, description="mask tokens in the slot; None: as the words need")


class DemosSegment(SpecModel):
    kind: Literal["demos"] = "demos"


class SoftSegment(SpecModel):
    kind: Literal["soft"] = "soft"
    count: int = Field(1, ge=1, le=1024)


class SepSegment(SpecModel):
    kind: Literal["sep"] = "sep"


Segment = Annotated[
    Union[TextSegment, FieldSegment, MaskSegment, DemosSegment, SoftSegment, SepSegment],
    Field(discriminator="kind"),
]


class Template(SpecModel):
    """A pattern: how an example becomes model input."""

    text: list[Segment] = Field(description="the template: text, {{ fields }}, [MASK], [DEMOS], [SOFT], [SEP]")
    prefix: Optional[str] = Field(None, description="a T5-style task prefix, never shortened")
    target: Optional[list[Segment]] = Field(None, description="the output text: for a seq2seq model the decoder's, "
                                            "for a causal one what continues the input; [MASK] stands for the label "
                                            "word, {{ fields }} make it a text to generate")
    verbalizer: Optional[str] = Field(None, description="the verbalizer this template uses")

    @property
    def masks(self) -> list[MaskSegment]:
        return [s for s in self.text if isinstance(s, MaskSegment)]

    @property
    def fields(self) -> list[FieldSegment]:
        return [s for s in [*self.text, *(self.target or [])] if isinstance(s, FieldSegment)]

    def has(self, kind: str) -> bool:
        return any(s.kind == kind for s in self.text)

    @property
    def generates(self) -> bool:
        """Whether the target is text to generate: made of data fields, with no [MASK] for a label word."""
        return bool(self.target) and not any(s.kind == "mask" for s in self.target)


class Verbalizer(SpecModel):
    """Label → one or more words; several words' scores are aggregated."""

    words: dict[str, list[str]] = Field(description="label → words")
    aggregate: Optional[Aggregate] = Field(
        None, description="how several words' scores combine: logit_mean (their mean log-score), mean (of their "
                          "probabilities) or max; default: logit_mean for pet and ipet (PET's), mean otherwise")


class Demonstrations(SpecModel):
    """LM-BFF demonstrations: labelled examples placed in the input."""

    per_label: int = Field(1, ge=1, le=64, description="demonstrations per label")
    select: Selection = Field(Selection.random, description="random, or most similar by a sentence encoder")
    encoder: Optional[str] = Field(None, description="sentence encoder for `select similar`")
    top: Optional[float] = Field(None, gt=0, le=1, description="`select similar`: the share of each label's "
                                 "candidates, most similar first, kept to sample from (default 0.5, LM-BFF's)")
    template: Optional[str] = Field(None, description="template for one demonstration (default: the pattern)")
    sets: int = Field(1, ge=1, le=1024, description="demonstration sets sampled and averaged at inference")


# ---------------------------------------------------------------- tasks


Bound = Annotated[float, Field(ge=-1e12, le=1e12)]


class Regression(SpecModel):
    """A score to predict (LM-BFF's regression): the two labels are its poles, low first."""

    kind: Literal["regression"] = "regression"
    score: str = Field("score", description="the column holding the score (a number)")
    range: list[Bound] = Field(min_length=2, max_length=2, description="the score's lower and upper bound: "
                                                                        "`range 0, 5`")

    @property
    def lower(self) -> float:
        return self.range[0]

    @property
    def upper(self) -> float:
        return self.range[1]


TASK_KINDS = ("regression",)
TaskKind = Literal["classification", "regression", "generation"]


class Generate(SpecModel):
    """How a model writes its output text (T5's text-to-text way): the decoding of evaluation and `predict`."""

    max_new_tokens: int = Field(64, ge=1, le=4096, description="the most tokens written per example")
    beams: int = Field(1, ge=1, le=64, description="beam search's width; 1 is greedy decoding")
    length_penalty: float = Field(1.0, ge=-10, le=10, description="beam search: a beam's log-probability is "
                                  "divided by its length to this power (T5: 0.6 for translation and summaries)")
    stop: list[str] = Field(default_factory=list, description="strings that end a written text (it is cut "
                            "before the first), e.g. `stop \"\\n\"` for a causal model")
    score_step: float = Field(0.2, gt=0, le=1e6, description="a regression's score is written rounded to a multiple "
                              "of this (T5's STS-B: 0.2, round half to even)")


class Evaluation(SpecModel):
    metrics: Optional[list[Metric]] = Field(
        None, min_length=1, description="metrics on test; default: accuracy and macro-F1, pearson and spearman "
                                        "for regression, or exact match for text generation")
    output: Optional[str] = Field(None, description="directory for results, relative to the spec")
    references: Optional[str] = Field(None, description="text generation: the column holding the gold texts that "
                                      "what is written is measured against, several joined by ` ||| ` (SQuAD's "
                                      "answers); default: the target")


# ---------------------------------------------------------------- the spec


class Spec(SpecModel):
    """One experiment."""

    version: int = Field(1, description="language version")
    labels: list[str] = Field(default_factory=list, description="label names, in order")
    task: Optional[Regression] = Field(None, description="the task, when it is not classification: "
                                                         "`task regression { score COLUMN  range LOW, HIGH }`")
    data: Data
    model: Model
    templates: dict[str, Template] = Field(default_factory=dict)
    verbalizers: dict[str, Verbalizer] = Field(default_factory=dict)
    demonstrations: Optional[Demonstrations] = None
    generate: Optional[Generate] = Field(None, description="decoding settings: the model writes its output text "
                                         "(a label's word, a score, or a text to generate)")
    method: Method = Field(description="the training method, named by the block: `method pet { ... }`")
    evaluate: Evaluation = Field(default_factory=Evaluation, description="what is measured on test, and where "
                                 "the results go")

    @property
    def patterns(self) -> list[str]:
        """The templates the method uses: its `patterns`, else all but the demonstration template."""
        if not isinstance(self.method, PromptMethod):  # standard fine-tuning: a head, no pattern
            return []
        if self.method.patterns:
            return [name for name in self.method.patterns if name in self.templates]
        demo = self.demonstrations.template if self.demonstrations else None
        return [name for name in self.templates if name != demo]

    @property
    def task_kind(self) -> TaskKind:
        """`regression` with a `task regression` block; `generation` when there are no labels and a
        template's target holds data fields, not [MASK] (a text-to-text task); else `classification`."""
        if self.task is not None:
            return self.task.kind
        if not self.labels and any(t.generates for t in self.templates.values()):
            return "generation"
        return "classification"

    @property
    def writes_text(self) -> bool:
        """Whether the model writes its output (T5's way): text generation, or a `generate` block."""
        return self.task_kind == "generation" or self.generate is not None


class Library(SpecModel):
    """A file of shared definitions, meant to be imported: templates and verbalizers only."""

    version: int = 1
    templates: dict[str, Template] = Field(default_factory=dict)
    verbalizers: dict[str, Verbalizer] = Field(default_factory=dict)


class MixtureSettings(SpecModel):
    """T5's multi-task training: one model fine-tuned on several specs' tasks at once, each evaluated on its own."""

    tasks: list[str] = Field(min_length=2, description="the member specs (files, relative to this one), each a "
                                                       "task whose model writes text")
    limit: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES, description="K: a task counts as at most this many "
                                 "examples in the mixing rates (T5's artificial limit)")
    temperature: float = Field(1.0, gt=0, le=1000, description="T: rates ∝ min(examples, K) ** (1 / T); 1 is "
                               "examples-proportional mixing, larger values mix more evenly")
    seeds: list[Seed] = Field([13], min_length=1, description="data seeds: each member's sample is drawn with each, "
                              "and one model is trained per seed")


class Mixture(SpecModel):
    """A multi-task mixture: the member specs' data, templates, decoding and metrics; one method trains."""

    version: int = 1
    mixture: MixtureSettings
    method: Method
    evaluate: Evaluation = Field(default_factory=Evaluation)
