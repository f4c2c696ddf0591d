"""Semantic checks: what a valid-looking spec can still get wrong.

Each check is a small function over the spec; all run, and all problems are reported. The checks
of the files a spec names are in `file_checks`; what they all see is `check_context.Context`.
"""

from __future__ import annotations

import re

from promptlang.language import spec as m
from promptlang.language.builder import Built
from promptlang.language.suggest import listing, suggest
from promptlang.language.check_context import SPLITS, Context
from promptlang.methods import method_of
from promptlang.language.datafiles import data_format
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.file_checks import files_exist, output_inside_spec_folder, rows_readable
from promptlang.language.generation_checks import generation_settings
from promptlang.language.source import Span
from promptlang.language.support import not_yet
from promptlang.language.task_checks import regression_settings


def check(built: Built) -> Diagnostics:
    """Run every semantic check on a built spec.

    Args:
        built: the result of `build`, with a spec.

    Returns:
        The diagnostics the checks found (the build's own are not repeated).
    """
    ctx = Context(built.spec, built.locations, Diagnostics(sources=dict(built.diagnostics.sources)),
                  built.directory)
    for rule in CHECKS:
        rule(ctx)
    return ctx.diagnostics


# ---------------------------------------------------------------- names


def patterns_defined(ctx: Context) -> None:
    for i, name in enumerate(getattr(ctx.method, "patterns", [])):
        if name not in ctx.spec.templates:
            ctx.error(f"template `{name}` is not defined", ctx.at("method", "patterns", i),
                      ctx.suggest(name, ctx.spec.templates) or "define it with `template NAME \"...\"`")
    if method_of(ctx.method.kind).uses_patterns and not ctx.spec.templates:
        ctx.error(f"the `{ctx.method.kind}` method needs a template", ctx.key("method"),
                  'add one: `template it_was "{{ sentence }} It was [MASK]."`')
    seen: set[str] = set()
    for i, name in enumerate(getattr(ctx.method, "patterns", [])):
        if name in seen or seen.add(name):
            ctx.error(f"template `{name}` is listed twice in `patterns`", ctx.at("method", "patterns", i),
                      "remove the repeat")


def verbalizers_resolved(ctx: Context) -> None:
    names = list(ctx.spec.verbalizers)
    for name, template in ctx.spec.templates.items():
        if template.verbalizer and template.verbalizer not in ctx.spec.verbalizers:
            ctx.error(f"verbalizer `{template.verbalizer}` is not defined",
                      ctx.at("templates", name, "verbalizer"),
                      suggest(template.verbalizer, names) or "define it with `verbalizer NAME { ... }`")
    if not method_of(ctx.method.kind).uses_patterns or ctx.generation or _searches_words(ctx):
        return
    for name in ctx.patterns:
        template = ctx.spec.templates[name]
        if template.verbalizer or len(names) == 1:
            continue
        if not names:
            ctx.error(f"template `{name}` has no verbalizer to map labels to words", ctx.key("templates", name),
                      'define one: `verbalizer sentiment { positive -> "great" }`, a mapping per label')
        else:
            how = "add `verbalizer NAME` to the template" if not _short(ctx, name) else \
                f"write it as a block: `template {name} {{ text \"...\" verbalizer NAME }}`"
            ctx.error(f"template `{name}` does not say which verbalizer it uses", ctx.key("templates", name),
                      f"{how}; there are {len(names)}: {', '.join(names)}")


def _short(ctx: Context, name: str) -> bool:
    """Whether a template was written in the one-line form (its key and its text start together)."""
    return ctx.key("templates", name).line == ctx.at("templates", name, "text").line


def _searches_words(ctx: Context) -> bool:
    return getattr(ctx.method, "label_word_search", None) is not None


def verbalizer_labels(ctx: Context) -> None:
    labels = ctx.spec.labels
    for name, verbalizer in ctx.spec.verbalizers.items():
        if not labels:
            ctx.error(f"verbalizer `{name}` maps labels, but the spec declares none", ctx.key("verbalizers", name),
                      f"declare them: {_labels_example(ctx)}")
            continue
        declared = set(labels)
        for label in verbalizer.words:
            if label not in declared:
                ctx.error(f"verbalizer `{name}` has words for `{label}`, which is not a label",
                          ctx.key("verbalizers", name, "words", label),
                          ctx.suggest(label, labels) or f"the labels are: {listing(dict.fromkeys(labels))}")
        for label in labels:
            if label not in verbalizer.words:
                ctx.error(f"label `{label}` has no word in verbalizer `{name}`", ctx.key("verbalizers", name),
                          f'add `{label} -> "word"`')
        _words_distinct(ctx, name, verbalizer)


