"""perpetual/evaluation.py: how MCQs are rendered for lm-eval (letter and cloze formats, with and without RAG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpetual.conditions import CONDITIONS
from perpetual.errors import UserError
from perpetual.evaluation import Budget, build_items, condition_model, fit, render, task_config, task_name
from perpetual.mcq_format import Rendered
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
    assert task_name("code", "fine-tuned+oracle", "letter") == "perpetual_code_fine_tuned_oracle_letter"
    names = {task_name("code", c.name, f) for c in CONDITIONS for f in ("letter", "cloze")}
    assert len(names) == 2 * len(CONDITIONS) == 12  # no two conditions share an lm-eval task name
    conditions = ("base", "rag", "oracle", "fine-tuned", "fine-tuned+rag", "fine-tuned+oracle")
    assert [condition_model(c) for c in conditions] == ["base"] * 3 + ["fine-tuned"] * 3


def test_one_table_of_conditions_drives_selection() -> None:
    from perpetual.conditions import BY_NAME, selected
    from perpetual.errors import UserError

    assert [c.name for c in selected(["rag", "base"])] == ["base", "rag"]  # the table's order
    assert BY_NAME["fine-tuned"].verdict == "learned" and BY_NAME["rag"].verdict != "learned"
    # The oracle (the MCQ's own chunk) is tested against the same model without context, not against RAG.
    assert (BY_NAME["oracle"].context, BY_NAME["oracle"].model, BY_NAME["oracle"].reference) == ("source", "base", "base")
    assert (BY_NAME["fine-tuned+oracle"].model, BY_NAME["fine-tuned+oracle"].reference) == ("fine-tuned", "fine-tuned")
    assert len({c.verdict for c in CONDITIONS if c.verdict}) == len([c for c in CONDITIONS if c.verdict])  # one key each
    with pytest.raises(UserError, match="unknown condition.*'oracel'"):
        selected(["base", "oracel"])


@pytest.mark.parametrize("fmt", ["letter", "cloze"])
def test_oracle_reads_the_mcqs_own_chunk(fmt: str, alpaca: Template) -> None:
    mcqs = [_mcq("m1"), Mcq(**{**_mcq("m2"), "chunk_id": "c2"})]  # type: ignore[typeddict-item]
    sources = {"c1": "The Nova weighs 1336 grams.", "c2": "The Bramble Watch is capped at 2008.", "c3": "Unrelated."}
    retrieved = {"m1": {"contexts": ["A retrieved passage."]}, "m2": {"contexts": ["Another one."]}}
    for condition in ("oracle", "fine-tuned+oracle"):
        rows = build_items(mcqs, condition, fmt, retrieved, TEMPLATE, alpaca, sources)
        for row, mcq, own in zip(rows, mcqs, ("The Nova weighs 1336 grams.", "The Bramble Watch is capped at 2008.")):
            assert row["query"] == render(mcq, fmt, alpaca, f"Context:\n{own}\n\n").query  # its own chunk, alone
            assert "retrieved" not in row["query"] and "Another" not in row["query"]
    with pytest.raises(UserError, match="c1.*out of step"):
        build_items(mcqs, "oracle", fmt, retrieved, TEMPLATE, alpaca, {"c2": "x"})


def _words(text: str) -> int:
    """A fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


PASSAGES = ["one two three four five", "six seven eight nine ten", "eleven twelve thirteen fourteen fifteen"]


@pytest.mark.parametrize(
    "max_length,kept",
    [
        (100, PASSAGES),  # everything fits: left alone
        (20, PASSAGES),  # 1 ("Context:") + 15 + 5 (the cloze prefix and option) = 21 tokens = max_length + 1: fits
        (15, PASSAGES[:2]),  # the lowest-ranked chunk goes first
        (10, PASSAGES[:1]),
    ],
)
def test_fit_drops_whole_chunks_lowest_rank_first(max_length: int, kept: list[str], alpaca: Template) -> None:
    budget = Budget(_words, max_length)
    fitted = fit(_mcq(), "cloze", alpaca, PASSAGES, TEMPLATE, budget)
    assert fitted.rendered.query == "Context:\n" + "\n\n".join(kept) + "\n\nThe Tellavik Nova weighs "
    assert (fitted.shortened, fitted.truncated) == (kept != PASSAGES, False)
    assert not budget.over(fitted.rendered)


