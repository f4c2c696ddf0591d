"""Text views of a plan: `promptlang plan` (stages and their cost) and `promptlang render` (examples as tokens)."""

from __future__ import annotations

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.methods import method_of
from promptlang.methods.common import uses_demos
from promptlang.compiler.costs import continuation_scored, mask_ends_input
from promptlang.runtime.pipeline import encode


def _piece(piece: p.Piece) -> str:
    if piece.kind == "text":
        return repr(piece.text)
    if piece.kind == "field":
        filters = "".join(f" | {t}" for t in piece.transforms) + (f" | shorten({piece.shorten})" if piece.shorten else "")
        return f"{{{{ {piece.name}{filters} }}}}"
    if piece.kind in ("mask", "soft"):
        return f"[{piece.kind.upper()}×{piece.count}]"
    return f"[{piece.kind.upper()}]"


def _shown(token: str) -> str:
    return token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def label_words(pattern: p.Pattern, tokenizer) -> list[str]:
    """One line per label: each word, its token ids and tokens."""
    return [f"{lw.label} → " + "; ".join(f"\"{w}\" {ids} {' '.join(tokenizer.convert_ids_to_tokens(ids))}"
                                        for w, ids in zip(lw.words, lw.ids)) for lw in pattern.labels]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what.replace('model ', 'models ').replace('step', 'steps').replace('pass', 'passes')}"


def _work(work: p.Work) -> str:
    parts = []
    if work.models_trained:
        parts.append(_count(work.models_trained, "model trained"))
    if work.optimizer_steps:
        parts.append(_count(work.optimizer_steps, "optimizer step"))
    if work.forward_passes:
        over = f" ({work.unlabeled_passes} over unlabeled data)" if work.unlabeled_passes else ""
        parts.append(_count(work.forward_passes, "forward pass") + over)
    if work.examples_read:
        parts.append(f"{work.examples_read} examples read")
    return ", ".join(parts) or "no model work"


def _cost(stage: p.Stage, spec=None) -> str:
    """What a stage does and costs, in a line (`spec`: for what a `demonstrations` stage selects)."""
    if stage.kind == "demonstrations" and spec is not None:
        demos = spec.demonstrations
        fresh = "; training draws a new set for each example each time, never the example itself" \
            if method_of(spec.method.kind).trains and method_of(spec.method.kind).uses_patterns else ""
        first = stage.data_seed * 1000
        seeds = f"seeds {first}..{first + demos.sets - 1}" if demos.sets > 1 else f"seed {first}"
        if demos.select is m.Selection.similar:
            share = demos.top if demos.top is not None else 0.5
            return (f"{demos.per_label} per label, drawn for each input from the {share:g} of each label's "
                    f"{stage.train_size} training examples most similar to it ({demos.encoder or 'all-MiniLM-L6-v2'}); "
                    f"{demos.sets} set{'s' if demos.sets > 1 else ''} per input for evaluation{fresh}")
        return (f"{demos.per_label} per label, drawn from the {stage.train_size} training examples; "
                f"{demos.sets} set{'s' if demos.sets > 1 else ''} for evaluation ({seeds}){fresh}")
    if stage.kind in ("search", "rank"):
        return _search_cost(stage)
    if stage.kind == "label":
        return f"labels {stage.train_size} unlabeled examples; {_work(stage.work)}"
    if stage.kind in ("train", "distill") and stage.train_size is not None:
        what = "soft-labelled examples" if stage.kind == "distill" else "examples"
        head = f"on {stage.train_size} {what}" if stage.train_size else "zero-shot (no training examples)"
        return f"{head}; {_work(stage.work)}"
    return _work(stage.work)


def _search_cost(stage: p.Stage) -> str:
    if stage.kind == "search":
        what = "label-word mappings, ranked on train" if stage.search == "words" else "templates, generated"
        return f"candidate {what}; {_work(stage.work)}"
    if stage.round == 0:
        return f"every candidate scored zero-shot on dev; {_work(stage.work)}"
    return f"round {stage.round}: candidate {stage.slot + 1} of the ranking so far, {stage.steps} steps; " \
        f"{_work(stage.work)}"


def _needs(needs: list[str]) -> str:
    return ", ".join(needs) if len(needs) <= 3 else f"{', '.join(needs[:2])} and {len(needs) - 2} more"


