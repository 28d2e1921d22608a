"""perpetual/config.py and perpetual/errors.py: params.yaml validation and clean user-facing exits."""

from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perpetual import config, fetch_params, init_params
from perpetual.config import UNION_TAGS, Params, load_params, parse_params
from perpetual.errors import USER_ERROR_EXIT_CODE, UserError, exits_cleanly
from perpetual.fetch_params import CatalogueSource, GitSource, LocalSource, PapersSource
from perpetual.sft_options import check_sft
from perpetual.strict import Strict
from perpetual.testing.params import spec

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


def test_real_params_yaml_loads(raw: dict) -> None:
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    # Read as written, each source as the class its kind names (the values themselves are params.yaml's business).
    assert params.pipeline.tasks == raw["pipeline"]["tasks"]
    kinds = {"local": LocalSource, "papers": PapersSource, "catalogue": CatalogueSource}
    for task, source in raw["fetch"]["sources"].items():
        assert type(params.fetch.sources[task]) is kinds[source["kind"]]
        assert params.fetch.sources[task].model_dump(exclude_unset=True) == source
    assert params.chunk.chunk_size == raw["chunk"]["chunk_size"]
    assert params.generate.flashcards_per_chunk == raw["generate"]["flashcards_per_chunk"]
    for task in params.pipeline.tasks:
        params.require_task(task)  # does not raise
    for model in params.pipeline.models:
        params.require_model(model)
    params.check_sft()  # every SFTConfig option it writes is one of the installed TRL's, of the right type


def test_misspelled_key_is_named(raw: dict) -> None:
    raw["train"]["epochz"] = 3
    message = _error_for(raw)
    assert "'train.epochz'" in message
    assert "unknown key" in message


def test_misspelled_top_level_section_is_named(raw: dict) -> None:
    raw["trian"] = {"epochs": 3}
    assert "'trian'" in _error_for(raw)


def test_wrong_type_names_the_key(raw: dict) -> None:
    raw["train"]["lora"]["r"] = "many"
    message = _error_for(raw)
    assert "train.lora.r" in message
    assert "'many'" in message


def test_an_unknown_self_study_teacher_names_the_key_and_the_choices(raw: dict) -> None:
    raw["train"]["self_study"]["teacher"] = "bogus"
    message = _error_for(raw)
    assert "train.self_study.teacher" in message and "'bogus'" in message and "openai" in message


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


def test_git_source_under_on_disk_sources_is_moved(raw: dict) -> None:
    raw["fetch"]["sources"]["code"] = {"kind": "git", "url": "https://example.org/r.git", "commit": "abcdef1"}
    message = _error_for(raw)
    assert "fetch.sources.code" in message and "fetch.remote_sources" in message


def test_catalogue_file_under_remote_sources_is_moved(raw: dict) -> None:
    raw["fetch"]["remote_sources"] = {"products": raw["fetch"]["sources"].pop("products")}
    message = _error_for(raw)
    assert "fetch.remote_sources.products" in message and "move it under fetch.sources" in message


def test_hub_dataset_under_on_disk_sources_is_moved(raw: dict) -> None:
    products = raw["fetch"]["sources"]["products"]
    del products["path"]
    products.update(hf_dataset="wdc/products-2017", hf_split="train")
    assert "fetch.remote_sources" in _error_for(raw)


def test_remote_sources_count_as_task_sources(raw: dict) -> None:
    products = raw["fetch"]["sources"].pop("products")
    del products["path"]
    products.update(hf_dataset="wdc/products-2017", hf_split="train")
    raw["fetch"]["remote_sources"] = {"products": products, "code": spec("git", url="../r", commit="abcdef1")}
    del raw["fetch"]["sources"]["code"]
    params = parse_params(raw)
    assert isinstance(params.fetch.source("products"), CatalogueSource)
    assert isinstance(params.fetch.source("code"), GitSource)


def test_a_task_with_two_sources_is_an_error(raw: dict) -> None:
    raw["fetch"]["remote_sources"] = {"code": spec("git", url="../r", commit="abcdef1")}
    assert "both" in _error_for(raw)


