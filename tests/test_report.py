"""`promptlang report`: a run directory read into data, the page's sections (each there when it applies and
only then), the results table and ECE against hand-computed values, several runs side by side, the report
that `promptlang run` leaves in its output directory, and bad input as usage errors with exact text.

The run directories come from real runs of tiny random models (`tinymodels.py`): prompt-based fine-tuning
with dev selection, iPET with distillation, a zero-shot regression and zero-shot text generation.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.cli import main  # noqa: E402
from promptlang.report import measures, page, read_run, write_into  # noqa: E402
from promptlang.report.reading import Scored  # noqa: E402
from promptlang.runner import run  # noqa: E402

pytestmark = pytest.mark.usefixtures("report_on")  # run writes report.html here
ROOT = Path(__file__).resolve().parent.parent
DATA = '  train "data.tsv"\n  dev   "data.tsv"\n  test  "data.tsv"\n  text  sentence'
FINETUNE = ("prompt_finetune {\n  steps         8\n  batch_size    2\n  learning_rate 1e-3\n  seeds         1, 2\n"
            "  select_model  dev\n}")
IPET = """ipet {
  batch_size    2
  learning_rate 1e-3
  steps         2
  seeds         1
  ipet {
    generations  2
    scale_factor 2
  }
  distill {
    steps 2
  }
}"""
GENERATION = """promptlang 1

data {{
  train "answers.tsv"
  test  "answers.tsv"
  text  sentence
}}

model {{
  path   "{path}"
  family seq2seq
}}

template t {{
  text   "{{{{ sentence }}}} It was"
  target "{{{{ answer }}}}"
}}

generate {{
  max_new_tokens 3
}}

method zero_shot {{}}

evaluate {{
  metrics exact_match, f1
}}
"""


def _specs(folder: Path, models: dict[str, Path]) -> dict[str, str]:
    ipet_data = DATA + '\n  unlabeled "data.tsv"'
    templates = 'template a "{{ sentence }} It was [MASK]."\ntemplate b "Just [MASK]! {{ sentence }}"'
    ipet = tinymodels.spec_text(path=str(models["masked"]), data=ipet_data, templates=templates,
                                method=IPET)
    return {"finetune": tinymodels.spec_text(path=str(models["masked"]), data=DATA, method=FINETUNE),
            "ipet": ipet,
            "regression": tinymodels.regression_spec(models["masked"]),
            "generation": GENERATION.format(path=models["seq2seq"])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Name → the output directory of a real run on a tiny model (each run once per module)."""
    folder = tmp_path_factory.mktemp("report-runs")
    models = {family: tinymodels.save(family, folder / family) for family in ("masked", "seq2seq")}
    tinymodels.write_data(folder)
    scores = [(0.5 if label == "negative" else 4.5) + i / 10 for i, (label, _) in enumerate(tinymodels.SENTENCES)]
    (folder / "scores.tsv").write_text("score\tsentence\n" + "".join(
        f"{s}\t{t}\n" for s, (_, t) in zip(scores, tinymodels.SENTENCES)), encoding="utf-8")
    (folder / "answers.tsv").write_text("sentence\tanswer\n" + "".join(
        f"{t}\t{'great' if label == 'positive' else 'terrible'}\n" for label, t in tinymodels.SENTENCES),
        encoding="utf-8")
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPTLANG_CACHE", str(folder / "cache"))
        patch.setenv("PROMPTLANG_REPORT", "on")
        for name, text in _specs(folder, models).items():
            spec = folder / f"{name}.prompt"
            spec.write_text(text, encoding="utf-8")
            run(spec, str(folder / name), quiet=True, stages=folder / "stages")
            out[name] = folder / name
    return out


def sections(html: str) -> list[str]:
    return re.findall(r'data-section="([a-z]+)"', html)


def cells(html: str) -> list[list[str]]:
    """The text of each row of the page's first results table."""
    table = html.split('<table class="results">', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]]


# ---------------------------------------------------------------- reading a run directory


