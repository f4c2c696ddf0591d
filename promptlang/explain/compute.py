"""The numbers `explain` shows for each example, as plain data (the `--format json` document): the input
as the model sees it, the top tokens at each mask, the label probabilities before and after calibration
and the prediction; for a model that writes text, what it writes and the top tokens as it writes."""

from __future__ import annotations

import numpy as np
import torch

from promptlang.compiler import plan as p
from promptlang.explain.subject import Scorer, Subject
from promptlang.runtime import demos, generation, scoring, text_training
from promptlang.runtime.batches import pad
from promptlang.runtime.data import Example
from promptlang.runtime.pipeline import Encoded
from promptlang.runtime.session import Session, scored_rows
from promptlang.runtime.word_search import decoder_prefix, vocabulary_log_probs

WRITTEN_POSITIONS = 5  # the first generated positions whose top tokens are shown


def explain(subject: Subject, examples: list[Example], source: str, top: int) -> list[dict]:
    """One record per (example, pattern), example-major (see docs/explain.md for the fields).

    Args:
        subject: the loaded model and its patterns.
        examples: the examples to explain.
        source: where they came from: a split's name, or `input`.
        top: how many of the likeliest tokens to show at each position.
    """
    per_pattern = [(_writing if subject.session.task.writes else _scoring)(subject.session, scorer, examples, top)
                   for scorer in subject.scorers]
    out = []
    for i, example in enumerate(examples):
        for scorer, records in zip(subject.scorers, per_pattern):
            head = {"index": i, "source": source, "fields": dict(example.fields), "label": example.label,
                    "pattern": scorer.name, "model": "trained" if subject.trained else "pretrained"}
            out.append(head | records[i])
    return out


def top_tokens(tokenizer, log_probs: np.ndarray, top: int) -> list[dict]:
    """The `top` likeliest tokens of a (V,) log-probability vector, likeliest first (ties: lower id first)."""
    order = np.argsort(-log_probs, kind="stable")[:top]
    return [token_entry(tokenizer, int(i)) | {"probability": float(np.exp(log_probs[i]))} for i in order]


def token_entry(tokenizer, token_id: int) -> dict:
    """A token as `explain` shows it: its id, its vocabulary entry and its decoded text."""
    return {"id": token_id, "token": tokenizer.convert_ids_to_tokens(token_id), "text": tokenizer.decode([token_id])}


# ---------------------------------------------------------------- patterns that score label words


def _scoring(session: Session, scorer: Scorer, examples: list[Example], top: int) -> list[dict]:
    method = session.spec.method
    encodings = demos.encoded_sets(session, scorer.pattern, examples, method.max_length, scorer.sets)
    first = encodings[0]  # the tokens shown are those of the first demonstration set
    at_masks = vocabulary_at_masks(session, scorer.pattern, first, scorer.soft, method.eval_batch_size)  # (N, K, V)
    raw = demos.mean_probabilities(session, scorer.pattern, encodings, method.eval_batch_size, scorer.soft)
    calibrated = demos.mean_probabilities(session, scorer.pattern, encodings, method.eval_batch_size, scorer.soft,
                                          scorer.calibrations)  # (N, C)
    used = calibrated if scorer.calibrated else raw
    predicted = session.task.predicted(used)
    content_free = np.mean(np.array(scorer.calibrations), axis=0)  # (C,)
    out = []
    for i in range(len(examples)):
        record = _seen(session, scorer.pattern, first, i)
        record["demonstration_sets"] = len(encodings) if scorer.sets else 0
        if first.soft_at[i]:  # (a pattern with [SOFT] tokens: where the soft prompt's vectors are read)
            record["soft_positions"] = list(first.soft_at[i])
        record["masks"] = [_mask(session, scorer.pattern, at_masks[i, k], k, first.mask_at[i], top)
                           for k in range(at_masks.shape[1])]
        record["labels"] = [{"label": lw.label, "words": list(lw.words), "probability": float(raw[i, c]),
                             "content_free": float(content_free[c]), "calibrated": float(calibrated[i, c])}
                            for c, lw in enumerate(scorer.pattern.labels)]
        record["content_free"] = scorer.calibrations
        row = used[i]
        record["prediction"] = {"label": session.spec.labels[int(row.argmax())], "predicted": predicted[i],
                                "uses": "calibrated" if scorer.calibrated else "uncalibrated"}
        out.append(record)
    return out


