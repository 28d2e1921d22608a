"""The records passed between stages (one JSON object per line in data/)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, TypedDict

Letter = Literal["A", "B", "C", "D"]
LETTERS: tuple[Letter, ...] = ("A", "B", "C", "D")


class Document(TypedDict):
    doc_id: str
    task: str
    source: str  # path inside the source, URL#path, or dataset id#row
    language: str  # python | markdown | text
    text: str


class Chunk(TypedDict):
    chunk_id: str
    task: str
    source: str
    language: str
    text: str


class Flashcard(TypedDict):
    chunk_id: str
    question: str
    answer: str


class Mcq(TypedDict):
    mcq_id: str
    chunk_id: str
    question: str
    options: list[str]  # exactly 4, no letter prefixes
    answer: Letter
    # The text the options continue in the cloze format (for offline items, the sentence start they were cut from).
    cloze_prefix: str
    kind: str  # the answer's type (number, name, ...), used to balance letters within each type


# Per prediction row (data/predictions/<cell>.jsonl): its context was shortened to fit the model's max length; its
# prompt is still over the max length (lm-eval cuts its start).
FIT_FLAGS = ("context_shortened", "truncated")


def content_id(*parts: str, length: int = 16) -> str:
    """A stable id from content: the same text always gets the same id, on any machine."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


def model_fingerprint(folder: Path) -> str:
    """The model's identity for the cache: a hash of its files' bytes (config, weights, tokenizer)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
