"""The settings an editor offers, read from the spec model: each block's setting names, help text and choices."""

from __future__ import annotations

import typing
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from promptlang.language import spec as m
from promptlang.language.builder import TOP_LEVEL

HIDDEN = ("kind", "version")  # written as the block's name (`method pet {`) or the header, never as a setting
NAMED_BLOCKS = {"template": "templates", "verbalizer": "verbalizers"}  # `template NAME {` → Spec.templates


def _models(annotation) -> list[type[BaseModel]]:
    """The spec models an annotation holds (through Optional, Annotated, unions and dict values; a list of
    models, such as a template's text segments, is a value, not a block)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, dict):
        args = typing.get_args(annotation)
        return [model for arg in (args[1:] if origin is dict else args) for model in _models(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _pick(models: list[type[BaseModel]], name: str | None) -> type[BaseModel] | None:
    """The one model of a block: the only one, or the one whose `kind` is the block's name (`method pet`)."""
    if len(models) == 1:
        return models[0]
    return next((model for model in models if "kind" in model.model_fields
                 and model.model_fields["kind"].default == name), None)


def top_field(kind: str) -> FieldInfo | None:
    """The field of a spec (or a mixture file) that a top-level block fills."""
    name = NAMED_BLOCKS.get(kind, kind)
    for model in (m.Spec, m.Mixture):
        if name in model.model_fields and name not in HIDDEN:
            return model.model_fields[name]
    return None


def block_model(path: list[tuple[str, str | None]]) -> type[BaseModel] | None:
    """The spec model of the block at `path`: (kind, name) of each enclosing block, outermost first.

    For example `[("method", "pet"), ("distill", None)]` is `Distill`; None when the path names no model
    (an unknown block, `label_values`, or `method` without its name).
    """
    model: type[BaseModel] | None = None
    for depth, (kind, name) in enumerate(path):
        field = top_field(kind) if depth == 0 else (model.model_fields.get(kind) if model else None)
        if field is None or kind in HIDDEN:
            return None
        model = _pick(_models(field.annotation), name)
    return model


def settings(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The settings a block of `model` takes, by name (a verbalizer's `words` are its mappings, not a setting)."""
    return {name: field for name, field in model.model_fields.items()
            if name not in HIDDEN and not (model is m.Verbalizer and name == "words")}


def choices(field: FieldInfo) -> list[str]:
    """The values a setting takes when they are a fixed set: its enum's values, or `true` / `false`."""
    annotation = field.annotation
    for arg in [annotation, *_flat_args(annotation)]:
        if isinstance(arg, type) and issubclass(arg, Enum):
            return [item.value for item in arg]
        if arg is bool:
            return ["true", "false"]
    return []


def _flat_args(annotation) -> list:
    args = []
    for arg in typing.get_args(annotation):
        args += [arg, *_flat_args(arg)]
    return args


def is_block(field: FieldInfo) -> bool:
    """Whether a setting holds a model of its own (written as a nested block: `distill { ... }`)."""
    return bool(_models(field.annotation)) and typing.get_origin(field.annotation) is not dict


def describe(name: str, field: FieldInfo, owner: type[BaseModel] | None = None) -> str:
    """The hover text of one setting: its name, its type and default, and its description."""
    head = f"**{name}**"
    shown = _type_text(field)
    if shown:
        head += f" — {shown}"
    default = _default_text(field)
    if default is not None:
        head += f", default `{default}`"
    help_text = field.description or _docstring(field)
    return head + (f"\n\n{help_text}" if help_text else "")


def describe_block(kind: str, model: type[BaseModel] | None, field: FieldInfo | None) -> str | None:
    """The hover text of a block keyword (`data`, `distill`, ...): the field's description, else the model's."""
    text = (field.description if field is not None else None) or (_clean(model.__doc__) if model else None)
    return f"**{kind}**\n\n{text}" if text else None


def _docstring(field: FieldInfo) -> str | None:
    models = _models(field.annotation)
    return _clean(models[0].__doc__) if len(models) == 1 else None


def _clean(doc: str | None) -> str | None:
    if not doc or doc.startswith(("A base", "The base")):
        return None
    return " ".join(doc.split())


def _type_text(field: FieldInfo) -> str:
    options = choices(field)
    if options:
        return " | ".join(f"`{option}`" for option in options)
    if is_block(field):
        return "a block"
    origin = typing.get_origin(field.annotation)
    inner = [a for a in typing.get_args(field.annotation) if a is not type(None)]
    if origin is list or (inner and typing.get_origin(inner[0]) is list):
        return "a list"
    base = inner[0] if origin is typing.Union and len(inner) == 1 else field.annotation
    return {int: "a whole number", float: "a number", str: "a string or a name"}.get(base, "")


def _default_text(field: FieldInfo) -> str | None:
    value: Any = field.default
    if value is PydanticUndefined or value is None or isinstance(value, (dict, BaseModel)) or value == []:
        return None
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def statement_names() -> tuple[str, ...]:
    """The statements of a spec's top level (`labels`, `data`, `method`, ...)."""
    return TOP_LEVEL


def all_models() -> list[type[BaseModel]]:
    """Every model a block of a spec or a mixture file is checked against."""
    found: list[type[BaseModel]] = []
    pending = [model for kind in TOP_LEVEL if (field := top_field(kind)) for model in _models(field.annotation)]
    while pending:
        model = pending.pop(0)
        if model not in found:
            found.append(model)
            pending += [inner for field in settings(model).values() for inner in _models(field.annotation)
                        if is_block(field)]
    return found
