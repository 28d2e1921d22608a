"""The training set as the paper builds it: each chunk's raw text, then its flashcards in the Alpaca template.

Rows keep `prompt` and `completion` apart so training can put the loss on everything (the paper) or on the
answers only; the trainer appends the model's own EOS token, which is why no EOS string is baked in here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

from perpetual.records import Chunk, Flashcard, Mcq

# The Alpaca template the paper used (unsloth's alpaca_prompt), with the question as the instruction.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    return ALPACA_TEMPLATE.format(instruction=instruction, input=input_text)


def doc_row(chunk: Chunk) -> dict[str, Any]:
    return {"type": "doc", "chunk_id": chunk["chunk_id"], "prompt": "", "completion": chunk["text"]}


def qna_row(chunk_id: str, instruction: str, answer: str, input_text: str = "", row_type: str = "qna") -> dict[str, Any]:
    return {"type": row_type, "chunk_id": chunk_id, "prompt": alpaca_prompt(instruction, input_text), "completion": answer}


def interleave(chunks: Sequence[Chunk], flashcards: Iterable[Flashcard]) -> list[dict[str, Any]]:
    by_chunk: dict[str, list[Flashcard]] = defaultdict(list)
    for card in flashcards:
        by_chunk[card["chunk_id"]].append(card)
    rows = []
    for chunk in chunks:
        rows.append(doc_row(chunk))
        rows.extend(qna_row(card["chunk_id"], card["question"], card["answer"]) for card in by_chunk[chunk["chunk_id"]])
    return rows


def eval_rows(mcqs: Iterable[Mcq]) -> list[dict[str, Any]]:
    return [dict(mcq) for mcq in mcqs]
