"""T5's metrics over generated texts, computed by sacrebleu, rouge-score and SciPy with T5's settings."""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Sequence

import numpy as np

from promptlang.runtime.regression import regression_metrics

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
ANSWER_SEPARATOR = "|||"

# A sentence end: `.`, `!` or `?`, any closing quotes or brackets, then the whitespace before the next word.
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"'”’»)\]]*)\s+(?=(\S))")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU of the predictions against one reference each, as T5 computes it with sacrebleu.

    T5's settings: the `intl` tokenizer, exponential smoothing, case kept, `force=False` (sacrebleu
    warns on text that looks tokenized already) and no effective order.

    Args:
        predictions: the generated texts, one per example.
        references: the reference texts, one per example.

    Returns:
        {"bleu": the score (0–100), "bleu_signature": sacrebleu's signature string, e.g.
        `nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.6.0`}.

    Raises:
        ValueError: no predictions, or not one reference per prediction.
    """
    _check_pairs(predictions, references, "references")
    metric = _t5_bleu()
    result = metric.corpus_score(list(predictions), [list(references)])
    return {"bleu": float(result.score), "bleu_signature": str(metric.get_signature())}


def bleu_signature() -> str:
    """sacrebleu's signature of T5's BLEU settings (what `bleu` reports as `bleu_signature`); sacrebleu gives
    one only once a corpus is scored, and the settings alone decide it, so a one-line corpus is scored."""
    metric = _t5_bleu()
    metric.corpus_score(["a"], [["a"]])
    return str(metric.get_signature())


def _t5_bleu():
    from sacrebleu.metrics import BLEU  # (imported only when BLEU is measured)

    return BLEU(tokenize="intl", smooth_method="exp", lowercase=False, force=False, effective_order=False)


def rouge(predictions: Sequence[str], references: Sequence[str], *, seed: int = 0,
          use_stemmer: bool = False) -> dict:
    """ROUGE-1, ROUGE-2 and ROUGE-Lsum F-measures × 100, with rouge-score aggregated as T5 does.

    Each pair is scored by `RougeScorer` (T5 passes no stemmer option: rouge-score's default, no
    stemming); the corpus figure is the `mid` F-measure of a `BootstrapAggregator` (the median of 1,000
    bootstrap means). rouge-score draws those samples from NumPy's global generator: it is seeded with
    `seed` for the aggregation and restored afterwards, so a result is reproducible and the caller's
    random state is untouched. Before scoring, both texts go through `split_sentences` (ROUGE-Lsum
    reads one sentence per line).

    Args:
        predictions: the generated texts, one per example.
        references: the reference texts, one per example.
        seed: the bootstrap's seed.
        use_stemmer: whether rouge-score stems words with Porter's stemmer (T5: no).

    Returns:
        {"rouge1": …, "rouge2": …, "rougeLsum": …}, each 0–100.

    Raises:
        ValueError: no predictions, or not one reference per prediction.
    """
    from rouge_score import rouge_scorer, scoring  # (imported only when ROUGE is measured)

    _check_pairs(predictions, references, "references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    aggregator = scoring.BootstrapAggregator()
    for prediction, reference in zip(predictions, references):
        aggregator.add_scores(scorer.score(target=split_sentences(reference),
                                           prediction=split_sentences(prediction)))
    result = _aggregate_seeded(aggregator, seed)
    return {name: 100 * float(result[name].mid.fmeasure) for name in ROUGE_TYPES}


def _aggregate_seeded(aggregator, seed: int) -> dict:
    """The aggregator's result with NumPy's global generator seeded for it, then put back as it was."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return aggregator.aggregate()
    finally:
        np.random.set_state(state)


def split_sentences(text: str) -> str:
    """The text with each sentence on its own line, for ROUGE-Lsum.

    T5 puts a line break after each ` . ` (its summaries were tokenized); the texts here are not, so a
    sentence ends at `.`, `!` or `?`, with any closing quotes or brackets, followed by whitespace and a
    word that does not start with a lower-case letter (so `U.S. officials` and `e.g. this` stay whole;
    `Mr. Smith` is split). That whitespace becomes one line break; existing line breaks are kept.

    Args:
        text: a prediction or a reference.

    Returns:
        The same words, one sentence per line.
    """
    def end(match: re.Match) -> str:
        return match.group(0) if match.group(2).islower() else match.group(1) + "\n"

    return _SENTENCE_END.sub(end, text)


