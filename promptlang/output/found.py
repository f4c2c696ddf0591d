"""What LM-BFF's searches leave in the output directory: the ranked candidates of each search with their
scores (`search/label_words.tsv`, `search/templates.tsv`) and `found.prompt`, a library with the best
template and label words of each data sample that another spec can `import`."""

from __future__ import annotations

from pathlib import Path

from promptlang.compiler import plan as p
from promptlang.stages.candidates import Candidate, candidates_of, pattern_of, ranking, string_literal
from promptlang.stages.kinds import Done, Run

TABLES = {"words": "label_words.tsv", "templates": "templates.tsv"}


def _ranked(run: Run, done: list[Done], search: str, data_seed: int) -> tuple[list[int], list[Candidate], list[Done]]:
    """A search's final ranking for one data sample, its candidates and its rank stages."""
    ranks = [d for d in done if d.stage.kind == "rank" and d.stage.search == search and d.stage.data_seed == data_seed]
    stand_in = p.Stage(id="found", kind="train", method=run.spec.method.kind, data_seed=data_seed, search=search,
                       needs=[d.stage.id for d in ranks])
    return ranking(run, stand_in, search), candidates_of(run, stand_in, search), ranks


def _seeds(done: list[Done], search: str) -> list[int]:
    return list(dict.fromkeys(d.stage.data_seed for d in done if d.stage.kind == "search" and d.stage.search == search))


def search_table(run: Run, done: list[Done], search: str) -> str:
    """A search's candidates per data sample in their final order: the words (and template), the
    search's own score, the zero-shot dev score and the dev score of every fine-tuning round reached."""
    rounds = sorted({d.stage.round for d in done if d.stage.kind == "rank" and d.stage.search == search} - {0})
    head = ["data_seed", "rank", "candidate", *[f"words_{label}" for label in run.spec.labels],
            *(["template"] if search == "templates" else []),
            "train_score" if search == "words" else "beam_score", "dev_zero_shot", *[f"dev_round{r}" for r in rounds]]
    lines = ["\t".join(head)]
    for data_seed in _seeds(done, search):
        order, candidates, ranks = _ranked(run, done, search, data_seed)
        zero = next(d for d in ranks if d.stage.round == 0).result["dev"]
        trained = {(d.stage.round, d.result["candidate"]): d.result["dev"] for d in ranks
                   if d.stage.round and d.result.get("candidate") is not None}
        for place, index in enumerate(order, 1):
            candidate = candidates[index]
            row = [str(data_seed), str(place), str(index), *[candidate.words[label] for label in run.spec.labels],
                   *([_cell(candidate.text)] if search == "templates" else []), f"{candidate.score:.6f}",
                   f"{zero[index]:.6f}", *[_score(trained.get((r, index))) for r in rounds]]
            lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def found_prompt(run: Run, done: list[Done], searches: list[str]) -> str:
    """A library with the best candidate of each data sample: its label words as a verbalizer (a word
    search) and its template (a template search), named `found_d<seed>`."""
    last = searches[-1]
    lines = ["promptlang 1", "", f"# Found by LM-BFF's search ({', '.join(searches)}) of {run.spec.method.kind}: "
             "the best candidate on dev for each data seed.", ""]
    for data_seed in _seeds(done, last):
        order, candidates, _ = _ranked(run, done, last, data_seed)
        best, name = candidates[order[0]], f"found_d{data_seed}"
        if last == "templates":
            lines += [f"template {name} {{", f"  text       {string_literal(best.text)}", f"  verbalizer {name}", "}", ""]
        lines += [f"verbalizer {name} {{"] + [f"  {label} -> {string_literal(best.words[label])}"
                                             for label in run.spec.labels] + ["}", ""]
    return "\n".join(lines)


def write_found(staging: Path, run: Run, done: list[Done], searches: list[str]) -> None:
    """search/*.tsv and found.prompt in the output directory (nothing without a search)."""
    if not searches:
        return
    (staging / "search").mkdir(exist_ok=True)
    for search in searches:
        (staging / "search" / TABLES[search]).write_text(search_table(run, done, search), encoding="utf-8")
    (staging / "found.prompt").write_text(found_prompt(run, done, searches), encoding="utf-8")


def with_found(plan: p.Plan, run: Run, best: Done | None) -> p.Plan:
    """The plan as the output directory keeps it: with the pattern the best model was found with, under
    its name (`words1`, ...), so that predicting finds it as it finds a written one."""
    if best is None or best.stage.search is None:
        return plan
    pattern = pattern_of(run, best.stage)
    return plan.model_copy(update={"patterns": {**plan.patterns, best.stage.pattern: pattern}})