def _words_distinct(ctx: Context, name: str, verbalizer: m.Verbalizer) -> None:
    owner: dict[str, str] = {}
    for label, words in verbalizer.words.items():
        for i, word in enumerate(words):
            span = ctx.at("verbalizers", name, "words", label, i)
            if not word.strip():
                ctx.error(f"label `{label}` has an empty word", span, "write the word between the quotes")
            elif word in owner and owner[word] != label:
                ctx.error(f"the word \"{word}\" stands for both `{owner[word]}` and `{label}`", span,
                          "give each label its own words")
            owner.setdefault(word, label)


# ---------------------------------------------------------------- templates


def fields_are_columns(ctx: Context) -> None:
    data = ctx.spec.data
    columns = ctx.columns
    if columns is not None and len(columns) == 1 and ("\t" in columns[0] or "," in columns[0]):
        looks = "tsv" if "\t" in columns[0] else "csv"
        first = next(split for split in SPLITS if getattr(data, split))
        ctx.error(f"the header of `{getattr(data, first)}` looks like {looks}, not {data_format(data, getattr(data, first))}",
                  ctx.at("data", "format") if data.format else ctx.at("data", first), f"set `format {looks}`")
        return
    score = [ctx.spec.task.score] if ctx.spec.task else []
    known = columns if columns is not None else [*data.text, data.label, *score]
    for name, template in ctx.spec.templates.items():
        for part in ("text", "target"):
            for i, segment in enumerate(getattr(template, part) or []):
                if segment.kind == "field" and segment.name not in known:
                    ctx.error(f"`{segment.name}` is not a column of the data", ctx.at("templates", name, part, i),
                              ctx.suggest(segment.name, nameable(known)) or columns_hint(known))
    if columns is None:
        return
    for i, column in enumerate(data.text):
        if column not in columns:
            ctx.error(f"the data has no column `{column}`", ctx.at("data", "text", i),
                      ctx.suggest(column, nameable(columns)) or columns_hint(columns))
    target = ctx.target_column
    if target is not None and target not in columns:
        what, where = ("score", ("task", "score")) if ctx.spec.task else ("label", ("data", "label"))
        ctx.error(f"the data has no {what} column `{target}`", ctx.at(*where), columns_hint(columns))


_COLUMN_NAME = re.compile(r"(?!\d)\w+(?:-\w+)*")


def nameable(columns: list[str]) -> list[str]:
    """The columns a spec could name; only these are ever shown (a header may be a secret's line)."""
    return [c for c in columns if len(c) <= 64 and _COLUMN_NAME.fullmatch(c)]


def columns_hint(columns: list[str]) -> str:
    """'the columns are: ...', naming only the `nameable` columns."""
    shown = nameable(columns)
    if not shown:
        return "the data file's first line must be a header row that names its columns"
    rest = len(columns) - len(shown)
    return f"the columns are: {listing(shown)}" + (f" (and {rest} not shown)" if rest else "")


def masks_where_needed(ctx: Context) -> None:
    if not method_of(ctx.method.kind).uses_patterns:
        return
    for name in ctx.patterns:
        template = ctx.spec.templates[name]
        if template.target and (ctx.spec.model.family is m.ModelFamily.seq2seq or ctx.spec.generate is not None):
            continue
        if ctx.generation:
            continue
        masks = [i for i, s in enumerate(template.text) if s.kind == "mask"]
        if not masks:
            ctx.error(f"template `{name}` has no [MASK] slot", ctx.at("templates", name, "text"),
                      f"`{ctx.method.kind}` scores the label words at the mask: add [MASK] where the word goes")
        elif len(masks) > 1:
            ctx.error(f"template `{name}` has {len(masks)} [MASK] slots", ctx.at("templates", name, "text", masks[1]),
                      "use one slot; [MASK] grows to fit words of several tokens, [MASK:2] fixes two")


