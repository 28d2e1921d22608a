"""docs/configuration.md is generated from the params schema by scripts/config_reference.py (`make docs`).

It fails when a key is added, removed or re-described, or params.yaml's values change, without regenerating the
reference; and when a field of any params model has no description, so that no key goes undocumented.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
config_reference = importlib.import_module("config_reference")


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == config_reference.generate(ROOT / "params.yaml"), (
        "docs/configuration.md is stale: run `make docs` (python scripts/config_reference.py) and commit it"
    )


def test_every_field_of_every_params_model_has_a_description() -> None:
    models = config_reference.schema_models()
    names = {model.__name__ for model in models}
    # the walk reaches the nested models, both maps' kinds and the mapping a tiny model's `copying` may be
    assert {"TeacherParams", "SftSection", "GitSource", "CatalogueSource", "PretrainedModel", "CopyingOverrides"} <= names
    missing = [f"{model.__module__}.{model.__name__}.{name}" for model in models
               for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"params fields without a description (Field(description=...)): {missing}"


def test_every_key_params_yaml_writes_is_in_a_table() -> None:
    """Every key of the shipped params.yaml has a row (the `sft` options too), under the heading of its section."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    text = config_reference.render(raw)
    sections = {line.split(" ", 1)[1]: index for index, line in enumerate(text.splitlines()) if line.startswith("## ")}
    assert list(sections) == list(raw)
    lines = text.splitlines()
    for section, start in sections.items():
        end = min([index for index in sections.values() if index > start], default=len(lines))
        rows = {line.split("|")[1].strip().split("`")[1] for line in lines[start:end] if line.startswith("| `") or line.startswith("| [`")}
        for key in _keys(raw[section]):
            assert key in rows, f"{section}: params.yaml's {key!r} has no row in docs/configuration.md"


def _keys(value: object) -> set[str]:
    """The keys of a section, at every depth, but the names of map entries (tasks, models), which are not keys."""
    if not isinstance(value, dict):
        return set()
    keys = set()
    for key, inner in value.items():
        if key in {"sources", "remote_sources", "models", "task_overrides"}:
            keys.add(key)
            for entry in inner.values() if isinstance(inner, dict) and key != "task_overrides" else []:
                keys |= _keys(entry)
        else:
            keys |= {key} | _keys(inner)
    return keys


def test_check_exits_1_with_one_line_when_the_reference_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "configuration.md"
    doc.write_text(config_reference.generate(ROOT / "params.yaml").replace("| `seed` |", "| `seeds` |", 1), encoding="utf-8")
    with pytest.raises(SystemExit) as stale:
        config_reference.main(["--check"], doc=doc)
    assert stale.value.code == f"{doc} is stale: run `make docs` (python scripts/config_reference.py)"

    config_reference.main([], doc=doc)   # writes it
    assert "written" in capsys.readouterr().out
    config_reference.main(["--check"], doc=doc)   # and now it is fresh: no exit


def test_an_invalid_params_yaml_is_one_line(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["chunk"]["chunk_sise"] = raw["chunk"].pop("chunk_size")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(SystemExit) as bad:
        config_reference.main(["--check"], doc=tmp_path / "configuration.md", params=params)
    assert str(bad.value.code).startswith("error: ") and "chunk.chunk_sise" in str(bad.value.code)
    assert "\n" not in str(bad.value.code)
