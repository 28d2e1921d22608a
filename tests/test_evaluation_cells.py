"""perpetual/evaluation.py cells from saved predictions, and perpetual/retention.py's pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perpetual.analysis import cells_from_predictions, compare, flashcard_comparison, retention_from_rows
from perpetual.errors import UserError
from perpetual.retention import (
    Instruction,
    answer_rows,
    answer_text,
    classify,
    follows_format,
    generation_budget,
    load_instructions,
    reference_tokens,
    similarity,
)
from perpetual.statistics import knowledge_consistency, mcnemar_exact
from perpetual.templates import Template

EOS, EOS_ID = "<|endoftext|>", 0


def _rows(condition: str, fmt: str, correct: list[int], shift: float = 0.0) -> list[dict]:
    rows = []
    for index, ok in enumerate(correct):
        gold = index % 4
        lls = [-4.0 - index % 3, -3.0, -2.5 + shift, -2.0]
        lls[gold] = 0.0 if ok else -9.0
        pred = max(range(4), key=lls.__getitem__)
        rows.append({"condition": condition, "format": fmt, "mcq_id": f"q{index}", "gold": gold, "loglikelihoods": lls,
                     "pred": pred, "pred_norm": pred, "acc": float(ok), "acc_norm": float(ok)})  # fmt: skip
    return rows


def test_cells_from_predictions_tests_each_pair_and_adds_consistency() -> None:
    base = _rows("base", "cloze", [0] * 30 + [1] * 10)
    tuned = _rows("fine-tuned", "cloze", [1] * 30 + [1] * 10, shift=1.0)
    rag = _rows("rag", "cloze", [1] * 20 + [0] * 20)
    both = _rows("fine-tuned+rag", "cloze", [1] * 20 + [0] * 20)
    # Pairing is by question id, not position: shuffled rows give the same cells.
    cells = cells_from_predictions(base + tuned[::-1] + rag + both, bootstrap_samples=200, seed=0, alpha=0.05)
    fine = cells["fine-tuned"]["cloze"]
    assert fine["n"] == 40 and fine["acc"] == 1.0 and fine["learned"] is True
    assert fine["p_value_vs_base"] == mcnemar_exact([r["acc"] for r in base], [r["acc"] for r in tuned])["p_value"]
    expected = knowledge_consistency([r["loglikelihoods"] for r in base], [r["loglikelihoods"] for r in tuned])
    assert (fine["spearman_vs_base"], fine["kl_vs_base"]) == (expected["spearman"], expected["kl"])
    assert cells["rag"]["cloze"]["retrieval_helped"] is False and "learned" not in cells["rag"]["cloze"]  # changed, not better
    assert "spearman_vs_base" not in cells["rag"]["cloze"]  # same model: consistency is about fine-tuning
    assert cells["fine-tuned+rag"]["cloze"]["improved"] is False and cells["fine-tuned+rag"]["cloze"]["kl_vs_rag"] == 0.0
    assert "p_value_vs_base" not in cells["base"]["cloze"]
    assert cells["base"]["cloze"]["ci_low"] <= 0.25 <= cells["base"]["cloze"]["ci_high"]


def _outcomes(condition: str, fmt: str, correct: dict[str, float]) -> list[dict]:
    return [{"condition": condition, "format": fmt, "mcq_id": mcq_id, "acc": acc} for mcq_id, acc in correct.items()]


def test_flashcard_comparison_sets_gains_of_the_two_groups_against_each_other() -> None:
    chunk_of = {f"{chunk}-q{k}": chunk for chunk in [f"w{i}" for i in range(12)] + [f"r{i}" for i in range(8)] + ["x"] for k in range(5)}
    groups = {"with_flashcards": [f"w{i}" for i in range(12)], "raw_only": [f"r{i}" for i in range(8)]}
    base = {mcq_id: float(k % 4 == 0) for k, mcq_id in enumerate(chunk_of)}  # the same guessing in both groups
    # With flashcards the fine-tuned model knows every answer; raw text only teaches it nothing beyond base.
    clear = {mcq_id: 1.0 if chunk_of[mcq_id].startswith("w") else base[mcq_id] for mcq_id in chunk_of}
    predictions = _outcomes("base", "cloze", base) + _outcomes("fine-tuned", "cloze", clear) + _outcomes("rag", "cloze", clear)
    predictions += _outcomes("base", "letter", base) + _outcomes("fine-tuned", "letter", base)  # nothing learned
    result = flashcard_comparison(predictions, chunk_of, groups, seed=0, alpha=0.05)
    cloze, letter = result["cloze"], result["letter"]
    assert cloze["with_flashcards"]["n"] == 60 and cloze["raw_only"]["n"] == 40  # chunk "x" is in neither group
    assert (cloze["with_flashcards"]["chunks"], cloze["raw_only"]["chunks"]) == (12, 8)
    assert cloze["with_flashcards"]["acc_fine_tuned"] == 1.0 and cloze["raw_only"]["gain"] == 0.0
    assert cloze["with_flashcards"]["gain"] == round(1.0 - cloze["with_flashcards"]["acc_base"], 4)
    assert cloze["gain_difference"] > 0.5 and cloze["p_value"] < 0.01 and cloze["flashcards_helped"] is True
    assert letter["gain_difference"] == 0.0 and letter["p_value"] == 1.0 and letter["flashcards_helped"] is False
    assert flashcard_comparison(predictions, chunk_of, groups, seed=0, alpha=0.05) == result  # seeded
    # No hold-out (assemble.flashcard_holdout: 0) or no base condition: nothing to compare.
    assert flashcard_comparison(predictions, chunk_of, {**groups, "raw_only": []}, seed=0, alpha=0.05) == {}
    tuned_only = [row for row in predictions if row["condition"] != "base"]
    assert flashcard_comparison(tuned_only, chunk_of, groups, seed=0, alpha=0.05) == {}


def test_cells_from_predictions_reject_unpaired_questions() -> None:
    with pytest.raises(ValueError):
        cells_from_predictions(_rows("base", "letter", [1, 0, 1]) + _rows("fine-tuned", "letter", [1, 0]), 200, 0, 0.05)


def test_cells_worse_than_reference_is_not_learned() -> None:
    cells = cells_from_predictions(_rows("base", "letter", [1] * 30) + _rows("fine-tuned", "letter", [0] * 30), 200, 0, 0.05)
    assert cells["fine-tuned"]["letter"]["p_value_vs_base"] < 0.05 and cells["fine-tuned"]["letter"]["learned"] is False


@pytest.mark.parametrize(
    "tokens,text,expected",
    [
        ([5, 6, EOS_ID], "The opposite is short." + EOS, "eos"),
        ([5, 6], "The opposite is short.\n### Instruction", "header"),
        ([5, 6], "The opposite is short.\n\n  ###", "header"),
        ([5, 6], "Marrowgate sells kettles and watches and more kettles", "run_on"),
        ([5, 6], "short ### not a header mid-line", "run_on"),
        ([EOS_ID], EOS, "empty"),
        ([5, 6], "\n\n###", "empty"),
        ([5, 6, EOS_ID], "\n### Input:" + EOS, "empty"),
        ([5, 6, EOS_ID], "64.\n### Input:" + EOS, "eos"),
    ],
)
def test_classify(tokens: list[int], text: str, expected: str, alpaca: Template) -> None:
    assert (alpaca.eos_token, alpaca.stop_token_ids()) == (EOS, [EOS_ID])
    assert classify(tokens, text, alpaca) == expected
    assert classify(tokens, text, alpaca, stop_ids=[EOS_ID]) == expected  # stop ids computed once by the caller
    assert follows_format(expected) == (expected in ("eos", "header"))  # type: ignore[arg-type]


def test_classify_in_the_chat_template(chat: Template) -> None:
    end = chat.end_of_answer
    end_id = chat.stop_token_ids()[-1]
    assert end == "<|im_end|>" and chat.stop_token_ids() == [EOS_ID, end_id]
    assert classify([5, 6, end_id], "Paris." + end, chat) == "eos"
    assert classify([end_id], end, chat) == "empty"
    # No Alpaca headers in a chat answer: "###" is text, and an answer without end-of-turn runs on.
    assert classify([5, 6], "Paris.\n### Instruction", chat) == "run_on"


def test_load_instructions(tmp_path: Path) -> None:
    path = tmp_path / "general.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi!"}) + "\n" + json.dumps({"instruction": "Add", "input": "2+2", "output": "4"}) + "\n")
    items = load_instructions(path)
    assert (items[0].instruction, items[0].input, items[0].reference) == ("Say hi.", "", "Hi!")
    assert (items[1].instruction, items[1].input) == ("Add", "2+2")
    assert len(load_instructions(path, limit=1)) == 1
    path.write_text(json.dumps({"instruction": "Say hi."}) + "\n")
    with pytest.raises(UserError, match="output"):
        load_instructions(path)
    path.write_text("")
    with pytest.raises(UserError):
        load_instructions(path)


def test_compare_and_answer_rows(tmp_path: Path) -> None:
    def measured(follows: list[bool], per_item: list[float], close: float) -> dict:
        stops = ["eos" if ok else "run_on" for ok in follows]
        return {"per_item_loglik": [(value * 4, 4) for value in per_item], "follows": follows, "stops": stops, "answers": ["a"] * len(follows),
                "prompts": [f"p{i}" for i in range(len(follows))], "similarity": [close - 0.01 * i for i in range(len(follows))],
                "answer_tokens": [5 if ok else 30 for ok in follows], "budget": 30}  # fmt: skip

    base = measured([True] * 20, [-1.0 - 0.01 * i for i in range(20)], close=0.8)
    tuned = measured([False] * 20, [-3.0 - 0.01 * i for i in range(20)], close=0.5)
    result = compare({"base": base, "fine-tuned": tuned})
    assert result["base"]["format_following"] == 1.0 and result["fine-tuned"]["format_following"] == 0.0
    assert result["fine-tuned"]["stop_run_on"] == 20
    assert result["p_value_format"] < 1e-5 and result["p_value_loglik"] < 1e-3
    # The similarity: a mean per model, and a paired test (every instruction's answer moved 0.3 away).
    assert (result["base"]["similarity"], result["fine-tuned"]["similarity"]) == (0.705, 0.405)
    assert result["p_value_similarity"] < 1e-3
    assert (result["base"]["budget"], result["base"]["answer_tokens_mean"], result["fine-tuned"]["answer_tokens_mean"]) == (30, 5.0, 30.0)
    assert "p_value_loglik" not in compare({"base": base}) and "p_value_similarity" not in compare({"base": base})
    path = tmp_path / "general.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": str(i)}) + "\n" for i in range(20)))
    rows = answer_rows(load_instructions(path), {"base": base, "fine-tuned": tuned})
    assert len(rows) == 40 and rows[0]["model"] == "base" and rows[-1]["stop"] == "run_on"
    assert rows[1]["prompt"] == "p1" and rows[1]["reference"] == "1"
    assert (rows[1]["similarity"], rows[1]["answer_tokens"], rows[1]["budget"]) == (0.79, 5, 30)
    # The analysis stage gets the same figures back from the rows alone.
    assert compare(retention_from_rows(rows)) == result
    # Rows written before the similarity, lengths and budget existed: those are left out, not claimed as 0.
    old = [{key: value for key, value in row.items() if key not in ("similarity", "answer_tokens", "budget")} for row in rows]
    before = compare(retention_from_rows(old))
    assert "similarity" not in before["base"] and "budget" not in before["base"] and "p_value_similarity" not in before
    assert before["p_value_loglik"] == result["p_value_loglik"]


def test_similarity_does_not_change_when_an_answer_does_not() -> None:
    base = {"per_item_loglik": [(-4.0, 4)] * 10, "follows": [True] * 10, "stops": ["eos"] * 10, "similarity": [0.5 + 0.01 * i for i in range(10)]}
    assert compare({"base": base, "fine-tuned": dict(base)})["p_value_similarity"] == 1.0


class _WordTokenizer:
    """One token per word (ids 1, 2, ... by position); "</s>" is id 0, and add_special_tokens puts a BOS (id 9) first."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [9] * add_special_tokens + [index + 1 for index, _ in enumerate(text.split())]}

    def convert_tokens_to_ids(self, token: str) -> int:
        return 0 if token == "</s>" else 7


