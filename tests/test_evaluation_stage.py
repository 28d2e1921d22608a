"""stages/evaluate.py end to end on a tiny model in a temporary project: metrics layout, predictions, retention, and
the comparison of chunks trained with and without their flashcards."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from perpetual import paths
from perpetual.conditions import CONDITIONS as TABLE
from perpetual.init_params import TinyGemma, TokenizerParams
from perpetual.io import read_jsonl, write_jsonl
from perpetual.models import build_tiny, train_tokenizer
from perpetual.testing.params import params_dict

CONDITIONS = [condition.name for condition in TABLE]  # every condition, the oracle ones (not in params.yaml's default) too


def _mcq(index: int) -> dict:
    options = [f"{1000 + 7 * index + offset}" for offset in range(4)]
    return {"mcq_id": f"m{index}", "chunk_id": f"c{index % 6}", "question": f"What completes \"Item {index} weighs ___\"?",
            "options": options, "answer": "ABCD"[index % 4], "cloze_prefix": f"Item {index} weighs ", "kind": "number"}  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    mcqs = [_mcq(index) for index in range(12)]
    texts = [f"Item {index} weighs {1000 + 7 * index} grams." for index in range(12)] * 5
    tokenizer = train_tokenizer(texts + ["### Instruction:\nSay hi.\n\n### Response:\nHi!"], TokenizerParams(vocab_size=300, min_frequency=1))
    spec = TinyGemma(kind="tiny-gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64, max_position_embeddings=2048, copying=False)
    # Two different random models stand in for the starting ("base") and the fine-tuned model.
    for folder, seed in ((paths.base_model("tiny"), 0), (paths.trained_model("demo", "tiny"), 1)):
        model = build_tiny(spec, tokenizer, seed=seed)
        model.save_pretrained(str(root / folder))
        tokenizer.save_pretrained(str(root / folder))
    write_jsonl(root / "data/generated/demo/mcq.jsonl", mcqs)
    (root / paths.flashcard_groups("demo")).parent.mkdir(parents=True)
    (root / paths.flashcard_groups("demo")).write_text(json.dumps({"share": 0.3, "seed": 0, "raw_only": ["c0", "c1"], "with_flashcards": ["c2", "c3", "c4", "c5"]}))
    write_jsonl(root / "data/retrieved/demo.jsonl", [{"mcq_id": m["mcq_id"], "contexts": [f"Item {i} weighs {1000 + 7 * i} grams." for i in range(2)],
                                                      "chunk_ids": ["c0", "c1"], "source_retrieved": True} for m in mcqs])  # fmt: skip
    write_jsonl(root / "data/chunks/demo.jsonl", [{"chunk_id": f"c{i}", "task": "demo", "source": "s", "language": "text",
                                                   "text": f"Item {i} weighs {1000 + 7 * i} grams."} for i in range(6)])  # fmt: skip
    write_jsonl(root / "data/retention/general_instructions.jsonl", [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(5)])
    params = params_dict({
        "pipeline": {"tasks": ["demo"], "models": ["tiny"], "seed": 0},
        "fetch": {"sources": {"demo": {"kind": "local", "path": "src", "include": ["**/*"], "exclude": [], "language": "text"}}},
        "init": {"models": {"tiny": spec.model_dump()}},
        "train": {"task_overrides": {}},
        "evaluate": {"conditions": CONDITIONS, "batch_size": 4, "retention": {"budget_factor": 2.0}},
        "analysis": {"bootstrap_samples": 100},
    })  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def run(stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(f"stages.{stage}")
    cell = ["--model", "tiny"] if stage == "base_retention" else ["--task", "demo", "--model", "tiny"]
    monkeypatch.setattr(sys, "argv", [stage, *cell])
    module.main()


def test_evaluate_then_analysis_write_every_cell_and_retention(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    run("base_retention", monkeypatch)
    run("evaluate", monkeypatch)
    assert not (project / "metrics/eval/demo-tiny.json").exists()  # scoring computes no statistic
    scoring = json.loads((project / "metrics/scoring/demo-tiny.json").read_text())
    assert scoring["template"] == "alpaca" and set(scoring["precision"]) == {"base", "fine-tuned"}
    run("analysis", monkeypatch)

    metrics = json.loads((project / "metrics/eval/demo-tiny.json").read_text())
    for condition in CONDITIONS:
        for fmt in ("letter", "cloze"):
            cell = metrics[condition][fmt]
            assert cell["n"] == 12 and cell["ci_low"] <= cell["acc"] <= cell["ci_high"]
            assert cell["truncated"] == cell["context_shortened"] == 0  # short prompts, a 2048-token window
    assert {"spearman_vs_base", "kl_vs_base", "p_value_vs_base", "learned"} <= metrics["fine-tuned"]["cloze"].keys()
    assert {"spearman_vs_rag", "kl_vs_rag", "p_value_vs_rag", "improved"} <= metrics["fine-tuned+rag"]["letter"].keys()
    assert {"p_value_vs_base", "reading_helped"} <= metrics["oracle"]["cloze"].keys()
    assert {"p_value_vs_fine-tuned", "reading_helped_fine_tuned"} <= metrics["fine-tuned+oracle"]["letter"].keys()
    assert set(metrics["baselines"]) == {"chance", "majority_letter", "longest_option"}
    retention = metrics["retention"]
    assert retention["base"]["n"] == retention["fine-tuned"]["n"] == 5
    assert {"p_value_loglik", "p_value_format"} <= retention.keys()
    assert retention["base"]["loglik_per_token"] != retention["fine-tuned"]["loglik_per_token"]
    assert "p_value_similarity" in retention
    for which in ("base", "fine-tuned"):
        assert -1 <= retention[which]["similarity"] <= 1 and 0 < retention[which]["answer_tokens_mean"] <= retention[which]["budget"]
    flashcards = metrics["flashcards"]
    assert flashcards["share"] == 0.3 and set(flashcards) == {"share", "letter", "cloze"}
    for fmt in ("letter", "cloze"):
        cell = flashcards[fmt]
        assert (cell["with_flashcards"]["n"], cell["raw_only"]["n"]) == (8, 4)
        assert cell["raw_only"]["acc_base"] == round(sum(metrics_acc(project, "base", fmt, {"m0", "m1", "m6", "m7"})) / 4, 4)
        assert 0 < cell["p_value"] <= 1 and isinstance(cell["flashcards_helped"], bool)

    predictions = read_jsonl(project / "data/predictions/demo-tiny.jsonl")
    assert len(predictions) == 12 * len(CONDITIONS) * 2
    assert {(row["condition"], row["format"]) for row in predictions} == {(c, f) for c in CONDITIONS for f in ("letter", "cloze")}
    answers = read_jsonl(project / "data/predictions/demo-tiny.retention.jsonl")
    assert len(answers) == 10 and {row["model"] for row in answers} == {"base", "fine-tuned"}
    # One budget for the set: twice the longest reference ("0." to "4.") in the model's tokens, with the closing EOS.
    tokenizer = AutoTokenizer.from_pretrained(str(project / paths.base_model("tiny")))
    longest = max(len(tokenizer(row["reference"], add_special_tokens=False)["input_ids"]) + 1 for row in answers)
    assert {row["budget"] for row in answers} == {2 * longest} == {retention["base"]["budget"]}
    assert all(isinstance(row["similarity"], float) and row["answer_tokens"] <= row["budget"] for row in answers)

    # Everything in the cells can be recomputed from the saved predictions alone.
    from perpetual.analysis import cells_from_predictions

    recomputed = cells_from_predictions(predictions, 100, 0, 0.05)
    assert all(recomputed[condition] == metrics[condition] for condition in CONDITIONS)


def test_analysis_reruns_without_any_model(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new alpha and bootstrap count: the analysis reads only predictions, so it runs with the models gone."""
    monkeypatch.chdir(project)
    if not (project / paths.predictions("demo", "tiny")).exists():
        run("base_retention", monkeypatch)
        run("evaluate", monkeypatch)
    before = json.loads((project / "metrics/eval/demo-tiny.json").read_text()) if (project / "metrics/eval/demo-tiny.json").exists() else None
    for folder in (paths.base_model("tiny"), paths.trained_model("demo", "tiny")):
        shutil.rmtree(project / folder)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["analysis"] = {"bootstrap_samples": 300, "alpha": 0.5}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run("analysis", monkeypatch)
    after = json.loads((project / "metrics/eval/demo-tiny.json").read_text())
    assert after["base"]["cloze"]["acc"] == metrics_acc_mean(project, "base", "cloze")
    if before is not None:
        assert after["base"]["cloze"]["acc"] == before["base"]["cloze"]["acc"]
        assert (after["base"]["cloze"]["ci_low"], after["base"]["cloze"]["ci_high"]) != (before["base"]["cloze"]["ci_low"], before["base"]["cloze"]["ci_high"])


def metrics_acc_mean(project: Path, condition: str, fmt: str) -> float:
    rows = read_jsonl(project / "data/predictions/demo-tiny.jsonl")
    values = [row["acc"] for row in rows if row["condition"] == condition and row["format"] == fmt]
    return round(sum(values) / len(values), 4)


def metrics_acc(project: Path, condition: str, fmt: str, mcq_ids: set[str]) -> list[float]:
    rows = read_jsonl(project / "data/predictions/demo-tiny.jsonl")
    return [row["acc"] for row in rows if row["condition"] == condition and row["format"] == fmt and row["mcq_id"] in mcq_ids]
