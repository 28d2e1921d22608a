"""perpetual/assembly.py: the paper's interleaved training mix, rendered in the Alpaca template."""

from __future__ import annotations

from perpetual.assembly import interleave
from perpetual.records import Chunk, Flashcard
from perpetual.templates import ALPACA_TEMPLATE, Template
from perpetual.training import training_examples


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
    assert rows[0] == {"type": "doc", "chunk_id": "c1", "instruction": "", "input": "", "text": "def one(): return 1"}
    first_card, second_card = rows[1], rows[2]
    assert first_card["instruction"] == "What does one return?" and first_card["text"] == "1"
    assert second_card["instruction"] == "What is the name of the first function?"  # cards keep their order
    assert rows[4]["text"] == "2"
    assert all("dropped" not in row["text"] for row in rows)


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
