"""perpetual/assembly.py: the paper's interleaved training mix, rendered in the Alpaca template; the flashcard
hold-out (assemble.flashcard_holdout) and stages/assemble.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from perpetual.assembly import hold_out_flashcards, interleave, split_validation
from perpetual.io import write_jsonl
from perpetual.records import Chunk, Flashcard, Mcq
from perpetual.rows import Question, Text
from perpetual.rows import examples as training_examples
from perpetual.templates import ALPACA_TEMPLATE, Template


def _chunk(cid: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, task="code", source=f"{cid}.py", language="python", text=text)


def _card(cid: str, question: str, answer: str) -> Flashcard:
    return Flashcard(chunk_id=cid, question=question, answer=answer)


def _mcq(cid: str, index: int) -> Mcq:
    return Mcq(mcq_id=f"{cid}-m{index}", chunk_id=cid, question=f"Q{index}?", options=["1", "2", "3", "4"], answer="A", cloze_prefix="", kind="number")


def _corpus(n: int = 60, questions: int = 4) -> tuple[list[Chunk], list[Flashcard], list[Mcq]]:
    chunks = [_chunk(f"c{i:02d}", f"X{i} = {i}") for i in range(n)]
    cards = [_card(f"c{i:02d}", f"What is X{i}? ({k})", str(i)) for i in range(n) for k in range(3)]
    mcqs = [_mcq(f"c{i:02d}", k) for i in range(n) for k in range(questions)]
    return chunks, cards, mcqs


def test_interleave_puts_each_chunk_then_its_flashcards() -> None:
    chunks = [_chunk("c1", "def one(): return 1"), _chunk("c2", "def two(): return 2"), _chunk("c3", "X = 3")]
    cards = [
        _card("c2", "What does two return?", "2"),
        _card("c1", "What does one return?", "1"),
        _card("c1", "What is the name of the first function?", "one"),
        _card("orphan", "A card for a chunk that is not here?", "dropped"),
    ]
    rows = interleave(chunks, cards)
    assert [(row.type, row.chunk_id) for row in rows] == [
        ("doc", "c1"),
        ("qna", "c1"),
        ("qna", "c1"),
        ("doc", "c2"),
        ("qna", "c2"),
        ("doc", "c3"),
    ]
    assert rows[0] == Text("c1", "def one(): return 1")
    assert rows[1] == Question("c1", "What does one return?", "", "1")
    assert rows[2] == Question("c1", "What is the name of the first function?", "", "one")  # cards keep their order
    assert rows[4] == Question("c2", "What does two return?", "", "2")
    assert "orphan" not in {row.chunk_id for row in rows}


def test_rows_render_in_the_alpaca_template(alpaca: Template) -> None:
    rows = interleave([_chunk("c1", "def one(): return 1")], [_card("c1", "What does one return?", "1")])
    doc, card = training_examples(rows, alpaca)
    assert doc == {"prompt": "", "completion": "def one(): return 1"}  # raw text stays raw; the trainer adds EOS
    assert card["prompt"] == ALPACA_TEMPLATE.format(instruction="What does one return?", input="")
    assert card["prompt"].startswith("Below is an instruction") and card["prompt"].endswith("### Response:\n")
    assert card["completion"] == "1" + alpaca.eos_token


def test_alpaca_prompt_matches_template(alpaca: Template) -> None:
    prompt = alpaca.instruction("Why?", "Because.")
    assert prompt == ALPACA_TEMPLATE.format(instruction="Why?", input="Because.")
    assert prompt.index("### Instruction:\nWhy?") < prompt.index("### Input:\nBecause.") < prompt.index("### Response:")
    assert alpaca.eos_token not in prompt


def test_hold_out_is_seeded_stable_and_takes_the_share_of_the_questions() -> None:
    chunks, cards, mcqs = _corpus()
    groups = hold_out_flashcards(chunks, cards, mcqs, 0.3, seed=0)
    held, kept = set(groups["raw_only"]), set(groups["with_flashcards"])
    assert held.isdisjoint(kept) and held | kept == {chunk["chunk_id"] for chunk in chunks}
    assert len(held) == 18  # 30% of 60 chunks of 4 questions each: 72 of 240 MCQs
    assert groups == hold_out_flashcards(list(reversed(chunks)), cards[::-1], mcqs[::-1], 0.3, seed=0)  # not order-dependent
    assert set(hold_out_flashcards(chunks, cards, mcqs, 0.3, seed=1)["raw_only"]) != held
    assert held != {f"c{i:02d}" for i in range(18)}  # drawn, not the first chunks
    # A chunk's draw does not depend on the others: adding chunks leaves the earlier ranks in place.
    more_chunks, more_cards, more_mcqs = _corpus(80)
    assert len(held & set(hold_out_flashcards(more_chunks, more_cards, more_mcqs, 0.3, seed=0)["raw_only"])) >= 15
    assert hold_out_flashcards(chunks, cards, mcqs, 0.0, seed=0)["raw_only"] == []


def test_hold_out_counts_questions_and_skips_chunks_that_measure_nothing() -> None:
    chunks, cards, mcqs = _corpus(40, questions=1)
    # Ten chunks carry most questions: the hold-out gets about the share of the questions, not of the chunks.
    mcqs += [_mcq(f"c{i:02d}", k) for i in range(10) for k in range(1, 10)]  # 40 + 90 = 130 MCQs
    no_mcqs = [_chunk(f"n{i}", f"N{i} = {i}") for i in range(20)]
    no_cards = [_chunk(f"z{i}", f"Z{i} = {i}") for i in range(5)]
    cards += [_card(f"n{i}", f"What is N{i}?", str(i)) for i in range(20)]
    mcqs += [_mcq(f"z{i}", 0) for i in range(5)]
    groups = hold_out_flashcards(chunks + no_mcqs + no_cards, cards, mcqs, 0.3, seed=0)
    taking_part = set(groups["raw_only"]) | set(groups["with_flashcards"])
    assert taking_part == {chunk["chunk_id"] for chunk in chunks}  # no chunk without MCQs or without flashcards
    held_questions = sum(1 for mcq in mcqs if mcq["chunk_id"] in groups["raw_only"])
    assert abs(held_questions - 0.3 * 130) <= 10  # within one big chunk of the target


def test_hold_out_leaves_both_groups_non_empty() -> None:
    chunks, cards, mcqs = _corpus(2)
    assert [len(group) for group in hold_out_flashcards(chunks, cards, mcqs, 0.01, seed=0).values()] == [1, 1]
    assert [len(group) for group in hold_out_flashcards(chunks, cards, mcqs, 0.99, seed=0).values()] == [1, 1]
    one = hold_out_flashcards(chunks[:1], cards, mcqs, 0.5, seed=0)
    assert one == {"raw_only": [], "with_flashcards": ["c00"]}


def test_held_out_chunks_keep_their_raw_text_but_lose_their_flashcards() -> None:
    chunks = [_chunk("c1", "def one(): return 1"), _chunk("c2", "def two(): return 2")]
    cards = [_card("c1", "What does one return?", "1"), _card("c2", "What does two return?", "2"), _card("c2", "Name?", "two")]
    rows = interleave(chunks, cards, held_out={"c2"})
    assert [(row.type, row.chunk_id) for row in rows] == [("doc", "c1"), ("qna", "c1"), ("doc", "c2")]
    assert rows[2] == Text("c2", "def two(): return 2")


def test_assemble_stage_writes_groups_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from perpetual import paths
    from perpetual.testing.params import params_dict, spec
    from stages import assemble

    chunks, cards, mcqs = _corpus(20)
    monkeypatch.chdir(tmp_path)
    write_jsonl(paths.chunks("demo"), chunks)
    write_jsonl(paths.flashcards("demo"), cards)
    write_jsonl(paths.mcqs("demo"), mcqs)
    params = params_dict({"pipeline": {"tasks": ["demo"], "seed": 0}, "fetch": {"sources": {"demo": spec("local", path="src")}},
                          "train": {"task_overrides": {}}, "assemble": {"flashcard_holdout": 0.25}})  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["assemble", "--task", "demo"])
    assemble.main()

    groups = json.loads(paths.flashcard_groups("demo").read_text())
    assert groups == {"share": 0.25, "seed": 0, **hold_out_flashcards(chunks, cards, mcqs, 0.25, 0)}
    held = set(groups["raw_only"])
    assert len(held) == 5
    train = list(datasets.load_from_disk(str(paths.dataset("demo")))["train"])
    assert {row["chunk_id"] for row in train if row["type"] == "doc"} == {chunk["chunk_id"] for chunk in chunks}
    assert {row["chunk_id"] for row in train if row["type"] == "qna"} == {chunk["chunk_id"] for chunk in chunks} - held
    metrics = json.loads(paths.stage_metrics("assemble", "demo").read_text())
    assert metrics["train_docs"] == 20 and metrics["train_flashcards"] == 45 and metrics["eval_mcqs"] == 80
    assert metrics["flashcard_holdout"] == {
        "share": 0.25, "chunks_raw_only": 5, "chunks_with_flashcards": 15, "flashcards_left_out": 15,
        "mcqs_raw_only": 20, "mcqs_with_flashcards": 60, "mcqs_in_neither": 0,
    }  # fmt: skip


def test_validation_flashcards_are_a_seeded_share_of_the_trained_ones_each_chunk_keeping_one() -> None:
    chunks, cards, _ = _corpus(20)
    held_out = {"c00", "c01"}
    trained, validation = split_validation(cards, 0.2, 0, held_out)
    assert len(validation) == round(0.2 * 54) and not {card["chunk_id"] for card in validation} & held_out
    assert sorted(map(json.dumps, trained + validation)) == sorted(map(json.dumps, cards))  # a partition: nothing lost
    kept = {card["chunk_id"] for card in trained}
    assert kept >= {chunk["chunk_id"] for chunk in chunks}  # every chunk keeps at least one flashcard
    assert split_validation(cards, 0.2, 0, held_out) == (trained, validation) and split_validation(cards, 0.2, 1, held_out)[1] != validation
    assert split_validation(cards, 0.9, 0, set())[1].__len__() == 40  # at most all but one per chunk
    assert split_validation(cards, 0.0, 0, set()) == (cards, [])
