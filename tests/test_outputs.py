"""Output directories: what `run` refuses to replace (before any work), the marker, the swap and its
recovery after a kill, untrained runs without weights, and `predict` on hostile directories.

Every run here is zero-shot or two steps of fine-tuning on a tiny random model (`tinymodels.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.output import guard as output
from promptlang import runner  # noqa: E402
from promptlang.cli import main  # noqa: E402
from promptlang.output.guard import MARKER  # noqa: E402

FINETUNE = "finetune {\n  steps      2\n  batch_size 2\n}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tinymodels.save("masked", tmp_path_factory.mktemp("models") / "masked")


@pytest.fixture
def project(tmp_path, model_dir, monkeypatch) -> Path:
    """tmp/project with spec.prompt (zero-shot), other.prompt, ft.prompt (finetune) and data.tsv; cwd is tmp."""
    folder = tmp_path / "project"
    folder.mkdir()
    tinymodels.write_data(folder)
    for name, method in (("spec", "zero_shot {}"), ("other", "zero_shot {}"), ("ft", FINETUNE)):
        (folder / f"{name}.prompt").write_text(tinymodels.spec_text(path=str(model_dir), method=method),
                                               encoding="utf-8")
    monkeypatch.setenv("PROMPTLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture
def work(monkeypatch) -> list[str]:
    """What the run did past its checks: the tokenizer and data (`prepare`) and the model (`load_model`)."""
    done: list[str] = []
    prepare, load_model = runner.prepare, runner.load_model

    def recording(name, function):
        def call(*args, **kwargs):
            done.append(name)
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(runner, "prepare", recording("prepare", prepare))
    monkeypatch.setattr(runner, "load_model", recording("load_model", load_model))
    return done


def run(*args: str) -> int:
    return main(["run", "-q", *args])


def marker_of(spec: Path) -> str:
    return json.dumps({"promptlang": "0.1.0", "spec": str(spec.resolve()), "created": "2026-01-01T00:00:00"})


# ---------------------------------------------------------------- refused targets

PICK = "choose a new folder, like --out results/NAME"


def _file(tmp: Path) -> None:
    (tmp / "out").write_text("a file", encoding="utf-8")


def _foreign(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("years of work", encoding="utf-8")


def _other_spec(tmp: Path) -> None:
    _foreign(tmp)
    (tmp / "out" / MARKER).write_text(marker_of(tmp / "project" / "other.prompt"), encoding="utf-8")


def _bad_marker(tmp: Path) -> None:
    _foreign(tmp)
    (tmp / "out" / MARKER).write_text("{not json", encoding="utf-8")


def _loop(tmp: Path) -> None:
    (tmp / "out").symlink_to(tmp / "out")


def _empty_cwd(tmp: Path) -> None:
    (tmp / "here").mkdir()
    os.chdir(tmp / "here")


def _home(tmp: Path) -> None:
    (tmp / "home").mkdir()
    os.environ["HOME"] = str(tmp / "home")


REFUSED = {
    # name: (set up, --out, extra options, message with {tmp})
    "a file": (_file, "out", [], "the output directory out is a file; choose a folder with --out DIR"),
    "a folder promptlang did not write": (
        _foreign, "out", [], "the output directory out is not empty and no promptlang run wrote it (it has no "
        ".promptlang-output file); promptlang replaces only empty folders and its own output directories, even "
        f"with --force; {PICK}"),
    "the same with --force": (
        _foreign, "out", ["--force"], "the output directory out is not empty and no promptlang run wrote it (it "
        "has no .promptlang-output file); promptlang replaces only empty folders and its own output directories, "
        f"even with --force; {PICK}"),
    "another spec's results": (
        _other_spec, "out", [], "the output directory out holds the results of another spec "
        "({tmp}/project/other.prompt); add --force to replace them, or choose another folder with --out DIR"),
    "an unreadable marker": (
        _bad_marker, "out", [], "the output directory out holds the results of an unknown spec (its marker is "
        "unreadable); add --force to replace them, or choose another folder with --out DIR"),
    "the spec's folder": (
        None, "project", [], "the output directory project holds project/spec.prompt, which the run reads: "
        f"replacing it would delete it; {PICK}"),
    "an ancestor of the spec": (
        None, ".", [], "the output directory . holds project/spec.prompt, which the run reads: "
        f"replacing it would delete it; {PICK}"),
    "the model's folder": (
        None, "{model}", [], "the output directory {model} holds {model}, which the run reads: "
        f"replacing it would delete it; {PICK}"),
    "the cache": (
        None, "cache", [], "the output directory cache holds {tmp}/cache/stages, which the run reads: "
        f"replacing it would delete it; {PICK}"),
    "the root": (None, "/", [], f"the output directory / is the filesystem root; {PICK}"),
    "the home directory": (_home, "~", [], f"the output directory ~ is your home directory; {PICK}"),
    "the current directory": (_empty_cwd, ".", [], f"the output directory . is the current directory; {PICK}"),
    "a symlink loop": (_loop, "out/results", [],
                       "cannot use out/results as the output directory: it is a symlink loop"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_target_that_must_not_be_replaced_is_refused_before_any_work(name, project, model_dir, work, capsys,
                                                                       monkeypatch):
    setup, out, options, message = REFUSED[name]
    tmp = project.parent
    monkeypatch.setenv("HOME", os.environ.get("HOME", ""))  # restored after _home
    if setup:
        setup(tmp)
    spec = project.resolve() / "spec.prompt" if name == "the current directory" else Path("project/spec.prompt")
    before = _listing(tmp)
    assert run(str(spec), "--out", out.format(model=model_dir), *options) == 2
    expected = message.format(tmp=tmp, model=model_dir)
    assert capsys.readouterr().err == f"promptlang: error: {expected}\n"
    assert work == []  # neither the tokenizer, the data nor the model was loaded
    assert _listing(tmp) == before  # nothing written, nothing removed


def _listing(folder: Path) -> list[tuple[str, str]]:
    return sorted((str(p.relative_to(folder)), p.read_text(encoding="utf-8", errors="replace") if p.is_file() else "")
                  for p in folder.rglob("*") if not p.is_symlink())


def test_the_spec_output_is_refused_at_its_line(project, work, capsys):
    _foreign(project)
    spec = project / "spec.prompt"
    spec.write_text(spec.read_text(encoding="utf-8") + '\nevaluate {\n  output "out"\n}\n', encoding="utf-8")
    assert run("project/spec.prompt") == 1
    printed = capsys.readouterr().out
    assert printed.startswith("error: the output directory project/out is not empty and no promptlang run wrote it")
    assert "--> project/spec.prompt:26:10" in printed
    assert f"= help: {PICK}" in printed
    assert work == []


@pytest.mark.parametrize("value", ["results/sst2", "results/../out", "./out", "a/b/c"])
def test_check_accepts_an_output_inside_the_spec_folder(project, value):
    from promptlang import analyze

    spec = project / "spec.prompt"
    spec.write_text(spec.read_text(encoding="utf-8") + f'\nevaluate {{\n  output "{value}"\n}}\n', encoding="utf-8")
    assert analyze(spec).diagnostics.errors == []


def test_check_refuses_an_output_that_leaves_the_spec_folder_through_a_symlink(project, tmp_path):
    from promptlang import analyze

    (project / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    spec = project / "spec.prompt"
    spec.write_text(spec.read_text(encoding="utf-8") + '\nevaluate {\n  output "link/results"\n}\n', encoding="utf-8")
    [error] = analyze(spec).diagnostics.errors
    assert error.message == "`output` leads out of the spec's folder: `link/results`"


# ---------------------------------------------------------------- accepted targets and the marker


def test_the_marker_says_which_spec_wrote_the_directory(project):
    assert run("project/spec.prompt", "--out", "out") == 0
    marker = json.loads((project.parent / "out" / MARKER).read_text(encoding="utf-8"))
    assert sorted(marker) == ["created", "promptlang", "spec"]
    assert marker["spec"] == str((project / "spec.prompt").resolve()) and marker["promptlang"] == "0.1.0"


@pytest.mark.parametrize("first, second, options", [
    ("spec", "spec", []),  # the same spec again replaces its results
    ("other", "spec", ["--force"]),  # another spec's results with --force
    (None, "spec", []),  # an empty folder
])
def test_a_target_that_may_be_replaced_is(project, first, second, options):
    out = project.parent / "out"
    if first:
        assert run(f"project/{first}.prompt", "--out", "out") == 0
        (out / "stale.txt").write_text("from the first run", encoding="utf-8")
    else:
        out.mkdir()
    assert run(f"project/{second}.prompt", "--out", "out", *options) == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / MARKER).read_text(encoding="utf-8"))["spec"] == str(project.resolve() / f"{second}.prompt")
    assert sorted(p.name for p in project.parent.iterdir()) == ["cache", "out", "project"]


# ---------------------------------------------------------------- leftovers of killed runs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_runs_are_removed_and_those_of_live_ones_kept(project):
    tmp, dead, alive = project.parent, _dead_pid(), os.getppid()
    assert run("project/spec.prompt", "--out", "out") == 0
    for name in (f".out.partial-{dead}", f".out.old-{dead}", ".out.partial-x1y2z3", f".out.partial-{alive}",
                 f".other.partial-{dead}"):
        (tmp / name).mkdir()
        (tmp / name / "weights").write_text("model-sized", encoding="utf-8")
    assert run("project/spec.prompt", "--out", "out") == 0
    assert sorted(p.name for p in tmp.iterdir()) == sorted(
        ["cache", "out", "project", f".out.partial-{alive}", f".other.partial-{dead}"])


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from promptlang.output import guard as output
from promptlang.cli import main

real = os.replace
def replace(source, target):
    real(source, target)
    if Path(source).name == "out":  # the old results are aside, the new ones not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
output.os.replace = replace
sys.exit(main(["run", "-q", "project/spec.prompt", "--out", "out"]))
"""