def test_reading_a_fine_tuning_run(runs):
    data = read_run(runs["finetune"])
    assert (data.name, data.method, data.task_kind, data.labels) == (
        "finetune", "prompt_finetune", "classification", ["negative", "positive"])
    assert data.spec_file == str((runs["finetune"].parent / "finetune.prompt").resolve())
    assert data.model == f"path {runs['finetune'].parent / 'masked'} (masked)"
    assert data.runs_on["device"] == "cpu" and data.wall_seconds is not None
    assert [r["stage"] for r in data.rows] == ["evaluate/d13/t/s1", "evaluate/d13/t/s2"]
    assert data.metrics == ["accuracy", "macro_f1"]
    assert [(c.stage, len(c.losses), len(c.dev)) for c in data.curves] == [
        ("train/d13/t/s1", 8, 2), ("train/d13/t/s2", 8, 2)]
    assert data.chosen in data.predictions and list(data.predictions) == ["evaluate/d13/t/s1", "evaluate/d13/t/s2"]
    final = data.final()
    assert final.gold == [label for label, _ in tinymodels.SENTENCES]
    assert len(final.probabilities) == 8 and all(sum(p) == pytest.approx(1, abs=1e-5) for p in final.probabilities)
    assert data.rankings == []


def test_reading_an_ipet_run_finds_its_generations_ensembles_and_distillation(runs):
    data = read_run(runs["ipet"])
    assert list(data.summary) == ["g0 a", "g0 b", "g0 ensemble", "g1 a", "g1 b", "g1 ensemble", "distilled"]
    assert [measures.kind_of(g) for g in data.summary] == ["pattern", "pattern", "ensemble"] * 2 + ["distilled"]
    assert data.chosen == "distill/d13/s42" and data.final().stage == "distill/d13/s42"
    series = measures.generations(data, "accuracy")
    assert {name: list(points) for name, points in series.items()} == {"a": [0, 1], "b": [0, 1], "ensemble": [0, 1]}
    by_stage = {r["stage"]: r["metrics"]["accuracy"] for r in data.rows}
    assert series["ensemble"][1].mean == by_stage["ensemble/d13/g1"]
    assert [c.stage for c in data.curves][0] == "distill/d13/s42"


# ---------------------------------------------------------------- sections: there when they apply, only then

SECTIONS = [
    ("finetune", ["facts", "results", "bars", "confusion", "calibration", "loss", "dev"]),
    ("ipet", ["facts", "results", "bars", "generations", "confusion", "calibration", "loss"]),
    ("regression", ["facts", "results", "bars", "scores"]),
    ("generation", ["facts", "results", "bars", "samples"]),
]


