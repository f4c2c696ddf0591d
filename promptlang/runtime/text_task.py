"""Text generation as a task (T5's text-to-text way): the target text of an example, its token ids
for teacher forcing, and the metrics of what a model wrote — BLEU, ROUGE, SQuAD's exact match and F1
(`text_metrics`, from the field's libraries)."""

from __future__ import annotations

from dataclasses import dataclass

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime import text_metrics
from promptlang.runtime.data import Example
from promptlang.runtime.metrics import label_metrics
from promptlang.runtime.regression import regression_metrics
from promptlang.runtime.pipeline import transform

DEFAULT_METRICS = (m.Metric.exact_match,)


def target_text(target: list, example: Example, word: str = "") -> str:
    """An example's target: the template's `target` (spec segments or compiled pieces) with its fields
    filled, and `word` at its [MASK] (the label's word, or the score as text)."""
    parts = []
    for piece in target:
        if piece.kind == "text":
            parts.append(piece.text)
        elif piece.kind == "mask":
            parts.append(word)
        elif piece.kind == "field":
            names = [t.value if hasattr(t, "value") else t for t in piece.transforms]
            parts.append(transform(example.fields.get(piece.name, ""), names))
    return "".join(parts)


def target_ids(pattern: p.Pattern, examples: list[Example], tokenizer, family: str, end: int,
               limit: int, words: list[str] | None = None) -> list[list[int]]:
    """Each example's target as token ids for teacher forcing, ending with the end token `end`.

    A causal model reads the target as the input's continuation: it is tokenized with a space before it
    when the input's text does not end in one (as a label word is tokenized in place). A target longer
    than `limit` tokens (`generate { max_new_tokens }`, the end included) is cut: the model is not taught
    to write more than it may. `words` go at the target's [MASK] (a causal template without a `target`
    ends with its [MASK]: the word is the target)."""
    target = written_part(pattern)
    texts = [target_text(target, e, w) for e, w in zip(examples, words or [""] * len(examples))]
    if family != "seq2seq" and not _ends_in_space(pattern):
        texts = [t if t[:1].isspace() else " " + t for t in texts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [ids[: max(0, limit - 1)] + [end] for ids in encoded]


def written_part(pattern: p.Pattern) -> list[p.Piece]:
    """What the model writes: the template's `target`, else (a causal template that ends with it) the [MASK]."""
    return list(pattern.target) if pattern.target else [p.Piece(kind="mask")]


def prompt_pieces(pattern: p.Pattern) -> list[p.Piece]:
    """What the model reads before it writes: the input's pieces up to the [MASK] (all of them with a `target`)."""
    at = next((i for i, piece in enumerate(pattern.pieces) if piece.kind == "mask"), None)
    return list(pattern.pieces) if pattern.target or at is None else list(pattern.pieces[:at])


def _ends_in_space(pattern: p.Pattern) -> bool:
    pieces = prompt_pieces(pattern)
    last = pieces[-1] if pieces else None
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
    writes: bool = True
    columns: tuple[str, ...] = ("gold", "predicted")  # of the predictions file

    def words(self, pattern: p.Pattern, examples: list[Example]) -> list[str] | None:
        """What goes at the target's [MASK] (nothing: the target is made of fields)."""
        return None

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
        return {"bleu": text_metrics.bleu_signature()} if m.Metric.bleu in self.measured else {}


def _metric(metric: m.Metric, written: list[str], gold: list[str]) -> dict[str, float]:
    if metric is m.Metric.bleu:
        return {"bleu": text_metrics.bleu(written, gold)["bleu"] / 100}
    if metric is m.Metric.rouge:
        return {k: v / 100 for k, v in text_metrics.rouge(written, gold).items()}
    answers = [text_metrics.split_answers(g) or [""] for g in gold]
    scores = text_metrics.squad(written, answers)
    return {metric.value: scores["exact_match" if metric is m.Metric.exact_match else "f1"] / 100}


def _label_of(words: list[list[str]], text: str) -> int:
    """The label whose word a written text is (its first, in label order), or -1: no label."""
    text = text.strip()
    return next((i for i, label_words in enumerate(words) if text in label_words), -1)


@dataclass(frozen=True)
class TextLabels:
    """T5's classification: the model writes the label's word (the verbalizer's first, as its target); a
    written text that is none of a label's words is no label and counts as wrong."""

    labels: list[str]
    words_of: tuple[tuple[str, ...], ...]  # each label's words (in every verbalizer the patterns use)
    kind: str = "classification"
    writes: bool = True
    columns: tuple[str, ...] = ("gold", "predicted", "written")

    def words(self, pattern: p.Pattern, examples: list[Example]) -> list[str]:
        return [pattern.labels[self.labels.index(e.label)].words[0] if e.label in self.labels else ""
                for e in examples]

    def predicted_indices(self, written: list[str]) -> list[int]:
        return [_label_of([list(w) for w in self.words_of], text) for text in written]

    def metrics(self, names: list[m.Metric] | None, examples: list[Example], written: list[str]) -> dict:
        if not examples:
            return {}
        gold = [self.labels.index(e.label) if e.label in self.labels else -1 for e in examples]
        return label_metrics(list(names or (m.Metric.accuracy, m.Metric.macro_f1)), gold,
                             self.predicted_indices(written), len(self.labels))

    def selection(self, written: list[str], examples: list[Example]) -> float:
        return self.metrics([m.Metric.accuracy], examples, written).get("accuracy", 0.0)

    def predicted(self, written: list[str]) -> list[str]:
        """The label each text names ("" for none)."""
        return [self.labels[i] if i >= 0 else "" for i in self.predicted_indices(written)]

    def shown(self, examples: list[Example], written: list[str]) -> list[tuple[str, str, str]]:
        """(gold label, predicted label or "", the text written) of each example."""
        return [(e.label or "", label, text) for e, label, text in zip(examples, self.predicted(written), written)]


@dataclass(frozen=True)
class TextScores:
    """T5's regression (STS-B): the model writes the score rounded to a multiple of `step` (0.2) as text;
    a written text is read back as a number, -1 when it is none (T5's `string_to_float`)."""

    labels: list[str]
    step: float = 0.2
    kind: str = "regression"
    writes: bool = True
    columns: tuple[str, ...] = ("gold", "predicted", "written")

    def words(self, pattern: p.Pattern, examples: list[Example]) -> list[str]:
        return [text_metrics.score_text(e.score, self.step) if e.score is not None else "" for e in examples]

    def metrics(self, names: list[m.Metric] | None, examples: list[Example], written: list[str]) -> dict:
        if not examples:
            return {}
        wanted = [x.value for x in names] if names else ["pearson", "spearman"]
        return regression_metrics(wanted, [e.score for e in examples], self.scores(written))

    def selection(self, written: list[str], examples: list[Example]) -> float:
        return self.metrics([m.Metric.pearson], examples, written).get("pearson", 0.0)

    def scores(self, written: list[str]) -> list[float]:
        return [text_metrics.parse_score(text) for text in written]

    def predicted(self, written: list[str]) -> list[str]:
        return [f"{score:g}" for score in self.scores(written)]

    def shown(self, examples: list[Example], written: list[str]) -> list[tuple[str, str, str]]:
        """(gold score, the score read back, the text written) of each example."""
        return [("" if e.score is None else f"{e.score:g}", score, text)
                for e, score, text in zip(examples, self.predicted(written), written)]