def test_unknown_source_kind_is_an_error(raw: dict) -> None:
    raw["fetch"]["sources"]["code"]["kind"] = "svn"
    message = _error_for(raw)
    assert "fetch.sources.code" in message
    assert "svn" in message


def test_overlap_not_smaller_than_size_is_an_error(raw: dict) -> None:
    raw["chunk"]["chunk_overlap"] = raw["chunk"]["chunk_size"]
    assert "chunk_overlap" in _error_for(raw)


def test_flashcard_holdout_is_on_by_default_and_checked(raw: dict) -> None:
    assert 0 < parse_params(copy.deepcopy(raw)).assemble.flashcard_holdout < 0.5  # on, and most flashcards still trained
    for value, expected in ((1.0, "assemble.flashcard_holdout"), (-0.1, "assemble.flashcard_holdout"), ("some", "'some'")):
        raw["assemble"]["flashcard_holdout"] = value
        assert expected in _error_for(raw)
    raw["assemble"]["flashcard_holdout"] = 0
    assert parse_params(copy.deepcopy(raw)).assemble.flashcard_holdout == 0  # off: the paper's training set
    raw["assemble"]["flashcard_hold_out"] = 0.3
    assert "unknown key 'assemble.flashcard_hold_out'" in _error_for(raw)


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