@pytest.mark.parametrize("name, expected", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_each_section_is_there_when_it_applies(runs, name, expected):
    html = (runs[name] / "report.html").read_text(encoding="utf-8")  # the one `promptlang run` wrote
    assert sections(html) == expected
    assert html.count("<img ") == len(set(expected) - {"facts", "results", "samples"})
    assert "could not be drawn" not in html and "http://" not in html and "https://" not in html
    assert f"<summary>{name} — " in html  # the run's final name, not its staging folder's


def test_the_results_table_is_mean_and_std_over_seeds(runs):
    data = read_run(runs["finetune"])
    html = page.render([data])
    expected = []
    for metric in ("accuracy", "macro_f1"):
        values = [r["metrics"][metric] for r in data.rows]
        expected.append(f"{statistics.fmean(values) * 100:.1f} ± {statistics.stdev(values) * 100:.1f}")
    assert cells(html) == [["t", "pattern", "2", *expected]]


def test_the_table_cells_are_percent_with_one_decimal():
    assert [measures.Cell(m, s).text() for m, s in [(0.86124, 0.0178), (1.0, 0.0), (-0.0863, 0.0)]] == [
        "86.1 ± 1.8", "100.0 ± 0.0", "-8.6 ± 0.0"]


# ---------------------------------------------------------------- confusion matrix and calibration

LABELS = ["a", "b"]
ECE = [
    # (gold, probabilities of a and b) per example → ECE over 10 bins, by hand
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.55 (wrong): (0.1 + 0.8 + 0.3 + 0.55) / 4
    ([("a", [0.9, 0.1]), ("b", [0.8, 0.2]), ("b", [0.3, 0.7]), ("a", [0.45, 0.55])], 0.4375),
    # one bin [0.9, 1]: accuracy 1/2, confidence 0.95
    ([("a", [0.92, 0.08]), ("b", [0.98, 0.02])], 0.45),
    # a confidence of exactly 1 falls in the last bin; all right and sure: 0
    ([("a", [1.0, 0.0]), ("b", [0.0, 1.0])], 0.0),
    # an unknown gold label is left out
    ([("a", [0.6, 0.4]), ("", [0.9, 0.1])], 0.4),
]


@pytest.mark.parametrize("examples, expected", ECE)
def test_expected_calibration_error_by_hand(examples, expected):
    scored = Scored("s", [g for g, _ in examples], [], [p for _, p in examples])
    assert measures.reliability(scored, LABELS).ece == pytest.approx(expected)


def test_the_reliability_bins_hold_counts_confidence_and_accuracy():
    scored = Scored("s", ["a", "b", "b"], [], [[0.92, 0.08], [0.98, 0.02], [0.3, 0.7]])
    bins = measures.reliability(scored, LABELS)
    assert bins.counts == [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    assert bins.confidence[9] == pytest.approx(0.95) and bins.accuracy[9] == 0.5 and bins.accuracy[7] == 1.0
    assert measures.reliability(Scored("s", ["a"], ["a"], None), LABELS) is None  # a model that wrote text


def test_the_page_states_the_final_models_ece(runs):
    data = read_run(runs["finetune"])
    with open(runs["finetune"] / "predictions.tsv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["stage"] == data.final().stage]
    total = 0.0
    for low in [i / 10 for i in range(10)]:
        members = [r for r in rows if low <= max(float(r["p_negative"]), float(r["p_positive"])) < low + 0.1]
        if members:
            confidence = statistics.fmean(max(float(r["p_negative"]), float(r["p_positive"])) for r in members)
            accuracy = statistics.fmean(float(r["gold"] == r["predicted"]) for r in members)
            total += len(members) / len(rows) * abs(accuracy - confidence)
    html = (runs["finetune"] / "report.html").read_text(encoding="utf-8")
    assert f"Expected calibration error (ECE): {total:.4f}." in html


def test_the_confusion_matrix_counts_gold_against_predicted():
    scored = Scored("s", ["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "x"])
    assert measures.confusion(scored, LABELS) == [[1, 1], [0, 2]]  # `x` is no label: left out


# ---------------------------------------------------------------- several runs, escaping, robustness


def test_several_runs_side_by_side(runs, tmp_path, capsys):
    out = tmp_path / "both.html"
    assert main(["report", str(runs["finetune"]), str(runs["ipet"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    html = out.read_text(encoding="utf-8")
    assert sections(html)[0] == "comparison" and sections(html).count("results") == 2
    rows = cells(html)
    assert [(r[0], r[4]) for r in rows] == [("finetune", "t")] + [
        ("ipet", g) for g in ["g0 a", "g0 b", "g0 ensemble", "g1 a", "g1 b", "g1 ensemble", "distilled"]]
    assert rows[0][1:4] == ["finetune.prompt", "prompt_finetune", rows[0][3]] and rows[1][2] == "ipet"
    assert html.count("<img ") == 1 + 5 + 5  # the comparison; each run's own sections


def test_texts_from_the_data_are_escaped(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs["finetune"], copy)
    (copy / "search").mkdir()
    (copy / "search" / "label_words.tsv").write_text(
        "data_seed\trank\tcandidate\twords_negative\twords_positive\tdev_round1\n"
        "13\t1\t4\t<script>alert(1)</script>\tgreat & good\t0.5\n", encoding="utf-8")
    html = page.render([read_run(copy)])
    assert sections(html)[-1] == "search"
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>great &amp; good</td>" in html
    assert "<script>" not in html


def test_a_search_shows_the_best_candidates_of_each_data_seed(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs["finetune"], copy)
    (copy / "search").mkdir()
    lines = [f"{seed}\t{rank}\t{rank * 3}\tw{rank}\t{1 - rank / 10:.2f}" for seed in (13, 21) for rank in range(1, 8)]
    (copy / "search" / "templates.tsv").write_text("data_seed\trank\tcandidate\ttemplate\tdev_round1\n"
                                                   + "\n".join(lines) + "\n", encoding="utf-8")
    view = page.run_view(read_run(copy))
    [(ranking, shown)] = view.rankings
    assert ranking.name == "templates.tsv" and len(ranking.rows) == 14
    assert [(r[0], r[1]) for r in shown] == [(s, str(k)) for s in ("13", "21") for k in range(1, 6)]


def test_a_plot_that_fails_is_reported_on_the_page_and_the_rest_written():
    def broken():
        raise ValueError("no data")

    assert page.draw(broken) == page.Image(None, "ValueError: no data")


def test_a_report_that_cannot_be_made_never_fails_the_run(runs, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(runs["finetune"], copy)
    (copy / "report.html").unlink()
    (copy / "metrics.json").write_text("{not json", encoding="utf-8")
    write_into(copy, tmp_path / "final")
    assert not (copy / "report.html").exists()
    assert capsys.readouterr().err == (
        f"promptlang: warning: no report.html written (ReportError: cannot read {copy / 'metrics.json'}: it is not "
        "the JSON that `promptlang run` writes); `promptlang report DIR` makes it later\n")


@pytest.mark.parametrize("setting, written", [("on", True), ("off", False)])
def test_promptlang_report_off_leaves_the_report_out(setting, written, runs, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(runs["finetune"], copy)
    (copy / "report.html").unlink()
    monkeypatch.setenv("PROMPTLANG_REPORT", setting)
    write_into(copy, copy)
    assert (copy / "report.html").is_file() == written


def test_the_default_page_of_one_directory_is_inside_it(runs, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(runs["regression"], copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out == f"{copy / 'report.html'}\n" and (copy / "report.html").is_file()


MIXTURE = """promptlang 1

mixture {
  tasks "generation.prompt", "again.prompt"
  limit 5
  seeds 13
}

method prompt_finetune {
  learning_rate 1e-2
  steps         3
  batch_size    4
}
"""


def test_a_mixture_run_leaves_its_tasks_side_by_side(runs, monkeypatch):
    folder = runs["generation"].parent
    shutil.copy(folder / "generation.prompt", folder / "again.prompt")
    (folder / "mix.prompt").write_text(MIXTURE, encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(folder / "cache"))
    assert main(["run", "-q", str(folder / "mix.prompt"), "--out", str(folder / "mix")]) == 0
    html = (folder / "mix" / "report.html").read_text(encoding="utf-8")
    assert sections(html) == ["comparison", "facts", "results", "bars", "loss", "samples",
                              "facts", "results", "bars", "samples"]
    assert [(r[0], r[4]) for r in cells(html)] == [("generation", "generation"), ("again", "again")]
    assert f"<dd>{folder / 'mix' / 'again'}</dd>" in html and "mixture of 2 tasks, prompt_finetune" in html
    assert [c.stage for c in read_run(folder / "mix").curves] == ["mixture d13"]


def test_the_report_needs_no_torch(runs, tmp_path):
    script = (f"import sys\nfrom promptlang.cli import main\nmain(['report', {str(runs['ipet'])!r}, '--out', "
              f"{str(tmp_path / 'r.html')!r}])\nprint([m for m in ('torch', 'transformers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.splitlines() == [str(tmp_path / "r.html"), "[]"]


def test_the_wheel_carries_the_template(tmp_path):
    builders = pytest.importorskip("hatchling.builders.wheel")
    wheel = next(builders.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    template = ROOT / "promptlang" / "report" / "templates" / "report.html.j2"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("promptlang/report/templates/report.html.j2") == template.read_bytes()


# ---------------------------------------------------------------- bad input


def _no_marker(tmp: Path) -> Path:
    (tmp / "plain").mkdir()
    (tmp / "plain" / "metrics.json").write_text(json.dumps({"runs": []}), encoding="utf-8")
    return tmp / "plain"


BAD = [
    # (what is given, extra arguments → the error line, {tmp} for the test's folder)
    ("not-a-dir", lambda tmp: tmp / "not-a-dir", [], "not a directory: {tmp}/not-a-dir"),
    ("empty", lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", [],
     "not a `promptlang run` output directory: {tmp}/empty (it has no metrics.json)"),
    ("no marker", _no_marker, [], "not a `promptlang run` output directory: {tmp}/plain (it has no "
                                  ".promptlang-output)"),
    ("out in a missing folder", None, ["--out", "{tmp}/nowhere/r.html"],
     "cannot write {tmp}/nowhere/r.html: no such directory: {tmp}/nowhere"),
    ("out is a folder", None, ["--out", "{tmp}"],
     "cannot write {tmp}: it is a directory (give --out a file name, like {tmp}/report.html)"),
]


@pytest.mark.parametrize("given, make, extra, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_usage_error(runs, tmp_path, capsys, given, make, extra, expected):
    directory = make(tmp_path) if make else runs["finetune"]
    code = main(["report", str(directory), *[x.format(tmp=tmp_path) for x in extra]])
    assert (code, capsys.readouterr().err) == (2, "promptlang: error: " + expected.format(tmp=tmp_path) + "\n")
