"""Models: where a spec's model lives (hub, folder, GGUF file, Python package), its family, and loading it.

A GGUF file is converted once (dequantized, saved as safetensors) into the cache folder
(`$PROMPTLANG_CACHE`, default `~/.cache/promptlang`); later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from promptlang import spec as m

MASKED, CAUSAL, SEQ2SEQ = "masked", "causal", "seq2seq"


def cache_dir() -> Path:
    """The folder for converted models and tokenized data."""
    return Path(os.environ.get("PROMPTLANG_CACHE", Path.home() / ".cache" / "promptlang"))


@dataclass(frozen=True)
class Location:
    """What `from_pretrained` is given: a hub id or a local folder (and a GGUF file in it)."""

    name: str
    gguf_file: str | None = None

    @property
    def local(self) -> bool:
        return Path(self.name).is_dir()


def locate(model: m.Model, directory: Path) -> Location:
    """Where the spec's model is; a GGUF file or a packaged GGUF is converted into the cache first."""
    kind, value = model.source
    if kind == "hub":
        return Location(value)
    if kind == "path":
        return Location(str(directory / value))
    if kind == "gguf":
        return Location(str(convert_gguf(directory / value)))
    package = importlib.import_module(value.replace("-", "_"))
    if hasattr(package, "get_model_path"):
        return Location(str(package.get_model_path()))
    if hasattr(package, "assemble"):
        return Location(str(convert_gguf(Path(package.assemble()), getattr(package, "EXPECTED_SHA256", None))))
    raise ValueError(f"the package `{value}` has neither `get_model_path()` nor `assemble()`")


def _file_key(path: Path, known_hash: str | None) -> str:
    if known_hash:
        return known_hash[:16]
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def convert_gguf(path: Path, known_hash: str | None = None) -> Path:
    """A safetensors copy of a GGUF model (and its tokenizer), made once and cached.

    transformers loads GGUF by dequantizing, which is slow (tokenizer conversion alone
    takes tens of seconds) and a GGUF-loaded model refuses `save_pretrained`; so the
    weights go into a model built from the config without its quantization settings.
    """
    target = cache_dir() / "gguf" / f"{path.stem}-{_file_key(path, known_hash)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_tokenizer(model: m.Model, directory: Path):
    """The spec's tokenizer (its `tokenizer` setting, else the model's own)."""
    from transformers import AutoTokenizer

    if model.tokenizer:
        local = directory / model.tokenizer
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else model.tokenizer)
    return AutoTokenizer.from_pretrained(locate(model, directory).name)


def family_of(config) -> str:
    """masked, causal or seq2seq, from a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        return SEQ2SEQ
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in architectures or config.model_type in _MASKED_TYPES:
        return MASKED
    return CAUSAL


_MASKED_TYPES = {"bert", "roberta", "xlm-roberta", "albert", "deberta", "deberta-v2", "electra", "distilbert",
                 "camembert", "mpnet", "ernie", "modernbert"}


def family_for(model: m.Model, directory: Path) -> str:
    """The spec's model family: as written, or from the model's config (weights are not loaded)."""
    if model.family is not m.ModelFamily.auto:
        return model.family.value
    from transformers import AutoConfig

    return family_of(AutoConfig.from_pretrained(locate(model, directory).name))


def load_model(model: m.Model, directory: Path, family: str | None = None):
    """The spec's pretrained model with its LM head, in float32 on the CPU.

    Returns:
        (model, family).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    where = locate(model, directory)
    config = AutoConfig.from_pretrained(where.name)
    family = family or (model.family.value if model.family is not m.ModelFamily.auto else family_of(config))
    loader = {MASKED: AutoModelForMaskedLM, CAUSAL: AutoModelForCausalLM, SEQ2SEQ: AutoModelForSeq2SeqLM}[family]
    return loader.from_pretrained(where.name, dtype=torch.float32), family
