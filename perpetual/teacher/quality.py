"""Rules every generated item passes, whichever backend proposed it.

MCQs: exactly 4 distinct non-empty options without letter prefixes, one correct; positions shuffled so the correct
letter is balanced within each answer kind; near-duplicates removed; any MCQ whose question matches a training
flashcard is excluded (leakage), and so is any whose correct option the question or the passage before the blank
already shows. Every drop is counted by rule.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from perpetual.records import LETTERS, Flashcard, Mcq, content_id
from perpetual.teacher.base import FlashcardDraft, McqDraft

_LETTER_PREFIX = re.compile(r"^\s*(?:\(?[A-Da-d][.):]|[A-Da-d]\s*[-:])\s+")
_WORD = re.compile(r"[a-z0-9]+")


def mentions(text: str, answer: str) -> bool:
    """Whether `answer` occurs in `text` as a whole token (case-insensitive): a reader could copy it from there."""
    answer = answer.strip()
    if not answer or answer.isascii() and answer.lower() not in folded_case(text):
        return False  # known without a regex: re caches 512 patterns, and a task's thousands of spans each cost a compile
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text, re.IGNORECASE) is not None


# The characters outside ASCII that re.IGNORECASE matches to an ASCII letter: dotted and dotless i, long s, the Kelvin
# sign. str.lower() sends every other character outside ASCII to characters outside ASCII.
_TO_ASCII_LETTER = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def folded_case(text: str) -> str:
    """`text` in lower case, the characters above made their ASCII letter: an ASCII answer that `mentions` finds in
    `text` is, in lower case, a substring of this."""
    return (text if text.isascii() else text.translate(_TO_ASCII_LETTER)).lower()


def strip_letter_prefix(option: str) -> str:
    return _LETTER_PREFIX.sub("", option, count=1).strip()


def normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def _shingles(text: str) -> frozenset[str]:
    words = normalise(text).split()
    return frozenset(" ".join(words[i : i + 2]) for i in range(max(1, len(words) - 1)))


def bigram_similarity(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' word bigrams (what NearDuplicateIndex compares)."""
    a, b = _shingles(first), _shingles(second)
    return len(a & b) / len(a | b) if a | b else 1.0


