"""Several processes through `torchrun` (two CPU processes, gloo) on the tiny models: the same metrics as
one process (identical for scoring, and for PET's pattern models, which the processes share out whole;
within a stated tolerance for data-parallel training), predictions in dataset order, one output
directory written by the first process, and a stage store with no broken entry."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

import tinymodels  # noqa: E402
from promptlang.runner import run  # noqa: E402

pytestmark = [pytest.mark.usefixtures("promptlang_cache"),
              pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch without gloo")]
DATA = '''  train "data.tsv"
  dev   "data.tsv"
  test  "data.tsv"
  unlabeled "data.tsv"
  text  sentence'''
# Training on two processes differs from one only by the order of floating-point sums and by dropout
# drawing its masks per process: label probabilities agree to this much on the tiny models.
TRAINING_TOLERANCE = 2e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(folder: Path, model_dirs, family: str, method: str) -> Path:
    tinymodels.write_data(folder)
    path = folder / "spec.prompt"
    path.write_text(tinymodels.spec_text(family=family, path=str(model_dirs[family]), data=DATA, method=method),
                    encoding="utf-8")
    return path


LAUNCHERS = {  # two processes on this machine, each started as `python -m promptlang ...`
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                 "--master_addr", "127.0.0.1", "--master_port", "{port}", "-m"],
    # accelerate's `--multi_gpu` launcher is torchrun underneath; with `--device cpu` its processes use gloo
    "accelerate": [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "{port}", "-m"],
}


def torchrun(spec: Path, out: Path, stages: Path, launcher: str = "torchrun") -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m promptlang run SPEC` (or accelerate launch) on the CPU."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    port = str(_free_port())
    command = [part.replace("{port}", port) for part in LAUNCHERS[launcher]] + [
        "promptlang", "run", str(spec), "--out", str(out), "--stages", str(stages), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def predictions(out: Path) -> list[dict]:
    with open(out / "predictions.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def sound_store(stages: Path) -> None:
    """Every stage directory is whole: a result.json that parses, and no partial directory left."""
    assert not list(stages.rglob("*.partial-*"))
    for result in stages.rglob("result.json"):
        assert json.loads(result.read_text(encoding="utf-8"))["key"] == result.parent.name


def compare(tmp_path: Path, model_dirs, family: str, method: str, tolerance: float,
            launcher: str = "torchrun") -> tuple[str, str]:
    spec = write(tmp_path, model_dirs, family, method)
    one = run(spec, str(tmp_path / "one"), quiet=True, stages=tmp_path / "stages-one", device="cpu")
    done = torchrun(spec, tmp_path / "two", tmp_path / "stages-two", launcher)
    a, b = predictions(tmp_path / "one"), predictions(tmp_path / "two")
    assert [(r["stage"], r["index"], r["gold"]) for r in a] == [(r["stage"], r["index"], r["gold"]) for r in b]
    assert [int(r["index"]) for r in b if r["stage"] == b[0]["stage"]] == list(range(8))  # dataset order
    columns = [c for c in a[0] if c.startswith("p_")]
    gap = max(abs(float(x[c]) - float(y[c])) for x, y in zip(a, b) for c in columns)
    assert gap <= tolerance
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["runs_on"]["processes"] == 2
    if tolerance == 0:
        assert [r.metrics for r in one.rows] == [row["metrics"] for row in metrics["runs"]]
    sound_store(tmp_path / "stages-two")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("one", "two"))) == ["one", "two"]
    return done.stdout, (tmp_path / "two" / "log.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_scoring_on_two_processes_is_identical_to_one(launcher, tmp_path, model_dirs):
    stdout, log = compare(tmp_path, model_dirs, "masked",
                          "zero_shot {\n  calibrate true\n  eval_batch_size 2\n}", tolerance=0, launcher=launcher)
    assert "runs on: cpu, fp32, 2 processes; evaluation batch 2 per device" in log
    assert stdout.count("accuracy") == 2  # one process prints the results table (a row and the summary)


def test_data_parallel_training_on_two_processes_agrees_with_one(tmp_path, model_dirs):
    _, log = compare(tmp_path, model_dirs, "causal",
                     "prompt_finetune {\n  steps 3\n  batch_size 4\n  eval_batch_size 3\n  seeds 1\n}",
                     tolerance=TRAINING_TOLERANCE)
    assert "batch 4 per optimizer step, 2 per device" in log


def test_pet_shares_its_pattern_models_out_whole_and_matches_one_process(tmp_path, model_dirs):
    """PET's models train one per process at once (two processes writing the store together); each is the
    model one process trains, so their logits are identical; the distilled classifier trains data-parallel."""
    method = "pet {\n  steps 2\n  batch_size 2\n  eval_batch_size 3\n  seeds 1, 2\n  distill {\n    steps 2\n  }\n}"
    _, log = compare(tmp_path, model_dirs, "masked", method, tolerance=TRAINING_TOLERANCE)
    assert "train/d13/t/s2: in process 1" in log
    for stage in ("train/d13/t/s1", "train/d13/t/s2", "ensemble/d13"):
        for split in ("test", "unlabeled"):
            one = (tmp_path / "one" / "stages" / stage / f"{split}.logits.tsv").read_text(encoding="utf-8")
            two = (tmp_path / "two" / "stages" / stage / f"{split}.logits.tsv").read_text(encoding="utf-8")
            assert one == two, (stage, split)


def test_a_searchs_candidates_are_shared_out_whole_and_rank_as_on_one_process(tmp_path, model_dirs):
    """LM-BFF's halving rounds train one candidate per process at once; every dev score, so the ranking and
    the found words, is what one process computes."""
    method = ("prompt_finetune {\n  steps 4\n  batch_size 2\n  eval_batch_size 3\n  seeds 1\n"
              "  label_word_search {\n    top_k 3\n    candidates 4\n    start 4\n  }\n}")
    _, log = compare(tmp_path, model_dirs, "masked", method, tolerance=TRAINING_TOLERANCE)
    assert "rank/d13/words/r1/c1: in process 1" in log and "rank/d13/words/r2/c1: in process 1" in log
    one, two = ((tmp_path / name / "search" / "label_words.tsv").read_text(encoding="utf-8") for name in ("one", "two"))
    assert one == two
