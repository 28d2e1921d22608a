"""One deep merge, for params: a task override merged into train (perpetual/config.py), a test's changes merged into
the shipped params.yaml (perpetual/testing/params.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, mapping into mapping; neither is modified.

    A non-mapping value, an empty mapping, or an entry with a `kind` (a source, a model: one spec whose fields depend
    on its kind) replaces what was there.
    """
    result = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and value and "kind" not in value and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
