"""LM-BFF's automatic templates: a beam search over template text whose every step is averaged over the training examples, with T5 filling spans around the label word and a causal LM writing the text between the input and the word."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from promptlang.runtime import causal, scoring, template_text as tt
from promptlang.runtime.batches import pad

Step = Callable[[list[list[int]]], torch.Tensor]


@dataclass(frozen=True)
class Candidate:
    """A found template: its promptlang text (`{{ field }}`s and one `[MASK]`), its averaged log-probability,
    and the searched token ids it came from (T5: the decoder's output after `<extra_id_0>`; causal: X)."""

    text: str
    score: float
    tokens: tuple[int, ...] = ()


@torch.no_grad()
def averaged_beam_search(step: Step, beam: int, max_length: int, ends: Callable[[list[int]], bool],
                         forbidden: Collection[int] = (), no_repeat: Collection[int] = (),
                         shared: bool = True, stops: Collection[int] = ()) -> list[tuple[list[int], float]]:
    """LM-BFF's beam search over token sequences, scored by summed (averaged) log-probabilities.

    Every unfinished item is expanded with its `beam` best allowed tokens; the items that `ends`
    marks are finished, never expanded again. `shared` (LM-BFF): the finished compete with the new
    items, and the `beam` best by summed score survive each step. Not shared (as Hugging Face's beam
    search): the `beam` best finished are kept apart and the `beam` best unfinished go on, until
    none of these can still beat the finished (scores only fall: log-probabilities are ≤ 0).
    Ties: the smaller token sequence first.

    Args:
        step: prefixes → (P, V) log-scores of each prefix's next token (for a template search, the
            log-probabilities averaged over all training examples); -inf where a token is not allowed.
        beam: how many items survive each step.
        max_length: the most tokens an item holds; items still unfinished then are dropped.
        ends: whether a token sequence is finished.
        forbidden: token ids never chosen (degenerate tokens).
        no_repeat: token ids of which none may follow another (LM-BFF's repeated `.`).
        shared: whether finished items take places in the beam.
        stops: token ids tried on every item besides its `beam` best (the causal search's end).

    Returns:
        The finished (tokens, score) items, best first.
    """
    live: list[tuple[list[int], float]] = [([], 0.0)]
    done: list[tuple[list[int], float]] = []
    for _ in range(max_length):
        if not live:
            break
        scores = _allowed(step([tokens for tokens, _ in live]).double(), live, forbidden, no_repeat)  # (P, V)
        total = scores + torch.tensor([score for _, score in live], dtype=scores.dtype, device=scores.device)[:, None]
        ids = total.topk(min(beam, total.shape[1]), dim=1).indices  # (P, k)
        if stops:
            ids = torch.cat([ids, torch.tensor(sorted(stops), device=ids.device).expand(len(live), -1)], dim=1)
        best = total.gather(1, ids)  # (P, k + stops)
        grown = [(tokens + [token], score) for (tokens, _), row, row_ids in zip(live, best.tolist(), ids.tolist())
                 for token, score in dict(zip(row_ids, row)).items() if score > -math.inf]
        done, live = _survivors(done, grown, ends, beam, shared)
    return done


def _survivors(done, grown, ends, beam: int, shared: bool):
    """(finished, unfinished) items after a step, each best first (see `averaged_beam_search`)."""
    order = lambda item: (-item[1], item[0])  # noqa: E731
    if shared:
        pool = sorted(done + grown, key=order)[:beam]
        return [item for item in pool if ends(item[0])], [item for item in pool if not ends(item[0])]
    done = sorted(done + [item for item in grown if ends(item[0])], key=order)[:beam]
    live = sorted((item for item in grown if not ends(item[0])), key=order)[:beam]
    if len(done) == beam and live and live[0][1] <= done[-1][1]:
        live = []
    return done, live


def _allowed(scores: torch.Tensor, live, forbidden: Collection[int], no_repeat: Collection[int]) -> torch.Tensor:
    """Scores (P, V) with forbidden tokens at -inf, and `no_repeat` tokens after one of them."""
    scores = scores.clone()
    blocked = sorted(i for i in forbidden if i < scores.shape[1])
    if blocked:
        scores[:, blocked] = -math.inf
    repeats = sorted(i for i in no_repeat if i < scores.shape[1])
    rows = [r for r, (tokens, _) in enumerate(live) if tokens and tokens[-1] in no_repeat]
    if repeats and rows:
        scores[torch.tensor(rows, device=scores.device)[:, None], torch.tensor(repeats, device=scores.device)] = -math.inf
    return scores


def _check(examples: list[dict[str, str]], words: list[str]) -> None:
    """A search needs examples, each with its label word."""
    if not examples or len(examples) != len(words):
        raise ValueError(f"a template search needs examples and one label word each, not {len(examples)} "
                         f"examples and {len(words)} words")


def _ranked(candidates: list[Candidate]) -> list[Candidate]:
    """Best first (ties by text), one per template text: the best-scoring one."""
    best: dict[str, Candidate] = {}
    for candidate in sorted(candidates, key=lambda c: (-c.score, c.text)):
        best.setdefault(candidate.text, candidate)
    return list(best.values())


# ---------------------------------------------------------------- T5


@torch.no_grad()
def t5_templates(generator, tokenizer, examples: list[dict[str, str]], words: list[str], fields: list[str],
                 beam: int, max_length: int, device, batch_size: int = 32, max_input: int = 256) -> list[Candidate]:
    """LM-BFF's T5 template generation: T5 fills the spans around each example's label word.

    The inputs are `<S> <X> word <Y>` and `<X> word <Y> <S>` for one field, `<S1> <X> word <Y> <S2>`
    for two (X, Y: `<extra_id_0>`, `<extra_id_1>`); the decoder is given `<extra_id_0>` (its probability,
    the same for every candidate of a shape, is not counted) and writes `X <extra_id_1> Y <extra_id_2>`
    (or `</s>` for the last), each step's log-probabilities averaged over all the examples (LM-BFF
    averages the logits); the spans become `S X [MASK] Y`, `X [MASK] Y S`, `S1 X [MASK] Y S2`.
    Unlike LM-BFF, the inputs keep the fields' case and final punctuation (the templates use no filters),
    and every shape is searched with the whole beam.

    Args:
        generator: a T5 model; tokenizer: its tokenizer, with sentinels `<extra_id_0..2>`.
        examples: the training examples' text fields; words: each example's label word.
        fields: the one or two fields the template shows.
        beam: the beam width; max_length: the most decoder tokens after `<extra_id_0>`, both spans'
            closing sentinels included (a span is closed when it would run out).
        device: where the inputs go (the model's device); batch_size: decoder rows per forward pass;
        max_input: the most tokens of each field.

    Returns:
        The candidates of every shape, best first, one per template text.

    Raises:
        ValueError: without examples, with a word count that differs, with other than one or two fields.
    """
    _check(examples, words)
    shapes = tt.t5_shapes(fields)
    sentinels = tuple(tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(3)]))
    eos = tokenizer.eos_token_id
    forbidden = tt.degenerate_ids(tokenizer) - {sentinels[1], sentinels[2], eos}
    found = []
    for shape in shapes:
        inputs = [tt.t5_input(tokenizer, shape, example, word, sentinels, max_input) for example, word in zip(examples, words)]
        memory = _encode(generator, inputs, tokenizer.pad_token_id, device, batch_size)
        start = [generator.config.decoder_start_token_id, sentinels[0]]
        step = _t5_step(generator, memory, start, sentinels, eos, max_length, batch_size)
        items = averaged_beam_search(step, beam, max_length, lambda t: t[-1] in (sentinels[2], eos),
                                     forbidden | _extra(tokenizer, generator), tt.period_ids(tokenizer))
        for tokens, score in items:
            spans = tt.t5_spans(tokens, sentinels, eos)
            text = None if spans is None else tt.template_text(tokenizer, shape, spans)
            if text is not None:
                found.append(Candidate(text, score, tuple(tokens)))
    return _ranked(found)


