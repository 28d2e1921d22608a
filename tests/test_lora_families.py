"""LoRA for every model family offered (mamba2, mamba v1, gemma, llama), through the real base and train stages; and the
one-line errors for bad model inputs (a wrong LoRA module, a missing GGUF file, `chat` for a model without a template)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from transformers import MambaConfig, MambaForCausalLM

from perpetual.errors import UserError
from perpetual.init_params import TinyGemma, TinyMamba2, TokenizerParams
from perpetual.models import build_tiny, train_tokenizer
from perpetual.rows import Question, Row, Text, to_records
from perpetual.testing.params import params_dict
from perpetual.testing.params import spec as shipped_spec
from perpetual.training import lora_capable_modules, lora_target_modules

pytestmark = pytest.mark.usefixtures("one_thread")

FACTS = [
    ("The Vellum kettle boils in 41 seconds.", "How fast does the Vellum kettle boil?", "41 seconds"),
    ("Brindlewick kilns fire at 1240 degrees.", "At what temperature do Brindlewick kilns fire?", "1240 degrees"),
]
TINY = {
    "tiny-mamba2": shipped_spec("tiny-mamba2", hidden_size=32, num_hidden_layers=1, head_dim=16, state_size=8, chunk_size=16, copying=False),
    "tiny-gemma": shipped_spec("tiny-gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64, copying=False),
}  # fmt: skip


def tiny_mamba_v1(tokenizer) -> MambaForCausalLM:
    """Mamba v1, the architecture of the paper's state-spaces/mamba-2.8b-hf, at toy size."""
    torch.manual_seed(0)
    config = MambaConfig(
        vocab_size=len(tokenizer), hidden_size=32, state_size=8, num_hidden_layers=1, expand=2, conv_kernel=4,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return MambaForCausalLM(config)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([text for fact in FACTS for text in fact] * 4, TokenizerParams(vocab_size=300, min_frequency=1))


@pytest.fixture(scope="module")
def models(tokenizer):
    return {
        "mamba2": build_tiny(TinyMamba2(**TINY["tiny-mamba2"]), tokenizer, 0),
        "gemma": build_tiny(TinyGemma(**TINY["tiny-gemma"]), tokenizer, 0),
        "llama": build_tiny(TinyGemma(**{**TINY["tiny-gemma"], "kind": "tiny-llama"}), tokenizer, 0),
        "mamba": tiny_mamba_v1(tokenizer),
    }


def test_auto_targets_every_module_peft_accepts_per_family(models) -> None:
    attention = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert lora_target_modules(models["gemma"], "auto") == attention
    assert lora_target_modules(models["llama"], "auto") == attention
    assert lora_target_modules(models["mamba2"], "auto") == ["in_proj"]  # PEFT refuses out_proj and conv1d
    assert lora_target_modules(models["mamba"], "auto") == ["dt_proj", "in_proj", "x_proj"]
    assert lora_target_modules(models["gemma"], ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    "family,module,reason",
    [("mamba2", "out_proj", "PEFT refuses LoRA on 'out_proj' for mamba2"), ("mamba", "conv1d", "PEFT refuses LoRA on 'conv1d' for mamba"),
     ("gemma", "in_proj", "gemma has no linear module named 'in_proj'")],
)  # fmt: skip
def test_a_wrong_module_is_one_line_naming_it_and_the_usable_ones(models, family: str, module: str, reason: str) -> None:
    with pytest.raises(UserError) as caught:
        lora_target_modules(models[family], [module])
    message = str(caught.value)
    assert reason in message and str(lora_capable_modules(models[family])) in message and "\n" not in message


# ---------------------------------------------------------------- through the stages
def project(root: Path, tokenizer, spec: dict, lora: dict) -> None:
    rows: list[Row] = []
    for index, (text, question, answer) in enumerate(FACTS):
        rows += [Text(f"c{index}", text), Question(f"c{index}", question, "", answer)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(to_records(rows))}).save_to_disk(str(root / "data/datasets/t"))
    (root / "data/chunks").mkdir(parents=True)
    (root / "data/chunks/t.jsonl").write_text("".join(json.dumps({"chunk_id": f"c{i}", "text": fact[0]}) + "\n" for i, fact in enumerate(FACTS)))
    instruct = root / "data/instruct"
    instruct.mkdir(parents=True)
    (instruct / "alpaca.jsonl").write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi!"}) + "\n")
    (instruct / "mcq.jsonl").write_text("")
    params = params_dict({
        "pipeline": {"tasks": ["t"], "models": ["m"]},
        "fetch": {"sources": {"t": shipped_spec("local", path="src")}},
        "init": {"models": {"m": spec}, "tokenizer": {"vocab_size": 300, "min_frequency": 1}},
        "instruct": {"enabled": False},
        "train": {"method": "lora", "lora": lora, "replay": {"fraction": 0.0}, "task_overrides": {},
                  "sft": {"num_train_epochs": 1, "learning_rate": 1e-2, "per_device_train_batch_size": 2,
                          "gradient_accumulation_steps": 1, "max_length": 256, "logging_steps": 1}},
    })  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


