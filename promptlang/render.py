"""Text views of a plan: `promptlang plan` (stages and their cost) and `promptlang render` (examples as tokens)."""

from __future__ import annotations

from promptlang import plan as p
from promptlang.pipeline import encode


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


def describe_plan(prepared) -> str:
    """The plan as a reader wants it: model, data, patterns, stages and the total work."""
    plan, tokenizer = prepared.plan, prepared.tokenizer
    kind, value = plan.spec.model.source
    lines = [f"model: {kind} {value} ({plan.family}); tokenizer: {plan.tokenizer.vocab_size} tokens",
             "data: " + "; ".join(f"seed {seed}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                                  for seed, counts in plan.splits.items())]
    for name, pattern in plan.patterns.items():
        lines.append(f"pattern {name}: " + " ".join(_piece(x) for x in pattern.pieces))
        lines += [f"  {line}" for line in label_words(pattern, tokenizer)]
    lines.append("stages:")
    for stage in plan.stages:
        work = stage.work
        cost = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in work.model_dump().items() if v)
        after = f"  (after {', '.join(stage.needs)})" if stage.needs else ""
        lines.append(f"  {stage.id:<36} {cost}{after}")
    total = plan.total()
    lines.append(f"total: {total.models_trained} models trained, {total.optimizer_steps} optimizer steps, "
                 f"{total.forward_passes} forward passes, {total.examples_read} examples read")
    return "\n".join(lines)


def render_examples(prepared, split: str, n: int) -> str:
    """The first `n` examples of a split through every pattern: text, tokens, masks, label words."""
    plan, tokenizer = prepared.plan, prepared.tokenizer
    seed = next(iter(prepared.splits))
    examples = getattr(prepared.splits[seed], split)[:n]
    max_length = getattr(plan.spec.method, "max_length", 256)
    out = []
    demos = None
    if plan.spec.demonstrations is not None:
        from promptlang.runtime import Session, demonstrations

        demos = [demonstrations(Session(plan, tokenizer, None), prepared.splits[seed], seed * 1000)] * len(examples)
    for name, pattern in plan.patterns.items():
        shown = demos if any(x.kind == "demos" for x in pattern.pieces) else None
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
