"""Compile: spec + tokenizer → `Plan` (patterns as token ids, and the stage graph with its work)."""

from __future__ import annotations

import math

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime.ensemble import eq_div, generation_sizes
from promptlang.compiler.tokens import piece_ids, special_tokens, word_tokens

TRAINED = ("finetune", "prompt_finetune", "pet", "ipet")


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


def _segments(template: m.Template) -> list:
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


def _mask_context(segments: list) -> str:
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
    segments = _segments(template)
    in_target = template.target is not None and not any(s.kind == "mask" for s in segments)
    context = _mask_context(template.target if in_target else segments)
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
    """How a label's words combine: the verbalizer's `aggregate`, else PET's logit mean for pet and
    ipet and the mean of probabilities for the other methods (one word per label: all agree)."""
    if verbalizer is not None and verbalizer.aggregate is not None:
        return verbalizer.aggregate.value
    return "logit_mean" if spec.method.kind in ("pet", "ipet") else "mean"


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


# ---------------------------------------------------------------- the stage graph


def _steps(method, n_train: int) -> int:
    per_step = method.batch_size * method.grad_accum
    if method.steps:
        return method.steps
    return (method.epochs or 1) * max(1, math.ceil(n_train / per_step))


def mask_ends_input(pattern: p.Pattern) -> bool:
    """Whether nothing but special tokens follows the pattern's mask (no text, field or slot)."""
    at = next((i for i, piece in enumerate(pattern.pieces) if piece.kind == "mask"), None)
    return at is not None and all(piece.kind == "text" and not piece.ids for piece in pattern.pieces[at + 1:])


def continuation_scored(pattern: p.Pattern | None, family: str) -> bool:
    """Whether a causal LM scores each label word as its own continuation (the word, then the text
    after the mask): one sequence per example and word, not one per example (see `scoring.causal_scores`)."""
    if pattern is None or family != "causal" or not pattern.labels:
        return False
    single = all(len(ids) == 1 for lw in pattern.labels for ids in lw.ids)
    return not (single and mask_ends_input(pattern))


def _passes(pattern: p.Pattern | None, family: str, n: int, batch: int) -> int:
    """Forward passes to score `n` examples (a pass is a batch of `batch` sequences)."""
    if n == 0:
        return 0
    if pattern is None:
        return math.ceil(n / batch)
    words = sum(len(lw.ids) for lw in pattern.labels) or 1
    if family == "masked":
        multi = pattern.mask_count > 1
        return math.ceil(n * (words if multi else 1) / batch) * (pattern.mask_count if multi else 1)
    if family == "causal":
        return math.ceil(n * (words if continuation_scored(pattern, family) else 1) / batch)
    return math.ceil(n * words / batch)


def _training_work(method, n: int, pattern: p.Pattern | None, family: str, dev: int) -> p.Work:
    """Training `n` examples for the method's steps, with dev evaluations about once an epoch."""
    if n == 0:
        return p.Work()
    if method.select_model is m.ModelSelection.last:  # no dev evaluations (PET's fixed number of steps)
        dev = 0
    steps = _steps(method, n)
    accum = method.grad_accum
    epochs = max(1, math.ceil(steps * method.batch_size * accum / n))
    lm = steps * accum if getattr(getattr(method, "loss", None), "mlm", 0) > 0 else 0
    return p.Work(models_trained=1, optimizer_steps=steps,
                  forward_passes=steps * accum + lm + epochs * _passes(pattern, family, dev, method.eval_batch_size),
                  examples_read=steps * method.batch_size * accum + epochs * dev)


