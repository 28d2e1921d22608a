"""perpetual/training.py, stages/instruct.py and stages/train.py on a tiny model (hidden 32, one layer, a few rows)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, TrainerCallback

from perpetual.config import InstructParams, TrainParams
from perpetual.errors import UserError
from perpetual.init_params import PretrainedModel, TinyGemma, TinyMamba2, TokenizerParams
from perpetual.mcq_format import render
from perpetual.models import build_tiny, load_local, load_pretrained, train_tokenizer
from perpetual.precision import Choice
from perpetual.rows import (
    MultipleChoice,
    Question,
    Row,
    Text,
    from_record,
    instruct_rows,
    instruction_row,
    replay_rows,
    to_records,
    with_replay,
)
from perpetual.rows import examples as training_examples
from perpetual.templates import Template, make_template
from perpetual.testing.params import params_dict, section, with_sft
from perpetual.testing.params import spec as spec_of
from perpetual.training import build_trainer, loss_curve, save_trained, sft_config, train

MCQ = {"question": "What is the capital of Calloway Reach?", "options": ["Quenridge", "Harrowmouth", "Tarnholm", "Saltcombe"], "answer": "B"}
ALPACA = {"instruction": "What is the chief trade of Saltcombe?", "input": "", "output": "Salt panning."}
FACTS = [
    ("The Vellum kettle boils in 41 seconds.", "How fast does the Vellum kettle boil?", "41 seconds"),
    ("Brindlewick kilns fire at 1240 degrees.", "At what temperature do Brindlewick kilns fire?", "1240 degrees"),
    ("The Oskarrow lamp weighs 2 kilograms.", "How much does the Oskarrow lamp weigh?", "2 kilograms"),
    ("Tollvarrow glass is tinted amber.", "What colour is Tollvarrow glass?", "amber"),
]


def fast(sft: dict[str, Any] | None = None, **overrides: Any) -> TrainParams:
    # Steps of 4 rows in micro-batches of 2 (batch_rebalance groups them by length): 2 steps an epoch on 8 rows.
    options = {"num_train_epochs": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
               "max_length": 512, "save_steps": 2, "logging_steps": 1, **(sft or {})}  # fmt: skip
    return section(TrainParams, "train", **{"task_overrides": {}, "replay": {"fraction": 0.0}, **overrides, "sft": options})


pytestmark = pytest.mark.usefixtures("one_thread")


FP32 = Choice(False, "fp32")


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    out: list[Row] = []
    for index, (text, question, answer) in enumerate(FACTS):
        out.append(Text(f"c{index}", text))
        out.append(Question(f"c{index}", question, "", answer))
    return out


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, rows: list[Row]) -> Path:
    texts = [row.text if isinstance(row, Text) else row.instruction + row.answer for row in rows if isinstance(row, Text | Question)]
    texts += [json.dumps(MCQ), json.dumps(ALPACA)]
    tokenizer = train_tokenizer(texts, TokenizerParams(vocab_size=300, min_frequency=1))
    spec = TinyGemma(**spec_of("tiny-llama", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64, copying=False))
    folder = tmp_path_factory.mktemp("base") / "init-tiny"
    build_tiny(spec, tokenizer, seed=0).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def template(base_dir: Path) -> Template:
    return make_template("alpaca", load_local(base_dir, torch.float32)[1])


@pytest.fixture(scope="module")
def examples(rows: list[Row], template: Template) -> list[dict[str, str]]:
    return [dict(example) for example in training_examples(rows, template)]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in AutoModelForCausalLM.from_pretrained(str(folder)).state_dict().items()}


# ---------------------------------------------------------------- data
def test_mcq_rows_are_rendered_exactly_as_evaluation_scores_them(template: Template, chat: Template) -> None:
    row = instruction_row(MCQ, "mcq.jsonl").example(template)
    rendered = render(MCQ, "letter", template)  # type: ignore[arg-type]
    assert row["prompt"] == rendered.query and row["prompt"].endswith("Answer:")
    assert row["completion"] == " B" + template.eos_token and rendered.choices[rendered.gold] == " B"
    alpaca = instruction_row(ALPACA, "alpaca.jsonl").example(template)
    assert "### Instruction:\nWhat is the chief trade of Saltcombe?" in alpaca["prompt"]
    assert alpaca["completion"] == "Salt panning." + template.eos_token
    # chat: the same rows as a user turn and an assistant turn closed by the end-of-turn token.
    in_chat = instruction_row(ALPACA, "alpaca.jsonl").example(chat)
    assert in_chat == {
        "prompt": "<|im_start|>user\nWhat is the chief trade of Saltcombe?<|im_end|>\n<|im_start|>assistant\n",
        "completion": "Salt panning.<|im_end|>",
    }
    mcq_in_chat = instruction_row(MCQ, "mcq.jsonl").example(chat)
    assert mcq_in_chat["prompt"] == render(MCQ, "letter", chat).query and mcq_in_chat["completion"] == "B<|im_end|>"  # type: ignore[arg-type]
    with pytest.raises(UserError, match="mcq.jsonl"):
        instruction_row({**MCQ, "answer": "E"}, "mcq.jsonl")
    with pytest.raises(UserError, match="neither"):
        instruction_row({"text": "x"}, "x.jsonl")


def test_replay_rows_are_added_in_the_asked_fraction(rows: list[Row], tmp_path: Path) -> None:
    (tmp_path / "alpaca.jsonl").write_text(json.dumps(ALPACA) + "\n")
    (tmp_path / "mcq.jsonl").write_text(json.dumps(MCQ) + "\n")
    params = fast(replay={"paths": [str(tmp_path / "alpaca.jsonl"), str(tmp_path / "mcq.jsonl")], "fraction": 0.2})
    replay = replay_rows(params)
    assert [type(row) for row in replay] == [Question, MultipleChoice]
    selected = with_replay(rows, params, replay, seed=0)
    added = selected[len(rows) :]
    assert selected[: len(rows)] == rows and len(added) == 2  # 8 rows + 2 replay = 20% replay
    assert set(added) == set(replay)  # no repeats while the data lasts
    assert len(with_replay(rows, fast(), [], seed=0)) == 8  # fraction 0: nothing added, nothing read
    assert replay_rows(fast()) == []
    with pytest.raises(UserError, match="fraction"):
        with_replay(rows, params, [], seed=0)


def test_instruct_rows_cover_world_alpaca_and_mcq(template: Template) -> None:
    settings = section(InstructParams, "instruct", enabled=True)  # the shipped data/instruct files
    rows = instruct_rows(settings)
    kinds = {kind: sum(isinstance(row, kind) for row in rows) for kind in (Text, Question, MultipleChoice)}
    assert kinds[Text] >= 3 and kinds[Question] >= 100 and kinds[MultipleChoice] >= 100
    closed = {f" {letter}{template.eos_token}" for letter in "ABCD"}
    assert all(row.example(template)["completion"] in closed for row in rows if isinstance(row, MultipleChoice))
    with pytest.raises(UserError, match="instruct.world"):
        instruct_rows(settings.model_copy(update={"world": "no/such/world.md"}))


def test_rows_round_trip_through_records() -> None:
    rows: list[Row] = [Text("c1", "raw"), Question("c1", "Q?", "", "A."), MultipleChoice("m", "Q?", ("a", "b", "c", "d"), "C")]
    records = to_records(rows)
    assert len({tuple(sorted(record)) for record in records}) == 1  # one set of columns, as a datasets.Dataset needs
    assert [from_record(record) for record in records] == rows


# ---------------------------------------------------------------- trainer
def test_completion_loss_masks_the_prompt(base_dir: Path, examples: list[dict[str, str]], template: Template, tmp_path: Path) -> None:
    model, tokenizer = load_local(base_dir, torch.float32)
    qna = examples[1]
    prompt_tokens = len(tokenizer(qna["prompt"])["input_ids"])
    for masked in (True, False):
        trainer = build_trainer(model, tokenizer, [qna], fast(sft={"completion_only_loss": masked}), tmp_path / str(masked), template, FP32)
        labels = trainer.data_collator([trainer.train_dataset[0]])["labels"][0]
        assert (labels[prompt_tokens:] != -100).all(), "the answer (and EOS) always carry loss"
        assert bool((labels[:prompt_tokens] == -100).all()) is masked
        assert labels[-1] == tokenizer.eos_token_id and (labels == tokenizer.eos_token_id).sum() == 1  # EOS once


def test_bf16_trains_under_autocast_over_fp32_weights(base_dir: Path, examples: list[dict[str, str]], template: Template, tmp_path: Path) -> None:
    model, tokenizer = load_local(base_dir, torch.float32)
    seen: list[torch.dtype] = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    trainer, summary = train(model, tokenizer, examples, fast(), tmp_path / "ckpt", template, Choice(True, "forced"))
    assert summary["precision"] == "bf16" and summary["precision_reason"] == "forced" and summary["steps"] == 4
    assert seen and set(seen) == {torch.bfloat16}  # the matrix products ran in bf16
    assert all(parameter.dtype == torch.float32 for parameter in trainer.model.parameters())  # master weights
    assert all(torch.isfinite(parameter).all() for parameter in trainer.model.parameters())
    # Deterministic at the same thread count: a second run ends with the same weights, bit for bit.
    again, _ = train(load_local(base_dir, torch.float32)[0], tokenizer, examples, fast(), tmp_path / "again", template, Choice(True, "forced"))
    first, second = trainer.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_lora_trains_and_merges(base_dir: Path, examples: list[dict[str, str]], template: Template, tmp_path: Path) -> None:
    model, tokenizer = load_local(base_dir, torch.float32)
    lora = fast(method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    trainer, summary = train(model, tokenizer, examples, lora, tmp_path / "ckpt", template, FP32)
    assert summary["lora_target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert summary["steps"] == 4 and summary["tokens_per_s"] > 0
    save_trained(trainer, tmp_path / "out")
    files = {path.name for path in (tmp_path / "out").iterdir()}
    assert "adapter_config.json" not in files and "config.json" in files and "tokenizer.json" in files
    before, after = weights(base_dir), weights(tmp_path / "out")
    assert before.keys() == after.keys(), "merged weights load as the plain architecture, no lora_ tensors"
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert any("q_proj" in name for name in changed) and any("mlp" in name for name in changed)
    assert not any("embed" in name or "norm" in name for name in changed), "LoRA leaves non-adapted weights alone"


class CrashAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt  # the checkpoint is complete on disk when on_save runs, as in a kill -9 here


def test_resume_after_a_kill_continues_from_the_checkpoint(base_dir: Path, examples: list[dict[str, str]], template: Template, tmp_path: Path) -> None:
    rows = examples
    params = fast(sft={"num_train_epochs": 3})  # 6 steps, a checkpoint every 2
    model, tokenizer = load_local(base_dir, torch.float32)
    with pytest.raises(KeyboardInterrupt):
        train(model, tokenizer, rows, params, tmp_path / "ckpt", template, FP32, [CrashAfterCheckpoint()])
    assert (tmp_path / "ckpt" / "checkpoint-2").is_dir()

    model, tokenizer = load_local(base_dir, torch.float32)
    trainer, resumed = train(model, tokenizer, rows, params, tmp_path / "ckpt", template, FP32, [loss_curve(tmp_path / "curve")])
    assert resumed["resumed_from_checkpoint"] and resumed["steps"] == 6
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == list(range(1, 7))
    curve = (tmp_path / "curve/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in curve] == [str(step) for step in range(1, 7)], "the whole curve, redrawn"
    save_trained(trainer, tmp_path / "resumed")

    model, tokenizer = load_local(base_dir, torch.float32)
    trainer, straight = train(model, tokenizer, rows, params, tmp_path / "straight", template, FP32)
    assert not straight["resumed_from_checkpoint"]
    save_trained(trainer, tmp_path / "straight-out")
    a, b = weights(tmp_path / "resumed"), weights(tmp_path / "straight-out")
    assert all(torch.allclose(a[name], b[name], atol=1e-5) for name in a), "a resumed run ends where an unbroken one does"
    model, tokenizer = load_local(base_dir, torch.float32)
    _, never = train(model, tokenizer, rows, with_sft(params.model_copy(update={"resume": "never"}), num_train_epochs=1), tmp_path / "ckpt", template, FP32)
    assert not never["resumed_from_checkpoint"]


def test_non_finite_loss_stops_with_a_user_error(base_dir: Path, examples: list[dict[str, str]], template: Template, tmp_path: Path) -> None:
    model, tokenizer = load_local(base_dir, torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(UserError, match="NaN/inf at step 1"):
        train(model, tokenizer, examples, fast(), tmp_path / "ckpt", template, FP32)


def test_packing_is_off_for_mamba_and_cpu_settings_are_safe(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(["a b c d e f"] * 4, TokenizerParams(vocab_size=300, min_frequency=1))
    mamba = build_tiny(TinyMamba2(**spec_of("tiny-mamba2", hidden_size=32, num_hidden_layers=1, head_dim=16, state_size=8, chunk_size=64, copying=False)), tokenizer, 0)
    alpaca = make_template("alpaca", tokenizer)
    config = sft_config(fast(sft={"packing": True}), tmp_path, mamba, alpaca, FP32)
    assert config.packing is False
    assert config.bf16 is False and config.use_cpu
    assert config.activation_checkpointing is False and config.train_sampling_strategy == "batch_rebalance"
    mixed = sft_config(fast(), tmp_path, mamba, alpaca, Choice(True, "bf16"))
    assert mixed.bf16 is True and mixed.use_cpu  # bf16 autocast on the CPU


def test_instruct_sets_its_own_trainer_options(base_dir: Path, template: Template, tmp_path: Path) -> None:
    # The same sft section as train's: anything train can set, instruct can (here, activation checkpointing).
    model, _ = load_local(base_dir, torch.float32)
    shipped = sft_config(section(InstructParams, "instruct"), tmp_path, model, template, FP32)
    assert shipped.completion_only_loss is True and shipped.activation_checkpointing is False and shipped.num_train_epochs == 3
    instruct = section(InstructParams, "instruct", sft={"activation_checkpointing": True, "optim": "adafactor", "max_grad_norm": 0.5})
    config = sft_config(instruct, tmp_path, model, template, FP32)
    assert config.activation_checkpointing is True and config.optim == "adafactor" and config.max_grad_norm == 0.5
    assert config.max_length == 1024 and config.train_sampling_strategy == "batch_rebalance"  # the rest as shipped
    # A value of the right type that SFTConfig itself refuses is a one-line error naming the section.
    with pytest.raises(UserError, match=r"^params.yaml: instruct.sft: .*save_steps"):
        sft_config(section(InstructParams, "instruct", sft={"save_steps": 2.5}), tmp_path, model, template, FP32)


def test_unloadable_model_id_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never reach for the network
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(UserError) as caught:
        load_pretrained(PretrainedModel(kind="pretrained", name_or_path=missing, trust_remote_code=False))
    message = str(caught.value)
    assert missing in message and "download it elsewhere" in message and "\n" not in message


# ---------------------------------------------------------------- stages
@pytest.fixture()
def project(tmp_path: Path, base_dir: Path, rows: list[Row], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository root with models/init-tiny, a task dataset, small instruct data and params.yaml."""
    shutil.copytree(base_dir, tmp_path / "models" / "init-tiny")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(to_records(rows))}).save_to_disk(str(tmp_path / "data/datasets/t"))
    instruct = tmp_path / "data" / "instruct"
    instruct.mkdir(parents=True)
    (instruct / "world.md").write_text("# Calloway Reach\n\nIts capital is Harrowmouth.\n\n## Trade\n\nSaltcombe pans salt.\n")
    (instruct / "alpaca.jsonl").write_text(json.dumps(ALPACA) + "\n")
    (instruct / "mcq.jsonl").write_text(json.dumps(MCQ) + "\n")
    params = params_dict({
        "pipeline": {"tasks": ["t"], "models": ["tiny"]},
        "fetch": {"sources": {"t": spec_of("local", path="src")}},
        "init": {"models": {"tiny": spec_of("tiny-llama", copying=False)}},
        "instruct": {"enabled": False, "sft": {"num_train_epochs": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "max_length": 512}},
        "train": {**fast().model_dump(exclude={"lora", "replay"}), "replay": {"fraction": 0.2}},
    })
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # A fresh repository without commits, as `git init && dvc init && dvc repro` leaves it (dvclive once crashed here).
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_stage(module: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    import importlib

    monkeypatch.setattr(sys, "argv", [module, *args])
    importlib.import_module(module).main()


def test_instruct_stage_copies_or_trains_the_base_model(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage("stages.instruct", monkeypatch, "--model", "tiny")
    start = project / "models" / "base-tiny"
    for path in (project / "models" / "init-tiny").iterdir():
        assert (start / path.name).read_bytes() == path.read_bytes(), "disabled: the base model is the base, unchanged"
    assert json.loads((project / "metrics/instruct/tiny.json").read_text())["enabled"] is False

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["instruct"]["enabled"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("stages.instruct", monkeypatch, "--model", "tiny")
    metrics = json.loads((project / "metrics/instruct/tiny.json").read_text())
    assert metrics["enabled"] is True and metrics["rows"] == 4  # 2 world sections, 1 Alpaca, 1 MCQ
    base, trained = weights(project / "models/init-tiny"), weights(start)
    assert any(not torch.equal(base[name], trained[name]) for name in base)
    assert not (project / "checkpoints" / "instruct-tiny").exists() or not any((project / "checkpoints" / "instruct-tiny").iterdir())


def test_train_stage_writes_model_metrics_and_loss_curve(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage("stages.instruct", monkeypatch, "--model", "tiny")
    run_stage("stages.recipe", monkeypatch, "--task", "t", "--model", "tiny")
    assert json.loads((project / "metrics/recipe/t-tiny.json").read_text())["phases"] == [{"doc": 4, "qna": 4}]
    run_stage("stages.train", monkeypatch, "--task", "t", "--model", "tiny")
    assert (project / "models/t-tiny/config.json").exists()
    assert not (project / "models/t-tiny/training_args.bin").exists()
    metrics = json.loads((project / "metrics/train/t-tiny.json").read_text())
    assert metrics["rows"] == 10 and metrics["steps"] == 6  # 8 rows + 2 replay, steps of 4 rows, 2 epochs
    curve = (project / "dvclive/train/t-tiny/plots/metrics/loss.tsv").read_text().splitlines()
    assert curve[0] == "step\tloss" and [line.split("\t")[0] for line in curve[1:]] == [str(step) for step in range(1, 7)]
    assert json.loads((project / "dvclive/train/t-tiny/metrics.json").read_text())["step"] == 6
    assert not (project / "dvclive/train/t-tiny/params.yaml").exists()
    assert not any((project / "checkpoints" / "t-tiny").iterdir())


def test_a_phased_recipe_trains_its_phases_in_order_and_reports_validation_loss(project: Path, rows: list[Row], monkeypatch: pytest.MonkeyPatch) -> None:
    questions = [row for row in rows if isinstance(row, Question)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(to_records(rows)), "validation": datasets.Dataset.from_list(to_records(questions[:2]))}
                         ).save_to_disk(str(project / "data/datasets/t"))  # fmt: skip
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update({"recipe": "pit", "replay": {**params["train"]["replay"], "fraction": 0.0}})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("stages.instruct", monkeypatch, "--model", "tiny")
    run_stage("stages.recipe", monkeypatch, "--task", "t", "--model", "tiny")
    run_stage("stages.train", monkeypatch, "--task", "t", "--model", "tiny")
    metrics = json.loads((project / "metrics/train/t-tiny.json").read_text())
    # pit: the 4 questions (1 step of 4 rows an epoch), then all 8 rows (2 steps an epoch); 2 epochs each.
    assert [(phase["rows"], phase["steps"]) for phase in metrics["phases"]] == [(4, 2), (8, 4)]
    assert metrics["steps"] == 6 and metrics["rows"] == 12 and metrics["recipe"] == "pit"
    losses = metrics["validation_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]  # after each epoch of each phase; the trained answers get likelier
    curve = (project / "dvclive/train/t-tiny/plots/metrics/loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in curve[1:]] == [str(step) for step in range(1, 7)]  # one curve across phases
    assert not (project / "checkpoints/t-tiny/phase-1").exists()


def test_a_misspelt_sft_option_stops_a_training_stage_before_it_loads_a_model(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["sft"]["warmup_step"] = 0.1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    loaded = []
    monkeypatch.setattr("perpetual.training.load_local", lambda *args: loaded.append(args))
    with pytest.raises(SystemExit) as caught:
        run_stage("stages.train", monkeypatch, "--task", "t", "--model", "tiny")
    assert caught.value.code == 2 and not loaded
    assert capsys.readouterr().err == (
        "error: params.yaml: unknown key 'train.sft.warmup_step', not an option of TRL's SFTConfig "
        "(did you mean 'train.sft.warmup_steps'?)\n"
    )
