"""GGUF files: their family read from the header alone, their tokenizer or whole model converted once into the cache.

A GGUF file is converted once (dequantized, saved as safetensors) into the cache folder
(`$PROMPTLANG_CACHE`, default `~/.cache/promptlang`) when its weights are first needed;
`plan`, `render` and `check --tokenizer` convert only its tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from promptlang.runtime.model_base import CAUSAL, MASKED, MASKED_TYPES, SEQ2SEQ, ModelError, cache_dir


def file_key(path: Path, known_hash: str | None) -> str:
    """The cache key of a GGUF file: its known sha256, else its path, size and modification time."""
    if known_hash:
        return known_hash[:16]
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def _staged(target: Path, write) -> Path:
    """`target`, written by `write(folder)` into a staging folder beside it and moved there in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def quiet_conversion() -> Iterator[None]:
    """No bar from transformers' GGUF reader while it converts: it draws tqdm itself, past transformers' own
    switch for progress bars (the run's display says that the model is converting)."""
    from transformers import modeling_gguf_pytorch_utils as reader

    drawn = reader.tqdm
    reader.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        reader.tqdm = drawn


def convert_gguf(path: Path, known_hash: str | None = None) -> Path:
    """A safetensors copy of a GGUF model (and its tokenizer), made once and cached.

    transformers loads GGUF by dequantizing, which is slow (tokenizer conversion alone
    takes tens of seconds) and a GGUF-loaded model refuses `save_pretrained`; so the
    weights go into a model built from the config without its quantization settings.
    """
    target = cache_dir() / "gguf" / f"{path.stem}-{file_key(path, known_hash)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    converted = cache_dir() / "gguf-tokenizer" / target.name  # what `plan` already converted, if it ran
    tokenizer = AutoTokenizer.from_pretrained(str(converted)) if (converted / "tokenizer_config.json").is_file() \
        else _gguf_tokenizer(path)
    with quiet_conversion():
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())

    def write(folder: Path) -> None:
        plain.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return _staged(target, write)


def gguf_tokenizer_folder(path: Path, known_hash: str | None = None) -> Path:
    """A folder with only the GGUF model's tokenizer (converted once; no weights are read):
    the converted model's folder when there is one already."""
    key = f"{path.stem}-{file_key(path, known_hash)}"
    converted = cache_dir() / "gguf" / key
    if (converted / "config.json").is_file():
        return converted
    target = cache_dir() / "gguf-tokenizer" / key
    if (target / "tokenizer_config.json").is_file():
        return target
    tokenizer = _gguf_tokenizer(path)
    return _staged(target, tokenizer.save_pretrained)


def _gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def gguf_family(path: Path) -> str:
    """masked, causal or seq2seq from a GGUF file's `general.architecture` (read from its header alone)."""
    architecture = gguf_architecture(path) or ""
    if architecture.startswith("t5"):
        return SEQ2SEQ
    return MASKED if architecture.replace("_", "-") in MASKED_TYPES or architecture.endswith("bert") else CAUSAL


_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type → bytes
_STRING, _ARRAY = 8, 9


def gguf_architecture(path: Path) -> str | None:
    """The `general.architecture` of a GGUF file, read key by key from its header (the `gguf`
    package's reader parses every tensor and the whole vocabulary first: a minute for Gemma's).

    Raises:
        ModelError: the file is not GGUF.
    """
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelError(f"`{path.name}` is not a GGUF file", ("model",))
        try:
            _version, _tensors, count = struct.unpack("<IQQ", handle.read(20))
            for _ in range(count):
                key = _gguf_string(handle)
                kind = struct.unpack("<I", handle.read(4))[0]
                if key == "general.architecture" and kind == _STRING:
                    return _gguf_string(handle)
                _skip_gguf_value(handle, kind)
        except struct.error:
            raise ModelError(f"`{path.name}` ends inside its GGUF header", ("model",)) from None
    return None


def _gguf_string(handle) -> str:
    size = struct.unpack("<Q", handle.read(8))[0]
    return handle.read(size).decode("utf-8", errors="replace")


def _skip_gguf_value(handle, kind: int) -> None:
    if kind == _STRING:
        handle.seek(struct.unpack("<Q", handle.read(8))[0], os.SEEK_CUR)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", handle.read(12))
        if item in _SCALARS:
            handle.seek(_SCALARS[item] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_gguf_value(handle, item)
    elif kind in _SCALARS:
        handle.seek(_SCALARS[kind], os.SEEK_CUR)
    else:
        raise ModelError(f"`{handle.name}` has a GGUF value of unknown type {kind}", ("model",))
