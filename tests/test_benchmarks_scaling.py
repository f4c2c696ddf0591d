"""Checking scales linearly: a large spec (20k labels; `PROMPTLANG_BENCH_LABELS` for more) against a 1k-label one.

The large spec has N labels, a verbalizer with a word for each, N data and training seeds,
and a `patterns` list of N/100 templates. Linear checking costs about N/1000 times the small
spec's time; `extra_info` holds that ratio and `per_item`, the ratio over N/1000 (near 1 when
linear; the quadratic checks this guards against gave well over 10 at 100k). Nothing here
asserts a time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SMALL, LARGE = 1_000, int(os.environ.get("PROMPTLANG_BENCH_LABELS", "20000"))


def spec_text(labels: int) -> str:
    """A valid PET spec with `labels` labels, words and seeds, and labels/100 templates."""
    names = [f"label{i}" for i in range(labels)]
    seeds = ", ".join(str(i) for i in range(labels))
    templates = [f"t{i}" for i in range(labels // 100)]
    return "\n".join([
        "promptlang 1", "",
        "labels " + ",\n  ".join(names), "",
        "data {", '  train "train.tsv"', '  test "test.tsv"', "  text sentence", f"  seeds {seeds}", "}", "",
        "model {", '  hub "roberta-large"', "}", "",
        *(f'template {t} "{{{{ sentence }}}} {t} [MASK]."' for t in templates), "",
        "verbalizer words {", *(f'  {name} -> "w{name}"' for name in names), "}", "",
        "method pet {", "  steps 10", "  patterns " + ", ".join(templates), f"  seeds {seeds}", "}", "",
    ])


def write_spec(folder: Path, labels: int) -> Path:
    (folder / "train.tsv").write_text("label\tsentence\nlabel1\tgood\n", encoding="utf-8")
    (folder / "test.tsv").write_text("label\tsentence\nlabel2\tbad\n", encoding="utf-8")
    path = folder / f"spec{labels}.prompt"
    path.write_text(spec_text(labels), encoding="utf-8")
    return path


def test_check_many_labels_vs_1k(benchmark, tmp_path):
    """`analyze` (parse, build, check) of the large spec, against the 1k-label one."""
    from promptlang import analyze

    small, large = write_spec(tmp_path, SMALL), write_spec(tmp_path, LARGE)
    assert analyze(small).ok
    start = time.perf_counter()
    for _ in range(3):
        analyze(small)
    baseline = (time.perf_counter() - start) / 3
    analysis = benchmark.pedantic(analyze, args=(large,), rounds=1, iterations=1)
    assert analysis.ok, analysis.diagnostics.items[:3]
    ratio = benchmark.stats.stats.mean / baseline
    benchmark.extra_info.update(baseline_seconds=baseline, ratio=ratio, per_item=ratio / (LARGE / SMALL))
    print(f"\ncheck {LARGE} labels: {benchmark.stats.stats.mean:.1f} s, {SMALL} labels: {baseline:.3f} s, "
          f"ratio {ratio:.0f}x for {LARGE // SMALL}x the labels")