def _extra(tokenizer, model) -> set[int]:
    """Ids the model's head has beyond the tokenizer's vocabulary (padding rows)."""
    return set(range(len(tokenizer), model.get_output_embeddings().weight.shape[0]))


def _encode(generator, inputs: list[list[int]], pad_id: int, device, batch_size: int):
    """The encoder's states (E, L, H) and mask (E, L) of every example, in batches."""
    ids, attention = pad(inputs, pad_id, device)
    encoder = generator.get_encoder()
    states = [encoder(input_ids=ids[i : i + batch_size], attention_mask=attention[i : i + batch_size]).last_hidden_state
              for i in range(0, len(inputs), batch_size)]
    return torch.cat(states), attention


def t5_log_probs(generator, memory, start: list[int], prefixes: list[list[int]], batch_size: int) -> torch.Tensor:
    """Next-token log-probabilities (P, V) after each decoder prefix, averaged over the examples' encoder states.

    Args:
        memory: the encoder's states (E, L, H) and mask (E, L); start: the decoder's first ids;
        prefixes: the generated ids after `start`; batch_size: (prefix, example) rows per pass.
    """
    states, attention = memory
    count = states.shape[0]
    decoder_ids, valid = pad([start + prefix for prefix in prefixes], generator.config.pad_token_id, states.device)
    total = None
    for begin in range(0, len(prefixes) * count, batch_size):
        rows = torch.arange(begin, min(begin + batch_size, len(prefixes) * count), device=states.device)
        item, example = rows // count, rows % count
        hidden = generator.get_decoder()(input_ids=decoder_ids[item], attention_mask=valid[item],
                                         encoder_hidden_states=states[example],
                                         encoder_attention_mask=attention[example]).last_hidden_state  # (R, T, H)
        last = hidden[torch.arange(len(rows), device=rows.device), valid[item].sum(1) - 1]  # (R, H)
        if getattr(generator.config, "scale_decoder_outputs", generator.config.tie_word_embeddings):
            last = last * generator.model_dim ** -0.5  # as T5's own forward scales before a tied head
        log_probs = F.log_softmax(generator.lm_head(last).float(), dim=-1)  # (R, V)
        part = torch.zeros(len(prefixes), log_probs.shape[1], device=states.device).index_add(0, item, log_probs)
        total = part if total is None else total + part
    return total / count