def test_a_run_killed_between_the_renames_loses_nothing(project):
    tmp = project.parent
    assert run("project/spec.prompt", "--out", "out") == 0
    (tmp / "out" / "notes.txt").write_text("the first results", encoding="utf-8")
    first = _listing(tmp / "out")
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES], cwd=tmp, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(Path(runner.__file__).parent.parent)})
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith(".out."))
    pid = _pid_of(left[0])
    assert left == [f".out.old-{pid}", f".out.partial-{pid}"] and not (tmp / "out").exists()
    # the next run puts the old results back first: refused for another spec, they are where they were
    assert run("project/other.prompt", "--out", "out") == 2
    assert _listing(tmp / "out") == first
    assert sorted(p.name for p in tmp.iterdir()) == ["cache", "out", "project"]


def _pid_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def test_recovery_is_logged(tmp_path):
    (tmp_path / f".out.old-{_dead_pid()}").mkdir()
    seen: list[str] = []
    output.recover(tmp_path / "out", seen.append)
    [name] = [p.name for p in tmp_path.iterdir()]
    assert name == "out" and len(seen) == 1 and seen[0].startswith(f"  restored {tmp_path / 'out'} from .out.old-")


# ---------------------------------------------------------------- untrained runs and predict


def test_an_untrained_run_saves_no_weights_and_predicts_from_its_source(project, capsys):
    assert run("project/spec.prompt", "--out", "out") == 0
    out = project.parent / "out"
    assert not (out / "model").exists() and not (out / "extras.safetensors").exists()
    capsys.readouterr()
    assert main(["predict", "out", "--input", "project/data.tsv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "index\tsentence\tpredicted\tp_negative\tp_positive"
    expected = [line.split("\t") for line in (out / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    got = [line.split("\t") for line in lines[1:]]
    assert [g[1] for g in got] == [s for _, s in tinymodels.SENTENCES]
    assert [g[2:] for g in got] == [e[3:] for e in expected]  # predicted and probabilities, as in the run


IN_CONTEXT = dict(
    family="causal", words={"negative": ["terrible"], "positive": ["great"]},
    method="in_context {\n  calibrate true\n}",
    templates='template prompt "[DEMOS]{{ sentence }} It was [MASK]."\n'
              'template demo   "{{ sentence }} It was [MASK].\\n"',
    extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n",
)


def test_in_context_predicts_from_its_source_with_its_demonstrations(project, capsys):
    model = tinymodels.save("causal", project.parent / "causal")
    (project / "icl.prompt").write_text(tinymodels.spec_text(path=str(model), **IN_CONTEXT), encoding="utf-8")
    assert run("project/icl.prompt", "--out", "out") == 0
    out = project.parent / "out"
    info = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
    assert not (out / "model").exists() and info["source"]["model"] == str(model.resolve())
    assert len(info["extras"]["sets"]) == 2 and all(x["demos"] and x["calibration"] for x in info["extras"]["sets"])
    capsys.readouterr()
    assert main(["predict", "out", "--input", "project/data.tsv"]) == 0
    got = [line.split("\t")[2:] for line in capsys.readouterr().out.splitlines()[1:]]
    expected = [line.split("\t")[3:] for line in (out / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    assert got == expected


def test_predict_writes_each_input_text_as_one_field(project, capsys):
    assert run("project/ft.prompt", "--out", "out") == 0
    (project / "odd.jsonl").write_text(json.dumps({"sentence": "tab\there\nline\\end"}) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "out", "--input", "project/odd.jsonl"]) == 0
    [header, row] = capsys.readouterr().out.splitlines()
    assert row.split("\t")[:2] == ["0", "tab\\there\\nline\\\\end"]


BAD_INPUTS = {
    # name: (set up under tmp, options, message with {tmp})
    "an input that is a symlink loop": (lambda tmp: (tmp / "loop.tsv").symlink_to(tmp / "loop.tsv"),
                                        ["--input", "loop.tsv"],
                                        "cannot read loop.tsv: it is a symbolic link to nothing (or to itself)"),
    "an input that does not exist": (None, ["--input", "none.tsv"],
                                     "cannot read none.tsv: give a .tsv, .csv or .jsonl file"),
    "an input of another format": (lambda tmp: (tmp / "x.txt").write_text("a", encoding="utf-8"),
                                   ["--input", "x.txt"], "cannot read x.txt: give a .tsv, .csv or .jsonl file"),
    "an input without the text column": (lambda tmp: (tmp / "x.tsv").write_text("text\na\n", encoding="utf-8"),
                                         ["--input", "x.tsv"],
                                         "x.tsv has no column `sentence` (the spec's text columns: sentence)"),
    "an output in a missing folder": (None, ["--input", "project/data.tsv", "--output", "none/p.tsv"],
                                      "cannot write none/p.tsv: No such file or directory"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_predict_with_inputs_it_cannot_use_is_a_usage_error(name, project, capsys):
    setup, options, message = BAD_INPUTS[name]
    assert run("project/spec.prompt", "--out", "out") == 0
    if setup:
        setup(project.parent)
    assert main(["predict", "out", *options]) == 2
    assert capsys.readouterr().err == f"promptlang: error: {message}\n"


def test_progress_lines_name_the_stages_as_the_plan_does(project):
    from promptlang.compiler import plan as p

    assert run("project/ft.prompt", "--out", "out") == 0
    plan = p.Plan.model_validate_json((project.parent / "out" / "plan.json").read_text(encoding="utf-8"))
    assert [s.id for s in plan.stages] == ["train/d13/head/s42", "evaluate/d13/head/s42"]
    log = (project.parent / "out" / "log.txt").read_text(encoding="utf-8").splitlines()
    assert "  [1/2] train/d13/head/s42 ..." in log and "  [2/2] evaluate/d13/head/s42 ..." in log
    assert "  evaluate/d13/head/s42: " in "\n".join(log)


# ---------------------------------------------------------------- hostile output directories

SECRET = "SECRET-CONTENT-42"


def _write(name: str, text: str):
    def change(out: Path) -> None:
        (out / name).write_text(text, encoding="utf-8")
    return change


def _edit_info(**changes):
    def change(out: Path) -> None:
        info = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
        info.update(changes)
        (out / "predictor.json").write_text(json.dumps({k: v for k, v in info.items() if v is not None}),
                                            encoding="utf-8")
    return change


def _without(key: str):
    def change(out: Path) -> None:
        info = json.loads((out / "predictor.json").read_text(encoding="utf-8"))
        del info[key]
        (out / "predictor.json").write_text(json.dumps(info), encoding="utf-8")
    return change


def _remove(name: str):
    def change(out: Path) -> None:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return change


def _loop_at(name: str):
    def change(out: Path) -> None:
        _remove(name)(out)
        (out / name).symlink_to(out / name)
    return change


def _pickled_weights(out: Path) -> None:
    """Weights in a pickle that would write a file when unpickled."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (out / "pwned", "ran"))

    (out / "model" / "model.safetensors").unlink()
    (out / "model" / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))


def _remote_code(out: Path) -> None:
    config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForMaskedLM": "evil.Model"}
    config["model_type"] = "evil"
    (out / "model" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "model" / "evil.py").write_text(f"open({str(out / 'pwned')!r}, 'w').write('ran')\n", encoding="utf-8")


def _wrong_head(out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(3, 7), "head.bias": torch.zeros(3)}, str(out / "extras.safetensors"))


NOT_WRITTEN = "is not what promptlang writes"
HOSTILE = {
    # name: (run of, change, message after "{out}: ")
    "predictor.json not JSON": ("spec", _write("predictor.json", "{" + SECRET), "predictor.json is not JSON"),
    "predictor.json not UTF-8": ("spec", lambda out: (out / "predictor.json").write_bytes(b"\xff" + SECRET.encode()),
                                 "predictor.json is not UTF-8 text"),
    "predictor.json a list": ("spec", _write("predictor.json", f'["{SECRET}"]'),
                              f"predictor.json {NOT_WRITTEN} (it is not a JSON object); run the spec again to write the directory anew"),
    "predictor.json without its method": ("spec", _without("method"),
                                          f"predictor.json {NOT_WRITTEN} (`method` is missing); run the spec again to write the directory anew"),
    "an unknown method": ("spec", _edit_info(method=SECRET),
                          f"predictor.json {NOT_WRITTEN} (`method` is not valid); run the spec again to write the directory anew"),
    "another family": ("ft", _edit_info(family="seq2seq"),
                       "predictor.json says the model is seq2seq, but it is masked"),
    "an unknown pattern": ("spec", _edit_info(pattern=SECRET),
                           "predictor.json names a pattern that plan.json does not have"),
    "other labels": ("spec", _edit_info(labels=["a", SECRET]),
                     "the labels in predictor.json are not those of plan.json"),
    "a calibration of the wrong size": ("spec", _edit_info(extras={"calibration": [0.5]}),
                                        "a calibration in predictor.json does not have one value per label"),
    "demonstrations that are not token ids": ("spec", _edit_info(extras={"sets": [{"demos": [10 ** 9]}]}),
                                              "the demonstrations in predictor.json are not token ids of the model"),
    "plan.json not JSON": ("spec", _write("plan.json", SECRET), "plan.json is not JSON"),
    "plan.json not a plan": ("spec", _write("plan.json", json.dumps({"spec": SECRET})),
                             f"plan.json {NOT_WRITTEN} (`spec` is not valid); run the spec again to write the directory anew"),
    "plan.json missing": ("spec", _remove("plan.json"), "cannot read plan.json (No such file or directory)"),
    "plan.json a symlink loop": ("spec", _loop_at("plan.json"),
                                 "cannot read plan.json (Too many levels of symbolic links)"),
    "the recorded model gone": ("spec", _edit_info(source={"model": "/nonexistent/model",
                                                           "tokenizer": "/nonexistent/model"}),
                                "the model it was run with is not at /nonexistent/model any more (run the spec again)"),
    "the model folder missing": ("ft", _remove("model"), "the model folder {out}/model is missing"),
    "the model folder a symlink loop": ("ft", _loop_at("model"), "the model folder {out}/model is missing"),
    "weights in a pickle": ("ft", _pickled_weights, "cannot load the model from {out}/model (OSError)"),
    "remote code in the config": ("ft", _remote_code, "cannot load the model from {out}/model (ValueError)"),
    "extras missing": ("ft", _remove("extras.safetensors"),
                       "extras.safetensors has no `head.weight` (the classifier head)"),
    "extras corrupt": ("ft", _write("extras.safetensors", SECRET), "extras.safetensors is not a safetensors file"),
    "a head of the wrong shape": ("ft", _wrong_head,
                                  "`head.weight` in extras.safetensors does not fit the model "
                                  "(it must be 2 × 32 numbers)"),
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, model_dir) -> dict[str, Path]:
    """A zero-shot (`spec`) and a fine-tuned (`ft`) output directory, written once."""
    root = tmp_path_factory.mktemp("artifacts")
    tinymodels.write_data(root)
    made = {}
    for name, method in (("spec", "zero_shot {}"), ("ft", FINETUNE)):
        (root / f"{name}.prompt").write_text(tinymodels.spec_text(path=str(model_dir), method=method), encoding="utf-8")
        assert runner.run(root / f"{name}.prompt", str(root / f"{name}-out"), quiet=True, stages=root / "stages")
        made[name] = root / f"{name}-out"
    return made


@pytest.mark.parametrize("name", list(HOSTILE))
def test_predict_on_a_hostile_directory_is_a_usage_error(name, artifacts, tmp_path, capsys):
    of, change, message = HOSTILE[name]
    out = tmp_path / "out"
    shutil.copytree(artifacts[of], out)
    change(out)
    tinymodels.write_data(tmp_path)
    assert main(["predict", str(out), "--input", str(tmp_path / "data.tsv")]) == 2
    err = capsys.readouterr().err
    assert err == f"promptlang: error: {out}: {message.format(out=out)}\n"
    assert SECRET not in err and not (out / "pwned").exists()


def test_the_untouched_artifacts_predict(artifacts, tmp_path, capsys):
    tinymodels.write_data(tmp_path)
    for out in artifacts.values():
        assert main(["predict", str(out), "--input", str(tmp_path / "data.tsv")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2 * (1 + len(tinymodels.SENTENCES))


@pytest.mark.parametrize("spec, found", [({"gguf": "tiny.gguf"}, True), ({"package": "some-model"}, True),
                                         ({"hub": "org/model"}, False), (None, False)])
def test_a_converted_model_gone_from_the_cache_is_located_again(tmp_path, monkeypatch, spec, found):
    """A zero-shot directory of a GGUF or package model points into the cache; emptied, it is made again."""
    from promptlang.runtime import models
    from promptlang.output.predictor import ArtifactError, Info, model_places

    again = tmp_path / "converted-again"
    again.mkdir()
    monkeypatch.setattr(models, "locate", lambda model, directory: models.Location(str(again)))
    gone = str(tmp_path / "cache" / "gguf" / "tiny-0123")
    info = Info.model_validate({"method": "zero_shot", "pattern": "t", "family": "causal", "labels": ["a", "b"],
                                "extras": {}, "source": {"model": gone, "tokenizer": gone, "spec": spec,
                                                         "directory": str(tmp_path)}})
    if found:
        assert model_places(tmp_path, info) == (str(again), str(again), False)
    else:
        with pytest.raises(ArtifactError, match="the model it was run with is not at .* any more"):
            model_places(tmp_path, info)
