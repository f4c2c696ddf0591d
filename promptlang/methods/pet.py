"""PET (Schick & Schütze, 2021): a model per pattern and repetition, their ensemble, and a classifier
distilled from the ensemble's soft labels on unlabeled data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptlang.compiler import costs
from promptlang.compiler import plan as p
from promptlang.language import spec as m
from promptlang.methods.base import Graph, Method
from promptlang.methods.common import demonstration_stage, uses_demos
from promptlang.compiler.sizes import generation_sizes

if TYPE_CHECKING:
    from promptlang.language.check_context import Context


def compile(graph: Graph) -> list[p.Stage]:
    return pet_stages(graph, iterated=False)


def pet_stages(graph: Graph, iterated: bool) -> list[p.Stage]:
    """PET's graph for each data sample: a model per pattern and repetition (`iterated`, iPET's: per
    generation, each after a `label` stage that grows its training set), an ensemble per generation,
    then distillation into a classifier on the last ensemble's soft labels."""
    method = graph.spec.method
    generations = method.ipet.generations if iterated else 1
    out: list[p.Stage] = []
    for data_seed, counts in graph.splits.items():
        sizes = generation_sizes(graph.label_counts[data_seed], method.ipet.scale_factor, generations) \
            if iterated else [counts["train"]]
        selection = demonstration_stage(graph, data_seed)
        out += [selection] if selection else []
        previous: list[str] = []
        for generation in range(generations):
            members = _generation(graph, data_seed, generation, sizes[generation], previous, out, iterated, selection)
            out.append(p.Stage(id=f"ensemble/d{data_seed}" + (f"/g{generation}" if iterated else ""),
                               kind="ensemble", method=method.kind, data_seed=data_seed,
                               generation=generation if iterated else None, needs=members, scores=["test", "unlabeled"],
                               work=p.Work(examples_read=counts["test"] + counts["unlabeled"])))
            previous = members
        out += _distill(graph, data_seed, out)
    return out


def _generation(graph: Graph, data_seed: int, generation: int, size: int, previous: list[str],
                out: list[p.Stage], iterated: bool, selection: p.Stage | None) -> list[str]:
    """The pattern models of one generation (appended to `out`, each after its `label` stage from the
    second generation on); returns their ids."""
    method, family = graph.spec.method, graph.family
    counts = graph.splits[data_seed]
    gen = f"g{generation}/" if iterated else ""
    batch = method.eval_batch_size
    members: list[str] = []
    for name, pattern in graph.patterns.items():
        for seed in method.seeds:
            tag = f"d{data_seed}/{gen}{name}/s{seed}"
            needs: list[str] = [selection.id] if selection is not None and uses_demos(pattern) else []
            if generation > 0:
                others = [x for x in previous if x != f"train/d{data_seed}/g{generation - 1}/{name}/s{seed}"]
                out.append(p.Stage(id=f"label/{tag}", kind="label", method=method.kind, pattern=name,
                                   data_seed=data_seed, seed=seed, generation=generation, needs=others,
                                   train_size=size - counts["train"], work=p.Work(examples_read=counts["unlabeled"])))
                needs.append(f"label/{tag}")
            unlabeled = costs.passes(pattern, family, counts["unlabeled"], batch)
            scoring = p.Work(forward_passes=costs.passes(pattern, family, counts["train"], batch)
                             + costs.passes(pattern, family, counts["test"], batch) + unlabeled,
                             unlabeled_passes=unlabeled,
                             examples_read=counts["train"] + counts["test"] + counts["unlabeled"])
            work = costs.training_work(method, size, pattern, family, counts["dev"]) + scoring
            out.append(p.Stage(id=f"train/{tag}", kind="train", method=method.kind, pattern=name, data_seed=data_seed,
                               seed=seed, generation=generation if iterated else None, train_size=size, needs=needs,
                               scores=["test", "unlabeled"], work=work))
            members.append(f"train/{tag}")
    return members


def _distill(graph: Graph, data_seed: int, stages: list[p.Stage]) -> list[p.Stage]:
    """One classifier per `distill` seed, trained on the last ensemble's soft labels."""
    method, family = graph.spec.method, graph.family
    distill = method.distill
    if distill is None:
        return []
    counts = graph.splits[data_seed]
    last = next(s.id for s in reversed(stages) if s.kind == "ensemble" and s.data_seed == data_seed)
    scoring = p.Work(forward_passes=costs.passes(None, family, counts["test"], distill.eval_batch_size),
                     examples_read=counts["test"])
    return [p.Stage(id=f"distill/d{data_seed}/s{seed}", kind="distill", method=method.kind, data_seed=data_seed,
                    seed=seed, needs=[last], train_size=counts["unlabeled"], scores=["test", "unlabeled"],
                    saves_weights=True,
                    work=costs.training_work(distill, counts["unlabeled"], None, family, counts["dev"]) + scoring)
            for seed in distill.seeds]


def needs_training_data(ctx: "Context") -> None:
    """PET trains on labelled examples, or (zero-shot PET) from unlabeled data alone."""
    data = ctx.spec.data
    if not data.train and not data.unlabeled:
        ctx.error(f"`{ctx.method.kind}` trains, but `data` has no `train` split", ctx.key("data"),
                  'add `train "train.tsv"` to `data`, or `unlabeled "unlabeled.tsv"` for zero-shot PET')


def distillation_data(ctx: "Context") -> None:
    if ctx.method.distill and not ctx.spec.data.unlabeled:
        ctx.error("distillation needs unlabeled data", ctx.key("method", "distill"),
                  'add `unlabeled "unlabeled.tsv"` to `data`')


METHOD = Method(kind="pet", settings=m.Pet, trains=True, compile=compile, learns_without_labels=True,  aggregate="logit_mean",
                multi_token_loss=m.MultiTokenLoss.hinge, checks=(needs_training_data, distillation_data))
