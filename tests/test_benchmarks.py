"""Speed, as ratios against a baseline measured in the same run (these machines are noisy).

Each benchmark stores `ratio` (its mean over the baseline's) in `extra_info`; read them in
the benchmark table or with `--benchmark-json`. Nothing here asserts a time.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "sst2-pet.prompt"


def _mean_seconds(command: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def test_cold_check_vs_python_startup(benchmark):
    """`promptlang check` on one spec in a fresh process, against `python -c pass`."""
    check = [sys.executable, "-m", "promptlang", "check", str(SPEC)]
    baseline = _mean_seconds([sys.executable, "-c", "pass"], rounds=10)
    benchmark.pedantic(subprocess.run, args=(check,), kwargs={"check": True, "capture_output": True},
                       rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["baseline_seconds"] = baseline
    benchmark.extra_info["ratio"] = benchmark.stats.stats.mean / baseline
    print(f"\ncold check: {benchmark.stats.stats.mean:.3f} s, python -c pass: {baseline:.3f} s, "
          f"ratio {benchmark.stats.stats.mean / baseline:.1f}x")


def test_warm_analyze_vs_read(benchmark):
    """Parse + build + check of one spec in a warm process, against reading the file."""
    from promptlang import analyze

    analyze(SPEC)
    start = time.perf_counter()
    for _ in range(200):
        SPEC.read_text(encoding="utf-8")
    baseline = (time.perf_counter() - start) / 200
    benchmark(analyze, SPEC)
    benchmark.extra_info["ratio"] = benchmark.stats.stats.mean / baseline
