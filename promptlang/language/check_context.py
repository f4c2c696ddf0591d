"""What every check sees: the spec, where each part was written, the diagnostics so far, and the spec's folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.builder import Locations
from promptlang.language.suggest import suggest
from promptlang.language.datafiles import DataFileError, data_format, read_columns
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.source import Span

SPLITS = ("train", "dev", "test", "unlabeled")
LABELLED = ("train", "dev", "test")
SUGGESTIONS = 100  # 'did you mean' hints per check run


@dataclass
class Context:
    spec: m.Spec
    locations: Locations
    diagnostics: Diagnostics
    directory: Path
    suggested: int = field(default=0, init=False)  # 'did you mean' hints given so far

    def at(self, *path) -> Span:
        return self.locations.get(path)

    def key(self, *path) -> Span:
        return self.locations.key(path)

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.error(message, span, hint)

    def warning(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.warning(message, span, hint)

    def suggest(self, word: str, choices) -> str | None:
        """`builder.suggest` for the first `SUGGESTIONS` problems of a check run, then None: a spec
        with thousands of misspelt names is still checked in linear time."""
        self.suggested += 1
        return suggest(word, choices) if self.suggested <= SUGGESTIONS else None

    def narrow(self, span: Span, needle: str) -> Span:
        """The span of `needle` inside `span` (or `span` itself if it is not found there)."""
        source = self.diagnostics.sources.get(span.file)
        return (source.find(span, needle) if source else None) or span

    def resolve(self, relative: str) -> Path | None:
        """The absolute path of a spec-relative path, or None if it cannot name a file."""
        return safe_path(self.directory / relative)

    @property
    def method(self):
        return self.spec.method

    @property
    def patterns(self) -> list[str]:
        return self.spec.patterns

    @cached_property
    def columns(self) -> list[str] | None:
        """The data's columns, read from the first data file's header (None if unknown)."""
        data = self.spec.data
        if data.dataset:
            return None
        for split in SPLITS:
            relative = getattr(data, split)
            path = self.resolve(relative) if relative else None
            fmt = data_format(data, relative) if relative else None
            if path is not None and fmt is not None and is_file(path):
                return header_of(path, fmt, relative)
        return None

    @cached_property
    def data_files(self) -> dict[str, tuple[Path, str, list[str]]]:
        """The labelled splits' files whose header can be read: split → (path, format, columns)."""
        data, found = self.spec.data, {}
        for split in LABELLED if not data.dataset else ():
            relative = getattr(data, split)
            path = self.resolve(relative) if relative else None
            fmt = data_format(data, relative) if path is not None else None
            columns = header_of(path, fmt, relative) if fmt is not None and is_file(path) else None
            if columns is not None:
                found[split] = (path, fmt, columns)
        return found

    @property
    def generation(self) -> bool:
        """A text-to-text task with no labels: templates' targets hold data fields."""
        return self.spec.task_kind == "generation"

    @property
    def target_column(self) -> str | None:
        """The column a labelled split must hold besides the text: the score (regression), the label
        (when there are labels), or none (also when a `task` block was written but names no task)."""
        if self.spec.task is not None:
            return self.spec.task.score
        if ("task",) in self.locations.values:
            return None
        return self.spec.data.label if self.spec.labels else None


def safe_path(path: Path) -> Path | None:
    """`path` made absolute, or None when no file could have that name (a NUL byte, too long)."""
    try:
        resolved = path.resolve()
        resolved.exists()
        return resolved
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11
        return None


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def header_of(path: Path, fmt: str, relative: str) -> list[str] | None:
    """Column names from a data file's header line, or None if it cannot be read (`files_exist` says why)."""
    try:
        return read_columns(path, fmt, relative)
    except DataFileError:
        return None
