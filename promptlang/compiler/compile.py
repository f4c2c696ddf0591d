"""Compile: spec + tokenizer → `Plan` (patterns as token ids, and the stage graph with its work)."""

from __future__ import annotations

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.methods import Graph, method_of
from promptlang.methods.search import search_costs
from promptlang.compiler.sizes import eq_div
from promptlang.compiler.tokens import piece_ids, special_tokens, word_tokens

class CompileError(ValueError):
    """A spec that its tokenizer cannot compile as written; `path` is the spec setting to point at."""

    def __init__(self, message: str, path: tuple, hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


def tokenizer_info(tokenizer) -> p.Tokenizer:
    """The plan's view of a tokenizer."""
    prefix, suffix = special_tokens(tokenizer)
    return p.Tokenizer(
        name=getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__,
        vocab_size=len(tokenizer),
        prefix=prefix,
        suffix=suffix,
        mask_id=tokenizer.mask_token_id,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0),
        sep_id=tokenizer.sep_token_id,
        unk_id=tokenizer.unk_token_id,
    )


def input_segments(template: m.Template) -> list:
    """The input's segments: a T5 prefix (as text) and the template text."""
    segments = list(template.text)
    if template.prefix:
        segments.insert(0, m.TextSegment(text=template.prefix))
    return segments


def compile_pieces(segments: list, tokenizer, mask_count: int) -> list[p.Piece]:
    """Template segments → pieces with token ids.

    Whitespace at the end of a text piece belongs to what follows it (a field gets a
    leading space, label words at a mask are tokenized after it), as BPE and
    SentencePiece attach a space to the next word. The field's space is added after its
    own transforms, so that `lower_first` and `strip_space` see the value itself.
    """
    pieces: list[p.Piece] = []
    for i, segment in enumerate(segments):
        following = segments[i + 1] if i + 1 < len(segments) else None
        if segment.kind == "text":
            text = segment.text
            if following is not None and following.kind in ("field", "mask") and text.rstrip(" ") != text:
                text = text.rstrip(" ")
                if following.kind == "field" and "add_space" not in following.transforms:
                    segments[i + 1] = following = following.model_copy(
                        update={"transforms": [*following.transforms, "add_space"]})
            pieces.append(p.Piece(kind="text", text=text, ids=piece_ids(tokenizer, text, first=not pieces)))
        elif segment.kind == "field":
            pieces.append(p.Piece(kind="field", name=segment.name,
                                  transforms=[t.value if hasattr(t, "value") else t for t in segment.transforms],
                                  shorten=segment.shorten.value if segment.shorten else None))
        elif segment.kind == "mask":
            pieces.append(p.Piece(kind="mask", count=segment.count or mask_count))
        elif segment.kind == "soft":
            pieces.append(p.Piece(kind="soft", count=segment.count))
        else:
            pieces.append(p.Piece(kind=segment.kind))
    return pieces


def mask_context(segments: list) -> str:
    """The text just before the first mask (for tokenizing label words in place)."""
    for i, segment in enumerate(segments):
        if segment.kind == "mask":
            previous = segments[i - 1] if i else None
            return previous.text if previous is not None and previous.kind == "text" else ""
    return ""


def compile_label_words(verbalizer: m.Verbalizer, labels: list[str], tokenizer, context: str) -> list[p.LabelWords]:
    return [p.LabelWords(label=label, words=verbalizer.words[label],
                         ids=[word_tokens(tokenizer, word, context) for word in verbalizer.words[label]])
            for label in labels]


