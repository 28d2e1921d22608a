"""A study is computed from its records (one per arm × cell), so arms run in other sessions still count."""

from __future__ import annotations

from typing import Any

import pytest

from perpetual.errors import UserError
from perpetual.study import markdown, record_name, study


def a_record(arm: str, task: str, right: list[int], questions: int = 6) -> dict[str, Any]:
    outcomes = {f"q{i}": float(i in right) for i in range(questions)}
    cell = {"n": questions, "base": 0.25, "fine_tuned": len(right) / questions, "ci": [0.1, 0.9], "gain": 0.1, "p_value_vs_base": 0.5,
            "rag": 0.5, "fine_tuned_rag": 0.6, "oracle": None}  # fmt: skip
    return {
        "arm": arm, "experiment": f"recipes-{task}-{arm}", "task": task, "model": "smollm2", "cloze": cell, "letter": cell,
        "guessability_cloze": 0.0, "training": {"tokens": 100, "train_runtime_s": 1.0}, "recipe": {"phases": [{"doc": 3}]},
        "commit": "0" * 40, "outcomes": {"cloze": outcomes, "letter": outcomes},
    }  # fmt: skip


def test_arms_are_compared_on_the_same_questions_from_their_records() -> None:
    records = [a_record("docs", "research", [0, 1]), a_record("pit", "research", [0, 2, 3, 4])]
    result = study(records, ["research"], ["smollm2"], "train.recipe")
    cloze = next(pair for pair in result["pairwise"] if pair["format"] == "cloze")
    assert (cloze["first"], cloze["second"], cloze["only_first"], cloze["only_second"], cloze["n"]) == ("docs", "pit", 1, 3, 6)
    assert all("outcomes" not in row for row in result["rows"]) and "| research | smollm2 | pit |" in markdown(result)
    assert record_name(records[0]) == "research-smollm2-docs.json"


def test_a_later_record_of_an_arm_replaces_the_earlier() -> None:
    records = [a_record("docs", "research", [0]), a_record("pit", "research", [1]), a_record("docs", "research", [0, 1, 2])]
    result = study(records, ["research"], ["smollm2"], "train.recipe")
    assert [row["cloze"]["fine_tuned"] for row in result["rows"] if row["arm"] == "docs"] == [0.5]


def test_arms_asked_different_questions_are_refused_by_name() -> None:
    with pytest.raises(UserError, match="docs and pit were asked different questions"):
        study([a_record("docs", "code", [0]), a_record("pit", "code", [0], questions=5)], ["code"], ["smollm2"], "train.recipe")


def test_a_task_no_arm_evaluated_is_named() -> None:
    with pytest.raises(UserError, match="evaluated products-smollm2"):
        study([a_record("docs", "code", [0]), a_record("pit", "code", [1])], ["code", "products"], ["smollm2"], "train.recipe")
