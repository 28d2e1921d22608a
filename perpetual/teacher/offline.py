"""A deterministic teacher that needs no model: cloze questions cut from a chunk's own statements.

Each statement (a prose sentence or a line of code) is cut before its last salient span (a number, an identifier,
a quoted string, a capitalised name, else a final word). Some statements of each chunk become open flashcards for
training; the others become MCQs whose distractors are spans of the same kind, language and similar length from
other statements of the same task. A statement is never both, so no MCQ repeats a flashcard.

Questions test knowledge, not surface cues: no span the question or the passage before the blank already shows
(another span of the statement is taken, or none), no boilerplate answer (Python keywords and builtins, function
words), no import lines or bibliography entries.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from perpetual.records import Chunk, content_id
from perpetual.teacher.base import FlashcardDraft, GenerationResult, McqDraft
from perpetual.teacher.quality import NearDuplicateIndex, mentions, normalise
from perpetual.teacher.statements import CONTEXT_CHARS, Statement, extract_statements, pool_key, source_name, subject, tail


class OfflineTeacher:
    def __init__(self, seed: int, near_duplicate_threshold: float) -> None:
        self.seed = seed
        self.near_duplicate_threshold = near_duplicate_threshold

    def _rng(self, *parts: str) -> random.Random:
        return random.Random(content_id(str(self.seed), *parts))

    def generate(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> GenerationResult:
        result = GenerationResult()
        planned: list[tuple[Chunk, Statement]] = []
        pool: dict[tuple[str, str], set[str]] = defaultdict(set)
        for chunk in chunks:
            statements = extract_statements(chunk)
            for statement in statements:
                pool[pool_key(chunk, statement.kind)].add(statement.answer)
            # Alternate statements between flashcards and MCQs so both cover the whole chunk.
            order = statements[0::2] + statements[1::2]
            cards: list[FlashcardDraft] = []
            questions: list[Statement] = []
            seen = NearDuplicateIndex(self.near_duplicate_threshold)
            for statement in order:
                card = self._flashcard(chunk, statement)
                # A card the quality rules would drop as a near-duplicate is replaced by the next statement.
                if len(cards) < flashcards_per_chunk and not seen.find(card.question):
                    seen.add(card.question)
                    cards.append(card)
                elif len(questions) < mcqs_per_chunk:
                    questions.append(statement)
            result.flashcards.extend(cards)
            planned.extend((chunk, statement) for statement in questions)
        # The same statement can occur twice (`severity = "amber"` in two classes): one copy taught by a flashcard
        # must not be asked by the other's MCQ.
        taught = {normalise(card.answer) for card in result.flashcards}
        asked = [(chunk, statement) for chunk, statement in planned if normalise(statement.text) not in taught]
        for chunk, statement in asked:
            draft = self._mcq(chunk, statement, pool)
            if draft is not None:
                result.mcqs.append(draft)
        result.stats["requests"] = 0
        result.stats["statements_taught_elsewhere"] = len(planned) - len(asked)
        result.stats["statements_without_distractors"] = len(asked) - len(result.mcqs)
        return result

    def _flashcard(self, chunk: Chunk, statement: Statement) -> FlashcardDraft:
        prefix = statement.text[: statement.span_start].rstrip()
        question = f"In {source_name(chunk)} ({subject(chunk)}), how does this continue: \"{prefix} ...\"?"
        return FlashcardDraft(chunk_id=chunk["chunk_id"], question=question, answer=statement.text)

    def _mcq(self, chunk: Chunk, statement: Statement, pool: dict[tuple[str, str], set[str]]) -> McqDraft | None:
        answer = statement.answer
        before = chunk["text"][: statement.start + statement.span_start]
        cloze_prefix = tail(before, CONTEXT_CHARS)
        shown = statement.text[: statement.span_start].rstrip()
        question = f"In {source_name(chunk)} ({subject(chunk)}), what completes \"{shown} ___\"?"
        # A distractor the passage or question mentions is a cue too (the wrong way): left out like the answer.
        candidates = sorted(
            option
            for option in pool[pool_key(chunk, statement.kind)]
            if option.casefold() != answer.casefold() and not mentions(f"{question} {cloze_prefix}", option)
        )
        distinct: dict[str, str] = {}
        for option in candidates:
            distinct.setdefault(option.casefold(), option)
        candidates = list(distinct.values())
        if len(candidates) < 3:
            return None
        rng = self._rng(chunk["chunk_id"], statement.text)
        rng.shuffle(candidates)
        # Nearest in length first, so the correct option is not given away by being the longest or shortest.
        candidates.sort(key=lambda option: abs(len(option) - len(answer)))
        distractors = candidates[:3]
        return McqDraft(
            chunk_id=chunk["chunk_id"],
            question=question,
            options=(answer, *distractors),
            correct_index=0,
            cloze_prefix=cloze_prefix,
            kind=statement.kind,
        )
