"""Checks of what a model writes (T5's text-to-text way): text generation, the `generate` block, the
metrics of written text, and the random samples (`train_size`, `dev_size`) such specs draw."""

from __future__ import annotations

from promptlang.language import spec as m
from promptlang.language.check_context import Context
from promptlang.methods import REGISTRY, method_of

TEXT_METRICS = (m.Metric.bleu, m.Metric.rouge, m.Metric.exact_match, m.Metric.f1)
LABEL_METRICS = (m.Metric.accuracy, m.Metric.macro_f1, m.Metric.mcc)


def generation_settings(ctx: Context) -> None:
    """A model and a method that can write text, the metrics of what is written, and the samples drawn."""
    _samples(ctx)
    if not ctx.generation and ctx.spec.evaluate.references:
        ctx.error("`references` are the gold texts of text generation; this spec does not generate text",
                  ctx.key("evaluate", "references"), "remove it")
    if not ctx.spec.writes_text:
        _text_metrics_need_text(ctx)
        return
    if ctx.spec.model.family is m.ModelFamily.masked:
        ctx.error("a masked language model fills in masks; it cannot write text", ctx.at("model", "family"),
                  "write text with a seq2seq model (T5) or a causal one, or score label words at a [MASK] "
                  "(remove the `generate` block)" if ctx.spec.generate is not None else
                  "write text with a seq2seq model (T5) or a causal one")
    if not method_of(ctx.method.kind).writes:
        able = [f"`{kind}`" for kind, method in REGISTRY.items() if method.writes]
        ctx.error(f"`{ctx.method.kind}` cannot train a model to write text", ctx.key("method"),
                  f"use {' or '.join(able)}")
        return
    if ctx.generation:
        for i, metric in enumerate(ctx.spec.evaluate.metrics or []):
            if metric not in TEXT_METRICS:
                ctx.error(f"`{metric.value}` needs labels; this spec generates text", ctx.at("evaluate", "metrics", i),
                          "use `bleu`, `rouge`, `exact_match` or `f1`")
    else:
        _text_metrics_need_text(ctx)
    _references(ctx)
    if not ctx.generation:
        _words_written_at_the_end(ctx)
    if ctx.generation and ctx.spec.demonstrations is not None:
        ctx.error("demonstrations show an example with its label's word; this spec generates text",
                  ctx.key("demonstrations"), "remove the `demonstrations` block")
    elif ctx.spec.demonstrations is not None:
        ctx.error("demonstrations are not put before a text the model writes", ctx.key("demonstrations"),
                  "remove the `demonstrations` block, or the `generate` block to score the label words")
    if getattr(ctx.method, "calibrate", False):
        ctx.error("calibration divides label probabilities, and a model that writes text has none",
                  ctx.at("method", "calibrate"), "remove `calibrate true`")


def _words_written_at_the_end(ctx: Context) -> None:
    """With `generate`, the label's word (or the score) is what the model writes: the target's [MASK], or for
    a causal model without a `target` a [MASK] that ends the template's text."""
    family = ctx.spec.model.family
    for name in ctx.patterns:
        template = ctx.spec.templates[name]
        if template.target:
            if not any(s.kind == "mask" for s in template.target):
                ctx.error(f"template `{name}`'s target has no [MASK] for the label's word to be written at",
                          ctx.at("templates", name, "target"), 'write `target "[MASK]"`')
            continue
        if family is m.ModelFamily.seq2seq:
            ctx.error(f"template `{name}` has no `target`: with `generate`, a seq2seq model writes the label's "
                      "word as its target", ctx.key("templates", name), 'add `target "[MASK]"`')
            continue
        text = template.text
        at = next((i for i, s in enumerate(text) if s.kind == "mask"), None)
        if at is not None and any(s.kind != "text" or s.text.strip() for s in text[at + 1:]):
            ctx.error(f"template `{name}` goes on after its [MASK], but the model writes the label's word last",
                      ctx.at("templates", name, "text", at + 1),
                      "end the template with [MASK], or move what follows it into a `target`")


def _references(ctx: Context) -> None:
    """`references` names a column of the data."""
    references, columns = ctx.spec.evaluate.references, ctx.columns
    if references and columns is not None and references not in columns:
        ctx.error(f"the data has no column `{references}`", ctx.at("evaluate", "references"),
                  ctx.suggest(references, columns) or f"the columns are: {', '.join(columns)}")


def _text_metrics_need_text(ctx: Context) -> None:
    """BLEU, ROUGE and SQuAD's F1 measure generated text, which a spec with labels or a score does not write."""
    for i, metric in enumerate(ctx.spec.evaluate.metrics or []):
        if metric in (m.Metric.bleu, m.Metric.rouge, m.Metric.f1):
            kind = "regression" if ctx.spec.task is not None else "classification"
            ctx.error(f"`{metric.value}` measures generated text; this spec is a {kind}",
                      ctx.at("evaluate", "metrics", i),
                      "a regression is measured by `pearson` and `spearman`" if ctx.spec.task is not None
                      else "a classification is measured by `accuracy`, `macro_f1` and `mcc`")


def _samples(ctx: Context) -> None:
    """`train_size` / `dev_size` draw at random, `shots` / `dev_shots` per label: one of each pair, and
    draws per label need labels."""
    data = ctx.spec.data
    for random_name, per_label in (("train_size", "shots"), ("dev_size", "dev_shots")):
        if getattr(data, random_name) and getattr(data, per_label):
            ctx.error(f"`{random_name}` draws examples at random and `{per_label}` draws them per label; set one",
                      ctx.key("data", random_name), f"remove `{random_name}` or `{per_label}`")
    if ctx.generation:
        for name in ("shots", "dev_shots"):
            if getattr(data, name):
                ctx.error(f"`{name}` draws examples per label, and this spec has no labels",
                          ctx.key("data", name), f"draw them at random: `{'train' if name == 'shots' else 'dev'}"
                                                 f"_size {getattr(data, name)}`")
    if data.dev_size and not data.dev and not (data.train_size or data.shots):
        ctx.error("`dev_size` without a `dev` file draws from the training examples left over, and every one is "
                  "trained on", ctx.key("data", "dev_size"),
                  "set `train_size` (or `shots`) to leave some over, or add a `dev` file")