def mask_counts_fit(ctx: Context) -> None:
    for name, template in ctx.spec.templates.items():
        verbalizer = _verbalizer_of(ctx, template)
        if verbalizer is None:
            continue
        for i, segment in enumerate(template.text):
            if segment.kind != "mask" or segment.count is None:
                continue
            longest = max((w for ws in verbalizer.words.values() for w in ws), key=lambda w: len(w.split()))
            if len(longest.split()) > segment.count:
                ctx.error(f"the word \"{longest}\" has {len(longest.split())} words, but the slot holds "
                          f"{segment.count} token{'s' if segment.count > 1 else ''}",
                          ctx.at("templates", name, "text", i),
                          "write [MASK] to size the slot from the longest word")


def _verbalizer_of(ctx: Context, template: m.Template) -> m.Verbalizer | None:
    if template.verbalizer:
        return ctx.spec.verbalizers.get(template.verbalizer)
    if len(ctx.spec.verbalizers) == 1:
        return next(iter(ctx.spec.verbalizers.values()))
    return None


SLOT_NAMES = ("MASK", "DEMOS", "SOFT", "SEP")
_BRACKETED = re.compile(r"\[([A-Za-z]+)(:\d+)?\]")


def template_text_lint(ctx: Context) -> None:
    columns = set(ctx.columns if ctx.columns is not None else [*ctx.spec.data.text, ctx.spec.data.label])
    for name, template in ctx.spec.templates.items():
        for part in ("text", "target"):
            for i, segment in enumerate(getattr(template, part) or []):
                if segment.kind == "text":
                    _lint_text(ctx, segment.text, ctx.at("templates", name, part, i))
                    _lint_braces(ctx, segment.text, ctx.at("templates", name, part, i), columns)
        if template.target and ctx.spec.model.family is m.ModelFamily.masked and not template.generates:
            ctx.warning(f"template `{name}` has a `target`, which a masked LM does not use",
                        ctx.key("templates", name, "target"), "remove it, or use a seq2seq or causal model")
        if any(s.kind == "soft" for s in template.text) and not method_of(ctx.method.kind).trains:
            ctx.warning(f"template `{name}` has soft prompt tokens, which stay untrained with `{ctx.method.kind}`",
                        ctx.at("templates", name, "text"), "train them with `prompt_finetune`, or remove [SOFT]")


_SINGLE_BRACES = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")


def _lint_braces(ctx: Context, text: str, span: Span, columns: set[str]) -> None:
    """`{premise}` written as the papers write templates: plain text here, though it names a column."""
    for match in _SINGLE_BRACES.finditer(text):
        if match.group(1) in columns:
            ctx.warning(f"`{match.group(0)}` is plain text, not a field", ctx.narrow(span, match.group(0)),
                        f"did you mean `{{{{ {match.group(1)} }}}}`? a field is written in double braces")


def not_yet_runnable(ctx: Context) -> None:
    """What `promptlang run` would refuse: a warning now (an error under `check --strict`)."""
    for item in not_yet(ctx.spec):
        span = ctx.key(*item.path) if item.path else ctx.at()
        ctx.warning(item.message, span, f"`promptlang run` refuses it until it is built; {item.hint}")


def _lint_text(ctx: Context, text: str, span: Span) -> None:
    if "{%" in text:
        ctx.error("Jinja statements (`{% ... %}`) cannot go in a template", ctx.narrow(span, "{%"),
                  "a template holds text, {{ fields }} with filters, and slots such as [MASK]")
    for match in _BRACKETED.finditer(text):
        word = match.group(1)
        close = suggest(word.upper(), SLOT_NAMES)
        if word.upper() in SLOT_NAMES or close:
            slot = word.upper() if word.upper() in SLOT_NAMES else close.split("`")[1]
            ctx.warning(f"`{match.group(0)}` is plain text, not a slot", ctx.narrow(span, match.group(0)),
                        f"slots are written in capitals: [{slot}{match.group(2) or ''}]")


# ---------------------------------------------------------------- demonstrations


