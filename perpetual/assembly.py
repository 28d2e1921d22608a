"""The training set as the paper builds it: each chunk's raw text, then its flashcards.

Rows are stored as content, not yet as prompts: `{type, chunk_id, instruction, input, text}` (a doc row's `text` is
the chunk, a flashcard's `text` its answer). Training renders them in `train.template` (Alpaca or the model's own
chat format, perpetual/templates.py) with the model's tokenizer, which assemble@<task> does not know.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from perpetual.records import Chunk, Flashcard


def doc_row(chunk: Chunk) -> dict[str, Any]:
    return {"type": "doc", "chunk_id": chunk["chunk_id"], "instruction": "", "input": "", "text": chunk["text"]}


def qna_row(chunk_id: str, instruction: str, answer: str, input_text: str = "", row_type: str = "qna") -> dict[str, Any]:
    return {"type": row_type, "chunk_id": chunk_id, "instruction": instruction, "input": input_text, "text": answer}


def interleave(chunks: Sequence[Chunk], flashcards: Iterable[Flashcard]) -> list[dict[str, Any]]:
    by_chunk: dict[str, list[Flashcard]] = defaultdict(list)
    for card in flashcards:
        by_chunk[card["chunk_id"]].append(card)
    rows = []
    for chunk in chunks:
        rows.append(doc_row(chunk))
        rows.extend(qna_row(card["chunk_id"], card["question"], card["answer"]) for card in by_chunk[chunk["chunk_id"]])
    return rows
