"""The candidates of LM-BFF's searches: each compiled into a pattern through the language and the
compiler, their ranking from the rank stages done so far, and the pattern a stage trains or scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.language.source import Source
from promptlang.methods.search import settings_of
from promptlang.runtime.errors import RunError
from promptlang.stages.kinds import Run

CANDIDATES = "candidates.json"  # a search stage's candidates: words or template text, train score, pattern
SEARCH_PATH = {"words": ("method", "label_word_search"), "templates": ("method", "template_search")}
SEARCH_NAME = {"words": "label-word search", "templates": "template search"}


@dataclass(frozen=True)
class Candidate:
    """One candidate of a search: its label words (label → word), its template text (a template
    search's), its score on the training set (a word mapping's; a template's averaged beam score),
    and its pattern compiled for the spec's tokenizer."""

    words: dict[str, str]
    text: str | None
    score: float
    pattern: p.Pattern
    searched_words: bool = True  # whether the words were found (not the verbalizer's first words)

    def spec(self, spec: m.Spec, base: str) -> m.Spec:
        """The spec this candidate makes of `spec`: its template in the base's place, its found words."""
        return found_spec(spec, base, self.words if self.searched_words else None, self.text)

    def to_json(self) -> dict:
        return {"words": self.words, "text": self.text, "score": self.score, "searched_words": self.searched_words,
                "pattern": self.pattern.model_dump(mode="json")}

    @classmethod
    def from_json(cls, data: dict) -> "Candidate":
        return cls(data["words"], data["text"], data["score"], p.Pattern.model_validate(data["pattern"]),
                   data["searched_words"])


def spec_with_words(spec: m.Spec, base: str, words: dict[str, str]) -> m.Spec:
    """The spec with other label words (one per label) in the verbalizer of the base template (every
    template that shares it, demonstrations' too, gets them)."""
    template = spec.templates[base]
    name = template.verbalizer or next(iter(spec.verbalizers), "found")
    verbalizer = m.Verbalizer(words={label: [words[label]] for label in spec.labels})
    return spec.model_copy(update={"verbalizers": {**spec.verbalizers, name: verbalizer},
                                   "templates": {**spec.templates, base: template.model_copy(
                                       update={"verbalizer": name})}})


def spec_with_template(spec: m.Spec, base: str, template: m.Template) -> m.Spec:
    """The spec with a found template in the base template's place (its verbalizer and prefix kept)."""
    own = spec.templates[base]
    return spec.model_copy(update={"templates": {**spec.templates, base: template.model_copy(
        update={"verbalizer": own.verbalizer, "prefix": own.prefix})}})


def read_templates(texts: list[str]) -> list[m.Template | None]:
    """Template texts read through the language's own parser, builder and checks (as a library file);
    None for a text that does not make a template with exactly one mask."""
    from promptlang.api import analyze

    out: list[m.Template | None] = []
    for text in texts:
        source = Source(f"promptlang 1\ntemplate found {string_literal(text)}\n", "<found template>")
        analysis = analyze(source)
        library = analysis.spec if analysis.ok else None
        template = library.templates.get("found") if isinstance(library, m.Library) else None
        out.append(template if template is not None and len(template.masks) == 1 else None)
    return out


def string_literal(text: str) -> str:
    """A template's text as a spec's string (its quotes and line breaks escaped; a template's own
    escapes `\\{` and `\\[` kept)."""
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'


def found_spec(spec: m.Spec, base: str, words: dict[str, str] | None, text: str | None) -> m.Spec:
    """The spec as a candidate makes it: its template in the base's place, its words in its verbalizer."""
    if text is not None:
        (template,) = read_templates([text])
        spec = spec_with_template(spec, base, template)
    return spec_with_words(spec, base, words) if words else spec


# ---------------------------------------------------------------- ranking


def candidates_of(run: Run, stage: p.Stage, search: str) -> list[Candidate]:
    """The candidates of the search that `stage` takes its pattern from (for its data sample)."""
    done = run.done[f"search/d{stage.data_seed}/{search}"]
    data = json.loads((done.path / CANDIDATES).read_text(encoding="utf-8"))
    return [Candidate.from_json(item) for item in data["candidates"]]


def ranking(run: Run, stage: p.Stage, search: str) -> list[int]:
    """The candidates of a search best first, from the rank stages that `stage` needs.

    The zero-shot round orders every candidate by dev score (ties: the search's own order). Each
    fine-tuning round then puts its candidates first, ordered by their dev score after fine-tuning
    (ties: their order before), the others keeping theirs: what successive halving keeps is always
    at the top.
    """
    ranks = [run.done[n] for n in stage.needs if run.done[n].stage.kind == "rank" and run.done[n].stage.search == search]
    zero = next(done for done in ranks if done.stage.round == 0)
    scores = zero.result["dev"]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    for number in sorted({done.stage.round for done in ranks} - {0}):
        trained = {done.result["candidate"]: done.result["dev"] for done in ranks
                   if done.stage.round == number and done.result.get("candidate") is not None}
        at = {c: i for i, c in enumerate(order)}
        first = sorted(trained, key=lambda c: (-trained[c], at[c]))
        order = first + [c for c in order if c not in trained]
    return order


def stage_session(run: Run, stage: p.Stage):
    """The session a stage runs in: the run's; PET's distillation model's; or, for a stage that trains or
    scores a found candidate, one whose spec and plan hold that candidate (its words in the verbalizer, its
    template in the base's place), so that demonstrations show the found words too.

    Raises:
        RunError: the search found fewer candidates than the run trains (`keep`).
    """
    if stage.search is None or stage.kind in ("search", "rank"):
        return run.session_for(stage)
    base = next(n for n in run.session.plan.patterns)
    return candidate_session(run, found_candidate(run, stage), base, stage.pattern)


def candidate_session(run: Run, candidate: Candidate, base: str, name: str):
    """The run's session with a candidate's spec, and its pattern under `name` in the plan (the model and
    its pretrained weights shared: they are kept now, when nothing can have trained the model yet)."""
    session = run.session
    if not session.initial:  # (no stage has reset the model, so none has trained it)
        session.reset(0)
    plan = session.plan.model_copy(update={"spec": candidate.spec(session.spec, base),
                                           "patterns": {**session.plan.patterns,
                                                        name: candidate.pattern.model_copy(update={"name": name})}})
    return replace(session, plan=plan)


def pattern_of(run: Run, stage: p.Stage) -> p.Pattern:
    """The pattern a stage trains or scores: the plan's, or the candidate a search found for its slot."""
    return stage_session(run, stage).plan.patterns[stage.pattern]


def too_few(run: Run, stage: p.Stage, count: int) -> RunError:
    """The error for a search that found fewer candidates than the run trains (`keep`)."""
    found = f"{count} candidate{'s' if count != 1 else ''}"
    return RunError(f"the {SEARCH_NAME[stage.search]} found {found} for data seed {stage.data_seed}, "
                    f"but `keep` asks for {settings_of(run.spec.method, stage.search).keep}",
                    SEARCH_PATH[stage.search] + ("keep",), f"lower `keep` to {max(1, count)}, or widen the search")


def found_candidate(run: Run, stage: p.Stage) -> Candidate:
    """The candidate a final stage trains (its search's slot-th best).

    Raises:
        RunError: the search found fewer candidates than the run trains (`keep`).
    """
    order = ranking(run, stage, stage.search)
    if stage.slot >= len(order):
        raise too_few(run, stage, len(order))
    return candidates_of(run, stage, stage.search)[order[stage.slot]]
