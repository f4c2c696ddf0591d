"""The stage kinds of LM-BFF's searches: `search` (a data sample's candidate label-word mappings, or
templates generated around the label words) and `rank` (every candidate scored zero-shot on dev, then
the candidates of each fine-tuning round, one per stage)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from promptlang.compiler import plan as p
from promptlang.compiler.compile import compile_pattern, input_segments, mask_context
from promptlang.language import spec as m
from promptlang.methods.search import settings_of
from promptlang.runtime import demos, word_search
from promptlang.runtime.data import Example
from promptlang.runtime.errors import RunError
from promptlang.runtime.prompt_training import train_pattern
from promptlang.stages.candidates import (CANDIDATES, SEARCH_NAME, SEARCH_PATH, Candidate, candidates_of, found_candidate,
                                          candidate_session, ranking, read_templates, spec_with_template,
                                          spec_with_words, too_few)
from promptlang.stages.kinds import Kind, Run, register
from promptlang.stages.scored import demo_sets, selection_dev


def poles(examples: list[Example], labels: list[str], regression: bool) -> list[int]:
    """Each example's label index; a regression's examples split at the median score into its two
    poles, low first (LM-BFF's label search for STS-B)."""
    if not regression:
        return [labels.index(e.label) for e in examples]
    return word_search.regression_poles([e.score for e in examples])


def _regression(run: Run) -> bool:
    return run.session.task.kind == "regression"


# ---------------------------------------------------------------- search


def _search_inputs(run: Run, stage: p.Stage) -> dict:
    return run.model_inputs(stage, ("train",)) | {"search": settings_of(run.spec.method, stage.search).model_dump(
        mode="json"), "templates": {k: v.model_dump(mode="json") for k, v in run.spec.templates.items()},
        "verbalizers": {k: v.model_dump(mode="json") for k, v in run.spec.verbalizers.items()}}


def _search(run: Run, stage: p.Stage, out: Path) -> dict:
    found = _search_words(run, stage) if stage.search == "words" else _search_templates(run, stage)
    if not found:
        what = "label-word mapping" if stage.search == "words" else "template"
        raise RunError(f"the {SEARCH_NAME[stage.search]} found no {what} for data seed {stage.data_seed}",
                       SEARCH_PATH[stage.search], "widen the search (`top_k`, `beam`), or give more training examples")
    (out / CANDIDATES).write_text(json.dumps({"candidates": [c.to_json() for c in found]}, ensure_ascii=False),
                                  encoding="utf-8")
    return {"candidates": len(found)}


def _search_words(run: Run, stage: p.Stage) -> list[Candidate]:
    """LM-BFF's label words: each label's `top_k` best whole words zero-shot, their mappings ranked on train."""
    session, spec, method = run.session, run.spec, run.spec.method
    settings = settings_of(method, "words")
    base = session.plan.patterns[stage.pattern]
    train = run.splits[stage.data_seed].train
    session.reset(stage.data_seed)
    run.loaded = None
    log_probs = word_search.vocabulary_log_probs(session, base, session.encode(base, train, method.max_length),
                                                 method.eval_batch_size)
    labels = poles(train, spec.labels, _regression(run))
    template = spec.templates[stage.pattern]
    segments = template.target if template.target and not template.masks else input_segments(template)
    checker = word_search.word_checker(session.tokenizer, mask_context(list(segments)))
    try:
        lists = word_search.label_candidates(log_probs, labels, len(spec.labels), settings.top_k, checker)
    except ValueError as error:  # a label without training examples
        raise RunError(f"the label-word search cannot rank words: {error}", ("data", "train"),
                       "give every label training examples (`shots`)") from None
    scores, owners, ids = word_search.candidate_columns(log_probs, lists)
    names = [w for words in lists for _, w in words]
    targets = [e.score for e in train] if _regression(run) else labels
    mappings = word_search.rank_mappings(scores, owners, targets, settings.candidates, _regression(run), ids)
    out = []
    for mapping in mappings:
        words = {label: names[w] for label, w in zip(spec.labels, mapping.words)}
        changed = spec_with_words(spec, stage.pattern, words)
        out.append(Candidate(words, None, mapping.score, compile_pattern(changed, stage.pattern, session.tokenizer)))
    return out


def _search_templates(run: Run, stage: p.Stage) -> list[Candidate]:
    """LM-BFF's templates: generated around each training example's label word, best averaged score first;
    each through the language's parser and checks, then compiled (texts that make no template are dropped)."""
    session, spec = run.session, run.spec
    settings = settings_of(spec.method, "templates")
    train = run.splits[stage.data_seed].train
    words = found_candidate(run, _words_final(stage)).words if _after_words(stage) else \
        {lw.label: lw.words[0] for lw in session.plan.patterns[stage.pattern].labels}
    labels = poles(train, spec.labels, _regression(run))
    each = [words[spec.labels[c]] for c in labels]
    fields = [e.fields for e in train]
    from promptlang.runtime import template_search

    generator, tokenizer, family = _generator(run, settings)
    generate = template_search.causal_templates if family == "causal" else template_search.t5_templates
    generated = generate(generator, tokenizer, fields, each, list(spec.data.text), settings.beam, settings.max_length,
                         session.device)
    run.loaded = None  # (the spec's model, when it generated, is unchanged; a generator of its own is let go)
    texts = [with_demos(spec.templates[stage.pattern], c.text) for c in generated]
    out = []
    for candidate, text, template in zip(generated, texts, read_templates(texts)):
        if template is not None and len(out) < settings.candidates:
            changed = spec_with_template(spec, stage.pattern, template)
            changed = spec_with_words(changed, stage.pattern, words) if _after_words(stage) else changed
            out.append(Candidate(words, text, candidate.score, compile_pattern(changed, stage.pattern, session.tokenizer),
                                 _after_words(stage)))
    return out


def with_demos(base: m.Template, text: str) -> str:
    """A generated template's text with the base template's [DEMOS] slot, where the base has it: first
    (as a causal LM reads demonstrations before the input, the label word last), else last (LM-BFF's
    masked LMs: the input, then the demonstrations)."""
    if not base.has("demos"):
        return text
    return "[DEMOS]" + text if base.text[0].kind == "demos" else text + " [DEMOS]"


def _after_words(stage: p.Stage) -> bool:
    return stage.search == "templates" and any(n.startswith(f"search/d{stage.data_seed}/words") for n in stage.needs)


def _words_final(stage: p.Stage) -> p.Stage:
    """A stand-in final stage of the word search: its best candidate, from the ranking `stage` needs."""
    return stage.model_copy(update={"search": "words", "slot": 0, "kind": "train"})


def _generator(run: Run, settings: m.TemplateSearch):
    """The model that generates templates: the spec's own when it is causal and `generator` is not set,
    else the named one (a folder beside the spec or a hub id), loaded here.

    Returns:
        (model, tokenizer, family).
    """
    session = run.session
    if settings.generator is None and session.family == "causal":
        return session.model, session.tokenizer, "causal"
    from promptlang.runtime.models import family_for, load_model, load_tokenizer

    name = settings.generator or "t5-3b"
    source = m.Model(path=name) if (session.directory / name).is_dir() else m.Model(hub=name)
    try:
        tokenizer = load_tokenizer(source, session.directory)
        model, family = load_model(source, session.directory, family_for(source, session.directory))
    except (OSError, ValueError, ImportError) as error:
        raise RunError(f"cannot load the template generator `{name}`: {str(error).splitlines()[0]}",
                       ("method", "template_search", "generator"),
                       "name a T5 model (a folder beside the spec, or a hub id with the network), or a causal LM"
                       ) from None
    if family == "masked":
        raise RunError(f"the template generator `{name}` is a masked LM; it cannot generate text",
                       ("method", "template_search", "generator"), "name a T5 model or a causal LM")
    return model.to(session.device).eval(), tokenizer, family


# ---------------------------------------------------------------- rank


def _rank_inputs(run: Run, stage: p.Stage) -> dict:
    return run.model_inputs(stage, ("train", "dev", "unlabeled")) | {"steps": stage.steps}


def _rank(run: Run, stage: p.Stage, out: Path) -> dict:
    return _zero_shot(run, stage) if stage.round == 0 else _fine_tuned(run, stage)


def _zero_shot(run: Run, stage: p.Stage) -> dict:
    """Every candidate's dev score without training: a word search's mappings from one pass over dev
    (every word's score at the mask), a template search's templates one pass each."""
    session, method = run.session, run.spec.method
    session.reset(stage.data_seed)
    run.loaded = None
    dev = run.splits[stage.data_seed].dev
    candidates = candidates_of(run, stage, stage.search)
    if stage.search == "words":
        base = session.plan.patterns[stage.pattern]
        log_probs = word_search.vocabulary_log_probs(session, base, session.encode(base, dev, method.max_length),
                                                     method.eval_batch_size)
        return {"dev": [_words_score(run, log_probs, dev, c) for c in candidates]}
    return {"dev": [_dev_score(run, stage, candidate_session(run, c, stage.pattern, stage.pattern), dev)
                    for c in candidates]}


def _dev_score(run: Run, stage: p.Stage, session, dev: list[Example], soft=None) -> float:
    """The task's dev score of the session's pattern (with the stage's demonstration sets, as its session draws them)."""
    method = run.spec.method
    sets = demo_sets(run, stage, session)
    probs = demos.set_probabilities(session, session.plan.patterns[stage.pattern], dev, method.max_length, sets,
                                    method.eval_batch_size, soft)
    return session.task.selection(probs, dev)


def _words_score(run: Run, log_probs: np.ndarray, examples: list[Example], candidate: Candidate) -> float:
    """A mapping's score on some examples from their vocabulary log-probabilities at the mask."""
    ids = [lw.ids[0][0] for lw in candidate.pattern.labels]
    scores = log_probs[:, ids]
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    return run.session.task.selection(probs / probs.sum(axis=1, keepdims=True), examples)


def _fine_tuned(run: Run, stage: p.Stage) -> dict:
    """One candidate of a halving round (the slot-th best so far), fine-tuned for the round's steps from
    the pretrained weights with the first training seed, and scored on dev."""
    order = ranking(run, stage, stage.search)
    if stage.slot >= len(order):  # the search found fewer candidates than the round has slots
        return {"candidate": None, "dev": None}
    method, splits = run.spec.method, run.splits[stage.data_seed]
    candidate = candidates_of(run, stage, stage.search)[order[stage.slot]]
    run.log(f"    round {stage.round}, candidate {stage.slot + 1} of {_round_size(run, stage)}: {_shown(candidate)}")
    session = candidate_session(run, candidate, stage.pattern, stage.pattern)
    session.reset(stage.seed)
    run.loaded = None
    settings = method.model_copy(update={"steps": stage.steps, "epochs": None})
    trained = train_pattern(session, session.plan.patterns[stage.pattern], splits.train,
                            selection_dev(settings, splits), splits.unlabeled, stage.seed,
                            demo_sets(run, stage, session), settings=settings)
    dev = trained.dev if trained.dev is not None else _dev_score(run, stage, session, splits.dev, trained.soft)
    return {"candidate": order[stage.slot], "dev": dev}


def _enough(run: Run, done) -> None:
    """A search found at least the `keep` candidates the run trains (checked before any fine-tuning)."""
    if done.result["candidates"] < settings_of(run.spec.method, done.stage.search).keep:
        raise too_few(run, done.stage, done.result["candidates"])


def _round_size(run: Run, stage: p.Stage) -> int:
    return sum(1 for s in run.session.plan.stages if s.kind == "rank" and s.search == stage.search
               and s.data_seed == stage.data_seed and s.round == stage.round)


def _shown(candidate: Candidate) -> str:
    words = ", ".join(f"{label} → {word!r}" for label, word in candidate.words.items())
    return f"{candidate.text!r} ({words})" if candidate.text else words


register(Kind("search", 2, _search_inputs, _search, lambda stage: [CANDIDATES], _enough))
register(Kind("rank", 1, _rank_inputs, _rank))