def _t5_step(generator, memory, start, sentinels, eos: int, max_length: int, batch_size: int) -> Step:
    """The T5 search's step: averaged log-probabilities, with X closed by `<extra_id_1>` and Y by `<extra_id_2>`
    or `</s>`, each closed when the item would otherwise run past `max_length`."""
    first, second = sentinels[1], sentinels[2]

    def step(prefixes: list[list[int]]) -> torch.Tensor:
        scores = t5_log_probs(generator, memory, start, prefixes, batch_size)  # (P, V)
        for row, prefix in enumerate(prefixes):
            in_y = first in prefix
            closing = [second, eos] if in_y else [first]
            if len(prefix) >= max_length - (1 if in_y else 2):
                keep = scores[row, closing].clone()
                scores[row] = -math.inf
                scores[row, closing] = keep
            else:
                scores[row, [first] if in_y else [second, eos]] = -math.inf
        return scores

    return step


# ---------------------------------------------------------------- causal LMs


@torch.no_grad()
def causal_templates(model, tokenizer, examples: list[dict[str, str]], words: list[str], fields: list[str],
                     beam: int, max_length: int, device, batch_size: int = 32, max_input: int = 256) -> list[Candidate]:
    """Templates `S X [MASK]` (a pair: `S1 S2 X [MASK]`) whose text X a causal LM writes left to right.

    A candidate's score is the mean over the examples of log P(X | S) + log P(" word" | S X), the
    word the example's label word. The search is `averaged_beam_search` over X followed by a
    virtual end token: each step gives the averaged log-probabilities of X's next token and, as the
    end's, the averaged log-probability of the word right there, so a finished item's summed score
    is exactly that mean. X may end after any token (the word's probability decides); it holds at
    most `max_length` tokens. The finished are kept apart from the beam (`shared=False`): a finished
    item, charged for its word, would otherwise always lose its place to an unfinished one, charged
    only for its best next token, and every X would run to `max_length`. The input runs once and
    its key/value cache serves every step; the LM head runs only at X's last position and where a
    word's later tokens are predicted.

    Args:
        model: a causal LM; tokenizer: its tokenizer.
        examples: the training examples' text fields; words: each example's label word.
        fields: the one or two fields the template shows, in order.
        beam: the beam width; max_length: the most tokens of X.
        device: where the inputs go (the model's device); batch_size: (item, example) rows per pass;
        max_input: the most tokens of each field (its end kept).

    Returns:
        The candidates, best first, one per template text.

    Raises:
        ValueError: without examples, with a word count that differs, with other than one or two fields.
    """
    _check(examples, words)
    shape = tt.causal_shape(fields)
    prompts = [tt.causal_input(tokenizer, example, fields, max_input) for example in examples]
    word_ids = [tt.word_ids(tokenizer, word) for word in words]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    state = prompt_states(model, prompts, pad_id, device, room=max_length + max(len(w) for w in word_ids))
    end = model.get_output_embeddings().weight.shape[0]  # the virtual end token's id: one past the vocabulary
    step = causal_step(model, state, word_ids, max_length, batch_size)
    items = averaged_beam_search(step, beam, max_length + 1, lambda t: t[-1] == end,
                                 tt.degenerate_ids(tokenizer) | _extra(tokenizer, model), tt.period_ids(tokenizer),
                                 shared=False, stops=[end])
    found = []
    for tokens, score in items:
        text = tt.template_text(tokenizer, shape, [tokens[:-1]])
        if text is not None:
            found.append(Candidate(text, score, tuple(tokens[:-1])))
    return _ranked(found)


