"""Complete params for tests and benchmarks: the repository's params.yaml with some settings changed.

Every setting lives in params.yaml (the params models, perpetual/config.py, have no defaults), so a test that needs a
small run starts from the shipped file and changes what it needs, instead of restating every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from perpetual.config import with_sft as with_sft  # re-exported: tests and benchmarks import it from here
from perpetual.mappings import deep_merge

REPOSITORY_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
Section = TypeVar("Section", bound=BaseModel)


def params_dict(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The repository's params.yaml as a dict, with `changes` merged in."""
    raw = yaml.safe_load(REPOSITORY_PARAMS.read_text(encoding="utf-8"))
    return deep_merge(raw, changes or {})


def section(schema: type[Section], name: str, /, **changes: Any) -> Section:
    """One validated section of params.yaml (e.g. `section(TrainParams, "train", sft={"seed": 1})`), with changes."""
    raw = params_dict()
    for part in name.split("."):
        raw = raw[part]
    return schema.model_validate(deep_merge(raw, changes))


def spec(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A complete source or model spec of `kind` with `changes`, e.g. `spec("local", path="src")`: the first entry of
    that kind in the shipped params.yaml (a tiny-llama: the tiny-gemma's; a git source: the local source's include,
    exclude and language), so that a test writes only what it changes."""
    raw = params_dict()
    entries = [*raw["fetch"]["sources"].values(), *raw["fetch"]["remote_sources"].values(), *raw["init"]["models"].values()]
    like = {"tiny-llama": "tiny-gemma", "git": "local"}.get(kind, kind)
    shipped = next(entry for entry in entries if entry["kind"] == like)
    if kind == "git":
        shipped = {key: shipped[key] for key in ("include", "exclude", "language")}
    return {**shipped, "kind": kind, **changes}


