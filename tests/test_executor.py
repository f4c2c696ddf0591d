"""One executor for every method: what `promptlang run` executes is exactly the plan, every method
resumes from the stage store, a changed setting re-runs only what depends on it, and a run killed
with SIGKILL mid-stage ends, when run again, with byte-identical metrics and predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

import tinymodels  # noqa: E402
from tinymodels import single_thread  # noqa: E402, F401
from promptlang.compiler import plan as p  # noqa: E402
from promptlang.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEMOS = dict(templates='template t "[DEMOS]{{ sentence }} It was [MASK]."\n'
                       'template demo "{{ sentence }} It was [MASK].\\n"',
             extra="\ndemonstrations {\n  per_label 1\n  template  demo\n  sets      2\n}\n")
TRAIN = "{\n  steps 2\n  batch_size 2\n  seeds 1, 2\n}"
PET = "{\n  steps 2\n  batch_size 2\n  seeds 1, 2\n  distill {\n    steps 2\n  }\n}"
# method × family: the method block and what else the spec holds
CASES = {
    "zero_shot masked": ("masked", "zero_shot {\n  calibrate true\n}", {}),
    "zero_shot causal": ("causal", "zero_shot {}", {}),
    "zero_shot seq2seq": ("seq2seq", "zero_shot {}", {}),
    "in_context causal": ("causal", "in_context {\n  calibrate true\n}", DEMOS),
    "in_context masked": ("masked", "in_context {}", DEMOS),
    "prompt_finetune masked": ("masked", "prompt_finetune " + TRAIN, {}),
    "prompt_finetune causal demos": ("causal", "prompt_finetune " + TRAIN, DEMOS),
    "prompt_finetune seq2seq": ("seq2seq", "prompt_finetune " + TRAIN, {}),
    "finetune masked": ("masked", "finetune " + TRAIN, {}),
    "finetune causal": ("causal", "finetune " + TRAIN, {}),
    "finetune seq2seq": ("seq2seq", "finetune " + TRAIN, {}),
    "pet masked": ("masked", "pet " + PET, {}),
    "pet causal": ("causal", "pet " + PET, {}),
    "ipet masked": ("masked", "ipet {\n  steps 2\n  batch_size 2\n  seeds 1, 2\n  ipet {\n    generations 2\n  }\n}", {}),
}
DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  unlabeled "data.tsv"
  text  sentence'''


pytestmark = pytest.mark.usefixtures("promptlang_cache")


def write(folder: Path, model_dirs, family: str, method: str, **spec) -> Path:
    tinymodels.write_data(folder)
    path = folder / "spec.prompt"
    path.write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, method=method,
                                         **spec), encoding="utf-8")
    return path


def planned(out: Path) -> list[str]:
    plan = p.Plan.model_validate_json((out / "plan.json").read_text(encoding="utf-8"))
    return [stage.id for stage in plan.stages]


@pytest.mark.parametrize("name", list(CASES))
def test_what_runs_is_the_plan_and_a_rerun_reuses_every_stage(name, tmp_path, model_dirs):
    family, method, extra = CASES[name]
    spec = write(tmp_path, model_dirs, family, method, **extra)
    first = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    stages = planned(tmp_path / "out")
    assert first.executed == stages  # the executor's record: every planned stage, in order, once
    assert stages
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split("] ", 1)[1].removesuffix(" ...") for line in log if line.startswith("  [")] == stages
    again = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert again.executed == stages and all(row.reused for row in again.rows)
    assert [r.metrics for r in again.rows] == [r.metrics for r in first.rows]
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    assert log.count("finished earlier, reused") == len(stages)


def test_a_changed_setting_reruns_only_the_stages_that_depend_on_it(tmp_path, model_dirs):
    method = "prompt_finetune {\n  steps 2\n  batch_size 2\n  seeds 1, 2\n}"
    spec = write(tmp_path, model_dirs, "causal", method, **DEMOS)
    run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    # more demonstration sets for evaluation: the selection and everything after it run again
    spec.write_text(spec.read_text(encoding="utf-8").replace("sets      2", "sets      3"), encoding="utf-8")
    rerun = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert not any(row.reused for row in rerun.rows)
    # another seed list: the model of seed 1 is reused, seed 3 is new
    spec.write_text(spec.read_text(encoding="utf-8").replace("seeds 1, 2", "seeds 1, 3"), encoding="utf-8")
    changed = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert {row.stage: row.reused for row in changed.rows} == {"evaluate/d13/t/s1": True, "evaluate/d13/t/s3": False}
    # another test file: the models are reused, only the evaluations run again
    tinymodels.write_data(tmp_path, "test2.tsv", rows=tinymodels.SENTENCES[:4])
    spec.write_text(spec.read_text(encoding="utf-8").replace('test  "data.tsv"', 'test  "test2.tsv"'), encoding="utf-8")
    tested = run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    assert "train/d13/t/s1: finished earlier, reused" in log and "train/d13/t/s3: finished earlier, reused" in log
    assert not any(row.reused for row in tested.rows)


@pytest.mark.parametrize("method", ["prompt_finetune " + TRAIN, "pet " + PET.replace("seeds 1, 2\n  distill {",
                                                                                    "seeds 1\n  distill {\n    seeds 1, 2")])
def test_only_the_chosen_models_weights_stay_in_the_store(method, tmp_path, model_dirs):
    spec = write(tmp_path, model_dirs, "masked", method)
    run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    info = json.loads((tmp_path / "out" / "predictor.json").read_text(encoding="utf-8"))
    kept = sorted(str(x.relative_to(tmp_path / "stages").parent.parent)
                  for x in (tmp_path / "stages").rglob("weights.safetensors"))
    assert kept == [info["stage"].replace("evaluate/", "train/")]  # (a distilled model keeps its own)
    # a later run whose chosen model lost its weights trains it again, to the same output
    for path in (tmp_path / "stages").rglob("weights.safetensors"):
        path.unlink()
    before = (tmp_path / "out" / "model" / "model.safetensors").read_bytes()
    run(spec, str(tmp_path / "out"), quiet=True, stages=tmp_path / "stages")
    assert (tmp_path / "out" / "model" / "model.safetensors").read_bytes() == before


KILLED_SPEC = "prompt_finetune {\n  steps 80\n  batch_size 2\n  seeds 1, 2\n}"


def _run_command(spec: Path, out: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "promptlang", "run", str(spec), "--out", str(out), "--stages", str(store)]


def test_a_run_killed_mid_stage_resumes_there_with_byte_identical_outputs(tmp_path, model_dirs):
    """Prompt-based fine-tuning with demonstrations, killed with SIGKILL while its second model trains."""
    spec = write(tmp_path, model_dirs, "causal", KILLED_SPEC, **DEMOS)
    env = {**os.environ, "PROMPTLANG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    whole, store = tmp_path / "whole", tmp_path / "store"
    run(spec, str(whole), quiet=True, stages=tmp_path / "other-store")  # uninterrupted, for comparison
    process = subprocess.Popen(_run_command(spec, tmp_path / "out", store), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((store / "train" / "d13" / "t" / "s2").glob("*.partial-*")) and time.time() < deadline:
        assert process.poll() is None, "the run ended before its second model started training"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()  # nothing half-written where the results go
    run(spec, str(tmp_path / "out"), quiet=True, stages=store)  # resumed
    log = (tmp_path / "out" / "log.txt").read_text(encoding="utf-8")
    assert "train/d13/t/s1: finished earlier, reused" in log
    assert "[4/5] train/d13/t/s2 ..." in log  # (demonstrations, train s1, evaluate s1 are reused)
    for name in ("predictions.tsv", "predictor.json", "verbalizer.json", "plan.json"):
        assert (tmp_path / "out" / name).read_bytes() == (whole / name).read_bytes(), name
    metrics = [json.loads((folder / "metrics.json").read_text(encoding="utf-8")) for folder in (whole, tmp_path / "out")]
    assert [(r["stage"], r["metrics"], r["dev"]) for r in metrics[0]["runs"]] == \
        [(r["stage"], r["metrics"], r["dev"]) for r in metrics[1]["runs"]]
    assert metrics[0]["summary"] == metrics[1]["summary"]
    assert (tmp_path / "out" / "model" / "model.safetensors").read_bytes() == \
        (whole / "model" / "model.safetensors").read_bytes()


def test_the_keeper_removes_a_models_weights_as_soon_as_a_better_one_is_done(tmp_path):
    from promptlang.output.artifact import Keeper
    from promptlang.stages.kinds import WEIGHTS, Done, Run
    from promptlang.stages.store import Store

    store = Store(tmp_path)
    run_ = Run(session=None, splits={}, store=store)
    evaluations = []
    for seed, dev in [(1, 0.5), (2, 0.7), (3, 0.6), (4, 0.7)]:
        train = p.Stage(id=f"train/d13/t/s{seed}", kind="train", method="prompt_finetune", data_seed=13, seed=seed,
                        saves_weights=True)
        (store.directory(train.id, "k") / WEIGHTS).parent.mkdir(parents=True)
        (store.directory(train.id, "k") / WEIGHTS).write_bytes(b"w")
        run_.done[train.id] = Done(train, "k", store.directory(train.id, "k"), {}, False)
        evaluate = p.Stage(id=f"evaluate/d13/t/s{seed}", kind="evaluate", method="prompt_finetune", data_seed=13,
                           seed=seed, needs=[train.id])
        evaluations.append(Done(evaluate, "k", tmp_path, {"dev": dev}, False))
    keeper, left = Keeper(run_), []
    for item in evaluations:
        run_.done[item.stage.id] = item
        keeper.offer(item)
        left.append(sorted(x.parent.parent.name for x in tmp_path.rglob(WEIGHTS)))
    assert left == [["s1", "s2", "s3", "s4"], ["s2", "s3", "s4"], ["s2", "s4"], ["s2"]]  # ties: the first stays
    assert keeper.best is evaluations[1]
