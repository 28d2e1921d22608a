"""A deterministic teacher that needs no model: cloze questions cut from a chunk's own statements.

Each statement (a prose sentence or a line of code) is cut before its last salient span (a number, an identifier,
a quoted string, a capitalised name, else a final word). Some statements of each chunk become open flashcards for
training; the others become MCQs, which ask facts only (a statement ending in a plain word is cut before its last
fact, or not asked), with distractors of the same kind and form from the same chunk and its neighbours first
(perpetual/teacher/distractors.py). A statement is never both, so no MCQ repeats a flashcard. Distractors are
chosen only for the MCQs the quality rules keep (`McqDraft.make_distractors`): a large task's are mostly over
generate.max_mcqs_per_task, and the MCQs kept are the same as making every one's first.

Questions test knowledge, not surface cues: no span the question or the passage before the blank already shows
(another span of the statement is taken, or none), no boilerplate answer (Python keywords and builtins, function
words), no import lines or bibliography entries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from perpetual.records import Chunk, content_id
from perpetual.teacher.base import FlashcardDraft, GenerationResult, McqDraft
from perpetual.teacher.distractors import DistractorPool
from perpetual.teacher.quality import NearDuplicateIndex, normalise
from perpetual.teacher.statements import CONTEXT_CHARS, Statement, extract_statements, fact_statement, source_name, subject, tail


class OfflineTeacher:
    def __init__(self, seed: int, near_duplicate_threshold: float) -> None:
        self.seed = seed
        self.near_duplicate_threshold = near_duplicate_threshold

    def _rng(self, *parts: str) -> random.Random:
        return random.Random(content_id(str(self.seed), *parts))

    def generate(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> GenerationResult:
        result = GenerationResult()
        planned: list[tuple[Chunk, Statement]] = []
        pool = DistractorPool(chunks)
        without_facts = 0
        for chunk in chunks:
            statements = extract_statements(chunk)
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
                    fact = fact_statement(chunk, statement)
                    if fact is None:
                        without_facts += 1
                    else:
                        questions.append(fact)
            result.flashcards.extend(cards)
            planned.extend((chunk, statement) for statement in questions)
        # The same statement can occur twice (`severity = "amber"` in two classes): one copy taught by a flashcard
        # must not be asked by the other's MCQ.
        taught = {normalise(card.answer) for card in result.flashcards}
        asked = [(chunk, statement) for chunk, statement in planned if normalise(statement.text) not in taught]
        result.stats["requests"] = 0
        result.stats["statements_without_facts"] = without_facts
        result.stats["statements_taught_elsewhere"] = len(planned) - len(asked)
        result.stats["statements_without_distractors"] = result.stats["answers_echoing_the_question"] = 0
        for chunk, statement in asked:
            draft = self._mcq(chunk, statement, pool)
            if isinstance(draft, McqDraft):
                result.mcqs.append(draft)
            else:
                result.stats[draft] += 1
        return result

    def _flashcard(self, chunk: Chunk, statement: Statement) -> FlashcardDraft:
        prefix = statement.text[: statement.span_start].rstrip()
        question = f"In {source_name(chunk)} ({subject(chunk)}), how does this continue: \"{prefix} ...\"?"
        return FlashcardDraft(chunk_id=chunk["chunk_id"], question=question, answer=statement.text)

    def _mcq(self, chunk: Chunk, statement: Statement, pool: DistractorPool) -> McqDraft | str:
        """The statement's MCQ, or the name of the count that says why it has none.

        Its distractors are made only if the quality rules keep it (`McqDraft.complete`): a large task's MCQs are
        mostly over generate.max_mcqs_per_task, and ranking the task's spans for each was most of the teacher's time.
        """
        answer = statement.answer
        before = chunk["text"][: statement.start + statement.span_start]
        cloze_prefix = tail(before, CONTEXT_CHARS)
        shown = statement.text[: statement.span_start].rstrip()
        question = f"In {source_name(chunk)} ({subject(chunk)}), what completes \"{shown} ___\"?"
        passage = f"{question} {cloze_prefix}"
        if not pool.usable(chunk, statement, passage):
            return "statements_without_distractors"
        if pool.cued(chunk, statement, passage):
            return "answers_echoing_the_question"

        def make_distractors() -> tuple[str, ...]:
            distractors = pool.choose(chunk, statement, passage, self._rng(chunk["chunk_id"], statement.text))
            assert distractors is not None, "usable() found enough"
            return tuple(distractors)

        return McqDraft(
            chunk_id=chunk["chunk_id"],
            question=question,
            options=(answer,),
            correct_index=0,
            cloze_prefix=cloze_prefix,
            kind=statement.kind,
            make_distractors=make_distractors,
        )