def test_a_finished_stage_script_freezes_the_collector_for_a_quick_exit_and_in_process_nothing_is_frozen() -> None:
    script = (
        "import gc\nfrom perpetual.errors import exits_cleanly\n"
        "@exits_cleanly\ndef main():\n    return 1\n"
        "before = gc.get_freeze_count()\nmain()\nprint(before, gc.get_freeze_count() > before)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert ran.stdout.split() == ["0", "True"]

    @exits_cleanly
    def main() -> int:
        return 1

    before = gc.get_freeze_count()
    assert main() == 1 and gc.get_freeze_count() == before


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
    bad["train"]["recipee"] = bad["train"].pop("recipe")
    result = _run_fetch_with(tmp_path, bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "train.recipee" in lines[0]
    assert not (tmp_path / "data").exists(), "a failed stage must not write outputs"


def test_stage_with_wrong_type_exits_2(tmp_path: Path, raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["train"]["lora"]["r"] = "many"
    result = _run_fetch_with(tmp_path, bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "train.lora.r" in result.stderr


def _params_with_train(**train: object) -> dict:
    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    raw["train"].update(train)
    return raw


def test_task_overrides_apply_to_one_task_only(raw: dict) -> None:
    raw["train"]["sft"]["num_train_epochs"] = 3
    raw["train"]["task_overrides"] = {"research": {"sft": {"num_train_epochs": 7}, "lora": {"r": 4}}}
    train = parse_params(raw).train
    research, products, code = train.for_task("research"), train.for_task("products"), train.for_task("code")
    assert (research.sft.num_train_epochs, products.sft.num_train_epochs, code.sft.num_train_epochs) == (7, 3, 3)
    # Merged into the section, option by option: the rest of sft (and of lora) is train's.
    assert research.sft.model_dump() == {**train.sft.model_dump(), "num_train_epochs": 7}
    assert research.lora == train.lora.model_copy(update={"r": 4})
    assert products == train and code == train  # a task without an override trains with the section as written


def test_a_task_override_replaces_values_and_leaves_the_section_as_it_was(raw: dict) -> None:
    raw["train"].update(template="alpaca", method="full")
    raw["train"]["task_overrides"] = {"code": {"template": "chat", "method": "lora", "sft": {"learning_rate": 1e-3}}}
    train = parse_params(raw).train
    code = train.for_task("code")
    assert (code.template, code.method, code.sft.learning_rate) == ("chat", "lora", 1e-3)
    assert code.task_overrides == {}  # the merged section is one task's, with nothing left to merge
    assert (train.template, train.method, train.sft.learning_rate) == ("alpaca", "full", raw["train"]["sft"]["learning_rate"])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"research": {"epochz": 12}}, "train.task_overrides.research"),
        ({"research": {"lora": {"r": "many"}}}, "train.task_overrides.research.lora.r"),
        ({"research": {"sft": {"output_dir": "elsewhere"}}}, "train.task_overrides.research.sft.output_dir"),
        ({"poetry": {"sft": {"num_train_epochs": 2}}}, "poetry"),
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
        if dotted in ("fetch.sources", "init.models", "train.task_overrides"):
            keys.append(dotted)
        elif isinstance(value, dict) and value:
            keys.extend(_settings(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def test_every_setting_is_written_in_params_yaml_and_a_missing_one_is_named(raw: dict) -> None:
    settings = _settings(raw)
    assert len(settings) > 80 and "train.sft.save_steps" in settings and "instruct.sft.activation_checkpointing" in settings
    assert "generate.teacher.cache_dir" in settings
    for dotted in settings:
        trimmed = copy.deepcopy(raw)
        *parents, last = dotted.split(".")
        holder = trimmed
        for part in parents:
            holder = holder[part]
        del holder[last]
        assert f"missing required key '{dotted}'" in _error_for(trimmed), dotted


def test_a_misspelt_setting_suggests_the_right_one(raw: dict) -> None:
    raw["train"]["templat"] = raw["train"].pop("template")
    assert _error_for(raw).startswith("params.yaml: unknown key 'train.templat'; check its spelling (did you mean 'train.template'?)")


@pytest.mark.parametrize(("section", "key"), [("train", "num_train_epochs"), ("instruct", "save_steps")])
def test_a_training_option_outside_sft_points_to_its_sft_name(raw: dict, section: str, key: str) -> None:
    raw[section][key] = 3
    assert f"unknown key '{section}.{key}'; check its spelling (did you mean '{section}.sft.{key}'?" in _error_for(raw)


def test_an_unknown_key_without_a_close_one_points_to_the_configuration_reference(raw: dict) -> None:
    raw["chunk"]["zzzz"] = 1
    assert _error_for(raw).endswith("(see the allowed keys under 'chunk' in docs/configuration.md)")


@pytest.mark.parametrize(("section", "entry", "key"), [("sources", "code", "exclude"), ("sources", "products", "on_malformed")])
def test_a_missing_source_key_is_named_without_the_kind(raw: dict, section: str, entry: str, key: str) -> None:
    del raw["fetch"][section][entry][key]
    assert f"missing required key 'fetch.{section}.{entry}.{key}'" in _error_for(raw)


@pytest.mark.parametrize(("model", "key"), [("gemma", "max_position_embeddings"), ("mamba2", "chunk_size"), ("smollm2", "trust_remote_code")])
def test_a_missing_model_key_is_named_without_the_kind(raw: dict, model: str, key: str) -> None:
    del raw["init"]["models"][model][key]
    assert f"missing required key 'init.models.{model}.{key}'" in _error_for(raw)


def test_only_the_fields_whose_absence_means_none_may_be_left_out() -> None:
    """No default in code that params.yaml does not show: a field may be left out only where leaving it out means
    none (a catalogue's or a pretrained model's other location, the default branch, no GGUF file, init.copying's
    value for a model's own copy lessons)."""
    models = {model for module in (config, fetch_params, init_params) for model in vars(module).values()
              if isinstance(model, type) and issubclass(model, Strict)}  # fmt: skip
    optional = {f"{model.__name__}.{name}": field.default for model in models for name, field in model.model_fields.items() if not field.is_required()}
    overrides = [f"CopyingOverrides.{name}" for name in init_params.CopyingParams.model_fields]
    assert optional == dict.fromkeys(["CatalogueSource.path", "CatalogueSource.hf_dataset", "CatalogueSource.hf_split", "CatalogueSource.hf_revision",
                                      "PretrainedModel.name_or_path", "PretrainedModel.package", "PretrainedModel.gguf_file", "PretrainedModel.revision",
                                      *overrides])  # fmt: skip


def test_union_tags_are_the_kinds_the_specs_declare() -> None:
    assert UNION_TAGS == {"local", "git", "papers", "catalogue", "tiny-mamba2", "tiny-gemma", "tiny-llama", "pretrained"}


# ---------------------------------------------------------------- sft: TRL's SFTConfig options
@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("output_dir", "'train.sft.output_dir' is set by perpetual, not params.yaml (checkpoints/"),
        ("report_to", "'train.sft.report_to' is set by perpetual, not params.yaml (the stages log"),
        ("bf16", "'train.sft.bf16' is set by perpetual, not params.yaml (train.precision decides"),
    ],
)
def test_options_perpetual_sets_are_refused_at_load(raw: dict, key: str, message: str) -> None:
    raw["train"]["sft"][key] = "x"
    assert message in _error_for(raw)


def test_instruct_options_perpetual_sets_are_refused_naming_instruct(raw: dict) -> None:
    raw["instruct"]["sft"]["use_cpu"] = True
    assert "'instruct.sft.use_cpu' is set by perpetual" in _error_for(raw)
    del raw["instruct"]["sft"]["use_cpu"]
    raw["instruct"]["sft"]["fp16"] = True
    assert "(instruct.precision decides" in _error_for(raw)


def _check_sft_error(raw: dict) -> str:
    params = parse_params(raw)  # the SFTConfig check is not at load (importing TRL takes seconds): the stages that train run it
    with pytest.raises(UserError) as caught:
        params.check_sft()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("train", "learning_rat", "unknown key 'train.sft.learning_rat', not an option of TRL's SFTConfig (did you mean 'train.sft.learning_rate'?)"),
        ("instruct", "num_train_epoch", "unknown key 'instruct.sft.num_train_epoch', not an option of TRL's SFTConfig (did you mean 'instruct.sft.num_train_epochs'?)"),
        ("train", "zzzz", "unknown key 'train.sft.zzzz', not an option of TRL's SFTConfig (see the options at https://huggingface.co/docs/trl"),
    ],
)
def test_an_unknown_sft_option_is_named_with_a_suggestion(raw: dict, section: str, key: str, message: str) -> None:
    raw[section]["sft"][key] = 1
    assert message in _check_sft_error(raw)


