"""A pydantic validation error of params.yaml as one line naming the key and what is wrong (perpetual/config.py)."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


def union_tags(*unions: Any) -> frozenset[str]:
    """The tags of discriminated unions (`Annotated[A | B, Field(discriminator="kind")]`), read from their members'
    Literal fields."""
    tags: set[str] = set()
    for union in unions:
        members, field = typing.get_args(union)
        for member in typing.get_args(members):
            tags.update(typing.get_args(member.model_fields[field.discriminator].annotation))
    return frozenset(tags)


def key(location: tuple[int | str, ...], tags: Collection[str]) -> str:
    """An error's location as the dotted key the user wrote. pydantic puts a union's tag (e.g. 'catalogue') in the
    location, after the entry's name; the user never wrote it as a key."""
    parts = [str(part) for part in location if not str(part).startswith("function-after")]
    return ".".join(part for index, part in enumerate(parts) if not (index >= 3 and part in tags))


def problem(error: ErrorDetails, section: str) -> str:
    """One pydantic error as `key: what is wrong` (the key relative to the model validated, a part of `section`)."""
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "perpetual_owned":
        reason = error["ctx"]["reason"].replace("<section>", section)
        return f"{where}.{error['ctx']['key']}: set by perpetual, not params.yaml ({reason}); remove it"
    return f"{where}: {error['msg']}"


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _one_level_down(schema: type[BaseModel], parent: str, name: str) -> str | None:
    """`<parent>.<section>.<name>` when a section under `parent` has the field `name`: a key written one level too high
    (e.g. train.save_steps for train.sft.save_steps)."""
    model: type[BaseModel] | None = schema
    for part in parent.split(".") if parent else []:
        field = model.model_fields.get(part) if model else None
        model = _model(field.annotation) if field else None
    if model is None:
        return None
    for section, field in model.model_fields.items():
        inner = _model(field.annotation)
        if inner is not None and name in inner.model_fields:
            return ".".join(filter(None, (parent, section, name)))
    return None


def describe(error: ValidationError, source: Path, schema: type[BaseModel], tags: Collection[str]) -> str:
    """The first problem of `error` (validating `schema` from `source`) as one line naming its key; `tags` are the
    schema's union tags (union_tags)."""
    errors = error.errors()
    # A misspelt key also leaves the right one missing: name the misspelling, and suggest the missing key.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where, kind = key(first["loc"], tags), first["type"]
    if kind == "extra_forbidden":
        parent, _, last = where.rpartition(".")
        missing = [key(e["loc"], tags) for e in errors if e["type"] == "missing" and key(e["loc"], tags).rpartition(".")[0] == parent]
        close = difflib.get_close_matches(where, missing, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"see the allowed keys under '{parent or 'top level'}' in docs/configuration.md"
        lower = _one_level_down(schema, parent, last)
        if lower is not None:
            hint = f"did you mean '{lower}'? it is a key of {lower.rpartition('.')[0]}"
        return f"{source}: unknown key '{where}'; check its spelling ({hint})"
    if kind == "perpetual_owned":
        reason = first["ctx"]["reason"].replace("<section>", where.split(".")[0])
        return f"{source}: '{where}.{first['ctx']['key']}' is set by perpetual, not params.yaml ({reason}); remove it"
    if kind == "missing":
        return f"{source}: missing required key '{where}'; every setting is written in params.yaml (see the shipped one)"
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return f"{source}: '{where}' {first['msg']}"
    if kind == "value_error":
        prefix = f"'{where}': " if where else ""
        return f"{source}: {prefix}{first['msg'].removeprefix('Value error, ')}"
    shown = repr(first.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    named = f"'{where}'" if where else "params"
    extra = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{source}: {named}={shown} is invalid: {first['msg']}{extra}"
