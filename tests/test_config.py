"""perpetual/config.py and perpetual/errors.py: params.yaml validation and clean user-facing exits."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perpetual.config import CatalogueSource, LocalSource, PapersSource, Params, load_params, parse_params
from perpetual.errors import USER_ERROR_EXIT_CODE, UserError, exits_cleanly

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def _error_for(raw: dict) -> str:
    with pytest.raises(UserError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert "\n" not in message, f"error message must be one line: {message!r}"
    return message


def test_real_params_yaml_loads() -> None:
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    assert params.pipeline.tasks == ["code", "research", "products"]
    assert isinstance(params.fetch.sources["code"], LocalSource)
    assert isinstance(params.fetch.sources["research"], PapersSource)
    assert isinstance(params.fetch.sources["products"], CatalogueSource)
    assert params.fetch.sources["products"].text_fields[0] == "title"
    assert params.chunk.chunk_size == 1200
    assert params.generate.flashcards_per_chunk == 3
    for task in params.pipeline.tasks:
        params.require_task(task)  # does not raise
    for model in params.pipeline.models:
        params.require_model(model)


def test_misspelled_key_is_named(raw: dict) -> None:
    raw["train"]["epochz"] = 3
    message = _error_for(raw)
    assert "'train.epochz'" in message
    assert "unknown key" in message


def test_misspelled_top_level_section_is_named(raw: dict) -> None:
    raw["trian"] = {"epochs": 3}
    assert "'trian'" in _error_for(raw)


def test_wrong_type_names_the_key(raw: dict) -> None:
    raw["train"]["epochs"] = "many"
    message = _error_for(raw)
    assert "train.epochs" in message
    assert "'many'" in message


def test_unknown_task_without_fetch_source_is_an_error(raw: dict) -> None:
    raw["pipeline"]["tasks"] = ["code", "legal"]
    message = _error_for(raw)
    assert "legal" in message
    assert "fetch.sources" in message


def test_unknown_model_without_base_entry_is_an_error(raw: dict) -> None:
    raw["pipeline"]["models"] = ["mamba2", "llama9"]
    assert "llama9" in _error_for(raw)


def test_catalogue_with_both_path_and_hf_dataset_is_an_error(raw: dict) -> None:
    raw["fetch"]["sources"]["products"]["hf_dataset"] = "wdc/products-2017"
    message = _error_for(raw)
    assert "fetch.sources.products" in message
    assert "exactly one" in message


def test_catalogue_with_neither_path_nor_hf_dataset_is_an_error(raw: dict) -> None:
    del raw["fetch"]["sources"]["products"]["path"]
    assert "exactly one" in _error_for(raw)


def test_unknown_source_kind_is_an_error(raw: dict) -> None:
    raw["fetch"]["sources"]["code"]["kind"] = "svn"
    message = _error_for(raw)
    assert "fetch.sources.code" in message
    assert "svn" in message


def test_overlap_not_smaller_than_size_is_an_error(raw: dict) -> None:
    raw["chunk"]["chunk_overlap"] = raw["chunk"]["chunk_size"]
    assert "chunk_overlap" in _error_for(raw)


def test_require_task_rejects_unknown_task() -> None:
    params = load_params(PARAMS)
    with pytest.raises(UserError, match="nosuchtask"):
        params.require_task("nosuchtask")


def test_missing_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n", encoding="utf-8")
    with pytest.raises(UserError, match="mapping"):
        load_params(scalar)


def test_exits_cleanly_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    @exits_cleanly
    def main() -> None:
        raise UserError("bad thing happened; fix it")

    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == USER_ERROR_EXIT_CODE == 2
    err = capsys.readouterr().err
    assert err == "error: bad thing happened; fix it\n"


def test_exits_cleanly_passes_other_errors_through() -> None:
    @exits_cleanly
    def main() -> None:
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError):
        main()


def _run_fetch_with(tmp_path: Path, raw: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "stages.fetch", "--task", "code"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stage_with_typo_in_params_exits_2_with_one_line(tmp_path: Path, raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["train"]["epochz"] = bad["train"].pop("epochs")
    result = _run_fetch_with(tmp_path, bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "train.epochz" in lines[0]
    assert not (tmp_path / "data").exists(), "a failed stage must not write outputs"


def test_stage_with_wrong_type_exits_2(tmp_path: Path, raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["train"]["epochs"] = "many"
    result = _run_fetch_with(tmp_path, bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "train.epochs" in result.stderr


def _params_with_train(**train: object) -> dict:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["train"].update(train)
    return raw


def test_task_overrides_apply_to_one_task_only() -> None:
    params = parse_params(_params_with_train(epochs=4, task_overrides={"research": {"epochs": 12}}))
    assert params.train.for_task("research").epochs == 12
    assert params.train.for_task("products").epochs == 4


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"research": {"epochz": 12}}, "train.task_overrides.research"),
        ({"research": {"epochs": "many"}}, "train.task_overrides.research.epochs"),
        ({"poetry": {"epochs": 2}}, "poetry"),
    ],
)
def test_bad_task_override_is_a_one_line_error_naming_it(overrides: dict, named: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_params(_params_with_train(task_overrides=overrides))
    assert named in str(caught.value) and "\n" not in str(caught.value)


def _settings(tree: dict, prefix: str = "") -> list[str]:
    """Every setting of the stage sections, as dotted keys; per-entry specs (a source, a model) are not settings."""
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in ("fetch.sources", "base.models", "train.task_overrides"):
            keys.append(dotted)
        elif isinstance(value, dict) and value:
            keys.extend(_settings(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def test_every_setting_is_written_in_params_yaml_and_a_missing_one_is_named(raw: dict) -> None:
    settings = _settings(raw)
    assert len(settings) > 80 and "train.save_steps" in settings and "generate.teacher.cache_dir" in settings
    for dotted in settings:
        trimmed = copy.deepcopy(raw)
        *parents, last = dotted.split(".")
        holder = trimmed
        for part in parents:
            holder = holder[part]
        del holder[last]
        assert f"missing required key '{dotted}'" in _error_for(trimmed), dotted


def test_a_misspelt_setting_suggests_the_right_one(raw: dict) -> None:
    raw["train"]["save_stpes"] = raw["train"].pop("save_steps")
    assert _error_for(raw).startswith("params.yaml: unknown key 'train.save_stpes'; check its spelling (did you mean 'train.save_steps'?)")
