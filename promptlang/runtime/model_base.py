"""What every part of model handling shares: the model families, `ModelError`, the cache folder, `Location`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MASKED, CAUSAL, SEQ2SEQ = "masked", "causal", "seq2seq"


class ModelError(ValueError):
    """The spec's model cannot be found or read; `path` is the spec setting to point at."""

    def __init__(self, message: str, path: tuple = ("model",), hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


def cache_dir() -> Path:
    """The folder for converted models and tokenized data."""
    return Path(os.environ.get("PROMPTLANG_CACHE", Path.home() / ".cache" / "promptlang"))


@dataclass(frozen=True)
class Location:
    """What `from_pretrained` is given: a hub id or a local folder (and a GGUF file in it).

    `known_hash`: the GGUF file's sha256 when it is known without reading the file.
    """

    name: str
    gguf_file: str | None = None
    known_hash: str | None = None

    @property
    def local(self) -> bool:
        return Path(self.name).is_dir()

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.name) / self.gguf_file if self.gguf_file else None


MASKED_TYPES = {  # model types with a masked-LM head
    "bert", "roberta", "xlm-roberta", "albert", "deberta", "deberta-v2", "electra", "distilbert",
    "camembert", "mpnet", "ernie", "modernbert"}