def squad(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    """SQuAD v1.1's exact match and token F1 × 100: each prediction's best over its gold answers, averaged.

    Texts are compared after the official normalization (`normalize_answer`).

    Args:
        predictions: the generated answers, one per example.
        answers: each example's gold answers (at least one each).

    Returns:
        {"exact_match": …, "f1": …}, each 0–100.

    Raises:
        ValueError: no predictions, not one answer list per prediction, or an example without answers.
    """
    _check_pairs(predictions, answers, "answer lists")
    exact, overlap = [], []
    for index, (prediction, golds) in enumerate(zip(predictions, answers)):
        if not golds:
            raise ValueError(f"example {index} has no gold answer")
        guess = normalize_answer(prediction)
        truths = [normalize_answer(gold) for gold in golds]
        exact.append(max(float(guess == truth) for truth in truths))
        overlap.append(max(token_f1(guess, truth) for truth in truths))
    return {"exact_match": 100 * float(np.mean(exact)), "f1": 100 * float(np.mean(overlap))}


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalization: lower case, punctuation removed, articles a/an/the removed, spaces fixed."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD's F1 of the shared words of two normalized answers (a multiset overlap), 0–1."""
    predicted, gold = prediction.split(), truth.split()
    shared = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def split_answers(text: str) -> list[str]:
    """The gold answers of one example, stored as one text joined by ` ||| `.

    The text is split at each `|||` (spaces around it optional); each answer is stripped and the empty
    ones are dropped. Duplicates are kept, in order.

    Args:
        text: e.g. `February 7, 2016 ||| February 7`.

    Returns:
        The answers, e.g. `["February 7, 2016", "February 7"]`.
    """
    return [answer.strip() for answer in text.split(ANSWER_SEPARATOR) if answer.strip()]


def score_text(score: float, step: float = 0.2) -> str:
    """T5's STS-B target: the score rounded to the nearest multiple of `step`, written with one decimal.

    As T5's `round(score * 5) / 5`: the score is multiplied by `1 / step` (5.0 for 0.2; multiplying
    keeps 0.3 → 1.5 → "0.4" where dividing by 0.2 gives 1.4999…) and rounded half to even, so 2.5 →
    12.5 → 12 → "2.4" and 2.7 → 13.5 → 14 → "2.8". Scores outside STS-B's 0–5 are not clipped (T5 does
    not clip): -0.3 → "-0.4", 5.3 → 26.5 → "5.2"; a score that rounds to zero is "0.0", never "-0.0".

    Args:
        score: the score.
        step: the grid's spacing (above 0; a multiple of 0.1, as the text has one decimal).

    Returns:
        The rounded score as text, e.g. "3.8".

    Raises:
        ValueError: the score is not finite, or the step is not above 0.
    """
    if not step > 0:
        raise ValueError(f"the rounding step must be above 0, got {step}")
    if not math.isfinite(score):
        raise ValueError(f"a score must be a finite number, got {score}")
    steps = round(score * (1 / step))  # half to even; an int, so no negative zero
    return f"{steps * step:.1f}"


def parse_score(text: str, default: float = -1.0) -> float:
    """T5's `string_to_float`: a generated text read as a number, `default` when it is not one.

    As Python's `float`: surrounding whitespace is allowed (" 4 " → 4.0). Unlike T5, "nan" and
    "inf" count as not a number (→ `default`), so a correlation never sees them.

    Args:
        text: the generated text.
        default: the score of a text that is no number (T5: -1).

    Returns:
        The number, or `default`.
    """
    try:
        value = float(text)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def text_accuracy(predictions: Sequence[str], gold: Sequence[str]) -> float:
    """The fraction (0–1) of predictions equal to their gold text after stripping whitespace.

    T5's NLI accuracy on label words: a generated text that is no label word counts as wrong.

    Args:
        predictions: the generated texts, one per example.
        gold: the gold label words, one per example.

    Returns:
        The accuracy, 0–1.

    Raises:
        ValueError: no predictions, or not one gold text per prediction.
    """
    _check_pairs(predictions, gold, "gold texts")
    return float(np.mean([p.strip() == g.strip() for p, g in zip(predictions, gold)]))


def correlations(predictions: Sequence[str], gold: Sequence[float | None]) -> dict:
    """Pearson's and Spearman's correlation (fractions, −1–1) of the parsed predictions with the gold scores.

    Each prediction is read with `parse_score` (a text that is no number scores -1, as in T5). The
    correlations are `regression_metrics`': examples without a gold score (None) are left out, and an
    undefined correlation (fewer than two examples, or constant predictions or gold scores) is 0.0,
    never NaN.

    Args:
        predictions: the generated texts, one per example.
        gold: the gold scores, one per example.

    Returns:
        {"pearson": …, "spearman": …}.

    Raises:
        ValueError: no predictions, or not one gold score per prediction.
    """
    _check_pairs(predictions, gold, "gold scores")
    return regression_metrics(("pearson", "spearman"), gold, [parse_score(text) for text in predictions])


def _check_pairs(predictions: Sequence, references: Sequence, what: str) -> None:
    """Raises ValueError unless there are predictions and exactly one reference each."""
    if not predictions:
        raise ValueError("no predictions to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} {what}")
