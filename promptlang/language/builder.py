"""Build: syntax nodes (and the files they import) → a validated `Spec`.

The builder turns statements into plain data, recording where each value came from
(`Locations`), then lets pydantic validate it; validation errors are mapped back to
the spans that caused them and worded for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptlang.language import spec as m
from promptlang.language import syntax as s
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.locations import Built, Locations, Path_
from promptlang.language.mixture_file import is_mixture, validate_mixture
from promptlang.language.overrides import Override, Overrides
from promptlang.language.parser import LANGUAGE_VERSION, parse
from promptlang.language.reader import find_import, read_source
from promptlang.language.source import Source, Span
from promptlang.language.suggest import suggest
from promptlang.language.validation import coerce, report

SINGLE_BLOCKS = ("data", "model", "demonstrations", "generate", "method", "evaluate", "task", "mixture")
TOP_LEVEL = ("labels", "template", "verbalizer", "import", *SINGLE_BLOCKS)
FILTERS = [t.value for t in m.Transform] + ["shorten"]


def build(file: s.File, source: Source, overrides: Overrides | None = None) -> Built:
    """Build and validate the spec of a parsed file, reading the files it imports.

    Args:
        file: the parsed main file.
        source: its source (imports resolve against its directory).
        overrides: `--set` settings, applied before validation (so every check sees them),
            each located at its place on the command line.

    Returns:
        A `Built` whose `spec` is None when there are errors.
    """
    builder = _Builder(source)
    builder.file(file, source, seen=(Path(source.path).resolve(),))
    if overrides is not None:
        builder.diagnostics.extend(overrides.diagnostics)
        for item in overrides.items:
            builder.override(item)
    spec = builder.validate(file)
    return Built(spec, builder.locations, builder.diagnostics, source.directory)


class _Builder:
    def __init__(self, source: Source):
        self.diagnostics = Diagnostics(sources={source.path: source})
        self.locations = Locations()
        self.raw: dict[str, Any] = {"templates": {}, "verbalizers": {}}
        self.reported: set[Path_] = set()  # paths the builder already complained about
        self.imported: set[Path] = set()  # files already read (a file imported twice is read once)
        self.failed: set[str] = set()  # top-level blocks given but unusable (no "missing block" error)

    def _error(self, path: Path_, message: str, span: Span, hint: str | None = None) -> None:
        """An error about the value at `path`; pydantic's later complaints about it are dropped."""
        self.reported.add(tuple(path))
        self.diagnostics.error(message, span, hint)

    # ------------------------------------------------------------ statements

    def file(self, file: s.File, source: Source, seen: tuple, imported: bool = False) -> None:
        if not imported:
            self.locations.record((), file.header_span or file.version.span)
        self._version(file.version)
        for statement in file.statements:
            if isinstance(statement, s.Import):
                self._import(statement, source, seen)
            elif imported and not _importable(statement):
                self.diagnostics.error("an imported file may only define templates and verbalizers",
                                       _head_span(statement), "move this statement into the spec that imports it")
            else:
                self._statement(statement)

    def _version(self, version: s.Atom) -> None:
        if version.token is not None and str(version.token) != str(LANGUAGE_VERSION):
            self.diagnostics.error(f"unsupported language version {version.value}", version.span,
                                   f"this promptlang reads version {LANGUAGE_VERSION}: write `promptlang 1`")

    def _import(self, statement: s.Import, source: Source, seen: tuple) -> None:
        path, problem = find_import(source.directory, statement.path, seen)
        if problem is not None:
            self.diagnostics.error(problem[0], statement.span, problem[1])
            return
        if path in self.imported:
            return
        self.imported.add(path)
        try:
            imported, diagnostics = read_source(path)
        except OSError as error:  # unreadable: permissions, or gone since it was resolved
            self.diagnostics.error(f"cannot read `{statement.path}`: {error.strerror or type(error).__name__}",
                                   statement.span, "check that the file can be read")
            return
        if imported is not None:
            imported.path = str(source.directory / statement.path) if source.path != "<string>" else str(path)
            nodes, diagnostics = parse(imported)
        else:
            nodes = None
        self.diagnostics.extend(diagnostics)
        if nodes is not None:
            self.file(nodes, imported, seen + (path,), imported=True)

    def _statement(self, statement: s.Statement) -> None:
        if isinstance(statement, s.Labels):
            self._labels(statement)
        elif isinstance(statement, s.Template):
            self._define("templates", statement.name, statement.name_span, statement.span,
                         self._template(statement))
        elif statement.kind == "verbalizer":
            self._verbalizer(statement)
        elif statement.kind in SINGLE_BLOCKS:
            self._single_block(statement)
        else:
            hint = suggest(statement.kind, TOP_LEVEL)
            self.failed.update(k for k in SINGLE_BLOCKS if hint and f"`{k}`" in hint)
            self.diagnostics.error(f"unknown statement `{statement.kind}`", statement.kind_span,
                                   hint or f"a spec is made of {', '.join(f'`{k}`' for k in TOP_LEVEL)}")

    def _labels(self, statement: s.Labels) -> None:
        if "labels" in self.raw:
            self._twice("labels", statement.span, self.locations.get(("labels",)))
            return
        self.locations.record(("labels",), statement.span)
        names: list[str] = []
        seen: set[str] = set()
        for i, atom in enumerate(statement.names):
            if atom.value in seen:
                self.diagnostics.error(f"label `{atom.value}` is listed twice", atom.span, "remove the second one")
            seen.add(atom.value)
            names.append(atom.value)
            self.locations.record(("labels", i), atom.span)
        self.raw["labels"] = names

    def _define(self, group: str, name: str, name_span: Span, span: Span, value: dict) -> None:
        path = (group, name)
        if name in self.raw[group]:
            first = self.locations.key(path)
            where = f"line {first.line}" if first.file == name_span.file else f"{first.file}:{first.line}"
            self.diagnostics.error(f"{group[:-1]} `{name}` is defined twice", name_span,
                                   f"it is first defined at {where}; rename one")
            return
        self.locations.record(path, span, name_span)
        self.raw[group][name] = value

    def _twice(self, what: str, span: Span, first: Span) -> None:
        where = f"line {first.line}" if first.file == span.file else f"{first.file}:{first.line}"
        self.diagnostics.error(f"`{what}` is given twice", span, f"a spec has one `{what}`; the first is at {where}")

    def _single_block(self, block: s.Block) -> None:
        path = (block.kind,)
        if block.kind in self.raw:
            self._twice(block.kind, block.kind_span, self.locations.key(path))
            return
        self.locations.record(path, block.span, block.kind_span)
        body = self._body(block.entries, path)
        if block.kind == "method":
            if block.name is None:
                self.failed.add("method")
                self.diagnostics.error("the method block needs the method's name", block.kind_span,
                                       f"for example `method pet {{`; methods: {', '.join(m.METHOD_KINDS)}")
                return
            if block.name not in m.METHOD_KINDS:
                self.failed.add("method")
                self.diagnostics.error(f"unknown method `{block.name}`", block.name_span,
                                       suggest(block.name, m.METHOD_KINDS)
                                       or f"methods: {', '.join(m.METHOD_KINDS)}")
                return
            if "kind" in body:
                self._error(path + ("kind",), "the method's kind is the block's name", self.locations.key(path + ("kind",)),
                            f"remove `kind`; write `method {body['kind']} {{` to choose it")
            body["kind"] = block.name
        elif block.kind == "task":
            if not self._task_kind(block, body, path):
                return
        elif block.name is not None:
            article = "an" if block.kind[0] in "aeiou" else "a"
            self.diagnostics.error(f"{article} `{block.kind}` block has no name", block.name_span,
                                   f"write `{block.kind} {{` without `{block.name}`")
        self.raw[block.kind] = body

    def _task_kind(self, block: s.Block, body: dict, path: Path_) -> bool:
        """Set the task's kind from the block's name (`task regression {`); False when it names none."""
        kinds = ", ".join(m.TASK_KINDS)
        if block.name is None or block.name not in m.TASK_KINDS:
            message = "the task block needs the task's name" if block.name is None else f"unknown task `{block.name}`"
            hint = (suggest(block.name, m.TASK_KINDS) if block.name else None) or \
                f"for example `task regression {{`; tasks: {kinds} (a classification spec has no `task` block)"
            self.diagnostics.error(message, block.kind_span if block.name is None else block.name_span, hint)
            return False
        if "kind" in body:
            self._error(path + ("kind",), "the task's kind is the block's name", self.locations.key(path + ("kind",)),
                        f"remove `kind`; write `task {body['kind']} {{` to choose it")
        body["kind"] = block.name
        return True

    def _verbalizer(self, block: s.Block) -> None:
        if block.name is None:
            self.diagnostics.error("a verbalizer needs a name", block.kind_span,
                                   "for example `verbalizer sentiment {`")
            return
        path = ("verbalizers", block.name)
        body = self._body(block.entries, path, mappings="words")
        self._define("verbalizers", block.name, block.name_span, block.span, body)

    # ------------------------------------------------------------ bodies and values

    def _body(self, entries: list[s.Entry], path: Path_, mappings: str | None = None) -> dict:
        out: dict[str, Any] = {}
        for entry in entries:
            if isinstance(entry, s.Mapping):
                self._mapping(entry, path, out, mappings)
                continue
            key, key_span = (entry.key, entry.key_span) if isinstance(entry, s.Attribute) \
                else (entry.kind, entry.kind_span)
            if mappings and key == mappings:
                self._error(path + (key,), f"`{key}` cannot be set directly", key_span,
                                       'write each label\'s words as a mapping: `positive -> "great"`')
                continue
            if key in out:
                first = self.locations.key(path + (key,))
                self.diagnostics.error(f"`{key}` is set twice", key_span,
                                       f"the first is at line {first.line}; keep one")
                continue
            self.locations.record(path + (key,), entry.span, key_span)
            out[key] = self._values(entry.values, path + (key,)) if isinstance(entry, s.Attribute) \
                else self._nested(entry, path + (key,))
        return out

    def _nested(self, block: s.Block, path: Path_) -> dict:
        if block.name is not None:
            self.diagnostics.error(f"`{block.kind}` takes no name", block.kind_span,
                                   f"write `{block.kind} {{` without `{block.name}`")
        return self._body(block.entries, path, mappings="" if block.kind == "label_values" else None)

    def _mapping(self, entry: s.Mapping, path: Path_, out: dict, into: str | None) -> None:
        if into is None:
            self.diagnostics.error(f"unexpected mapping `{entry.key} -> ...`", entry.key_span,
                                   "mappings go in `verbalizer` blocks and in `label_values` inside `data`")
            return
        target = out.setdefault(into, {}) if into else out
        where = path + ((into,) if into else ()) + (entry.key,)
        if entry.key in target:
            self.diagnostics.error(f"label `{entry.key}` is mapped twice", entry.key_span,
                                   "list all its words in one line: `label -> \"a\", \"b\"`")
            return
        self.locations.record(where, entry.span, entry.key_span)
        value = self._values(entry.values, where)
        target[entry.key] = value if isinstance(value, list) else [value]

    def _values(self, values: list[s.Value], path: Path_) -> Any:
        if len(values) == 1 and isinstance(values[0], s.TemplateValue):
            self.locations.values[path] = values[0].span
            return self._segments(values[0].text, path)
        if all(isinstance(v, s.Keyed) for v in values):
            out = {}
            for v in values:
                if v.key in out:
                    self._error(path + (v.key,), f"`{v.key}` is given twice", v.span, "keep one")
                    continue
                self.locations.record(path + (v.key,), v.value.span, v.span)
                out[v.key] = v.value.value
            return out
        if any(isinstance(v, s.Keyed) for v in values):
            keyed = next(v for v in values if isinstance(v, s.Keyed))
            self._error(path, "a list mixes named and plain values", keyed.span,
                        "either all values are named (`ce 0.9, mlm 0.1`) or none are")
            return None
        for i, v in enumerate(values):
            self.locations.record(path + (i,), v.span)
        if len(values) == 1:
            self.locations.values[path] = values[0].span
            return _plain(values[0])
        return [_plain(v) for v in values]

    # ------------------------------------------------------------ templates

    def _template(self, node: s.Template) -> dict:
        path = ("templates", node.name)
        body = self._body(node.entries, path)
        for key in ("text", "target"):
            if key in body and not (isinstance(body[key], list) and all(isinstance(x, dict) for x in body[key])):
                self._error(path + (key,), f"a template's `{key}` must be a string",
                            self.locations.get(path + (key,)), f'for example `{key} "{{{{ sentence }}}} It was [MASK]."`')
        return body

    def _segments(self, text: s.TemplateText, path: Path_) -> list[dict]:
        segments = []
        for i, piece in enumerate(text.pieces):
            self.locations.record(path + (i,), piece.span)
            segments.append(self._segment(piece, path + (i,)))
        return segments

    def _segment(self, piece: s.Piece, path: Path_) -> dict:
        if isinstance(piece, s.Text):
            return {"kind": "text", "text": piece.text}
        if isinstance(piece, s.Slot):
            return {"kind": piece.kind, **({"count": piece.count} if piece.count is not None else {})}
        out: dict[str, Any] = {"kind": "field", "name": piece.name, "transforms": []}
        self.locations.record(path + ("name",), piece.span)
        for f in piece.filters:
            self._filter(f, out)
        return out

    def _filter(self, f: s.Filter, out: dict) -> None:
        if f.name not in FILTERS:
            self.diagnostics.error(f"unknown filter `{f.name}`", f.span,
                                   suggest(f.name, FILTERS) or f"filters: {', '.join(FILTERS)}")
        elif f.name == "shorten":
            if len(f.args) > 1 or (f.args and f.args[0] not in ("head", "tail")):
                self.diagnostics.error("`shorten` takes `head` or `tail`", f.span,
                                       "write `shorten` (cut the tail), `shorten(tail)` or `shorten(head)`")
            else:
                out["shorten"] = f.args[0] if f.args else "tail"
        elif f.args:
            self.diagnostics.error(f"the filter `{f.name}` takes no arguments", f.span,
                                   f"write `| {f.name}`")
        else:
            out["transforms"].append(f.name)

    # ------------------------------------------------------------ overrides

    def override(self, item: Override) -> None:
        """Set one `--set` value in the raw data, replacing what the spec wrote there (and where it wrote it)."""
        top = item.path[0]
        if top not in m.Spec.model_fields or top == "version":
            valid = [f for f in m.Spec.model_fields if f != "version"]
            self.diagnostics.error(f"unknown setting `{top}`", item.key_spans[0],
                                   suggest(top, valid) or f"the settings are: {', '.join(valid)}")
            return
        if item.path in (("method", "kind"), ("task", "kind")):
            self._error(item.path, f"the {top}'s kind is the block's name", item.key_spans[-1],
                        f"write `{top} NAME {{` in the spec to choose it")
            return
        node, path = self.raw, ()
        for part, span in zip(item.path[:-1], item.key_spans):
            path += (part,)
            if not isinstance(node.get(part), dict):
                node[part] = {}
                self._forget(path)
                self.locations.record(path, span, span)
            node = node[part]
        self._forget(item.path)
        self.locations.record(item.path, item.entry.span, item.entry.key_span)
        node[item.path[-1]] = self._values(item.entry.values, item.path)

    def _forget(self, path: Path_) -> None:
        """Drop where the spec wrote `path` and everything inside it."""
        for where in (self.locations.values, self.locations.keys):
            for known in [k for k in where if k[:len(path)] == path]:
                del where[known]

    # ------------------------------------------------------------ validation

    def validate(self, file: s.File) -> m.Spec | m.Library | m.Mixture | None:
        if is_mixture(file):
            return validate_mixture(file, self.raw, self.locations, self.diagnostics, self._said)
        model = m.Library if is_library(file) else m.Spec
        raw = coerce(self.raw, model)
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            report(error, raw, self.locations, self.diagnostics, self._said)
            return None

    def _said(self, item: dict, loc: tuple) -> bool:
        """Whether the builder already reported the problem pydantic found at `loc` (or made it moot)."""
        if any(loc[:i] in self.reported for i in range(1, len(loc) + 1)):
            return True
        return item["type"] == "missing" and len(loc) == 1 and loc[0] in self.failed


def _plain(value: s.Atom | s.TemplateValue) -> Any:
    return value.value if isinstance(value, s.Atom) else "<template>"


def is_library(file: s.File) -> bool:
    """A file of only imports, templates and verbalizers: shared definitions, not an experiment."""
    return bool(file.statements) and all(isinstance(st, s.Import) or _importable(st) for st in file.statements)


def _importable(statement: s.Statement) -> bool:
    return isinstance(statement, s.Template) or (isinstance(statement, s.Block) and statement.kind == "verbalizer")


def _head_span(statement: s.Statement) -> Span:
    return statement.kind_span if isinstance(statement, s.Block) else statement.span