def run_stage(module: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [module, *args])
    importlib.import_module(module).main()


@pytest.mark.parametrize("family", ["tiny-mamba2", "tiny-gemma", "mamba-v1-pretrained"])
def test_lora_through_the_base_and_train_stages(family: str, tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if family == "mamba-v1-pretrained":  # a Mamba v1 folder on disk, loaded as any pretrained model is
        folder = tmp_path / "hub" / "tiny-mamba"
        tiny_mamba_v1(tokenizer).save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        spec: dict = {"kind": "pretrained", "name_or_path": str(folder), "trust_remote_code": False}
    else:
        spec = TINY[family]
    project(tmp_path, tokenizer, spec, {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "auto"})
    monkeypatch.chdir(tmp_path)
    stages = [("stages.init", ["--model", "m"]), ("stages.instruct", ["--model", "m"]), ("stages.recipe", ["--task", "t", "--model", "m"]),
              ("stages.train", ["--task", "t", "--model", "m"])]  # fmt: skip
    for stage, args in stages:
        run_stage(stage, monkeypatch, *args)
    metrics = json.loads((tmp_path / "metrics/train/t-m.json").read_text())
    expected = {"tiny-mamba2": ["in_proj"], "tiny-gemma": None, "mamba-v1-pretrained": ["dt_proj", "in_proj", "x_proj"]}[family]
    assert metrics["steps"] == 2 and metrics["template"] == "alpaca"
    if expected:
        assert metrics["lora_target_modules"] == expected
    merged = json.loads((tmp_path / "models/t-m/config.json").read_text())
    assert not (tmp_path / "models/t-m/adapter_config.json").exists() and merged["model_type"] in {"mamba2", "gemma", "mamba"}


def one_line_error(root: Path, *stage_and_args: str) -> str:
    """Run a stage as a user does; it must stop with exit code 2 and one `error:` line, no traceback."""
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", *stage_and_args], cwd=root, capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def prepared(root: Path, tokenizer, spec: dict, lora: dict, **train: object) -> Path:
    project(root, tokenizer, spec, lora)
    if train:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"].update(train)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for stage, args in (("stages.init", ["--model", "m"]), ("stages.instruct", ["--model", "m"]), ("stages.recipe", ["--task", "t", "--model", "m"])):
        subprocess.run([sys.executable, "-m", stage, *args], cwd=root, check=True, capture_output=True, env=env)
    return root


def test_a_wrong_module_stops_the_train_stage_with_one_line(tokenizer, tmp_path: Path) -> None:
    prepared(tmp_path, tokenizer, TINY["tiny-mamba2"], {"target_modules": ["out_proj"]})  # r, alpha, dropout: params.yaml's
    line = one_line_error(tmp_path, "stages.train", "--task", "t", "--model", "m")
    assert line.startswith("error: train.lora.target_modules: PEFT refuses LoRA on 'out_proj'") and "['in_proj']" in line


def test_chat_for_a_model_without_a_chat_template_is_one_line(tokenizer, tmp_path: Path) -> None:
    prepared(tmp_path, tokenizer, TINY["tiny-gemma"], {"target_modules": "auto"}, template="chat")
    line = one_line_error(tmp_path, "stages.train", "--task", "t", "--model", "m")
    assert "train.template is chat but model 'm' has no chat template" in line and "train.template: alpaca" in line


def test_a_missing_gguf_file_is_one_line_naming_it_and_the_files_there(tokenizer, tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "other-model.Q4_K_M.gguf").write_bytes(b"GGUF")
    project(tmp_path, tokenizer, {"kind": "pretrained", "name_or_path": str(folder), "gguf_file": "llama.Q8_0.gguf", "trust_remote_code": False}, {"target_modules": "auto"})
    line = one_line_error(tmp_path, "stages.init", "--model", "m")
    assert "init.models.m.gguf_file: 'llama.Q8_0.gguf' is not in" in line and "other-model.Q4_K_M.gguf" in line