@dataclass
class PromptStates:
    """The examples' inputs S after one pass: ids, attention (E, L), last states (E, H), and their key/value
    cache (None where a cache cannot serve: the steps then run whole sequences)."""

    prompts: list[list[int]]
    attention: torch.Tensor
    last: torch.Tensor
    cache: object
    pad_id: int


@torch.no_grad()
def prompt_states(model, prompts: list[list[int]], pad_id: int, device, room: int = 0) -> PromptStates:
    """Run the examples' inputs once (right-padded) and keep what the steps continue from; `room`: the
    most tokens a step adds (a cache serves only while the whole sequence fits `causal.cache_applies`)."""
    ids, attention = pad(prompts, pad_id, device)
    base = getattr(model, model.base_model_prefix)
    lengths = attention.sum(1)
    rows = torch.arange(len(prompts), device=ids.device)
    if not causal.cache_applies(model, base, ids.shape[1] + room):
        return PromptStates(prompts, attention, scoring.hidden_states(model, ids, attention)[rows, lengths - 1], None, pad_id)
    from transformers import DynamicCache

    cache = DynamicCache()
    hidden = base(input_ids=ids, attention_mask=attention, cache=cache, use_cache=True).last_hidden_state  # (E, L, H)
    return PromptStates(prompts, attention, hidden[rows, lengths - 1], cache, pad_id)


def causal_step(model, state: PromptStates, word_ids: list[list[int]], max_length: int, batch_size: int) -> Step:
    """The causal search's step (P, V + 1): the averaged log-probabilities of X's next token, and in the
    last column (the end) the averaged log P(word | S X); X ends only after a token, and must end at `max_length`."""

    def step(prefixes: list[list[int]]) -> torch.Tensor:
        following, word = causal_log_probs(model, state, word_ids, prefixes, batch_size)  # (P, V), (P,)
        scores = torch.cat([following, word[:, None]], dim=1)  # (P, V + 1)
        for row, prefix in enumerate(prefixes):
            if not prefix:
                scores[row, -1] = -math.inf
            if len(prefix) >= max_length:
                scores[row, :-1] = -math.inf
        return scores

    return step