def demonstrations_defined(ctx: Context) -> None:
    demos = ctx.spec.demonstrations
    slots = [(name, i) for name, t in ctx.spec.templates.items() for i, s in enumerate(t.text) if s.kind == "demos"]
    if demos is None:
        for name, i in slots:
            ctx.error(f"template `{name}` has a [DEMOS] slot, but no demonstrations are defined",
                      ctx.at("templates", name, "text", i), "add a `demonstrations { per_label 1 }` block")
        return
    if not slots:
        ctx.warning("demonstrations are defined, but no template has a [DEMOS] slot", ctx.key("demonstrations"),
                    "put [DEMOS] where they go, for example `\"{{ sentence }} It was [MASK]. [DEMOS]\"`")
    if demos.template and demos.template not in ctx.spec.templates:
        ctx.error(f"template `{demos.template}` is not defined", ctx.at("demonstrations", "template"),
                  suggest(demos.template, ctx.spec.templates) or "define it with `template NAME \"...\"`")
    elif demos.template and ctx.spec.templates[demos.template].has("demos"):
        ctx.error(f"the demonstration template `{demos.template}` has a [DEMOS] slot itself",
                  ctx.at("demonstrations", "template"), "remove [DEMOS] from it")
    if demos.select is m.Selection.random and (demos.encoder or demos.top is not None):
        ctx.warning("`encoder` and `top` only matter with `select similar`", ctx.at("demonstrations", "select"))


# ---------------------------------------------------------------- method settings


def method_settings(ctx: Context) -> None:
    """The settings every method shares, then the method's own checks (its module's `checks`)."""
    method, data = ctx.method, ctx.spec.data
    declared = method_of(method.kind)
    if declared.trains and not data.train and not declared.learns_without_labels:
        ctx.error(f"`{method.kind}` trains, but `data` has no `train` split", ctx.key("data"),
                  'add `train "train.tsv"` to `data`')
    if declared.trains and method.epochs and method.steps:
        ctx.error("set `epochs` or `steps`, not both", ctx.key("method", "steps"), "remove one of them")
    for rule in declared.checks:
        rule(ctx)
    written = ("method", "select_model") in ctx.locations.values
    if written and method.select_model is m.ModelSelection.dev and not (data.dev or data.dev_shots):
        ctx.warning("`select_model dev` keeps the best state on dev data, but there is none: the last state is kept",
                    ctx.at("method", "select_model"),
                    "add `dev_shots 16` (or a `dev` file) to `data`, or write `select_model last`")
    loss = getattr(method, "loss", None)
    if loss and loss.mlm > 0 and ctx.spec.model.family in (m.ModelFamily.causal, m.ModelFamily.seq2seq):
        ctx.error("the auxiliary MLM loss needs a masked language model", ctx.at("method", "loss", "mlm"),
                  f"set `mlm 0`, or use a masked LM (this model's family is {ctx.spec.model.family.value})")
    if loss and loss.ce == 0 and loss.mlm == 0:
        ctx.error("both loss weights are 0: nothing would be learned", ctx.key("method", "loss"),
                  "give the cross-entropy a weight: `loss ce 1`")
    if data.dev_shots and not data.shots:
        ctx.error("`dev_shots` samples from what `shots` leaves; set `shots` too", ctx.key("data", "dev_shots"))
    for path, seeds in (("data", data.seeds), ("method", getattr(method, "seeds", []))):
        listed: set[int] = set()
        for i, seed in enumerate(seeds):
            if seed in listed or listed.add(seed):
                ctx.warning(f"seed {seed} is listed twice", ctx.at(path, "seeds", i), "remove the repeat")
    _labels_and_metrics(ctx)


def _labels_example(ctx: Context) -> str:
    return "`labels low, high` (a regression's poles, low first)" if ctx.spec.task else "`labels negative, positive`"


def _labels_and_metrics(ctx: Context) -> None:
    if not ctx.spec.labels and not ctx.generation:
        ctx.error("the spec declares no labels", ctx.at(), f"declare them: {_labels_example(ctx)}")
    declared = set(ctx.spec.labels)
    for label in ctx.spec.data.label_values:
        if label not in declared:
            ctx.error(f"`label_values` maps `{label}`, which is not a label",
                      ctx.key("data", "label_values", label),
                      ctx.suggest(label, ctx.spec.labels) or f"the labels are: {listing(ctx.spec.labels)}")


CHECKS = [
    patterns_defined,
    verbalizers_resolved,
    verbalizer_labels,
    fields_are_columns,
    masks_where_needed,
    mask_counts_fit,
    template_text_lint,
    demonstrations_defined,
    method_settings,
    regression_settings,
    generation_settings,
    files_exist,
    rows_readable,
    not_yet_runnable,
    output_inside_spec_folder,
]
