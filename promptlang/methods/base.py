"""What a method declares: its settings, its defaults, its checks and how it compiles to stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from promptlang.compiler import plan as p
from promptlang.language import spec as m

if TYPE_CHECKING:
    from promptlang.language.check_context import Context


@dataclass(frozen=True)
class Graph:
    """What compiling a method to stages sees: the checked spec, its compiled patterns, the model
    family, the examples per split of each data seed and the training examples per label."""

    spec: m.Spec
    patterns: dict[str, p.Pattern]
    family: str
    splits: dict[int, dict[str, int]]
    label_counts: dict[int, list[int]]


@dataclass(frozen=True)
class Method:
    """One method of the language (`method KIND { ... }`).

    Attributes:
        kind: the name a spec writes after `method`.
        settings: the settings block's schema (in `language.spec`, with the rest of the language).
        trains: whether it trains (needs training data, has `seeds`, `epochs` / `steps`).
        uses_patterns: whether it scores templates (standard fine-tuning scores with a head).
        aggregate: how a label's several words combine unless the verbalizer says.
        multi_token_loss: the label loss for multi-token words unless `loss` says.
        tasks: the tasks it can learn (`Spec.task_kind`; generation is checked on its own).
        writes: whether its models may write their output text (T5's way: text generation, or a
            `generate` block).
        learns_without_labels: whether it may train from unlabeled data alone (zero-shot PET); its own
            checks then say what it needs.
        compile: the stage graph of a spec.
        checks: the method's own checks, run after the common ones.
    """

    kind: str
    settings: type
    trains: bool
    compile: Callable[[Graph], list[p.Stage]]
    uses_patterns: bool = True
    aggregate: str = "mean"
    multi_token_loss: m.MultiTokenLoss = m.MultiTokenLoss.ce
    learns_without_labels: bool = False
    tasks: tuple[str, ...] = ("classification", "regression")
    writes: bool = False
    checks: tuple[Callable[["Context"], None], ...] = ()
