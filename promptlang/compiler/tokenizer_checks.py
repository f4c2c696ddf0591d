"""Tokenizer-aware checks (opt-in: `promptlang check --tokenizer`).

Loads the model's tokenizer with transformers and checks how label words and
templates tokenize: multi-token words where one token is wanted, unknown tokens,
labels whose words share a first token, templates that leave no room for input.
"""

from __future__ import annotations

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.language.builder import Built
from promptlang.language.check_context import Context
from promptlang.language.diagnostics import Diagnostics
from promptlang.compiler.compile import CompileError, compile_pattern, tokenizer_info
from promptlang.runtime.models import family_for, load_tokenizer
from promptlang.compiler.tokens import word_tokens


def check_tokenization(built: Built, tokenizer=None) -> Diagnostics:
    """Run the tokenizer-aware checks on a built spec.

    Args:
        built: a built spec without errors.
        tokenizer: a loaded tokenizer; by default the spec's model's tokenizer is loaded.

    Returns:
        Diagnostics: errors, warnings, and a note per label word saying how it tokenizes.
    """
    ctx = Context(built.spec, built.locations, Diagnostics(sources=dict(built.diagnostics.sources)),
                  built.directory)
    loaded = tokenizer is None
    if tokenizer is None:
        try:
            tokenizer = load_tokenizer(built.spec.model, built.directory)  # converts a GGUF model once
        except Exception as error:  # transformers raises many kinds; all mean "cannot load"
            ctx.warning(f"cannot load the tokenizer, so the tokenizer checks did not run: {_first_line(error)}",
                        ctx.key("model"), "check the model source, or set `tokenizer` to a local tokenizer")
            return ctx.diagnostics
    family = _family(built, look=loaded)
    for name in ctx.patterns:
        _check_template(ctx, name, ctx.spec.templates[name], tokenizer)
        _check_room(ctx, name, tokenizer, family)
    return ctx.diagnostics


def _family(built: Built, look: bool) -> str | None:
    """The model's family as `encode` will see it: as written, else (when `look`) from the model's config;
    None when it is not known (the room check then counts every mask, as a masked LM's input holds them)."""
    if built.spec.model.family is not m.ModelFamily.auto:
        return built.spec.model.family.value
    try:
        return family_for(built.spec.model, built.directory) if look else None
    except Exception:  # transformers raises many kinds; all mean "cannot read the config"
        return None


def _first_line(error: Exception) -> str:
    """The first line of an error's message (transformers' can run to many), or its type."""
    text = str(error).strip().splitlines()
    return text[0].strip() if text else type(error).__name__


def _check_template(ctx: Context, name: str, template: m.Template, tokenizer) -> None:
    verbalizer_name = template.verbalizer or (next(iter(ctx.spec.verbalizers)) if ctx.spec.verbalizers else None)
    part, index = _mask_slot(template)
    if verbalizer_name is None or index is None:
        return
    verbalizer = ctx.spec.verbalizers[verbalizer_name]
    segments = getattr(template, part)
    slot = segments[index]
    context = _context_before(segments, index)
    firsts: dict[int, str] = {}
    for label, words in verbalizer.words.items():
        for i, word in enumerate(words):
            span = ctx.at("verbalizers", verbalizer_name, "words", label, i)
            ids = word_tokens(tokenizer, word, context)
            bare = word_tokens(tokenizer, word)
            pieces = tokenizer.convert_ids_to_tokens(ids)
            ctx.diagnostics.note(
                f"in template `{name}`, \"{word}\" is {len(ids)} token{'s' if len(ids) != 1 else ''}: "
                f"{' '.join(pieces)}" + ("" if bare == ids else
                                         f" (alone: {' '.join(tokenizer.convert_ids_to_tokens(bare))})"),
                span)
            if not ids:
                ctx.error(f"\"{word}\" is no token at all in template `{name}`: the tokenizer drops all of it",
                          span, "write a word with visible letters (not only spaces, zero-width or control characters)")
            if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
                ctx.error(f"\"{word}\" contains a token the tokenizer does not know ({tokenizer.unk_token})", span,
                          "choose a word in the model's vocabulary")
            if slot.count is not None and len(ids) > slot.count:
                ctx.error(f"\"{word}\" is {len(ids)} tokens, but the slot in template `{name}` holds {slot.count}",
                          span, "write [MASK] to size the slot from the words, or choose a shorter word")
            # any two labels whose words share a first token: the order of the labels does not matter
            if ids and ids[0] in firsts and firsts[ids[0]] != label:
                ctx.warning(f"\"{word}\" ({label}) starts with the same token as a word of `{firsts[ids[0]]}`", span,
                            "the first mask cannot tell these labels apart; choose words that differ early")
            if ids:
                firsts.setdefault(ids[0], label)


def _mask_slot(template: m.Template) -> tuple[str, int | None]:
    """Where the label word goes: ("text", index of its [MASK]), else the seq2seq target's, else ("text", None)."""
    for part in ("text", "target"):
        masks = [i for i, s in enumerate(getattr(template, part) or []) if s.kind == "mask"]
        if masks:
            return part, masks[0]
    return "text", None


def _context_before(segments: list, index: int) -> str:
    previous = segments[index - 1] if index > 0 else None
    return previous.text if previous is not None and previous.kind == "text" else ""


def _check_room(ctx: Context, name: str, tokenizer, family: str | None) -> None:
    """An error when the template's own tokens leave no room for its input at `max_length`."""
    max_length = getattr(ctx.method, "max_length", None)
    if max_length is None:
        return
    try:
        pattern = compile_pattern(ctx.spec, name, tokenizer)
    except CompileError:  # a word longer than its slot: reported above
        return
    fixed = fixed_tokens(pattern, tokenizer_info(tokenizer), family)
    if fixed >= max_length:
        ctx.error(f"template `{name}` takes {fixed} tokens without its input, but `max_length` is {max_length}",
                  ctx.at("templates", name, "text"), "raise `max_length` or shorten the template")


def fixed_tokens(pattern: p.Pattern, info: p.Tokenizer, family: str | None) -> int:
    """The tokens of an input that are not its fields or demonstrations, counted as `pipeline.encode` counts
    them: special tokens, the template text's pieces, the masks (one sentinel for seq2seq), soft tokens, [SEP]."""
    masks = 1 if family == "seq2seq" else pattern.mask_count
    sizes = {"mask": masks, "sep": 1}
    return len(info.prefix) + len(info.suffix) + sum(
        len(piece.ids) if piece.kind == "text" else piece.count if piece.kind == "soft" else sizes.get(piece.kind, 0)
        for piece in pattern.pieces)
