"""The training set as the paper builds it: each chunk's raw text, then its flashcards.

Rows are stored as content, not yet as prompts: `{type, chunk_id, instruction, input, text}` (a doc row's `text` is
the chunk, a flashcard's `text` its answer). Training renders them in `train.template` (Alpaca or the model's own
chat format, perpetual/templates.py) with the model's tokenizer, which assemble@<task> does not know.

`assemble.flashcard_holdout` leaves out the flashcards (never the raw text) of a seeded share of the chunks, so that
evaluate@ can compare questions on chunks learned with flashcards against questions on chunks learned from raw text
alone (`hold_out_flashcards`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from perpetual.records import Chunk, Flashcard, Mcq, content_id


def doc_row(chunk: Chunk) -> dict[str, Any]:
    return {"type": "doc", "chunk_id": chunk["chunk_id"], "instruction": "", "input": "", "text": chunk["text"]}


def qna_row(chunk_id: str, instruction: str, answer: str, input_text: str = "", row_type: str = "qna") -> dict[str, Any]:
    return {"type": row_type, "chunk_id": chunk_id, "instruction": instruction, "input": input_text, "text": answer}


def interleave(chunks: Sequence[Chunk], flashcards: Iterable[Flashcard], held_out: Collection[str] = ()) -> list[dict[str, Any]]:
    """Each chunk's raw text, then its flashcards; a chunk in `held_out` keeps its raw text but loses its flashcards."""
    by_chunk: dict[str, list[Flashcard]] = defaultdict(list)
    for card in flashcards:
        by_chunk[card["chunk_id"]].append(card)
    rows = []
    for chunk in chunks:
        rows.append(doc_row(chunk))
        if chunk["chunk_id"] in held_out:
            continue
        rows.extend(qna_row(card["chunk_id"], card["question"], card["answer"]) for card in by_chunk[chunk["chunk_id"]])
    return rows


def hold_out_flashcards(chunks: Sequence[Chunk], flashcards: Iterable[Flashcard], mcqs: Iterable[Mcq], share: float, seed: int) -> dict[str, list[str]]:
    """Which chunks are trained on raw text only (`raw_only`) and which with their flashcards (`with_flashcards`).

    Only chunks that have both flashcards and MCQs take part: holding out a chunk without MCQs measures nothing, and
    a chunk the teacher gave no flashcards is raw-only by accident, not by the draw, so it is in neither group. The
    chunks are ranked by a hash of the seed and their id (a chunk's rank does not depend on the others, so adding
    chunks leaves the draw of the rest alone) and taken in that order until their MCQs are closest to `share` of the
    taking part chunks' MCQs: the chunks differ in how many questions they hold, and it is the questions that need
    counting in each group. At least one chunk is held out when `share` > 0, and at least one always keeps its
    flashcards, so neither group is empty.
    """
    with_cards = {card["chunk_id"] for card in flashcards}
    questions = Counter(mcq["chunk_id"] for mcq in mcqs)
    taking_part = [chunk["chunk_id"] for chunk in chunks if chunk["chunk_id"] in with_cards and questions[chunk["chunk_id"]]]
    ranked = sorted(taking_part, key=lambda chunk_id: (content_id(str(seed), chunk_id), chunk_id))
    target = share * sum(questions[chunk_id] for chunk_id in taking_part)
    held: list[str] = []
    count = 0
    for chunk_id in ranked[:-1] if share > 0 else []:
        after = count + questions[chunk_id]
        if held and (count >= target or after - target > target - count):
            break
        held.append(chunk_id)
        count = after
    held_set = set(held)
    return {"raw_only": sorted(held_set), "with_flashcards": sorted(set(taking_part) - held_set)}