@torch.no_grad()
def causal_log_probs(model, state: PromptStates, word_ids: list[list[int]], prefixes: list[list[int]],
                     batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each prefix X: the next-token log-probabilities (P, V) and log P(word | S X) (P,), each the mean
    over the examples (example e's word `word_ids[e]`), normalised over the whole vocabulary in float32."""
    count = len(state.prompts)
    head = functools.partial(scoring.head_logits, model)
    following, word = None, torch.zeros(len(prefixes), device=state.last.device)
    for begin in range(0, len(prefixes) * count, batch_size):
        rows = list(range(begin, min(begin + batch_size, len(prefixes) * count)))
        pairs = [(r // count, r % count) for r in rows]
        inputs = [prefixes[p] + word_ids[e][:-1] for p, e in pairs]
        states = _continued(model, state, [e for _, e in pairs], inputs)  # (R, T + 1, H)
        at = torch.tensor([len(prefixes[p]) for p, _ in pairs], device=states.device)
        log_probs = F.log_softmax(head(states[torch.arange(len(rows), device=states.device), at]).float(), dim=-1)
        item = torch.tensor([p for p, _ in pairs], device=states.device)
        part = torch.zeros(len(prefixes), log_probs.shape[1], device=states.device).index_add(0, item, log_probs)
        following = part if following is None else following + part
        word = word.index_add(0, item, _word_log_probs(head, states, log_probs, at, [word_ids[e] for _, e in pairs]))
    return following / count, word / count


def _word_log_probs(head, states: torch.Tensor, first: torch.Tensor, at: torch.Tensor, words: list[list[int]]) -> torch.Tensor:
    """log P(word | S X) (R,): its first token from the distribution at X's end (R, V), the later ones from
    the states (R, T + 1, H) where the word's own tokens have run (the head only there)."""
    device = states.device
    scores = first.gather(1, torch.tensor([w[0] for w in words], device=device)[:, None]).squeeze(1)
    later = [(r, int(at[r]) + k, token) for r, w in enumerate(words) for k, token in enumerate(w[1:], start=1)]
    if not later:
        return scores
    rows = torch.tensor([r for r, _, _ in later], device=device)
    hidden = states[rows, torch.tensor([q for _, q, _ in later], device=device)]  # (K, H)
    targets = torch.tensor([[token] for *_, token in later], device=device)
    vocabulary = first.shape[1]
    picked = causal.token_log_probs(head, hidden, targets, vocabulary).squeeze(1)  # (K,)
    return scores.index_add(0, rows, picked.to(scores.dtype))


def _continued(model, state: PromptStates, examples: list[int], inputs: list[list[int]]) -> torch.Tensor:
    """States (R, T + 1, H) of the examples' inputs S continued by `inputs`: position j holds the state
    after the continuation's first j tokens (j = 0: S's last state), each predicting the next."""
    first = state.last[examples].unsqueeze(1)  # (R, 1, H)
    if not any(inputs):
        return first
    device = state.last.device
    if state.cache is None:
        full = [state.prompts[e] + x for e, x in zip(examples, inputs)]
        ids, attention = pad(full, state.pad_id, device)
        hidden = scoring.hidden_states(model, ids, attention)  # (R, L, H)
        width = max(len(x) for x in inputs)
        starts = torch.tensor([len(state.prompts[e]) for e in examples], device=device)
        at = (starts[:, None] + torch.arange(width, device=device)).clamp(max=ids.shape[1] - 1)  # (R, T)
        return torch.cat([first, hidden.gather(1, at[..., None].expand(-1, -1, hidden.shape[-1]))], dim=1)
    cache = copy.deepcopy(state.cache)
    cache.batch_select_indices(torch.tensor(examples, device=device))
    ids, valid = pad(inputs, state.pad_id, device)  # (R, T)
    positions = state.attention[examples].sum(1, keepdim=True) + torch.arange(ids.shape[1], device=device)
    mask = torch.cat([state.attention[examples], valid], dim=1)
    base = getattr(model, model.base_model_prefix)
    hidden = base(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, position_ids=positions).last_hidden_state
    return torch.cat([first, hidden], dim=1)