def test_the_generation_budget_comes_from_the_references_lengths() -> None:
    tokenizer = _WordTokenizer()
    template = Template("alpaca", "</s>", "</s>", ("###",), _tokenizer=tokenizer)
    items = [Instruction("Say it.", "", reference) for reference in ("one two three", "one", "one two three four five six")]
    references = reference_tokens(tokenizer, items, template)
    assert references == [[1, 2, 3, 0], [1, 0], [1, 2, 3, 4, 5, 6, 0]]  # no BOS; the closing token counted
    lengths = [len(reference) for reference in references]
    assert generation_budget(lengths, 2.0) == 14  # twice the longest: 6 words + the closing token
    assert generation_budget(lengths[:2], 2.0) == 8  # without the long one, a shorter budget
    assert generation_budget(lengths, 1.5) == 11  # rounded up
    assert generation_budget([10], 1.1) == 11  # not 12: 1.1 * 10 is 11.000000000000002 in floats
    with pytest.raises(ValueError):
        generation_budget([], 2.0)


def test_answer_text_strips_the_templates_stop_tokens(alpaca: Template, chat: Template) -> None:
    assert answer_text(" Paris." + EOS, alpaca) == "Paris."
    assert answer_text("64.\n### Input:\nmore", alpaca) == "64."
    assert answer_text("64.\n\n##", alpaca) == "64.\n\n##"  # no stop string yet: kept
    assert answer_text("Paris." + chat.end_of_answer, chat) == "Paris."
    assert answer_text(EOS, alpaca) == "" and answer_text("no stop at all", chat) == "no stop at all"


