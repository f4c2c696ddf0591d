"""What a run tells its user while it works: plain lines (always kept, for log.txt) and, for a live
display, the stages with their state, a bar for the one running and the model being loaded.

A `Progress` is called like the plain `log(text)` every stage already takes; the stages, bars and
loads are told to its `display` when it has one (the terminal's live view, `output/live.py`),
else they become the same plain lines a log file or CI shows: a headline per stage and about ten
lines per bar, each with the time left.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol


class Display(Protocol):
    """What a live view is told; `line` shows a headline above it (detail lines only fill the bar)."""

    def line(self, text: str) -> None: ...
    def stages(self, ids: list[str]) -> None: ...
    def stage(self, stage_id: str, state: str) -> None: ...
    def bar(self, total: int, what: str) -> None: ...
    def advance(self, done: int, loss: float | None, left: float) -> None: ...
    def loading(self, what: str | None) -> None: ...
    def close(self) -> None: ...


class Progress:
    """A run's log: `progress(text)` is a headline; `bar`, `stages`, `stage` and `loading` feed a live
    display. Every plain line, details included, is kept in `lines` for the run's log file."""

    def __init__(self, echo: Callable[[str], None] | None = None, display: Display | None = None):
        self.echo, self.display = echo, display
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        if self.display is not None:
            self.display.line(text)
        elif self.echo is not None:
            self.echo(text)

    def detail(self, text: str) -> None:
        """A line for the log file and plain output; a live display shows it as its bar instead."""
        self.lines.append(text)
        if self.display is None and self.echo is not None:
            self.echo(text)

    def stages(self, ids: list[str]) -> None:
        """The plan's stages, in order, all still to run."""
        if self.display is not None:
            self.display.stages(ids)

    def stage(self, stage_id: str, state: str) -> None:
        """A stage's new state: `running`, `done`, `reused` or `elsewhere` (another process computes it)."""
        if self.display is not None:
            self.display.stage(stage_id, state)

    def bar(self, total: int, verb: str, unit: str = "", lines: int = 10, least: int = 1) -> "Bar":
        """A bar over `total` items; plain lines `    VERB DONE/TOTALUNIT  eta N s` about `lines` times
        (none when `total` is below `least`)."""
        return Bar(self, total, verb, unit, lines, least)

    @contextmanager
    def loading(self, what: str) -> Iterator[None]:
        """While a model loads (or converts), the display says so."""
        if self.display is not None:
            self.display.loading(what)
        try:
            yield
        finally:
            if self.display is not None:
                self.display.loading(None)

    def close(self) -> None:
        """Take the live display off the terminal (the run's last lines stay)."""
        if self.display is not None:
            self.display.close()
            self.display = None


class Bar:
    """Progress through one stage's steps or batches; `update` returns the seconds left."""

    def __init__(self, progress: Progress, total: int, verb: str, unit: str, lines: int, least: int):
        self.progress, self.total, self.verb, self.unit = progress, total, verb, unit
        self.every, self.shown = max(1, total // max(1, lines)), total >= least
        self.started = time.time()
        if progress.display is not None:
            progress.display.bar(total, f"{verb}{unit}".strip())

    def update(self, done: int, loss: float | None = None) -> float:
        left = (time.time() - self.started) / max(done, 1) * (self.total - done)
        if self.progress.display is not None:
            self.progress.display.advance(done, loss, left)
        if self.shown and (done == self.total or done % self.every == 0):
            shown_loss = f"  loss {loss:.4f}" if loss is not None else ""
            self.progress.detail(f"    {self.verb} {done}/{self.total}{self.unit}{shown_loss}  eta {left:.0f} s")
        return left


def as_progress(log: Callable[[str], None] | Progress | None) -> Progress:
    """`log` as a Progress: itself, or a plain callable (`print`, a list's `append`) wrapped."""
    if isinstance(log, Progress):
        return log
    return Progress(echo=log)