def _seen(session: Session, pattern: p.Pattern, encoded: Encoded, i: int) -> dict:
    """The input as the model reads it at the mask: every token for a masked LM or a seq2seq encoder (and
    the decoder's prefix); for a causal LM the text before the mask, and what follows the label word."""
    tokenizer, ids, at = session.tokenizer, encoded.ids[i], encoded.mask_at[i]
    if session.family == "causal":
        suffix = len(session.plan.tokenizer.suffix)
        seen, after = ids[:at], ids[at + encoded.mask_count:]
        return {"text": tokenizer.decode(seen), "tokens": tokenizer.convert_ids_to_tokens(seen),
                "after_word": tokenizer.decode(after[: len(after) - suffix] if suffix else after)}
    record = {"text": tokenizer.decode(ids), "tokens": tokenizer.convert_ids_to_tokens(ids)}
    if session.family == "seq2seq":
        decoder = [session.model.config.decoder_start_token_id, *decoder_prefix(session, pattern)]
        record |= {"decoder": tokenizer.decode(decoder), "decoder_tokens": tokenizer.convert_ids_to_tokens(decoder)}
    return record


def _mask(session: Session, pattern: p.Pattern, log_probs: np.ndarray, k: int, mask_at: int, top: int) -> dict:
    """Mask k: where it is, its top tokens, and the probability there of each label word's k-th token."""
    if session.family == "seq2seq":
        position = 1 + len(decoder_prefix(session, pattern))  # in the decoder, after its start token
    else:
        position = mask_at + k
    words = [{"label": lw.label, "word": word} | token_entry(session.tokenizer, ids[k])
             | {"probability": float(np.exp(log_probs[ids[k]]))}
             for lw in pattern.labels for word, ids in zip(lw.words, lw.ids) if k < len(ids)]
    return {"mask": k + 1, "position": position, "top": top_tokens(session.tokenizer, log_probs, top),
            "label_words": words}


def vocabulary_at_masks(session: Session, pattern: p.Pattern, encoded: Encoded, soft, batch_size: int) -> np.ndarray:
    """Log-probabilities over the vocabulary at each mask: (N, K, V).

    A masked LM: every mask of the slot, from one pass over the input as encoded (`scoring.mask_log_probs`,
    the head at the masks only). A causal LM: the next token after the text before the mask; a seq2seq
    model: the word's first token in the decoder (`word_search.vocabulary_log_probs`, K = 1; with a trained
    soft prompt, the same positions with the soft prompt's vectors read at its placeholders).
    """
    if session.family == "masked":
        score = lambda rows: _masked(session, encoded, rows, soft)  # noqa: E731
    elif soft is None:
        return vocabulary_log_probs(session, pattern, encoded, batch_size)[:, None, :]
    else:
        score = lambda rows: _first_token_with_soft(session, pattern, encoded, rows, soft)[:, None, :]  # noqa: E731
    return scored_rows(session, len(encoded), [len(ids) for ids in encoded.ids], batch_size, score)


def _masked(session: Session, encoded: Encoded, rows: list[int], soft) -> torch.Tensor:
    """(B, K, V) at every mask of each row's slot."""
    ids, attention = pad([encoded.ids[r] for r in rows], session.plan.tokenizer.pad_id, session.device)
    mask_at = torch.tensor([encoded.mask_at[r] for r in rows], device=session.device)
    soft_at = [encoded.soft_at[r] for r in rows] if soft is not None else None
    with session.placement.autocast():
        return scoring.mask_log_probs(session.model, ids, attention, mask_at, encoded.mask_count, soft, soft_at)


