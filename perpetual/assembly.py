"""The training set as the paper builds it: each chunk's raw text, then its flashcards.

Rows are typed (perpetual/rows.py): a chunk's text is a `Text`, a flashcard a `Question`; training renders them in
`train.template` with the model's tokenizer, which assemble@<task> does not know.

`assemble.flashcard_holdout` leaves out the flashcards (never the raw text) of a seeded share of the chunks, so that
evaluate@ can compare questions on chunks learned with flashcards against questions on chunks learned from raw text
alone (`hold_out_flashcards`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence

from perpetual.records import Chunk, Flashcard, Mcq, content_id
from perpetual.rows import Question, Text, chunk_text


def flashcard_row(card: Flashcard) -> Question:
    return Question(card["chunk_id"], card["question"], "", card["answer"])


def interleave(chunks: Sequence[Chunk], flashcards: Iterable[Flashcard], held_out: Collection[str] = ()) -> list[Text | Question]:
    """Each chunk's raw text, then its flashcards; a chunk in `held_out` keeps its raw text but loses its flashcards."""
    by_chunk: dict[str, list[Flashcard]] = defaultdict(list)
    for card in flashcards:
        by_chunk[card["chunk_id"]].append(card)
    rows: list[Text | Question] = []
    for chunk in chunks:
        rows.append(chunk_text(chunk))
        if chunk["chunk_id"] in held_out:
            continue
        rows.extend(flashcard_row(card) for card in by_chunk[chunk["chunk_id"]])
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


def split_validation(flashcards: Sequence[Flashcard], share: float, seed: int, held_out: Collection[str]) -> tuple[list[Flashcard], list[Flashcard]]:
    """(trained, validation): about `share` of the flashcards that would be trained (their chunk not in `held_out`),
    ranked by a hash of the seed and the question, left out as a validation set; each chunk keeps at least one
    flashcard in training, so its facts are still taught in the flashcards' form."""
    candidates = [card for card in flashcards if card["chunk_id"] not in held_out]
    ranked = sorted(candidates, key=lambda card: content_id(str(seed), card["chunk_id"], card["question"]))
    left = Counter(card["chunk_id"] for card in candidates)
    validation: list[Flashcard] = []
    for card in ranked:
        if len(validation) >= round(share * len(candidates)):
            break
        if left[card["chunk_id"]] > 1:
            left[card["chunk_id"]] -= 1
            validation.append(card)
    chosen = {id(card) for card in validation}
    return [card for card in flashcards if id(card) not in chosen], validation
