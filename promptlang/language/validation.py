"""Validation, worded for people: raw spec data shaped as the schema wants it (`coerce`), and each pydantic
error turned into a message and a hint (`explain`) at the place it was written (`report`)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from promptlang.language import spec as m
from promptlang.language.diagnostics import Diagnostics
from promptlang.language.locations import Locations
from promptlang.language.suggest import suggest


def _unwrap(annotation):
    """Strip Optional and Annotated from a type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union and type(None) in typing.get_args(annotation):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def coerce(value: Any, annotation) -> Any:
    """Wrap single values where the schema wants a list, recursively; `none` clears an optional setting."""
    if value == "none" and typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation):
        return None
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool and value in ("true", "false"):
        return value == "true"
    if origin is list:
        items = value if isinstance(value, list) else [value]
        inner = typing.get_args(annotation)[0]
        if _unwrap(inner) in (int, float, str) and typing.get_origin(inner) is not typing.Union:
            return list(items)  # nothing inside to coerce: one check, not one per item
        return [coerce(v, inner) for v in items]
    if origin is dict and isinstance(value, dict):
        return {k: coerce(v, typing.get_args(annotation)[1]) for k, v in value.items()}
    if origin is typing.Union and isinstance(value, dict) and "kind" in value:
        chosen = [a for a in typing.get_args(annotation)
                  if isinstance(a, type) and a.model_fields["kind"].default == value["kind"]]
        return coerce(value, chosen[0]) if chosen else value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        fields = annotation.model_fields
        return {k: (coerce(v, fields[k].annotation) if k in fields else v) for k, v in value.items()}
    return value