def compile_pattern(spec: m.Spec, name: str, tokenizer) -> p.Pattern:
    """One template (with its verbalizer) compiled against a tokenizer."""
    template = spec.templates[name]
    verbalizer = _verbalizer(spec, template)
    segments = input_segments(template)
    in_target = template.target is not None and not any(s.kind == "mask" for s in segments)
    context = mask_context(template.target if in_target else segments)
    labels = compile_label_words(verbalizer, spec.labels, tokenizer, context) if verbalizer else []
    longest = max((len(ids) for lw in labels for ids in lw.ids), default=1)
    slot = next((s for s in (template.target if in_target else segments) if s.kind == "mask"), None)
    mask_count = 0 if slot is None else (slot.count or longest)
    if slot is not None and slot.count is not None:
        _words_fit(name, template, "target" if in_target else "text", labels, slot.count)
    return p.Pattern(
        name=name,
        pieces=compile_pieces(segments, tokenizer, mask_count),
        target=compile_pieces(list(template.target), tokenizer, mask_count) if template.target else None,
        labels=labels,
        mask_count=mask_count,
        aggregate=_aggregate(spec, verbalizer),
    )


def _aggregate(spec: m.Spec, verbalizer: m.Verbalizer | None) -> str:
    """How a label's words combine: the verbalizer's `aggregate`, else the method's default (PET's
    logit mean for pet and ipet, the mean of probabilities for the others; one word per label: all agree)."""
    if verbalizer is not None and verbalizer.aggregate is not None:
        return verbalizer.aggregate.value
    return method_of(spec.method.kind).aggregate


def _words_fit(name: str, template: m.Template, part: str, labels: list[p.LabelWords], count: int) -> None:
    """Every label word fits its `[MASK:n]` slot (a longer word would be cut to the slot).

    Raises:
        CompileError: the first word longer than the slot, located at the slot.
    """
    index = next(i for i, s in enumerate(getattr(template, part)) if s.kind == "mask")
    for lw in labels:
        for word, ids in zip(lw.words, lw.ids):
            if len(ids) > count:
                raise CompileError(f"\"{word}\" is {len(ids)} tokens, but the slot in template `{name}` holds {count}",
                                   ("templates", name, part, index),
                                   "write [MASK] to size the slot from the words, or choose a shorter word")


def _verbalizer(spec: m.Spec, template: m.Template) -> m.Verbalizer | None:
    if template.verbalizer:
        return spec.verbalizers[template.verbalizer]
    return next(iter(spec.verbalizers.values()), None)


def runs_on(spec: m.Spec, device: str = "cpu", precision: str | None = None, processes: int = 1) -> p.RunsOn:
    """Where the plan runs (see `plan.RunsOn`): the precision is `precision`, else the spec's `model { precision }`."""
    method = spec.method
    batch = getattr(method, "batch_size", None)
    per_device = -(-batch // processes) if batch else None
    effective = batch * method.grad_accum if batch else None
    return p.RunsOn(device=device, precision=precision or spec.model.precision.value, processes=processes,
                    per_device_batch=per_device, effective_batch=effective, eval_batch_size=method.eval_batch_size)


def compile_plan(spec: m.Spec, tokenizer, family: str, splits: dict[int, dict[str, int]],
                 label_counts: dict[int, list[int]] | None = None, where: p.RunsOn | None = None) -> p.Plan:
    """The whole plan.

    Args:
        spec: a checked spec.
        tokenizer: the model's tokenizer (a transformers tokenizer).
        family: masked, causal or seq2seq.
        splits: examples per split for each data seed.
        label_counts: training examples per label for each data seed (sizes iPET's generations;
            default: an even split).
        where: the device, precision and processes it runs on (default: one CPU process, the spec's precision).

    Raises:
        CompileError: a label word is longer than its template's `[MASK:n]` slot.
    """
    patterns = {name: compile_pattern(spec, name, tokenizer) for name in spec.patterns}
    demo = spec.demonstrations.template if spec.demonstrations else None
    if demo and demo not in patterns:
        compile_pattern(spec, demo, tokenizer)  # compiled when demonstrations are drawn: its words must fit too
    counts = label_counts or {seed: eq_div(c.get("train", 0), len(spec.labels)) for seed, c in splits.items()}
    graph = Graph(spec, patterns, family, splits, counts)
    stages = method_of(spec.method.kind).compile(graph)
    return p.Plan(spec=spec, family=family, tokenizer=tokenizer_info(tokenizer), patterns=patterns,
                  splits=splits, stages=stages, runs_on=where or runs_on(spec),
                  search_costs=search_costs(graph, stages))
