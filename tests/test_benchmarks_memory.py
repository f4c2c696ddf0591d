"""Soft-labelling a large unlabeled set needs bounded memory: PET's pattern models score the unlabeled set
a chunk at a time (`stages.logits.write_scored`) and write each chunk's rows before encoding the next.

Each size runs in its own process on the tiny BERT; what is measured is the peak memory that scoring adds
on top of the examples already read (Python allocations with tracemalloc, and the process's peak resident
size): 10k against 100k examples, the ratio in `extra_info` (near 1 when bounded, near 10 when linear).
For contrast, the same scoring done whole (every example encoded at once, the logits written at the end,
as promptlang did before) is measured at 5k and 10k (linear: twice the memory). Measured on the 2-core
machine: chunked 10k 4.4 MB / 100k 4.8 MB of Python allocations (ratio 1.08); whole 10k 9.9 MB, 100k
103 MB (ratio 10.4). Nothing here asserts a time or a size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
CHILD = r'''
import json, resource, sys, tempfile, tracemalloc
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[3])
import tinymodels
from promptlang.compiler.compile import compile_plan
from promptlang.runtime.data import Example
from promptlang.runtime.demos import set_logits
from promptlang.runtime.session import Session
from promptlang.stages.logits import write_logits, write_scored

torch.set_num_threads(1)
count, how = int(sys.argv[1]), sys.argv[2]
model, tokenizer = tinymodels.build("masked")
spec = tinymodels.spec_of(tinymodels.spec_text(method="zero_shot {\n  max_length 64\n}"))
plan = compile_plan(spec, tokenizer, "masked", {13: {"train": 0, "test": 0}})
session = Session(plan, tokenizer, model, log=lambda line: None)
pattern = plan.patterns["t"]
words = [s for _, s in tinymodels.SENTENCES]
examples = [Example({"sentence": f"{words[i % 8]} {'and ' * (i % 7)}{i}"}, None, f"u:{i}") for i in range(count)]
score = lambda chunk: set_logits(session, pattern, chunk, 64, [], 256)
out = Path(tempfile.mkdtemp()) / "unlabeled.logits.tsv"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
if how == "chunked":
    write_scored(out, examples, score, spec.labels)
else:
    write_logits(out, examples, score(examples), spec.labels)
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = sum(1 for _ in open(out)) - 1
print(json.dumps({"traced_mb": traced / 2**20, "rss_added_mb": (after - before) / 1024, "rows": rows}))
'''


def soft_label(count: int, how: str) -> dict:
    """Peak memory (MB) that scoring `count` unlabeled examples adds, in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(count), how, str(ROOT / "tests")], capture_output=True,
                          text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == count
    return result


def test_soft_labelling_memory_is_bounded_10k_vs_100k(benchmark):
    small = soft_label(10_000, "chunked")
    large = benchmark.pedantic(soft_label, args=(100_000, "chunked"), rounds=1, iterations=1)
    whole_small, whole_large = soft_label(5_000, "whole"), soft_label(10_000, "whole")  # (linear: ratio 2)
    ratio = large["traced_mb"] / small["traced_mb"]
    benchmark.extra_info.update(chunked_10k=small, chunked_100k=large, whole_5k=whole_small,
                                whole_10k=whole_large, ratio=ratio,
                                whole_ratio=whole_large["traced_mb"] / whole_small["traced_mb"])
    print(f"\nsoft-labelling peak memory added (Python allocations / resident):"
          f"\n  chunked: 10k {small['traced_mb']:.1f} / {small['rss_added_mb']:.0f} MB, "
          f"100k {large['traced_mb']:.1f} / {large['rss_added_mb']:.0f} MB, ratio {ratio:.2f}"
          f"\n  whole:   5k {whole_small['traced_mb']:.1f} / {whole_small['rss_added_mb']:.0f} MB, "
          f"10k {whole_large['traced_mb']:.1f} / {whole_large['rss_added_mb']:.0f} MB, "
          f"ratio {whole_large['traced_mb'] / whole_small['traced_mb']:.2f}")
