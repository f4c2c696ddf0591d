"""The live view of a run in a terminal (rich): the stages done, running and left, a bar with the loss and
the time left for the stage that runs, and the model being loaded; headlines scroll above it.

Without a terminal (CI, a pipe), with `--quiet`, or in a process that does not speak for the others,
`open_progress` gives the plain lines instead; `PROMPTLANG_PROGRESS=plain` or `live` chooses.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from promptlang.runtime.progress import Progress

SHOWN_DONE, SHOWN_LEFT = 3, 4  # stages listed before and after the running one; the rest are counted
MARKS = {"done": ("✓", "green"), "reused": ("✓", "cyan"), "elsewhere": ("⇢", "magenta"),
         "running": ("●", "yellow bold"), "left": ("·", "dim")}


def open_progress(quiet: bool, speaks: bool = True, console: Console | None = None) -> Progress:
    """The run's Progress: lines only kept (quiet, or another process speaks), a live view in a terminal,
    else plain lines on stderr. Transformers' and the hub's own bars are silenced either way."""
    silence_third_party_bars()
    if quiet or not speaks:
        return Progress()
    choice = os.environ.get("PROMPTLANG_PROGRESS", "")
    console = console or Console(stderr=True)
    live = choice == "live" or (choice != "plain" and console.is_terminal and not console.is_dumb_terminal)
    if live:
        return Progress(display=LiveDisplay(console))
    return Progress(echo=lambda text: print(text, file=sys.stderr, flush=True))


def silence_third_party_bars() -> None:
    """No tqdm bars from transformers (loading, GGUF conversion, saving) or the hub between our lines."""
    try:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging
    except ImportError:  # (only the light install: nothing loads models)
        return
    logging.disable_progress_bar()
    disable_progress_bars()


class LiveDisplay:
    """A rich Live view of one run (see the module's docstring); `close` leaves the headlines printed."""

    def __init__(self, console: Console):
        self.console = console
        self.order: list[str] = []
        self.states: dict[str, str] = {}
        self.what, self.total, self.done, self.loss, self.left = "", 0, 0, None, None
        self.loading_what: str | None = None
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=True,
                         redirect_stderr=False, redirect_stdout=False)
        self.live.start()

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stages(self, ids: list[str]) -> None:
        self.order = list(ids)
        self.states = {stage_id: "left" for stage_id in ids}

    def stage(self, stage_id: str, state: str) -> None:
        self.states[stage_id] = state
        if state != "running":
            self.what, self.total, self.done, self.loss, self.left = "", 0, 0, None, None
        self.live.refresh()

    def bar(self, total: int, what: str) -> None:
        self.what, self.total, self.done, self.loss, self.left = what, total, 0, None, None

    def advance(self, done: int, loss: float | None, left: float) -> None:
        self.done, self.loss, self.left = done, loss, left

    def loading(self, what: str | None) -> None:
        self.loading_what = what
        self.live.refresh()

    def close(self) -> None:
        self.live.stop()

    def render(self) -> Group:
        """The view: the stage list, then the running stage's bar, then a spinner while a model loads."""
        parts = [self.stage_list()] if self.order else []
        if self.total:
            parts.append(self.progress_bar())
        if self.loading_what:
            parts.append(Spinner("dots", text=Text(f"loading {self.loading_what}")))
        return Group(*parts)

    def stage_list(self) -> Table:
        """Up to a few stages either side of the running one, the rest as counts."""
        table = Table.grid(padding=(0, 1))
        finished = [s for s in self.order if self.states[s] not in ("left", "running")]
        running = [s for s in self.order if self.states[s] == "running"]
        left = [s for s in self.order if self.states[s] == "left"]
        if len(finished) > SHOWN_DONE:
            done = _count(len(finished) - SHOWN_DONE, "stage")
            table.add_row(Text("✓", style="green"), Text(f"{done} done", style="dim"))
        for stage_id in [*finished[-SHOWN_DONE:], *running, *left[:SHOWN_LEFT]]:
            mark, style = MARKS[self.states[stage_id]]
            table.add_row(Text(mark, style=style), Text(stage_id, style=style if stage_id in running else ""))
        if len(left) > SHOWN_LEFT:
            table.add_row(Text("·", style="dim"), Text(f"{len(left) - SHOWN_LEFT} more to run", style="dim"))
        table.add_row(Text(""), Text(f"{len(finished)}/{len(self.order)} stages finished", style="bold"))
        return table

    def progress_bar(self) -> Table:
        row = Table.grid(padding=(0, 1))
        loss = f"  loss {self.loss:.4f}" if self.loss is not None else ""
        left = f"  eta {self.left:.0f} s" if self.left is not None and self.done else ""
        row.add_row(Text(f"  {self.what}"), ProgressBar(total=self.total, completed=self.done, width=30),
                    Text(f"{self.done}/{self.total}{loss}{left}"))
        return row


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