def pet_stages(spec: m.Spec, patterns: dict[str, p.Pattern], family: str, splits: dict[int, dict[str, int]],
               label_counts: dict[int, list[int]]) -> list[p.Stage]:
    """PET's graph for each data sample: a model per pattern and repetition (for iPET, per generation,
    each after a `label` stage that grows its training set), an ensemble per generation, then
    distillation into a classifier on the last ensemble's soft labels."""
    method = spec.method
    kind = method.kind
    generations = method.ipet.generations if kind == "ipet" else 1
    batch = method.eval_batch_size
    out: list[p.Stage] = []
    for data_seed, counts in splits.items():
        sizes = generation_sizes(label_counts[data_seed], method.ipet.scale_factor, generations) \
            if kind == "ipet" else [counts["train"]]
        previous: list[str] = []
        for generation in range(generations):
            gen = f"g{generation}/" if kind == "ipet" else ""
            members: list[str] = []
            for name, pattern in patterns.items():
                for seed in method.seeds:
                    tag = f"d{data_seed}/{gen}{name}/s{seed}"
                    needs: list[str] = []
                    if generation > 0:
                        label_id = f"label/{tag}"
                        others = [x for x in previous if x != f"train/d{data_seed}/g{generation - 1}/{name}/s{seed}"]
                        out.append(p.Stage(id=label_id, kind="label", method=kind, pattern=name, data_seed=data_seed,
                                           seed=seed, generation=generation, needs=others,
                                           train_size=sizes[generation] - counts["train"],
                                           work=p.Work(examples_read=counts["unlabeled"])))
                        needs.append(label_id)
                    work = _training_work(method, sizes[generation], pattern, family, counts["dev"])
                    unlabeled = _passes(pattern, family, counts["unlabeled"], batch)
                    scoring = p.Work(forward_passes=_passes(pattern, family, counts["train"], batch)
                                     + _passes(pattern, family, counts["test"], batch) + unlabeled,
                                     unlabeled_passes=unlabeled,
                                     examples_read=counts["train"] + counts["test"] + counts["unlabeled"])
                    out.append(p.Stage(id=f"train/{tag}", kind="train", method=kind, pattern=name,
                                       data_seed=data_seed, seed=seed,
                                       generation=generation if kind == "ipet" else None,
                                       train_size=sizes[generation], needs=needs, work=work + scoring))
                    members.append(f"train/{tag}")
            out.append(p.Stage(id=f"ensemble/d{data_seed}" + (f"/g{generation}" if kind == "ipet" else ""),
                               kind="ensemble", method=kind, data_seed=data_seed,
                               generation=generation if kind == "ipet" else None, needs=members,
                               work=p.Work(examples_read=counts["test"] + counts["unlabeled"])))
            previous = members
        if method.distill is not None:
            distill = method.distill
            for seed in distill.seeds:
                work = _training_work(distill, counts["unlabeled"], None, family, counts["dev"])
                out.append(p.Stage(id=f"distill/d{data_seed}/s{seed}", kind="distill", method=kind,
                                   data_seed=data_seed, seed=seed, needs=[_last_ensemble(out, data_seed)],
                                   train_size=counts["unlabeled"],
                                   work=work + p.Work(forward_passes=_passes(None, family, counts["test"], distill.eval_batch_size),
                                                      examples_read=counts["test"])))
    return out


def _last_ensemble(stages: list[p.Stage], data_seed: int) -> str:
    return next(s.id for s in reversed(stages) if s.kind == "ensemble" and s.data_seed == data_seed)


