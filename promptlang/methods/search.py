"""LM-BFF's searches as stages of the plan: for each data sample, a search for candidate label words or
templates, their zero-shot ranking on dev, then successive halving (or LM-BFF's full fine-tuning of every
candidate); the run then trains the best `keep` candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptlang.compiler import costs
from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.methods.base import Graph

if TYPE_CHECKING:
    from promptlang.language.check_context import Context

SEARCHES = ("words", "templates")  # in the order they run: templates are generated around the found words
SETTINGS = {"words": "label_word_search", "templates": "template_search"}


def settings_of(method, search: str) -> m.Search | None:
    """The spec's settings block of a search (None when the spec does not ask for it)."""
    return getattr(method, SETTINGS[search], None)


def searches(method) -> list[str]:
    """The searches a method's settings ask for, in the order they run."""
    return [search for search in SEARCHES if settings_of(method, search) is not None]


def check(ctx: "Context") -> None:
    """A searched spec's own checks: dev data to rank on, one template to start from, `keep` within the
    candidates, an ensemble of more than one, one or two text fields around a generated template."""
    method, data = ctx.spec.method, ctx.spec.data
    names = [SETTINGS[search] for search in searches(method)]
    if names and not (data.dev or data.dev_shots):
        ctx.error("LM-BFF search ranks candidates by dev accuracy, but there is no dev data",
                  ctx.key("method", names[0]), "add `dev_shots 16` (or a `dev` file) to `data`")
    for name in names:
        search = getattr(method, name)
        if search.keep > search.candidates:
            ctx.error(f"`keep {search.keep}` asks for more candidates than the search ranks (`candidates "
                      f"{search.candidates}`)", ctx.at("method", name, "keep"),
                      f"lower `keep`, or raise `candidates` to at least {search.keep}")
        if search.ensemble and search.keep == 1:
            ctx.warning("`ensemble true` averages the `keep` best candidates' models, but `keep` is 1",
                        ctx.at("method", name, "ensemble"), "raise `keep` (LM-BFF ensembles its top templates)")
    if "template_search" in names and len(data.text) > 2:
        ctx.error(f"the template search fills templates around one or two text fields, but `text` names "
                  f"{len(data.text)}", ctx.key("method", "template_search"), "name one or two columns in `data { text }`")
    if names and len(ctx.spec.patterns) > 1:
        ctx.error(f"LM-BFF search starts from one template, but the method uses {len(ctx.spec.patterns)}",
                  ctx.key("method", names[0]), f"choose one: `patterns {ctx.spec.patterns[0]}`")