def _model_at(loc: tuple, raw: dict) -> type[BaseModel] | None:
    """The pydantic model that holds the setting at `loc` (for listing valid names)."""
    model: Any = m.Spec
    node: Any = raw
    for part in loc[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                return None
            model = _unwrap(model.model_fields[part].annotation)
        elif typing.get_origin(model) is dict:
            model = _unwrap(typing.get_args(model)[1])
        if typing.get_origin(model) is typing.Union and isinstance(node, dict):
            model = next((a for a in typing.get_args(model)
                          if a.model_fields["kind"].default == node.get("kind")), None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_BOUNDS = {"greater_than": "greater than", "greater_than_equal": "at least",
           "less_than": "less than", "less_than_equal": "at most"}
_TYPES = {"int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
          "float_parsing": "a number", "float_type": "a number", "bool_parsing": "`true` or `false`",
          "bool_type": "`true` or `false`", "string_type": "a string or a name",
          "dict_type": "named values, like `loss ce 0.9, mlm 0.1`"}
_BLOCK_HINTS = {
    "data": 'add a block such as `data { train "train.tsv" }` with a `text` column',
    "model": 'add a block such as `model { hub "roberta-large" }`',
    "method": "add a block such as `method zero_shot {}`",
}


def _shown(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "named values"
    text = str(value)
    return f"`{text if len(text) <= 40 else text[:37] + '...'}`"


def explain(item: dict, loc: tuple, raw: dict) -> tuple[str, str | None, bool]:
    """(message, hint, whether to point at the key) for one pydantic error."""
    kind = item["type"]
    item_of_list = bool(loc) and isinstance(loc[-1], int)
    setting_loc = tuple(p for p in loc if not isinstance(p, int)) if item_of_list else loc
    name = setting_loc[-1] if setting_loc else "spec"
    where = next((p for p in reversed(setting_loc[:-1]) if isinstance(p, str)), None)
    owner = _model_at(setting_loc, raw)
    field = owner.model_fields.get(name) if owner else None
    described = field.description if field else None
    subject = f"each value of `{name}`" if item_of_list else f"`{name}`"
    if kind == "missing":
        if len(loc) == 1:
            return f"the spec has no `{name}` block", _BLOCK_HINTS.get(name), False
        if loc[0] == "templates" and len(loc) == 3:
            return f"template `{loc[1]}` has no `{name}`", f'add `{name} "..."`', True
        if loc[0] == "verbalizers" and name == "words":
            return f"verbalizer `{loc[1]}` has no words", 'map each label to its words: `positive -> "great"`', True
        return f"`{where}` is missing `{name}`", (f"add `{name}`: {described}" if described else None), True
    if kind == "extra_forbidden":
        valid = [f for f in (owner.model_fields if owner else []) if f != "kind"]
        hint = suggest(name, valid) or (f"the settings are: {', '.join(valid)}" if valid else None)
        owner_name = f"{loc[0][:-1]} `{loc[1]}`" if loc[0] in ("templates", "verbalizers") and len(loc) == 3 \
            else f"`{where}`"
        return f"unknown setting `{name}` in {owner_name}", hint, True
    if kind in _BOUNDS:
        bound = next(iter(item["ctx"].values()))
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{subject} must be {_BOUNDS[kind]} {bound}, got {_shown(item['input'])}", described, False
    if kind == "enum":
        choices = [c.strip(" '") for c in item["ctx"]["expected"].replace(" or ", ", ").split(",")]
        hint = suggest(item["input"], choices) or f"choose one of: {', '.join(choices)}"
        return f"{subject} cannot be {_shown(item['input'])}", hint, False
    if kind in ("too_short", "too_long"):
        count = item["ctx"].get("min_length", item["ctx"].get("max_length"))
        return f"`{name}` needs {'at least' if kind == 'too_short' else 'at most'} {count} value(s)", described, False
    if kind in ("model_type", "model_attributes_type", "dict_type") and field is not None:
        example = _group_example(field.annotation)
        return f"`{name}` is a group of settings", f"write `{name} {{ ... }}` or `{name} {example}`", False
    if kind in ("list_type", "string_type") and isinstance(item["input"], dict):
        return (f"`{name}` takes plain values, not `name value` pairs",
                "separate the values with `,`: did you forget one?", False)
    if kind == "finite_number":
        return f"{subject} must be a finite number, got {_shown(item['input'])}", described, False
    if kind in _TYPES:
        return f"{subject} must be {_TYPES[kind]}, got {_shown(item['input'])}", described, False
    return f"`{name}` is not valid here", described, False


def _group_example(annotation) -> str:
    """`ce 1.0, mlm 0.0`: a one-line example of a settings group, from its defaults."""
    model = _unwrap(annotation)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return "key value"
    pairs = [(k, f.default) for k, f in model.model_fields.items()
             if isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool)][:2]
    return ", ".join(f"{k} {getattr(v, 'value', v)}" for k, v in pairs) or "key value"


SEGMENT_KINDS = ("text", "field", "mask", "demos", "soft", "sep")


def report(error: ValidationError, raw: dict, locations: Locations, diagnostics: Diagnostics, said) -> None:
    """Each of pydantic's errors as a located diagnostic, unless `said(item, loc)`: the builder already
    reported the problem there."""
    for item in error.errors():
        loc = _normalise(item["loc"])
        if said(item, loc):
            continue
        if len(loc) > 2 and loc[-1] == "count" and loc[0] == "templates":
            message, hint = _slot_count(item, loc, raw)
            diagnostics.error(message, locations.get(loc), hint)
        elif item["type"] == "value_error" and "model_source" in item["msg"]:
            _model_sources(raw.get("model", {}), locations, diagnostics)
        else:
            message, hint, use_key = explain(item, loc, raw)
            diagnostics.error(message, locations.key(loc) if use_key else locations.get(loc), hint)


def _model_sources(model: dict, locations: Locations, diagnostics: Diagnostics) -> None:
    given = [k for k in ("hub", "path", "gguf", "package") if k in model]
    if not given:
        diagnostics.error("the model has no source", locations.key(("model",)),
                          "give one of `hub`, `path`, `gguf` or `package`")
    elif len(given) == 1:
        diagnostics.error(f"the model's `{given[0]}` is empty", locations.get(("model", given[0])),
                          "write the model's name or path between the quotes")
    else:
        diagnostics.error(f"the model has {len(given)} sources, `{given[0]}` and `{given[1]}`",
                          locations.key(("model", given[1])), "keep one of them")


def _slot_count(item: dict, loc: tuple, raw: dict) -> tuple[str, str]:
    segment = raw["templates"][loc[1]][loc[2]][loc[3]]
    slot = f"[{segment['kind'].upper()}:{item['input']}]"
    bounds = {"mask": "1 to 64", "soft": "1 to 1024"}[segment["kind"]]
    return f"`{slot}` must hold {bounds} tokens", f"write [{segment['kind'].upper()}:2], for example"


def _normalise(loc: tuple) -> tuple:
    """Drop pydantic's union tags from an error location: ('method', 'pet', 'epochs') → ('method', 'epochs')."""
    out: list = []
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "method" and part in m.METHOD_KINDS:
            continue
        if out and isinstance(out[-1], int) and part in SEGMENT_KINDS and isinstance(loc[i - 1], int):
            continue
        out.append(part)
    return tuple(out)