class _BagOfWords:
    """An embedder: unit-length word counts over a fixed vocabulary; records what it was asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], batch_size: int, normalize_embeddings: bool, convert_to_numpy: bool, show_progress_bar: bool):
        import numpy as np

        self.seen += texts
        words = ["paris", "is", "the", "capital", "red", "blue", "green"]
        vectors = np.array([[text.lower().strip(".").split().count(word) for word in words] for text in texts], dtype=float)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_similarity_is_the_cosine_of_answer_and_reference() -> None:
    embedder = _BagOfWords()
    values = similarity(embedder, ["Paris is the capital", "red blue", "", "Paris"], ["paris is the capital", "paris is the capital", "red", "paris is the capital"], 8)
    assert values[0] == pytest.approx(1.0) and values[1] == 0.0 and values[2] == 0.0
    assert values[3] == pytest.approx(0.5)  # one of four words: 1 / sqrt(4)
    assert "" not in embedder.seen and len(embedder.seen) == 6  # an empty answer is not embedded
    with pytest.raises(ValueError):
        similarity(embedder, ["a"], [], 8)


def test_cells_count_shortened_contexts_and_cut_prompts_and_test_the_oracle() -> None:
    base = _rows("base", "cloze", [0] * 30)
    oracle = _rows("oracle", "cloze", [1] * 30)
    for index, row in enumerate(base + oracle):
        row |= {"context_shortened": row["condition"] == "oracle" and index % 3 == 0, "truncated": index % 10 == 0}
    tuned = _rows("fine-tuned", "cloze", [0] * 30)
    tuned_oracle = _rows("fine-tuned+oracle", "cloze", [0] * 30)
    cells = cells_from_predictions(base + oracle + tuned + tuned_oracle, bootstrap_samples=200, seed=0, alpha=0.05)
    assert (cells["base"]["cloze"]["context_shortened"], cells["base"]["cloze"]["truncated"]) == (0, 3)
    assert (cells["oracle"]["cloze"]["context_shortened"], cells["oracle"]["cloze"]["truncated"]) == (10, 3)
    assert "truncated" not in cells["fine-tuned"]["cloze"]  # rows from before the counts existed: not claimed as 0
    assert cells["oracle"]["cloze"]["reading_helped"] is True and cells["oracle"]["cloze"]["p_value_vs_base"] < 0.05
    assert cells["fine-tuned+oracle"]["cloze"]["reading_helped_fine_tuned"] is False
    assert "p_value_vs_fine-tuned" in cells["fine-tuned+oracle"]["cloze"] and "kl_vs_fine-tuned" not in cells["fine-tuned+oracle"]["cloze"]