def rounds(settings: m.Search, final_steps: int) -> list[tuple[int, int]]:
    """The fine-tuning rounds after the zero-shot ranking: (candidates, steps each) per round.

    `full`: one round, every candidate for the method's steps (LM-BFF). `halving`: the best `start`
    candidates, then half of them (rounded up) each round until `keep` would remain; the budget (in
    trainings of `final_steps` steps) is shared equally by the rounds and, inside a round, by its
    candidates, so a survivor trains twice as long each round. With `start` ≤ `keep` the zero-shot
    ranking decides alone.
    """
    if settings.rank is m.Ranking.full:
        return [(settings.candidates, final_steps)]
    counts = []
    count = min(settings.start, settings.candidates)
    while count > settings.keep:
        counts.append(count)
        count = max(settings.keep, -(-count // 2))
    if not counts:
        return []
    per_round = settings.budget * final_steps / len(counts)
    return [(count, max(1, int(per_round // count))) for count in counts]


@dataclass(frozen=True)
class Found:
    """What the final stages of a searched spec take their pattern from: the search that ranked it and
    the stages they need to know the ranking (the search's and every ranking stage)."""

    search: str
    needs: list[str]
    base: str  # the spec's template the candidates were made from


def search_stages(graph: Graph, data_seed: int, base: str, selection: p.Stage | None = None
                  ) -> tuple[list[p.Stage], Found | None]:
    """The stages of every search for one data sample, and what the final stages need. The fine-tuning
    rounds train as the final models do, with demonstrations when the template has a [DEMOS] slot
    (`selection`: the data sample's demonstration stage)."""
    method, counts = graph.spec.method, graph.splits[data_seed]
    pattern = graph.patterns[base]
    sets = graph.spec.demonstrations.sets if selection is not None else 1  # dev is scored once per set
    final_steps = costs.steps(method, counts["train"])
    out: list[p.Stage] = []
    found: Found | None = None
    for search in searches(method):
        settings = settings_of(method, search)
        common = dict(method=method.kind, pattern=base, data_seed=data_seed, search=search)
        stage_id = f"search/d{data_seed}/{search}"
        needs = [stage_id] + (found.needs if found else [])  # templates are made around the found words
        out.append(p.Stage(id=stage_id, kind="search", needs=needs[1:], train_size=counts["train"],
                           work=_search_work(graph, search, settings, pattern, counts["train"]), **common))
        zero = f"rank/d{data_seed}/{search}/zero-shot"
        shown = [selection.id] if selection is not None and search == "templates" else []  # (words: without)
        out.append(p.Stage(id=zero, kind="rank", needs=list(needs) + shown, round=0,
                           work=_zero_shot_work(graph, search, settings, pattern, counts["dev"], sets), **common))
        ranked = [*needs, zero] + ([selection.id] if selection is not None else [])
        for number, (count, steps) in enumerate(rounds(settings, final_steps), 1):
            this_round = [f"rank/d{data_seed}/{search}/r{number}/c{slot}" for slot in range(count)]
            trained = method.model_copy(update={"steps": steps, "epochs": None})
            work = costs.training_work(trained, counts["train"], pattern, graph.family, counts["dev"] * sets)
            out += [p.Stage(id=stage, kind="rank", needs=list(ranked), round=number, slot=slot, steps=steps,
                            seed=method.seeds[0], train_size=counts["train"], work=work, **common)
                    for slot, stage in enumerate(this_round)]
            ranked += this_round
        found = Found(search, ranked, base)
    return out, found


def _search_work(graph: Graph, search: str, settings, pattern: p.Pattern, n: int) -> p.Work:
    batch = graph.spec.method.eval_batch_size
    if search == "words":  # one pass over train: every word's score at the mask at once
        return p.Work(forward_passes=-(-n // batch), examples_read=n)
    # the averaged beam search: each step runs every beam item on every training example
    return p.Work(forward_passes=settings.max_length * -(-settings.beam * n // batch), examples_read=n)


def _zero_shot_work(graph: Graph, search: str, settings, pattern: p.Pattern, n: int, sets: int) -> p.Work:
    batch = graph.spec.method.eval_batch_size
    if search == "words":  # one pass over dev scores every mapping (without demonstrations)
        return p.Work(forward_passes=-(-n // batch), examples_read=n)
    return p.Work(forward_passes=settings.candidates * costs.passes(pattern, graph.family, n, batch) * sets,
                  examples_read=settings.candidates * n * sets)


def cost_of(graph_stages: list[p.Stage], search: str) -> p.Work:
    """The work of one search's stages."""
    total = p.Work()
    for stage in graph_stages:
        if stage.search == search and stage.kind in ("search", "rank"):
            total = total + stage.work
    return total


def search_costs(graph: Graph, stages: list[p.Stage]) -> dict[str, dict[str, p.Work]]:
    """Each search's work as planned and as the other ranking would make it (for `plan` to compare)."""
    out = {}
    for search in searches(graph.spec.method):
        planned = settings_of(graph.spec.method, search).rank
        other = m.Ranking.full if planned is m.Ranking.halving else m.Ranking.halving
        out[search] = {planned.value: cost_of(stages, search), other.value: _cost_with(graph, search, other)}
    return out


def _cost_with(graph: Graph, search: str, rank: m.Ranking) -> p.Work:
    """What a search would cost over every data sample with another ranking."""
    settings = settings_of(graph.spec.method, search).model_copy(update={"rank": rank})
    spec = graph.spec.model_copy(update={"method": graph.spec.method.model_copy(
        update={SETTINGS[search]: settings})})
    other = Graph(spec, graph.patterns, graph.family, graph.splits, graph.label_counts)
    base = next(iter(graph.patterns))
    shown = graph.spec.demonstrations is not None and any(x.kind == "demos" for x in graph.patterns[base].pieces)
    total = p.Work()
    for data_seed in graph.splits:
        selection = p.Stage(id=f"demonstrations/d{data_seed}", kind="demonstrations", method=graph.spec.method.kind,
                            data_seed=data_seed) if shown else None
        stages, _ = search_stages(other, data_seed, base, selection)
        total = total + cost_of(stages, search)
    return total
