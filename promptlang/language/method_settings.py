"""The settings of each method (zero-shot to iPET), their discriminated union `Method`, and `METHOD_KINDS`."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union, get_args

from pydantic import Field, StrictBool

from promptlang.language.choices import (MAX_BATCH, MAX_EXAMPLES, Decoding, ModelSelection, MultiTokenLoss,
                                         Optimizer, Ranking, Reduction, Schedule, Seed, SpecModel)


class Loss(SpecModel):
    """The training loss: the weight of each of its terms (`loss ce 0.9, mlm 0.1`)."""

    ce: float = Field(1.0, ge=0, le=1000, description="weight of the cross-entropy over label scores")
    mlm: float = Field(0.0, ge=0, le=1000, description="weight of PET's auxiliary masked-LM loss")
    multi_token: Optional[MultiTokenLoss] = Field(
        None, description="the label loss when a label word has several tokens: ce, or hinge over the words' "
                          "sequence scores; default: hinge for pet and ipet (PET's), ce otherwise")


class Training(SpecModel):
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
    gradient_checkpointing: StrictBool = Field(False, description="recompute activations in the backward pass: "
                                               "less memory for about a third more compute")


class Distill(Training):
    """The final classifier trained on the ensemble's soft labels."""

    temperature: float = Field(2.0, gt=0, le=100, description="softmax temperature for the soft labels (KL · T²)")
    select_model: ModelSelection = Field(ModelSelection.last, description="the state kept: the last (PET's fixed "
                                         "number of steps), or the best on dev data")
    model: Optional[str] = Field(None, description="another model for the classifier (default: the spec's)")


class IpetSettings(SpecModel):
    """iPET: each generation's models label unlabelled examples that grow the next generation's training set."""

    generations: int = Field(3, ge=1, le=20, description="iPET generations")
    scale_factor: float = Field(5.0, gt=1, le=100, description="training set growth per generation")
    logits_percentage: float = Field(0.25, gt=0, le=1, description="share of other models whose ensemble labels")
    n_most_likely: Optional[int] = Field(None, ge=1, le=MAX_EXAMPLES,
                                         description="keep only the most confident examples per label")


class Search(SpecModel):
    """How an LM-BFF search ranks its candidates on dev data."""

    keep: int = Field(1, ge=1, le=1000, description="best candidates by dev score that the run then trains")
    rank: Ranking = Field(Ranking.halving, description="halving: every candidate scored zero-shot on dev, the "
                          "best `start` fine-tuned briefly and halved each round under `budget`; full: LM-BFF's "
                          "fine-tuning of every candidate with the method's steps")
    start: int = Field(8, ge=1, le=10_000, description="candidates that halving fine-tunes (the best zero-shot)")
    budget: float = Field(4.0, gt=0, le=10_000, description="halving's fine-tuning, in trainings of the "
                          "method's length (its steps shared out over the rounds)")
    ensemble: StrictBool = Field(False, description="also ensemble the `keep` best candidates' models, their "
                                 "label logits averaged (LM-BFF's ensemble of the top templates)")


class LabelWordSearch(Search):
    """LM-BFF automatic label-word search."""

    top_k: int = Field(100, ge=1, le=100_000, description="candidate words per label from the zero-shot model")
    candidates: int = Field(100, ge=1, le=100_000, description="label-word mappings kept after ranking on train")


class TemplateSearch(Search):
    """LM-BFF automatic template generation: T5 fills spans around the label words (a causal LM searches
    the text between the input and the word)."""

    generator: Optional[str] = Field(None, description="the model that generates templates, named as a model is "
                                     "(a local folder or a hub id); default: the spec's model when it is "
                                     "causal, else t5-3b")
    beam: int = Field(100, ge=1, le=1000, description="beam width")
    max_length: int = Field(20, ge=1, le=200, description="tokens generated per template")
    candidates: int = Field(20, ge=1, le=10_000, description="generated templates kept for dev evaluation")


class PromptMethod(SpecModel):
    patterns: list[str] = Field(default_factory=list, description="templates to use (default: all)")


class ZeroShot(PromptMethod):
    kind: Literal["zero_shot"] = "zero_shot"
    calibrate: StrictBool = Field(False, description="divide out the content-free prediction (Calibrate before use)")
    eval_batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="examples per evaluation batch")
    max_length: int = Field(256, ge=8, le=32768, description="tokens per input")
    decoding: Decoding = Field(Decoding.greedy, description="multi-token mask filling")


class InContext(ZeroShot):
    kind: Literal["in_context"] = "in_context"


class Finetune(Training):
    kind: Literal["finetune"] = "finetune"


class PromptFinetune(PromptMethod, Training):
    kind: Literal["prompt_finetune"] = "prompt_finetune"
    loss: Loss = Field(default_factory=Loss, description="the loss's terms and their weights: `loss ce 0.9, mlm 0.1`")
    decoding: Decoding = Field(Decoding.greedy, description="multi-token mask filling")
    label_word_search: Optional[LabelWordSearch] = Field(None, description="LM-BFF's automatic search for label "
                                                         "words, ranked on dev")
    template_search: Optional[TemplateSearch] = Field(None, description="LM-BFF's automatic search for templates, "
                                                      "ranked on dev")


class Pet(PromptMethod, Training):
    kind: Literal["pet"] = "pet"
    loss: Loss = Field(default_factory=Loss, description="the loss's terms and their weights: `loss ce 0.9, mlm 0.1`")
    decoding: Decoding = Field(Decoding.greedy, description="multi-token mask filling")
    select_model: ModelSelection = Field(ModelSelection.last, description="the state kept: the last (PET's fixed "
                                         "number of steps), or the best on dev data")
    ensemble: Reduction = Field(Reduction.weighted, description="mean, or weighted by accuracy before training")
    distill: Optional[Distill] = Field(None, description="distil a classifier from the ensemble's soft labels")


class IPet(Pet):
    kind: Literal["ipet"] = "ipet"
    ipet: IpetSettings = Field(default_factory=IpetSettings, description="iPET's generations and how each "
                               "one's training set grows")


Method = Annotated[
    Union[ZeroShot, InContext, Finetune, PromptFinetune, Pet, IPet],
    Field(discriminator="kind"),
]
METHOD_KINDS = tuple(model.model_fields["kind"].default for model in get_args(get_args(Method)[0]))
