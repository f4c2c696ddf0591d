"""Where each part of a built spec was written (`Locations`), and what `build` hands on (`Built`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.source import Span

Path_ = tuple  # a path into the spec's data: ("method", "distill", "temperature")


@dataclass
class Locations:
    """Where each part of a spec was written: spec path → span of its value (and of its key)."""

    values: dict[Path_, Span] = field(default_factory=dict)
    keys: dict[Path_, Span] = field(default_factory=dict)

    def record(self, path: Path_, span: Span, key_span: Span | None = None) -> None:
        self.values.setdefault(path, span)
        if key_span is not None:
            self.keys.setdefault(path, key_span)

    def get(self, path: Path_) -> Span:
        """The span of `path`, or of its nearest recorded parent."""
        path = tuple(path)
        while path not in self.values and path:
            path = path[:-1]
        return self.values[path]

    def key(self, path: Path_) -> Span:
        """The span of the key that set `path` (falls back to `get`)."""
        return self.keys.get(tuple(path)) or self.get(path)


@dataclass
class Built:
    """What `build` hands on: the spec, where things are, what went wrong.

    `spec` is None when validation failed; it can be set while `diagnostics` holds
    errors the builder found (a duplicate, an unknown filter), so checks still run.
    """

    spec: m.Spec | m.Library | m.Mixture | None
    locations: Locations
    diagnostics: Diagnostics
    directory: Path
