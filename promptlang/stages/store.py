"""The stage store: each finished stage's result in its own directory, keyed by a hash of its inputs.

`root/<stage id>/<key>/` holds what one stage produced (`result.json`, logits, a model). A stage
is written into a `<key>.partial-<pid>` directory beside its final place and renamed into it
only once complete, so a directory with a key is always whole; a run killed mid-stage leaves a
partial directory that the next run removes and redoes. Changing anything a stage depends on
changes its key (and its dependents' keys, which include it), so only those stages run again.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from promptlang.runtime.pipeline import cache_key

RESULT = "result.json"


def key_of(inputs: dict) -> str:
    """A stable hash of a stage's inputs (plain JSON data)."""
    return cache_key(inputs)


def alive(pid: int) -> bool:
    """Whether a process with this id is running (a leftover of a dead one may be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreError(Exception):
    """The store's directory cannot be written."""


class Store:
    """Finished stages under one root directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def directory(self, stage_id: str, key: str) -> Path:
        return self.root / stage_id / key

    def finished(self, stage_id: str, key: str) -> Path | None:
        """The stage's directory if a run finished it with these inputs."""
        path = self.directory(stage_id, key)
        return path if (path / RESULT).is_file() else None

    def result(self, stage_id: str, key: str) -> dict:
        return json.loads((self.directory(stage_id, key) / RESULT).read_text(encoding="utf-8"))

    def remove(self, stage_id: str, key: str) -> None:
        """Forget a finished stage (it is computed again)."""
        shutil.rmtree(self.directory(stage_id, key), ignore_errors=True)

    def prune(self, stage_id: str, key: str, names: tuple[str, ...]) -> None:
        """Remove some files of a finished stage (trained weights no output needs); the stage stays
        finished, and a stage that needs the files computes it again."""
        for name in names:
            (self.directory(stage_id, key) / name).unlink(missing_ok=True)

    @contextmanager
    def writing(self, stage_id: str, key: str) -> Iterator[Path]:
        """A fresh directory to write the stage into; it takes its final name when the block ends
        without an error (and is removed when it raises)."""
        final = self.directory(stage_id, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot write the stage store {self.root}: {error.strerror or error}") from None
        for stale in final.parent.glob("*.partial-*"):  # left by a run that was killed (with any inputs)
            pid = stale.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or not alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        partial = final.with_name(f"{key}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.mkdir()
        except OSError as error:
            raise StoreError(f"cannot write the stage store {self.root}: {error.strerror or error}") from None
        try:
            yield partial
            if not (partial / RESULT).is_file():
                raise RuntimeError(f"stage {stage_id} wrote no {RESULT}")
            if final.exists():  # another run finished it meanwhile: theirs stands
                shutil.rmtree(partial, ignore_errors=True)
            else:
                os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
