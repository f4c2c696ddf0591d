"""The compiled plan: plain data (pydantic) that says exactly what a run will do.

A `Plan` holds each pattern compiled against the tokenizer (pieces with token ids, mask
slots, label words as token-id sequences) and a graph of stages with the work each
implies. It can be printed, dumped to JSON and compared in tests; nothing here runs a model.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from promptlang.language.spec import Spec


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built when first used: `check` needs none


class Piece(_Plain):
    """One compiled template segment."""

    kind: Literal["text", "field", "mask", "demos", "soft", "sep"]
    ids: list[int] = Field(default_factory=list, description="text: its token ids, as it appears in place")
    text: str = Field("", description="text: the text; field: empty")
    name: Optional[str] = Field(None, description="field: the column")
    transforms: list[str] = Field(default_factory=list)
    shorten: Optional[Literal["head", "tail"]] = None
    count: int = Field(0, description="mask: mask tokens in the slot; soft: prompt tokens")


class LabelWords(_Plain):
    """A label's words and their token ids, tokenized as they appear at the mask."""

    label: str
    words: list[str]
    ids: list[list[int]]


class Pattern(_Plain):
    """A template compiled for one tokenizer and model family."""

    name: str
    pieces: list[Piece]
    target: Optional[list[Piece]] = None
    labels: list[LabelWords] = Field(default_factory=list)
    mask_count: int = Field(0, description="K: mask tokens in the slot (0: no mask)")
    aggregate: Literal["logit_mean", "mean", "max"] = "mean"


class Tokenizer(_Plain):
    """What the runtime needs to know of the tokenizer."""

    name: str
    vocab_size: int
    prefix: list[int] = Field(description="special tokens before every input (e.g. [CLS], <bos>)")
    suffix: list[int] = Field(description="special tokens after every input (e.g. [SEP], </s>)")
    mask_id: Optional[int] = None
    pad_id: int = 0
    sep_id: Optional[int] = None
    unk_id: Optional[int] = None


class Work(_Plain):
    """What a stage costs."""

    models_trained: int = 0
    optimizer_steps: int = 0
    forward_passes: int = 0
    unlabeled_passes: int = Field(0, description="of the forward passes, those that score unlabeled data")
    examples_read: int = 0

    def __add__(self, other: "Work") -> "Work":
        return Work(**{k: getattr(self, k) + getattr(other, k) for k in Work.model_fields})


class Stage(_Plain):
    """One node of the stage graph; `promptlang run` executes exactly the plan's stages, in order.

    `demonstrations`: the demonstration sets of one data sample (a spec whose patterns have a [DEMOS]
    slot). `train`: one model (a pattern, or standard fine-tuning's head) for one seed on one data
    sample. `calibrate`: the content-free prediction. `evaluate`: test scored with what the stages it
    needs produced. PET and iPET add `label` (iPET: the examples an ensemble of other models labels
    for one model of the next generation), `ensemble` (the models of one generation combined) and
    `distill` (the final classifier trained on the ensemble's soft labels); a PET `train` stage also
    scores test and unlabeled data (`scores`). LM-BFF's searches add `search` (the candidate label-word
    mappings or templates of one data sample) and `rank` (round 0 scores every candidate zero-shot on
    dev; each later round fine-tunes one candidate, the slot-th best so far, and scores it on dev); the
    final stages of a searched spec name the search and the slot of the candidate they train.
    """

    id: str
    kind: Literal["demonstrations", "train", "evaluate", "calibrate", "label", "ensemble", "distill", "search",
                  "rank"]
    method: str
    pattern: Optional[str] = None
    data_seed: int
    seed: Optional[int] = None
    generation: Optional[int] = Field(None, description="iPET generation")
    search: Optional[Literal["words", "templates"]] = Field(
        None, description="an LM-BFF search's stage, or a final stage whose pattern that search found")
    round: Optional[int] = Field(None, description="rank: 0 for the zero-shot ranking, then each fine-tuning round")
    slot: Optional[int] = Field(None, description="the candidate: the slot-th best of the ranking so far")
    steps: Optional[int] = Field(None, description="rank: the optimizer steps a candidate is fine-tuned for")
    train_size: Optional[int] = Field(None, description="examples the stage trains on (labelled, or soft-labelled)")
    needs: list[str] = Field(default_factory=list)
    scores: list[Literal["test", "unlabeled"]] = Field(
        default_factory=list, description="the splits whose label logits the stage writes")
    saves_weights: bool = Field(False, description="whether the stage keeps the weights it trained (to predict with)")
    writes_text: bool = Field(False, description="evaluate: the model writes its output text (text generation), "
                                                 "kept as `test.generated.tsv` instead of label logits")
    work: Work = Field(default_factory=Work)


class RunsOn(_Plain):
    """Where a run runs and the batch sizes that follow from it.

    An optimizer step takes `effective_batch` examples (batch size × accumulation) at any process
    count: each of the processes computes `per_device_batch` of every batch and the gradients are
    summed, so the steps, the learning-rate schedule and the results mean the same on one device or
    many. Evaluation deals whole batches of `eval_batch_size` examples to the processes.
    """

    device: str = Field("cpu", description="cpu, cuda:N, mps (a launcher's processes take one GPU each)")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    processes: int = Field(1, description="processes started by torchrun / accelerate launch")
    per_device_batch: Optional[int] = Field(None, description="examples per process and batch (training)")
    effective_batch: Optional[int] = Field(None, description="examples per optimizer step, over every process")
    eval_batch_size: int = Field(32, description="examples per evaluation batch, on each process")


class Plan(_Plain):
    """Everything a run does, decided before any model is loaded."""

    spec: Spec
    family: Literal["masked", "causal", "seq2seq"]
    tokenizer: Tokenizer
    patterns: dict[str, Pattern]
    splits: dict[int, dict[str, int]] = Field(description="data seed → examples per split")
    stages: list[Stage]
    runs_on: RunsOn = Field(default_factory=RunsOn)
    search_costs: dict[str, dict[str, Work]] = Field(
        default_factory=dict, description="each LM-BFF search's work with its ranking and with the other one")

    def total(self) -> Work:
        total = Work()
        for stage in self.stages:
            total = total + stage.work
        return total
