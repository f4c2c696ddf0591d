"""A model that writes its target (T5's text-to-text way): fine-tuned with teacher forcing on the
target's tokens (the input's carry no loss), and writing through transformers' `generate`, batched,
with the spec's `generate { ... }` decoding."""

from __future__ import annotations


from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.runtime import generation
from promptlang.runtime.data import Example
from promptlang.runtime.session import Session
from promptlang.runtime.text_task import target_ids
from promptlang.runtime.training import History, fit, progress

WRITE_BATCHES = 5  # about this many progress lines per split written


def decoding_of(spec: m.Spec) -> generation.Decoding:
    """The spec's decoding settings (`generate { ... }`, its defaults when there is no block)."""
    settings = spec.generate or m.Generate()
    return generation.Decoding(settings.max_new_tokens, settings.beams, settings.length_penalty,
                               tuple(settings.stop))


def prompts(session: Session, pattern: p.Pattern, examples: list[Example]) -> list[list[int]]:
    """The model inputs of some examples: the pattern's text encoded (fields shortened to `max_length`); for
    a causal model without the special tokens its tokenizer puts after an input (the target follows it), and
    cut at the [MASK] that ends a template without a `target` (the label's word or the score is written there)."""
    encoded = session.encode(pattern, examples, session.spec.method.max_length)
    if session.family == "seq2seq":
        return encoded.ids
    if not pattern.target and encoded.mask_count:  # the model writes at the [MASK] that ends the template
        return [row[:at] for row, at in zip(encoded.ids, encoded.mask_at)]
    suffix = len(session.plan.tokenizer.suffix)
    return [row[: len(row) - suffix] for row in encoded.ids] if suffix else encoded.ids


def end_id(session: Session) -> int:
    """The token that ends a target: the tokenizer's end of sequence."""
    end = session.tokenizer.eos_token_id
    if end is None:
        raise ValueError("the tokenizer has no end-of-sequence token to end a target with")
    return end


def write(session: Session, pattern: p.Pattern, examples: list[Example], batch_size: int) -> list[str]:
    """The texts the session's model writes for some examples, in their order (with several processes
    each writes every n-th batch, and the texts are gathered)."""
    if not examples:
        return []
    inputs = prompts(session, pattern, examples)
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i]), i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mine = session.placement.mine(list(range(len(batches))))
    decoding, done = decoding_of(session.spec), {}
    bar = session.log.bar(len(mine), "wrote", " batches", lines=WRITE_BATCHES)
    session.model.eval()
    for number, index in enumerate(mine, 1):
        rows = batches[index]
        with session.placement.autocast():
            texts = generation.generate(session.model, session.tokenizer, session.family, [inputs[r] for r in rows],
                                        decoding, len(rows), session.plan.tokenizer.pad_id)
        done.update(zip(rows, texts))
        bar.update(number)
    done = session.placement.gather_rows(done)
    return [done[i] for i in range(len(examples))]


def train_writer(session: Session, pattern: p.Pattern, examples: list[Example], dev: list[Example],
                 seed: int) -> History:
    """Fine-tune the session's model to write each example's target (teacher forcing: the mean
    cross-entropy over the batch's target tokens); with dev examples, the state kept is the one whose
    written dev texts score best on the spec's first metric (`select_model dev`)."""
    method = session.spec.method
    inputs = prompts(session, pattern, examples)
    limit = decoding_of(session.spec).max_new_tokens
    targets = target_ids(pattern, examples, session.tokenizer, session.family, end_id(session), limit,
                         session.task.words(pattern, examples))
    pad = session.plan.tokenizer.pad_id

    def loss_of(rows: list[int]):
        with session.placement.autocast():
            return generation.target_loss(session.model, session.family, [inputs[r] for r in rows],
                                          [targets[r] for r in rows], pad)

    def evaluate() -> float:
        return session.task.selection(write(session, pattern, dev, method.eval_batch_size), dev)

    return fit(session.model, loss_of, len(examples), method, seed, evaluate if dev else None,
               progress(session.log), placement=session.placement)