class NearDuplicateIndex:
    """Jaccard similarity of word bigrams, looked up through an inverted index so n items cost far less than n^2."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._items: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = defaultdict(list)

    def find(self, text: str) -> bool:
        shingles = _shingles(text)
        # An item that shares s of the text's n shingles is at most s/n similar: one at the threshold t shares at
        # least t*n of them (one fewer is counted on, for rounding), so it is in the postings of any n - t*n + 1 of
        # them. Only the rarest are looked through: every question of a template shares the template's shingles, and
        # counting those made a task's n questions cost n^2.
        must_share = max(math.floor(self.threshold * len(shingles)) - 1, 0)
        rarest = sorted(shingles, key=lambda shingle: len(self._postings.get(shingle, ())))[: len(shingles) - must_share + 1]
        seen: set[int] = set()
        for shingle in rarest:
            for index in self._postings.get(shingle, ()):
                if index in seen:
                    continue
                seen.add(index)
                item = self._items[index]
                shared = len(shingles & item)
                union = len(shingles) + len(item) - shared
                if union and shared / union >= self.threshold:
                    return True
        return False

    def add(self, text: str) -> None:
        shingles = _shingles(text)
        for shingle in shingles:
            self._postings[shingle].append(len(self._items))
        self._items.append(shingles)


@dataclass
class QualityReport:
    dropped: Counter[str] = field(default_factory=Counter)

    def as_metrics(self) -> dict[str, int]:
        return {f"dropped_{rule}": count for rule, count in sorted(self.dropped.items())}


def clean_flashcards(drafts: Sequence[FlashcardDraft], threshold: float, report: QualityReport) -> list[Flashcard]:
    index = NearDuplicateIndex(threshold)
    kept: list[Flashcard] = []
    for draft in drafts:
        question, answer = draft.question.strip(), draft.answer.strip()
        if not question or not answer:
            report.dropped["flashcard_empty"] += 1
            continue
        if index.find(question):
            report.dropped["flashcard_duplicate"] += 1
            continue
        index.add(question)
        kept.append(Flashcard(chunk_id=draft.chunk_id, question=question, answer=answer))
    return kept


def _valid_options(draft: McqDraft, report: QualityReport) -> list[str] | None:
    options = [strip_letter_prefix(option) for option in draft.options]
    if len(options) != 4:
        report.dropped["mcq_not_4_options"] += 1
        return None
    if any(not option for option in options):
        report.dropped["mcq_empty_option"] += 1
        return None
    if len({option.casefold() for option in options}) != 4:
        report.dropped["mcq_duplicate_options"] += 1
        return None
    if not 0 <= draft.correct_index < 4:
        report.dropped["mcq_bad_answer"] += 1
        return None
    return options


def clean_mcqs(
    drafts: Sequence[McqDraft],
    flashcards: Sequence[Flashcard],
    threshold: float,
    seed: int,
    report: QualityReport,
    max_mcqs: int | None = None,
) -> list[Mcq]:
    flashcard_index = NearDuplicateIndex(threshold)
    for card in flashcards:
        flashcard_index.add(card.get("question", ""))
    # A fact a flashcard answer states outright leaks too, however differently the two questions are worded.
    taught = " | ".join(f" {normalise(card.get('answer', ''))} " for card in flashcards)
    mcq_index = NearDuplicateIndex(threshold)
    accepted: list[tuple[McqDraft, list[str]]] = []
    for draft in drafts:
        if draft.make_distractors is None:
            options = _valid_options(draft, report)
            if options is None:
                continue
        else:  # the correct option alone: the rules up to the cap ask nothing else, so only the MCQs kept get distractors
            options = [strip_letter_prefix(option) for option in draft.options]
        question = draft.question.strip()
        if not question:
            report.dropped["mcq_empty_question"] += 1
            continue
        if flashcard_index.find(question) or _states_answer(draft, options[draft.correct_index], taught):
            report.dropped["mcq_leaked_from_flashcards"] += 1
            continue
        # The answer must be known, not copied: never in the question, never in the passage before the blank.
        if mentions(question, options[draft.correct_index]):
            report.dropped["mcq_answer_in_question"] += 1
            continue
        if mentions(draft.cloze_prefix, options[draft.correct_index]):
            report.dropped["mcq_answer_in_passage"] += 1
            continue
        # Offline cloze items share a template, so their identity is the passage they continue, not the wording.
        identity = f"{question} {draft.cloze_prefix[-120:]} {options[draft.correct_index]}"
        if mcq_index.find(identity):
            report.dropped["mcq_duplicate"] += 1
            continue
        mcq_index.add(identity)
        accepted.append((draft, options))
    if max_mcqs is not None and len(accepted) > max_mcqs:
        report.dropped["mcq_over_task_cap"] += len(accepted) - max_mcqs
        keep = sorted(random.Random(content_id(str(seed), "cap")).sample(range(len(accepted)), max_mcqs))
        accepted = [accepted[index] for index in keep]
    return balance_letters(_complete(accepted, report), seed)


def _complete(accepted: Sequence[tuple[McqDraft, list[str]]], report: QualityReport) -> list[tuple[McqDraft, list[str]]]:
    """The accepted MCQs with their distractors made where they were not yet: the same MCQs as making every draft's
    first, as long as what `make_distractors` returns passes the option rules (the offline teacher's do)."""
    completed = []
    for draft, options in accepted:
        if draft.make_distractors is not None:
            draft = draft.complete()
            valid = _valid_options(draft, report)
            if valid is None:
                continue
            options = valid
        completed.append((draft, options))
    return completed


_STATEMENT_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


def _states_answer(draft: McqDraft, correct: str, taught: str) -> bool:
    """Whether a flashcard answer contains the MCQ's whole statement (its start up to the blank, plus the answer).

    Only cloze items carry their statement; teacher-written questions are compared by question instead.
    """
    if not draft.cloze_prefix:
        return False
    statement_start = _STATEMENT_BREAK.split(draft.cloze_prefix)[-1]
    words = normalise(statement_start).split() + normalise(correct).split()
    return len(words) >= 3 and f" {' '.join(words)} " in taught


def balance_letters(accepted: Sequence[tuple[McqDraft, list[str]]], seed: int) -> list[Mcq]:
    """Place the correct option so each letter is correct for a quarter of each answer kind.

    Balancing within each kind (not only overall) matters: a model can learn "numbers are usually C".
    The letter sequence is shuffled, not rotated, so position in the file predicts nothing.
    """
    by_kind: dict[str, list[int]] = defaultdict(list)
    for position, (draft, _) in enumerate(accepted):
        by_kind[draft.kind].append(position)
    letters_for: dict[int, int] = {}
    for kind, positions in sorted(by_kind.items()):
        rng = random.Random(content_id(str(seed), "letters", kind))
        letters = [i % 4 for i in range(len(positions))]
        rng.shuffle(letters)
        letters_for.update(zip(positions, letters))
    mcqs: list[Mcq] = []
    for position, (draft, options) in enumerate(accepted):
        correct = options[draft.correct_index]
        distractors = [option for i, option in enumerate(options) if i != draft.correct_index]
        rng = random.Random(content_id(str(seed), "order", draft.chunk_id, draft.question))
        rng.shuffle(distractors)
        target = letters_for[position]
        ordered = distractors[:target] + [correct] + distractors[target:]
        mcq_id = content_id(draft.chunk_id, draft.question, draft.cloze_prefix, correct, length=12)
        mcqs.append(
            Mcq(
                mcq_id=mcq_id,
                chunk_id=draft.chunk_id,
                question=draft.question.strip(),
                options=ordered,
                answer=LETTERS[target],
                cloze_prefix=draft.cloze_prefix,
                kind=draft.kind,
            )
        )
    return mcqs


def mcq_set_metrics(mcqs: Sequence[Mcq]) -> dict[str, float]:
    """Biases a lazy strategy could exploit: letter skew and how often the longest option is the correct one."""
    if not mcqs:
        return {"mcqs": 0}
    counts: Counter[str] = Counter(mcq["answer"] for mcq in mcqs)
    shares = {letter: counts.get(letter, 0) / len(mcqs) for letter in LETTERS}
    longest_correct = sum(
        1 for mcq in mcqs if max(range(4), key=lambda i: len(mcq["options"][i])) == LETTERS.index(mcq["answer"])
    )
    metrics: dict[str, float] = {f"answer_share_{letter}": round(share, 4) for letter, share in shares.items()}
    metrics["answer_share_max_deviation"] = round(max(abs(share - 0.25) for share in shares.values()), 4)
    metrics["longest_option_correct_rate"] = round(longest_correct / len(mcqs), 4)
    metrics["mcqs"] = len(mcqs)
    return metrics
