"""Complete params for tests and benchmarks: the repository's params.yaml with some settings changed.

Every setting lives in params.yaml (the models in perpetual/config.py have no defaults), so a test that needs a
small run starts from the shipped file and changes what it needs, instead of restating every key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

REPOSITORY_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
Section = TypeVar("Section", bound=BaseModel)


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, mapping into mapping. A non-mapping value, an empty mapping, or an entry
    with a `kind` (a source, a model: one spec whose fields depend on the kind) replaces what was there."""
    result = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and value and "kind" not in value and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def params_dict(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The repository's params.yaml as a dict, with `changes` merged in."""
    raw = yaml.safe_load(REPOSITORY_PARAMS.read_text(encoding="utf-8"))
    return merged(raw, changes or {})


def section(schema: type[Section], name: str, /, **changes: Any) -> Section:
    """One validated section of params.yaml (e.g. `section(TrainParams, "train", sft={"seed": 1})`), with changes."""
    raw = params_dict()
    for part in name.split("."):
        raw = raw[part]
    return schema.model_validate(merged(raw, changes))
