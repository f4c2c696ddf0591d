"""The stage graph shared by the methods that score test with one model per pattern and seed:
[demonstrations] → [train] → [calibrate] → evaluate."""

from __future__ import annotations

from promptlang.compiler import costs
from promptlang.compiler import plan as p
from promptlang.methods.base import Graph
from promptlang.methods.search import Found, search_stages, searches, settings_of


def uses_demos(pattern: p.Pattern | None) -> bool:
    """Whether the pattern has a [DEMOS] slot."""
    return pattern is not None and any(piece.kind == "demos" for piece in pattern.pieces)


def demonstration_stage(graph: Graph, data_seed: int) -> p.Stage | None:
    """LM-BFF's demonstration selection for one data sample, when a pattern has a [DEMOS] slot: the
    training examples per label are the pool (`train_size`), from which the `sets` sets that
    evaluation averages over are drawn (set i with seed `data seed × 1000 + i`); training draws a
    new set for an example each time it is put in a batch, never the example itself."""
    spec = graph.spec
    if spec.demonstrations is None or not any(uses_demos(x) for x in graph.patterns.values()):
        return None
    counts = graph.splits[data_seed]
    return p.Stage(id=f"demonstrations/d{data_seed}", kind="demonstrations", method=spec.method.kind,
                   data_seed=data_seed, train_size=counts["train"], work=p.Work(examples_read=counts["train"]))


def scored_stages(graph: Graph, trains: bool, data_seeds: list[int] | None = None) -> list[p.Stage]:
    """For each data sample, pattern (or the head, without patterns) and seed: train (a method that
    trains; it keeps its weights for evaluation) → calibrate (`calibrate true`) → evaluate on test.
    With LM-BFF's searches, the search and ranking stages come first and the models trained are the
    best `keep` candidates found, named after the search (`words1`, `templates1`, ...)."""
    method = graph.spec.method
    out: list[p.Stage] = []
    for data_seed in data_seeds if data_seeds is not None else list(graph.splits):
        selection = demonstration_stage(graph, data_seed)
        out += [selection] if selection else []
        models: list[tuple[str | None, Found | None, int | None]] = [(name, None, None) for name in graph.patterns]
        found = None
        if trains and searches(method):
            stages, found = search_stages(graph, data_seed, next(iter(graph.patterns)), selection)
            out += stages
            keep = settings_of(method, found.search).keep
            models = [(f"{found.search}{k + 1}", found, k) for k in range(keep)]
        first = len(out)
        for name, source, slot in models or [(None, None, None)]:
            for seed in method.seeds if trains else [None]:
                out += _one_model(graph, data_seed, name, seed, selection, trains, source, slot)
        if found is not None and settings_of(method, found.search).ensemble:
            out.append(_ensemble(graph, data_seed, [s.id for s in out[first:] if s.kind == "evaluate"]))
    return out


def _ensemble(graph: Graph, data_seed: int, members: list[str]) -> p.Stage:
    """LM-BFF's ensemble of the best found candidates' models (PET's ensemble stage: their label logits
    on test averaged)."""
    return p.Stage(id=f"ensemble/d{data_seed}", kind="ensemble", method=graph.spec.method.kind, data_seed=data_seed,
                   needs=members, scores=["test"], work=p.Work(examples_read=graph.splits[data_seed]["test"]))


def _one_model(graph: Graph, data_seed: int, name: str | None, seed: int | None, selection: p.Stage | None,
               trains: bool, found: Found | None = None, slot: int | None = None) -> list[p.Stage]:
    spec, method, family = graph.spec, graph.spec.method, graph.family
    counts = graph.splits[data_seed]
    pattern = graph.patterns.get(found.base if found else name) if name else None  # (a found one costs as its base)
    shown = selection is not None and uses_demos(pattern)
    sets = spec.demonstrations.sets if shown else 1  # evaluation averages over the sets
    tag = "/".join(x for x in (f"d{data_seed}", name or "head", f"s{seed}" if seed is not None else None) if x)
    common = dict(method=method.kind, pattern=name, data_seed=data_seed, seed=seed)
    if found is not None:
        common.update(search=found.search, slot=slot)
    needs = list(dict.fromkeys(([selection.id] if shown else []) + (found.needs if found else [])))
    out: list[p.Stage] = []
    if trains:
        out.append(p.Stage(id=f"train/{tag}", kind="train", needs=list(needs), train_size=counts["train"],
                           saves_weights=True,
                           work=costs.training_work(method, counts["train"], pattern, family, counts["dev"] * sets),
                           **common))
        needs.append(f"train/{tag}")
    if getattr(method, "calibrate", False):
        out.append(p.Stage(id=f"calibrate/{tag}", kind="calibrate", needs=list(needs),
                           work=p.Work(forward_passes=costs.passes(pattern, family, 1, 1) * sets, examples_read=sets),
                           **common))
        needs.append(f"calibrate/{tag}")
    batch = method.eval_batch_size
    writes = spec.writes_text
    passes = costs.written_passes(spec, counts["test"], batch) if writes else \
        costs.passes(pattern, family, counts["test"], batch) * sets
    out.append(p.Stage(id=f"evaluate/{tag}", kind="evaluate", needs=needs, scores=["test"], writes_text=writes,
                       work=p.Work(forward_passes=passes, examples_read=counts["test"] * sets), **common))
    return out