def _first_token_with_soft(session: Session, pattern: p.Pattern, encoded: Encoded, rows: list[int],
                           soft) -> torch.Tensor:
    """(B, V) where `vocabulary_log_probs` looks, the soft prompt's vectors at its placeholders."""
    model, pad_id, device = session.model, session.plan.tokenizer.pad_id, session.device
    with session.placement.autocast():
        if session.family == "causal":
            prompts = [encoded.ids[r][: encoded.mask_at[r]] or [pad_id] for r in rows]
            soft_at = [[q for q in encoded.soft_at[r] if q < encoded.mask_at[r]] for r in rows]
            ids, attention = pad(prompts, pad_id, device)
            hidden = scoring.hidden_states(model, ids, attention, soft, soft_at)  # (B, L, H)
            last = hidden[torch.arange(len(rows), device=device), attention.sum(1) - 1]  # (B, H)
            return torch.log_softmax(scoring.head_logits(model, last).float(), dim=-1)
        ids, attention = pad([encoded.ids[r] for r in rows], pad_id, device)
        embeds = soft.place(model.get_input_embeddings()(ids), [encoded.soft_at[r] for r in rows])  # (B, L, H)
        prefix = [model.config.decoder_start_token_id, *decoder_prefix(session, pattern)]
        decoder = torch.tensor([prefix] * len(rows), device=device)  # (B, T)
        logits = model(inputs_embeds=embeds, attention_mask=attention, decoder_input_ids=decoder).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)


# ---------------------------------------------------------------- patterns whose model writes text


def _writing(session: Session, scorer: Scorer, examples: list[Example], top: int) -> list[dict]:
    inputs = text_training.prompts(session, scorer.pattern, examples)
    decoding = text_training.decoding_of(session.spec)
    session.model.eval()
    with session.placement.autocast():
        written = generation.generated_ids(session.model, session.tokenizer, session.family, inputs, decoding,
                                           session.spec.method.eval_batch_size, session.plan.tokenizer.pad_id)
    texts = [generation.cut_at_stop(session.tokenizer.decode(row, skip_special_tokens=True), decoding.stop).strip()
             for row in written]
    shown = session.task.predicted(texts) if session.task.kind != "generation" else texts
    out = []
    for i, (prompt, tokens) in enumerate(zip(inputs, written)):
        ended = len(tokens) < decoding.max_new_tokens  # by the end token (or a stop string), not the limit
        steps = _step_log_probs(session, prompt, tokens, min(WRITTEN_POSITIONS, len(tokens) + ended))  # (P, V)
        out.append({"text": session.tokenizer.decode(prompt), "tokens": session.tokenizer.convert_ids_to_tokens(prompt),
                    "written": texts[i],
                    "steps": [{"step": j + 1,
                               "chosen": token_entry(session.tokenizer, tokens[j]) if j < len(tokens) else None,
                               "top": top_tokens(session.tokenizer, steps[j], top)} for j in range(len(steps))],
                    "prediction": {"predicted": shown[i], "uses": "written"}})
    return out


@torch.no_grad()
def _step_log_probs(session: Session, prompt: list[int], written: list[int], steps: int) -> np.ndarray:
    """Log-probabilities (P, V) at the first P = `steps` generated positions, the written tokens fed back
    (teacher forcing): the distributions the decoding chose from (after the last token: where it ended)."""
    model, device = session.model, session.device
    with session.placement.autocast():
        if session.family == "seq2seq":
            ids = torch.tensor([prompt], device=device)
            decoder = torch.tensor([[model.config.decoder_start_token_id, *written[: steps - 1]]], device=device)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=decoder).logits[0]
        else:
            ids = torch.tensor([prompt + written[: steps - 1]], device=device)
            hidden = scoring.hidden_states(model, ids, torch.ones_like(ids))[0]  # (L, H)
            logits = scoring.head_logits(model, hidden[len(prompt) - 1 :])  # (P, V): the head where tokens are written
    return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