def test_a_wrongly_typed_sft_option_is_named(raw: dict) -> None:
    raw["train"]["sft"]["per_device_train_batch_size"] = "many"
    message = _check_sft_error(raw)
    assert message.startswith("params.yaml: 'train.sft.per_device_train_batch_size'='many' is invalid") and "int" in message
    raw["train"]["sft"]["per_device_train_batch_size"] = 4
    raw["train"]["sft"]["train_sampling_strategy"] = "shuffled"
    assert "'train.sft.train_sampling_strategy'='shuffled' is invalid: SFTConfig allows [" in _check_sft_error(raw)
    raw["train"]["sft"]["train_sampling_strategy"] = "random"
    raw["train"]["sft"]["lr_scheduler_type"] = "linaer"  # typed `SchedulerType | str`: one of the enum's values
    assert "'train.sft.lr_scheduler_type'='linaer' is invalid: SFTConfig allows ['linear'," in _check_sft_error(raw)


def test_a_task_override_sft_option_is_checked_where_it_is_written(raw: dict) -> None:
    raw["train"]["task_overrides"]["research"] = {"sft": {"num_train_epochs": "twelve"}}
    assert "'train.task_overrides.research.sft.num_train_epochs'='twelve' is invalid" in _check_sft_error(raw)


def test_a_deprecated_alias_is_refused_with_its_current_name(raw: dict) -> None:
    raw["instruct"]["sft"]["gradient_checkpointing"] = True  # transformers 5: an alias of activation_checkpointing
    message = _check_sft_error(raw)
    assert "'instruct.sft.gradient_checkpointing' is deprecated" in message
    assert message.endswith("write 'instruct.sft.activation_checkpointing' instead")


def test_sft_values_take_the_types_sftconfig_declares() -> None:
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; SFTConfig's float makes it a number. Other values are kept.
    checked = check_sft({"learning_rate": "1e-3", "lr_scheduler_type": "cosine", "max_length": None, "neftune_noise_alpha": 5}, "train.sft")
    assert checked == {"learning_rate": 0.001, "lr_scheduler_type": "cosine", "max_length": None, "neftune_noise_alpha": 5.0}


def test_a_hub_catalogue_names_its_split(raw: dict) -> None:
    products = raw["fetch"]["sources"].pop("products")
    del products["path"]
    raw["fetch"]["remote_sources"] = {"products": {**products, "hf_dataset": "wdc/products-2017"}}
    assert "'fetch.remote_sources.products': a Hugging Face dataset needs `hf_split`" in _error_for(raw)
