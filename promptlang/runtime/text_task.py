"""Text generation as a task (T5's text-to-text way): the target text of an example, its token ids
for teacher forcing, and the metrics of what a model wrote — BLEU, ROUGE, SQuAD's exact match and F1
(`text_metrics`, from the field's libraries)."""

from __future__ import annotations

from dataclasses import dataclass

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime import text_metrics
from promptlang.runtime.data import Example
from promptlang.runtime.pipeline import transform

DEFAULT_METRICS = (m.Metric.exact_match,)


def target_text(target: list, example: Example) -> str:
    """An example's target: the template's `target` (spec segments or compiled pieces) with its fields filled."""
    parts = []
    for piece in target:
        if piece.kind == "text":
            parts.append(piece.text)
        elif piece.kind == "field":
            names = [t.value if hasattr(t, "value") else t for t in piece.transforms]
            parts.append(transform(example.fields.get(piece.name, ""), names))
    return "".join(parts)


def target_ids(pattern: p.Pattern, examples: list[Example], tokenizer, family: str, end: int,
               limit: int) -> list[list[int]]:
    """Each example's target as token ids for teacher forcing, ending with the end token `end`.

    A causal model reads the target as the input's continuation: it is tokenized with a space before it
    when the input's text does not end in one (as a label word is tokenized in place). A target longer
    than `limit` tokens (`generate { max_new_tokens }`, the end included) is cut: the model is not taught
    to write more than it may."""
    texts = [target_text(pattern.target or [], e) for e in examples]
    if family != "seq2seq" and not _ends_in_space(pattern):
        texts = [t if t[:1].isspace() else " " + t for t in texts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [ids[: max(0, limit - 1)] + [end] for ids in encoded]


def _ends_in_space(pattern: p.Pattern) -> bool:
    last = pattern.pieces[-1] if pattern.pieces else None
    return last is not None and last.kind == "text" and last.text[-1:].isspace()


@dataclass(frozen=True)
class Generation:
    """A target text to write (no labels): its gold is the template's target filled in; what the model
    wrote is measured by the spec's metrics (default: exact match); the first of them selects the model."""

    target: list  # the generating template's `target` segments
    labels: list[str]
    measured: tuple[m.Metric, ...] = DEFAULT_METRICS  # the spec's metrics
    references: str | None = None  # the column of the gold texts (`evaluate { references }`), else the target
    kind: str = "generation"

    def gold(self, examples: list[Example]) -> list[str]:
        if self.references:
            return [e.fields.get(self.references, "") for e in examples]
        return [target_text(self.target, e) for e in examples]

    def metrics(self, names: list[m.Metric] | None, examples: list[Example], written: list[str]) -> dict:
        """Every metric of the texts written for some examples, each as a fraction (BLEU and ROUGE / 100)."""
        if not examples:
            return {}
        gold, out = self.gold(examples), {}
        for metric in names or self.measured:
            out.update(_metric(metric, written, gold))
        return out

    def selection(self, written: list[str], examples: list[Example]) -> float:
        """The dev score a model is selected on: the first metric (ROUGE's: ROUGE-1)."""
        return next(iter(self.metrics(list(self.measured[:1]), examples, written).values()), 0.0)

    def shown(self, examples: list[Example], written: list[str]) -> list[tuple[str, str]]:
        """(gold, written) of each example, as the predictions file writes them."""
        return list(zip(self.gold(examples), written))

    def signatures(self) -> dict[str, str]:
        """How each metric was computed, where its library says (sacrebleu's signature for BLEU)."""
        return {"bleu": text_metrics.bleu(["a"], ["a"])["bleu_signature"]} if m.Metric.bleu in self.measured else {}


def _metric(metric: m.Metric, written: list[str], gold: list[str]) -> dict[str, float]:
    if metric is m.Metric.bleu:
        return {"bleu": text_metrics.bleu(written, gold)["bleu"] / 100}
    if metric is m.Metric.rouge:
        return {k: v / 100 for k, v in text_metrics.rouge(written, gold).items()}
    answers = [text_metrics.split_answers(g) or [""] for g in gold]
    scores = text_metrics.squad(written, answers)
    return {metric.value: scores["exact_match" if metric is m.Metric.exact_match else "f1"] / 100}
