"""The executor: it walks the plan's stages in order, each through the store.

A stage's key is a hash of its kind's version, its id, the keys of the stages it needs and what
its kind says it depends on (`kinds.Kind.inputs`). A stage whose key is in the store is reused;
otherwise its kind computes it into a fresh directory that takes its final name only once the
stage is complete. So rerunning a spec skips what is finished, a run killed mid-stage resumes at
that stage, and changing one setting re-runs only the stages whose inputs it changes. Stages read
what their needs produced back from the store, so a resumed run computes exactly what an
uninterrupted one does.

With several processes (torchrun, accelerate launch) every process walks the same plan. A stage is
computed by all of them together (data-parallel training and scoring) and written to the store by
the first process only; or, for a run of independent `train` stages (PET's pattern models), each
process computes whole stages of its own, alone, and writes each into the store (one writer per
entry, renamed into place in one step). The processes meet after every stage, so they always agree
on what the store holds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from promptlang.compiler import plan as p
from promptlang.stages import pet, scored, search  # noqa: F401 (they register their kinds)
from promptlang.stages.kinds import KINDS, Done, Run
from promptlang.stages.store import RESULT, key_of


class Executor:
    """Runs a plan's stages in order; `record` is what it did: each stage id, in order, once."""

    def __init__(self, run: Run, finished: Callable[[Done], None] | None = None):
        self.run, self.finished = run, finished  # `finished`: told of each stage once it is done
        self.record: list[str] = []
        self.current: p.Stage | None = None  # the stage being run (for locating errors)
        run.recompute = self.recompute

    def key(self, stage: p.Stage) -> str:
        """A hash of everything the stage's result depends on."""
        kind = KINDS[stage.kind]
        return key_of({"version": kind.version, "id": stage.id, "kind": stage.kind,
                       "needs": [self.run.done[n].key for n in stage.needs], **kind.inputs(self.run, stage)})

    @property
    def placement(self):
        return self.run.session.placement

    def execute(self, stages: list[p.Stage]) -> list[Done]:
        """Every stage, in the plan's order (each after the stages it needs)."""
        at = 0
        self.run.log.stages([s.id for s in stages])
        while at < len(stages):
            group = self._spread_group(stages, at)
            if len(group) > 1:
                self._spread(group, at, len(stages))
            else:
                self.current = stages[at]
                self._finish(stages[at], self._one(stages[at], f"[{at + 1}/{len(stages)}]"))
            at += max(1, len(group))
        self.current = None
        return [self.run.done[s.id] for s in stages]

    def _finish(self, stage: p.Stage, done: Done) -> None:
        KINDS[stage.kind].check(self.run, done)
        self.run.done[stage.id] = done
        self.record.append(stage.id)
        if self.finished is not None:
            self.finished(done)
        self.placement.barrier()  # (the first process may have pruned weights the others look for)

    def _spread_group(self, stages: list[p.Stage], at: int) -> list[p.Stage]:
        """The stages from `at` on that the processes can compute one each: a run of `train` stages (or of
        a search's fine-tuned candidates) none of which needs another (with one process, none)."""
        if self.placement.processes <= 1:
            return []
        group: list[p.Stage] = []
        for stage in stages[at:]:
            alone = stage.kind == "train" or (stage.kind == "rank" and stage.round)
            if not alone or any(n in {g.id for g in group} for n in stage.needs):
                break
            group.append(stage)
        return group

    def _spread(self, group: list[p.Stage], at: int, total: int) -> None:
        """Each process computes its share of `group` alone; then every process takes all of them from the store."""
        placement = self.placement
        for offset, stage in enumerate(group):
            number = f"[{at + offset + 1}/{total}]"
            owner = offset % placement.processes
            if owner == placement.rank:
                self.current = stage
                with placement.alone():
                    self._one(stage, number)
            else:
                self.run.log(f"  {number} {stage.id}: in process {owner}")
                self.run.log.stage(stage.id, "elsewhere")
        placement.barrier()
        for stage in group:
            key = self.key(stage)
            self._finish(stage, Done(stage, key, self.run.store.directory(stage.id, key),
                                     self.run.store.result(stage.id, key), False))

    def recompute(self, stage: p.Stage) -> Done:
        """Run a finished stage again in place (its weights were removed from the store)."""
        key = self.key(stage)
        self.run.store.remove(stage.id, key)
        done = self._one(stage, "again:")
        self.run.done[stage.id] = done
        return done

    def _one(self, stage: p.Stage, number: str) -> Done:
        store, key, placement = self.run.store, self.key(stage), self.placement
        reused = placement.share(store.finished(stage.id, key) is not None)
        if reused:
            self.run.log(f"  {number} {stage.id}: finished earlier, reused")
        else:
            self.run.log(f"  {number} {stage.id} ...")
            self.run.log.stage(stage.id, "running")
            began = time.time()
            kind = KINDS[stage.kind]
            with self._writing(stage.id, key) as out:
                result = kind.compute(self.run, stage, out)
                missing = [name for name in kind.files(stage) if not (out / name).is_file()]
                if missing:
                    raise RuntimeError(f"stage {stage.id} did not write {', '.join(missing)}")
                result.update(stage=stage.id, key=key, seconds=round(time.time() - began, 3))
                (out / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
            placement.barrier()  # the first process has renamed the stage into place
        self.run.log.stage(stage.id, "reused" if reused else "done")
        return Done(stage, key, store.directory(stage.id, key), store.result(stage.id, key), reused)

    @contextmanager
    def _writing(self, stage_id: str, key: str) -> Iterator[Path]:
        """Where this process writes a stage: the store (the first process, or one computing alone), else
        a scratch directory that is thrown away (the others compute the same, but only one writes)."""
        if self.placement.main or self.placement.world == 1:
            with self.run.store.writing(stage_id, key) as out:
                yield out
            return
        scratch = Path(tempfile.mkdtemp(prefix="promptlang-stage-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
