"""perpetual/evaluation.py: how MCQs are rendered for lm-eval (letter and cloze formats, with and without RAG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpetual.evaluation import build_items, condition_model, render, task_config, task_name
from perpetual.records import Mcq
from perpetual.templates import LETTER_INSTRUCTION, Template

TEMPLATE = "Context:\n{context}\n\n"


def _mcq(mcq_id: str = "m1", cloze_prefix: str = "The Tellavik Nova weighs ", answer: str = "C") -> Mcq:
    return Mcq(
        mcq_id=mcq_id,
        chunk_id="c1",
        question='In catalogue.csv, what completes "The Tellavik Nova weighs ___"?',
        options=["1170", "2016", "1336", "6586"],
        answer=answer,  # type: ignore[typeddict-item]
        cloze_prefix=cloze_prefix,
        kind="number",
    )


def test_letter_format(alpaca: Template) -> None:
    rendered = render(_mcq(), "letter", alpaca)
    lines = rendered.query.split("\n")
    assert lines[0] == _mcq()["question"]
    assert lines[1:5] == ["A: 1170", "B: 2016", "C: 1336", "D: 6586"]
    assert rendered.query.endswith("\nAnswer:")
    assert rendered.choices == [" A", " B", " C", " D"]
    assert rendered.gold == 2


def test_letter_format_in_the_chat_template_is_a_user_turn(chat: Template) -> None:
    rendered = render(_mcq(), "letter", chat, context="CTX ")
    assert rendered.query.startswith("<|im_start|>user\nCTX " + _mcq()["question"] + "\nA: 1170\n")
    assert rendered.query.endswith(f"D: 6586\n\n{LETTER_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.choices == ["A", "B", "C", "D"] and rendered.gold == 2
    assert render(_mcq(), "cloze", chat).query == "The Tellavik Nova weighs "  # raw continuation in every template


@pytest.mark.parametrize("answer,gold", [("A", 0), ("B", 1), ("C", 2), ("D", 3)])
def test_gold_follows_answer_letter(answer: str, gold: int, alpaca: Template) -> None:
    for fmt in ("letter", "cloze"):
        assert render(_mcq(answer=answer), fmt, alpaca).gold == gold


def test_cloze_format_uses_prefix_and_raw_options(alpaca: Template) -> None:
    rendered = render(_mcq(), "cloze", alpaca)
    assert rendered.query == "The Tellavik Nova weighs "
    assert rendered.choices == ["1170", "2016", "1336", "6586"]
    assert rendered.gold == 2


def test_cloze_without_prefix_falls_back_to_question_answer(alpaca: Template) -> None:
    rendered = render(_mcq(cloze_prefix=""), "cloze", alpaca)
    assert rendered.query == f"Question: {_mcq()['question']}\nAnswer:"
    assert rendered.choices == [" 1170", " 2016", " 1336", " 6586"]


def test_context_is_prepended(alpaca: Template) -> None:
    assert render(_mcq(), "letter", alpaca, context="CTX ").query.startswith("CTX " + _mcq()["question"])
    assert render(_mcq(), "cloze", alpaca, context="CTX ").query == "CTX The Tellavik Nova weighs "


@pytest.mark.parametrize("fmt", ["letter", "cloze"])
def test_build_items_rag_prepends_context_and_non_rag_does_not(fmt: str, alpaca: Template) -> None:
    mcqs = [_mcq("m1"), _mcq("m2")]
    retrieved = {"m1": {"contexts": ["The Nova weighs 1336 grams.", "Another passage."]}}
    plain = render(mcqs[0], fmt, alpaca).query
    for condition in ("rag", "fine-tuned+rag"):
        rows = build_items(mcqs, condition, fmt, retrieved, TEMPLATE, alpaca)
        assert rows[0]["query"] == "Context:\nThe Nova weighs 1336 grams.\n\nAnother passage.\n\n" + plain
        assert rows[1]["query"] == plain  # nothing retrieved for m2: no empty context block
        assert [row["mcq_id"] for row in rows] == ["m1", "m2"]
        assert rows[0]["gold"] == 2 and rows[0]["choices"] == render(mcqs[0], fmt, alpaca).choices
    for condition in ("base", "fine-tuned"):
        rows = build_items(mcqs, condition, fmt, retrieved, TEMPLATE, alpaca)
        assert [row["query"] for row in rows] == [plain, plain]
        assert "Context:" not in rows[0]["query"]


def test_task_config_points_at_local_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = task_config("perpetual_code_rag_letter", Path("items.jsonl"))
    assert config["task"] == "perpetual_code_rag_letter"
    assert config["dataset_path"] == "json"
    data_file = Path(config["dataset_kwargs"]["data_files"]["test"])
    assert data_file.is_absolute() and data_file == tmp_path / "items.jsonl"
    assert config["test_split"] == "test"
    assert config["output_type"] == "multiple_choice"
    assert (config["doc_to_text"], config["doc_to_choice"], config["doc_to_target"]) == ("query", "choices", "gold")
    assert config["target_delimiter"] == ""
    assert {metric["metric"] for metric in config["metric_list"]} == {"acc", "acc_norm"}


def test_task_names_and_condition_models() -> None:
    assert task_name("code", "fine-tuned+rag", "cloze") == "perpetual_code_fine_tuned_rag_cloze"
    names = {task_name("code", c, f) for c in ("base", "fine-tuned", "rag", "fine-tuned+rag") for f in ("letter", "cloze")}
    assert len(names) == 8
    assert [condition_model(c) for c in ("base", "rag", "fine-tuned", "fine-tuned+rag")] == ["base", "base", "fine-tuned", "fine-tuned"]


def test_one_table_of_conditions_drives_selection() -> None:
    from perpetual.conditions import BY_NAME, selected
    from perpetual.errors import UserError

    assert [c.name for c in selected(["rag", "base"])] == ["base", "rag"]  # the table's order
    assert BY_NAME["fine-tuned"].verdict == "learned" and BY_NAME["rag"].verdict != "learned"
    with pytest.raises(UserError, match="unknown condition.*'oracel'"):
        selected(["base", "oracel"])
