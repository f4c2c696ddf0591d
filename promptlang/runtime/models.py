"""Models: where a spec's model lives (hub, folder, GGUF file, Python package), its family, and loading it.

Finding a packaged model is `packages`, converting a GGUF file is `gguf`; both are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.source import is_link_loop
from promptlang.runtime.gguf import convert_gguf, file_key, gguf_family, gguf_tokenizer_folder
from promptlang.runtime.model_base import (CAUSAL, MASKED, MASKED_TYPES, SEQ2SEQ, Location, ModelError,  # noqa: F401
                                           cache_dir)
from promptlang.runtime.packages import find_package


_FOUND: dict[tuple, Location] = {}  # (source kind, value, folder) → Location, once per process


def find(model: m.Model, directory: Path) -> Location:
    """Where the spec's model is, without converting anything (a packaged GGUF is assembled once).

    Raises:
        ModelError: the model's file or package cannot be found (located at its setting).
    """
    kind, value = model.source
    key = (kind, value, str(directory), str(cache_dir()))
    if key not in _FOUND:
        _FOUND[key] = _find(kind, value, directory)
    return _FOUND[key]


def _find(kind: str, value: str, directory: Path) -> Location:
    if kind == "hub":
        return Location(value)
    if kind == "path":
        return Location(str(_checked_path(directory, value, ("model", "path"))))
    if kind == "gguf":
        path = _checked_path(directory, value, ("model", "gguf"))
        return Location(str(path.parent), path.name)
    return find_package(value, directory)


def _checked_path(directory: Path, relative: str, setting: tuple) -> Path:
    """`directory / relative`, after making sure it does not lead into a symlink loop."""
    path = directory / relative
    if is_link_loop(path):
        raise ModelError(f"`{relative}` leads into a symlink loop (a symbolic link that points back at itself)",
                         setting, "point the link at the real model, or name the model itself")
    return path


def locate(model: m.Model, directory: Path) -> Location:
    """What `from_pretrained` loads the model's weights from: a GGUF model is converted into the cache first."""
    where = find(model, directory)
    if where.gguf_file:
        return Location(str(convert_gguf(where.gguf_path, where.known_hash)))
    return where


def will_convert(model: m.Model, directory: Path) -> bool:
    """Whether loading the spec's model first converts a GGUF file (minutes, once): worth saying before."""
    where = find(model, directory)
    if not where.gguf_file:
        return False
    key = f"{where.gguf_path.stem}-{file_key(where.gguf_path, where.known_hash)}"
    return not (cache_dir() / "gguf" / key / "config.json").is_file()


def tokenizer_location(model: m.Model, directory: Path) -> str:
    """What `AutoTokenizer.from_pretrained` loads the model's own tokenizer from (no weights converted)."""
    where = find(model, directory)
    if where.gguf_file:
        return str(gguf_tokenizer_folder(where.gguf_path, where.known_hash))
    return where.name


def load_tokenizer(model: m.Model, directory: Path):
    """The spec's tokenizer (its `tokenizer` setting, else the model's own)."""
    from transformers import AutoTokenizer

    if model.tokenizer:
        local = directory / model.tokenizer
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else model.tokenizer)
    return AutoTokenizer.from_pretrained(tokenizer_location(model, directory))


def family_of(config) -> str:
    """masked, causal or seq2seq, from a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        return SEQ2SEQ
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in architectures or config.model_type in MASKED_TYPES:
        return MASKED
    return CAUSAL


def family_for(model: m.Model, directory: Path) -> str:
    """The spec's model family: as written, or from the model's config or GGUF header (weights are not loaded)."""
    if model.family is not m.ModelFamily.auto:
        return model.family.value
    where = find(model, directory)
    if where.gguf_file:
        return gguf_family(where.gguf_path)
    from transformers import AutoConfig

    return family_of(AutoConfig.from_pretrained(where.name))


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
