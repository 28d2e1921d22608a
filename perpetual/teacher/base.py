"""The interface every teacher backend implements, and the drafts it returns.

A backend only proposes items; `perpetual.teacher.quality` validates, deduplicates, balances answer letters and
checks leakage for every backend alike, so the rules cannot drift between backends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from perpetual.records import Chunk

ItemKind = Literal["flashcards", "mcq"]


@dataclass(frozen=True)
class FlashcardDraft:
    chunk_id: str
    question: str
    answer: str


@dataclass(frozen=True)
class McqDraft:
    chunk_id: str
    question: str
    options: tuple[str, ...]  # as proposed; may carry letter prefixes or duplicates, which quality rules catch
    correct_index: int
    cloze_prefix: str = ""  # empty: the cloze format renders "Question: ...\nAnswer:" instead
    kind: str = "text"
    # Distractors not made yet (the offline teacher's): `options` holds the correct option alone, and the quality
    # rules call this only for the MCQs they keep, most of a large task's being over generate.max_mcqs_per_task.
    # Whatever it returns must pass the option rules (four distinct options in all, none empty or letter-prefixed).
    make_distractors: Callable[[], tuple[str, ...]] | None = field(default=None, compare=False, repr=False)

    def complete(self) -> McqDraft:
        """The draft with its distractors made."""
        if self.make_distractors is None:
            return self
        return replace(self, options=(*self.options, *self.make_distractors()), make_distractors=None)


@dataclass
class Failure:
    chunk_id: str
    kind: ItemKind
    reason: str


@dataclass
class GenerationResult:
    flashcards: list[FlashcardDraft] = field(default_factory=list)
    mcqs: list[McqDraft] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)  # requests, cache_hits, tokens, cost_usd, ...


class Teacher(Protocol):
    """Generates drafts for all chunks of one task (the offline backend draws distractors across chunks)."""

    def generate(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> GenerationResult: ...