def describe_plan(prepared) -> str:
    """The plan as a reader wants it: model, data, patterns, stages and the total work."""
    plan, tokenizer = prepared.plan, prepared.tokenizer
    kind, value = plan.spec.model.source
    lines = [f"model: {kind} {value} ({plan.family}); tokenizer: {plan.tokenizer.vocab_size} tokens",
             "data: " + "; ".join(f"seed {seed}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                                  for seed, counts in plan.splits.items())]
    lines += _task_line(plan.spec)
    lines.append(runs_on_line(plan.runs_on))
    for name, pattern in plan.patterns.items():
        lines.append(f"pattern {name}: " + " ".join(_piece(x) for x in pattern.pieces))
        if pattern.target and not pattern.labels:
            lines.append("  writes: " + " ".join(_piece(x) for x in pattern.target))
        lines += [f"  {line}" for line in label_words(pattern, tokenizer)]
        lines += [f"  {line}" for line in ([] if plan.spec.generate else _scoring_note(pattern, plan.family))]
    lines.append("stages:")
    for stage in plan.stages:
        after = f"  (after {_needs(stage.needs)})" if stage.needs else ""
        lines.append(f"  {stage.id:<36} {_cost(stage, plan.spec)}{after}")
    lines.append(f"total: {_work(plan.total())}")
    lines += _search_lines(plan)
    return "\n".join(lines)


SEARCH_NAMES = {"words": "label-word search", "templates": "template search"}


def _search_lines(plan: p.Plan) -> list[str]:
    """Each LM-BFF search's cost as planned, beside what the other ranking would cost."""
    lines = []
    for search, costs in plan.search_costs.items():
        planned, other = list(costs)
        lines.append(f"{SEARCH_NAMES[search]}: {_work(costs[planned])} (rank {planned}); "
                     f"rank {other} would take {_work(costs[other])}")
    return lines


def runs_on_line(where: p.RunsOn) -> str:
    """Where the run runs and its batch sizes, in a line."""
    processes = f"{where.processes} processes" if where.processes > 1 else "1 process"
    line = f"runs on: {where.device}, {where.precision}, {processes}"
    if where.effective_batch:
        per = f", {where.per_device_batch} per device" if where.processes > 1 else ""
        line += f"; batch {where.effective_batch} per optimizer step{per}"
    return line + f"; evaluation batch {where.eval_batch_size}" + (" per device" if where.processes > 1 else "")


def _task_line(spec) -> list[str]:
    """What a regression learns, or how a generating model writes (classification needs no line)."""
    if spec.writes_text:
        g = spec.generate or m.Generate()
        how = "greedy decoding" if g.beams == 1 else f"beam search ({g.beams} beams, length penalty {g.length_penalty:g})"
        stop = f", stopping at {', '.join(repr(s) for s in g.stop)}" if g.stop else ""
        what = {"generation": "text generation, trained with teacher forcing on the target",
                "classification": "the label's first word written as text (T5's way; a text that is no label's "
                                  "word is wrong), trained with teacher forcing",
                "regression": f"the score written as text, rounded to {g.score_step:g} and read back as a number "
                              f"(T5's way), trained with teacher forcing"}[spec.task_kind]
        return [f"task: {what}; written by {how}, at most {g.max_new_tokens} new tokens{stop}"]
    if spec.task_kind != "regression":
        return []
    task, (low, high) = spec.task, spec.labels
    return [f"task: regression of `{task.score}` in [{task.lower:g}, {task.upper:g}]: targets [1 − t, t] over "
            f"the poles {low} and {high} (t = (score − {task.lower:g}) / {task.upper - task.lower:g}), "
            f"prediction {task.lower:g} + {task.upper - task.lower:g} · p({high})"]


def _scoring_note(pattern: p.Pattern, family: str) -> list[str]:
    """Why a causal pattern costs one sequence per label word and example, when it does."""
    if not continuation_scored(pattern, family):
        return []
    words = sum(len(lw.ids) for lw in pattern.labels)
    if not mask_ends_input(pattern):
        return [f"scored with the text after the mask: the text before it runs once, then each of the {words} "
                f"label words and what follows it continues from its cache (a template that ends with the mask, "
                f"with one-token words, needs no continuation)"]
    return [f"scored token by token: the text before the mask runs once, then each of the {words} label words "
            f"continues from its cache (one-token words need no continuation)"]


def render_classifier_inputs(prepared, split: str, n: int) -> str:
    """The first `n` examples of a split as `finetune`'s classifier reads them (no pattern): text, tokens."""
    from promptlang.runtime.classifier import classifier_inputs
    from promptlang.runtime.session import Session

    plan, tokenizer = prepared.plan, prepared.tokenizer
    seed = next(iter(prepared.splits))
    examples = getattr(prepared.splits[seed], split)[:n]
    inputs = classifier_inputs(Session(plan, tokenizer, None), examples, plan.spec.method.max_length)
    out = [f"classifier input (`{plan.spec.method.kind}` has no pattern: a classification head reads the text "
           f"fields {', '.join(plan.spec.data.text)})"]
    for i, (example, ids) in enumerate(zip(examples, inputs)):
        out += [f"  {split} example {i + 1}" + (f" (label {example.label})" if example.label else ""),
                f"    text:   {tokenizer.decode(ids)!r}",
                f"    tokens: {' '.join(_shown(t) for t in tokenizer.convert_ids_to_tokens(ids))}",
                f"    length: {len(ids)} tokens"]
    return "\n".join(out)


def render_examples(prepared, split: str, n: int) -> str:
    """The first `n` examples of a split through every pattern: text, tokens, masks, label words
    (for `finetune`, which has no pattern, the classifier's input)."""
    plan, tokenizer = prepared.plan, prepared.tokenizer
    if not plan.patterns:
        return render_classifier_inputs(prepared, split, n)
    seed = next(iter(prepared.splits))
    examples = getattr(prepared.splits[seed], split)[:n]
    max_length = getattr(plan.spec.method, "max_length", 256)
    out = []
    demos = None
    if plan.spec.demonstrations is not None:
        from promptlang.runtime.demos import demonstrations
        from promptlang.runtime.session import Session

        demos = [demonstrations(Session(plan, tokenizer, None), prepared.splits[seed], seed * 1000)] * len(examples)
    for name, pattern in plan.patterns.items():
        shown = demos if uses_demos(pattern) else None
        encoded = encode(pattern, examples, tokenizer, plan.tokenizer, max_length, plan.spec.labels, plan.family,
                         shown)
        out.append(f"pattern {name}  (label words: " + "; ".join(label_words(pattern, tokenizer)) + ")")
        for i, example in enumerate(examples):
            ids, at = encoded.ids[i], encoded.mask_at[i]
            masks = list(range(at, at + encoded.mask_count)) if at >= 0 else []
            out += [f"  {split} example {i + 1}" + (f" (label {example.label})" if example.label else ""),
                    f"    text:   {tokenizer.decode(ids)!r}",
                    f"    tokens: {' '.join(_shown(t) for t in tokenizer.convert_ids_to_tokens(ids))}",
                    f"    length: {len(ids)} tokens; masks at {masks}"]
        out.append("")
    return "\n".join(out).rstrip()