def stages(spec: m.Spec, patterns: dict[str, p.Pattern], family: str,
           splits: dict[int, dict[str, int]], label_counts: dict[int, list[int]] | None = None) -> list[p.Stage]:
    """The stage graph: for each data sample, each pattern and each seed, train (if the method trains) → evaluate."""
    method = spec.method
    kind = method.kind
    if kind in ("pet", "ipet"):
        counts = label_counts or {seed: eq_div(c["train"], len(spec.labels)) for seed, c in splits.items()}
        return pet_stages(spec, patterns, family, splits, counts)
    out: list[p.Stage] = []
    data_seeds = list(splits) if kind not in ("zero_shot",) else list(splits)[:1]
    names = list(patterns) or [None]
    for data_seed in data_seeds:
        counts = splits[data_seed]
        selection = demonstration_stage(spec, patterns, data_seed, counts)
        out += [selection] if selection else []
        for name in names:
            pattern = patterns.get(name) if name else None
            seeds = method.seeds if kind in TRAINED else [None]
            shown = selection is not None and pattern is not None and uses_demos(pattern)
            sets = spec.demonstrations.sets if shown else 1  # evaluation averages over the sets
            for seed in seeds:
                tag = "/".join(str(x) for x in (f"d{data_seed}", name or "head", f"s{seed}" if seed is not None else None) if x)
                needs: list[str] = [selection.id] if shown else []
                if kind in TRAINED:
                    out.append(p.Stage(id=f"train/{tag}", kind="train", method=kind, pattern=name, data_seed=data_seed,
                                       seed=seed, needs=list(needs),
                                       work=_training_work(method, counts["train"], pattern, family,
                                                           counts["dev"] * sets)))
                    needs.append(f"train/{tag}")
                if getattr(method, "calibrate", False):
                    out.append(p.Stage(id=f"calibrate/{tag}", kind="calibrate", method=kind, pattern=name,
                                       data_seed=data_seed, needs=list(needs),
                                       work=p.Work(forward_passes=_passes(pattern, family, 1, 1) * sets,
                                                   examples_read=sets)))
                    needs.append(f"calibrate/{tag}")
                batch = method.eval_batch_size
                out.append(p.Stage(id=f"evaluate/{tag}", kind="evaluate", method=kind, pattern=name,
                                   data_seed=data_seed, seed=seed, needs=needs,
                                   work=p.Work(forward_passes=_passes(pattern, family, counts["test"], batch) * sets,
                                               examples_read=counts["test"] * sets)))
    return out


def uses_demos(pattern: p.Pattern) -> bool:
    """Whether the pattern has a [DEMOS] slot."""
    return any(piece.kind == "demos" for piece in pattern.pieces)


def demonstration_stage(spec: m.Spec, patterns: dict[str, p.Pattern], data_seed: int,
                        counts: dict[str, int]) -> p.Stage | None:
    """LM-BFF's demonstration selection for one data sample, when a pattern has a [DEMOS] slot: the
    training examples per label are the pool (`train_size`), from which the `sets` sets that
    evaluation averages over are drawn (set i with seed `data seed × 1000 + i`); training draws a
    new set for an example each time it is put in a batch, never the example itself."""
    if spec.demonstrations is None or not any(uses_demos(x) for x in patterns.values()):
        return None
    return p.Stage(id=f"demonstrations/d{data_seed}", kind="demonstrations", method=spec.method.kind,
                   data_seed=data_seed, train_size=counts["train"], work=p.Work(examples_read=counts["train"]))


def compile_plan(spec: m.Spec, tokenizer, family: str, splits: dict[int, dict[str, int]],
                 label_counts: dict[int, list[int]] | None = None) -> p.Plan:
    """The whole plan.

    Args:
        spec: a checked spec.
        tokenizer: the model's tokenizer (a transformers tokenizer).
        family: masked, causal or seq2seq.
        splits: examples per split for each data seed.
        label_counts: training examples per label for each data seed (sizes iPET's generations;
            default: an even split).

    Raises:
        CompileError: a label word is longer than its template's `[MASK:n]` slot.
    """
    patterns = {name: compile_pattern(spec, name, tokenizer) for name in spec.patterns}
    demo = spec.demonstrations.template if spec.demonstrations else None
    if demo and demo not in patterns:
        compile_pattern(spec, demo, tokenizer)  # compiled when demonstrations are drawn: its words must fit too
    return p.Plan(spec=spec, family=family, tokenizer=tokenizer_info(tokenizer), patterns=patterns,
                  splits=splits, stages=stages(spec, patterns, family, splits, label_counts))