def test_fit_cuts_a_single_chunk_at_its_end_and_never_the_question(alpaca: Template) -> None:
    budget = Budget(_words, 8)  # 9 tokens: "Context:" + 3 words + the 5 of the question and option
    fitted = fit(_mcq(), "cloze", alpaca, PASSAGES, TEMPLATE, budget)
    assert fitted.rendered.query == "Context:\none two three…\n\nThe Tellavik Nova weighs "  # whole words, marked cut
    assert (fitted.shortened, fitted.truncated) == (True, False)
    letter = fit(_mcq(), "letter", alpaca, PASSAGES, TEMPLATE, Budget(_words, 30))
    plain = render(_mcq(), "letter", alpaca).query
    assert letter.rendered.query.endswith(plain) and letter.rendered.query.startswith("Context:\none two")
    assert letter.shortened and not letter.truncated and letter.rendered.choices == [" A", " B", " C", " D"]


def test_fit_drops_the_context_when_the_question_alone_is_too_long(alpaca: Template) -> None:
    budget = Budget(_words, 3)  # the cloze prefix and option alone are 5 tokens
    fitted = fit(_mcq(), "cloze", alpaca, PASSAGES, TEMPLATE, budget)
    assert fitted.rendered.query == "The Tellavik Nova weighs "  # the question is left whole: lm-eval cuts it, counted
    assert (fitted.shortened, fitted.truncated) == (True, True)
    assert fit(_mcq(), "cloze", alpaca, [], TEMPLATE, budget).truncated  # no context to shorten: only counted


def test_build_items_count_shortened_and_truncated_per_item(alpaca: Template) -> None:
    mcqs = [_mcq("m1"), _mcq("m2", cloze_prefix="Weighs "), _mcq("m3", cloze_prefix="a b c d e f g h i j k l m n")]
    retrieved = {mcq["mcq_id"]: {"contexts": PASSAGES} for mcq in mcqs}
    budget = Budget(_words, 12)  # 13 tokens: m1 keeps 1 chunk, m2 (2-token prefix + option) 2 chunks, m3 none
    rows = build_items(mcqs, "rag", "cloze", retrieved, TEMPLATE, alpaca, budget=budget)
    assert [row["query"].count("\n\n") for row in rows] == [1, 2, 0]  # one blank line after each kept chunk
    assert [(row["context_shortened"], row["truncated"]) for row in rows] == [(True, False), (True, False), (True, True)]
    plain = build_items(mcqs, "base", "cloze", retrieved, TEMPLATE, alpaca, budget=budget)
    assert [(row["context_shortened"], row["truncated"]) for row in plain] == [(False, False), (False, False), (False, True)]
    assert "truncated" not in build_items(mcqs, "base", "cloze", retrieved, TEMPLATE, alpaca)[0]  # no budget: not counted


def test_budget_encodes_whole_prompts_only_near_the_limit() -> None:
    """The quick estimate (query and options encoded apart) decides far from the limit; near it, the whole prompt is
    encoded, so a seam that adds tokens (here: joined texts cost 5 extra) is still caught."""
    encoded: list[str] = []

    def count(text: str) -> int:
        encoded.append(text)
        return len(text.split()) + (5 if "Q" in text and "opt" in text else 0)

    rendered = Rendered("Q " * 50, ["opt"] * 4, 0)   # 50 + 1 tokens apart, 56 joined
    assert not Budget(count, max_length=200).over(rendered)
    assert all(not ("Q" in text and "opt" in text) for text in encoded), "far from the limit, nothing joined is encoded"
    assert Budget(count, max_length=53).over(rendered)        # 56 > 54: caught by encoding the joined prompt
    assert not Budget(count, max_length=55).over(rendered)    # 56 <= 56
