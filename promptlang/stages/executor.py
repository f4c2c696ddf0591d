"""The executor: it walks the plan's stages in order, each through the store.

A stage's key is a hash of its kind's version, its id, the keys of the stages it needs and what
its kind says it depends on (`kinds.Kind.inputs`). A stage whose key is in the store is reused;
otherwise its kind computes it into a fresh directory that takes its final name only once the
stage is complete. So rerunning a spec skips what is finished, a run killed mid-stage resumes at
that stage, and changing one setting re-runs only the stages whose inputs it changes. Stages read
what their needs produced back from the store, so a resumed run computes exactly what an
uninterrupted one does.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from promptlang.compiler import plan as p
from promptlang.stages import pet, scored  # noqa: F401 (they register their kinds)
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

    def execute(self, stages: list[p.Stage]) -> list[Done]:
        """Every stage, in the plan's order (each after the stages it needs)."""
        for number, stage in enumerate(stages, 1):
            self.current = stage
            self.run.done[stage.id] = self._one(stage, f"[{number}/{len(stages)}]")
            self.record.append(stage.id)
            if self.finished is not None:
                self.finished(self.run.done[stage.id])
        self.current = None
        return [self.run.done[s.id] for s in stages]

    def recompute(self, stage: p.Stage) -> Done:
        """Run a finished stage again in place (its weights were removed from the store)."""
        key = self.key(stage)
        self.run.store.remove(stage.id, key)
        done = self._one(stage, "again:")
        self.run.done[stage.id] = done
        return done

    def _one(self, stage: p.Stage, number: str) -> Done:
        store, key = self.run.store, self.key(stage)
        reused = store.finished(stage.id, key) is not None
        if reused:
            self.run.log(f"  {number} {stage.id}: finished earlier, reused")
        else:
            self.run.log(f"  {number} {stage.id} ...")
            began = time.time()
            kind = KINDS[stage.kind]
            with store.writing(stage.id, key) as out:
                result = kind.compute(self.run, stage, out)
                missing = [name for name in kind.files(stage) if not (out / name).is_file()]
                if missing:
                    raise RuntimeError(f"stage {stage.id} did not write {', '.join(missing)}")
                result.update(stage=stage.id, key=key, seconds=round(time.time() - began, 3))
                (out / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
        return Done(stage, key, store.directory(stage.id, key), store.result(stage.id, key), reused)
