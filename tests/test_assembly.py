"""perpetual/assembly.py: the paper's interleaved training mix in the Alpaca template."""

from __future__ import annotations

from perpetual.assembly import ALPACA_TEMPLATE, alpaca_prompt, eval_rows, interleave
from perpetual.records import Chunk, Flashcard, Mcq


def _chunk(cid: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, task="code", source=f"{cid}.py", language="python", text=text)


def _card(cid: str, question: str, answer: str) -> Flashcard:
    return Flashcard(chunk_id=cid, question=question, answer=answer)


def test_interleave_puts_each_chunk_then_its_flashcards() -> None:
    chunks = [_chunk("c1", "def one(): return 1"), _chunk("c2", "def two(): return 2"), _chunk("c3", "X = 3")]
    cards = [
        _card("c2", "What does two return?", "2"),
        _card("c1", "What does one return?", "1"),
        _card("c1", "What is the name of the first function?", "one"),
        _card("orphan", "A card for a chunk that is not here?", "dropped"),
    ]
    rows = interleave(chunks, cards)
    assert [(row["type"], row["chunk_id"]) for row in rows] == [
        ("doc", "c1"),
        ("qna", "c1"),
        ("qna", "c1"),
        ("doc", "c2"),
        ("qna", "c2"),
        ("doc", "c3"),
    ]
    assert rows[0] == {"type": "doc", "chunk_id": "c1", "prompt": "", "completion": "def one(): return 1"}
    first_card, second_card = rows[1], rows[2]
    assert "### Instruction:\nWhat does one return?\n" in first_card["prompt"]
    assert "What is the name of the first function?" in second_card["prompt"]  # cards keep their order
    assert first_card["completion"] == "1"
    assert rows[4]["completion"] == "2"
    for row in rows[1:3] + rows[4:5]:
        assert row["prompt"].startswith("Below is an instruction")
        assert row["prompt"].endswith("### Response:\n")
        assert "### Instruction:" in row["prompt"] and "### Input:" in row["prompt"]
        assert row["completion"] not in row["prompt"].split("### Response:")[1]
    assert all("dropped" not in row["completion"] for row in rows)


def test_alpaca_prompt_matches_template() -> None:
    prompt = alpaca_prompt("Why?", "Because.")
    assert prompt == ALPACA_TEMPLATE.format(instruction="Why?", input="Because.")
    assert prompt.index("### Instruction:\nWhy?") < prompt.index("### Input:\nBecause.") < prompt.index("### Response:")
    assert "</s>" not in prompt and "<eos>" not in prompt  # the trainer appends the model's own EOS


def test_eval_rows_are_plain_copies() -> None:
    mcq = Mcq(mcq_id="m1", chunk_id="c1", question="q?", options=["a", "b", "c", "d"], answer="B", cloze_prefix="", kind="word")
    rows = eval_rows([mcq])
    assert rows == [dict(mcq)]
    rows[0]["answer"] = "C"
    assert mcq["answer"] == "B"
