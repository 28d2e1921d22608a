"""Distractors as plausible in the passage as the answer: the offline teacher's choice of wrong options.

A fluent model guesses a cloze item when the wrong options look out of place: a CamelCase class offered where a
constant belongs, a year among learning rates, a product category where a colour's name belongs. So each candidate
(a span of the same kind and language) is ranked by
1. its *form* against the answer's (a number's percent sign, decimal point and digit groups, an identifier's case
   style, a quoted string's case and word count, a name's being one word or several): a mismatch is a tell;
2. its *slot*: whether it follows the same word somewhere ("called Saltrose" for "called ___", "in 2018" for
   "in ___"), the cheapest sign of the same entity type and syntax;
3. finer form (digit counts: a year among years, a count among counts; underscores; words);
4. its *nearness*: a span of the same chunk first, then of the neighbouring chunks of the same source document, then
   of the same document, then of the whole task;
5. length, so the correct option is not the odd one out by size.
Before all but form comes the *echo*: whether an option shares a word stem with the question and the passage before
the blank (`CANDLE_THICKNESS_MM` after "needs candling"; "ledger is held by another writer" for `ERR_LEDGER_LOCKED`).
An answer that echoes them among distractors that do not is found by matching words, not by knowing: the offline
teacher does not ask it (`cued`). Nothing the question or the passage shows whole is offered (a cue the wrong way).
"""

from __future__ import annotations

import heapq
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from perpetual.records import Chunk
from perpetual.teacher.quality import folded_case, mentions
from perpetual.teacher.statements import FACT_KINDS, Statement, left_word, pool_key, spans

_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")  # words, and the parts of snake_case and CamelCase names
_STEM = 5  # letters compared: "candling" and "CANDLE" share "candl"
_NOT_CUES = frozenset("self none true false return with from that this class import default value".split())
NEIGHBOUR_CHUNKS = 2  # chunks either side in the same document that count as the answer's neighbourhood
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Form:
    coarse: tuple[object, ...]  # must match, or the option stands out
    fine: tuple[int, ...]  # the closer the better


def form(option: str, kind: str) -> Form:
    if kind == "number":
        whole, _, decimals = option.rstrip("%").partition(".")
        digits = [len(group) for group in _DIGITS.findall(whole)]
        return Form((option.endswith("%"), bool(decimals), len(digits)), (sum(digits), len(decimals)))
    if kind == "identifier":
        return Form((_case_style(option),), (option.count("_"),))
    if kind == "quoted":
        inner = option[1:-1]
        return Form((option[0], _case_style(inner), " " in inner, any(c.isdigit() for c in inner)), (len(inner.split()),))
    if kind == "name":
        return Form((len(option.split()) > 1,), (len(option.split()),))
    return Form((), ())


def _case_style(text: str) -> str:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "none"
    if all(c.isupper() for c in letters):
        return "upper"
    if all(c.islower() for c in letters):
        return "lower"
    return "capitalised" if letters[0].isupper() else "mixed"


def _coarse_distance(target: Form) -> Callable[[_Option], int]:
    """How many of an option's coarse form features differ from the answer's (0: it does not stand out)."""
    distances: dict[tuple[object, ...], int] = {}

    def distance(option: _Option) -> int:
        coarse = option.form.coarse
        if coarse not in distances:
            distances[coarse] = sum(a != b for a, b in zip(coarse, target.coarse, strict=True))
        return distances[coarse]

    return distance


@dataclass(frozen=True)
class _Option:
    """A candidate with what ranking asks of it, worked out once per task rather than once per question."""

    text: str
    folded: str  # casefold(): one option per spelling
    lowered: str | None  # in lower case when ASCII: `mentions` needs no regex where this is no substring (folded_case)
    form: Form
    stems: frozenset[str]
    slots: frozenset[str]


class DistractorPool:
    """The candidate spans of one task's chunks, by chunk, document and (kind, language), with their slots."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self._by_chunk: dict[tuple[str, str], list[str]] = {}
        self._document: dict[str, list[str]] = defaultdict(list)  # a document's chunk ids in order
        self._slots: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for chunk in chunks:
            self._document[_document(chunk)].append(chunk["chunk_id"])
            for kind in FACT_KINDS:
                found = spans(chunk, kind)
                self._by_chunk[chunk["chunk_id"], kind] = [span for span, _ in found]
                task_slots = self._slots[pool_key(chunk, kind)]
                for span, slot in found:
                    task_slots[span].add(slot)
        self._options: dict[tuple[str, str], list[_Option]] = {}
        self._nearness: dict[tuple[str, str, str], dict[str, int]] = {}

    def choose(self, chunk: Chunk, statement: Statement, shown: str, rng: random.Random, count: int = 3) -> list[str] | None:
        """`count` distractors for the statement's answer (asked about `chunk`), none of which `shown` mentions;
        None when the task has fewer than `count` usable ones."""
        kind, answer = statement.kind, statement.answer
        candidates = self._candidates(chunk, kind, answer, shown)
        if len(candidates) < count:
            return None
        rng.shuffle(candidates)  # ties broken by the seed, not by the alphabet
        target = form(answer, kind)
        slot = left_word(statement.text[: statement.span_start])
        nearness = self._nearness_of(chunk, kind)

        cues = stems(shown)
        echo = bool(stems(answer) & cues)
        coarse = _coarse_distance(target)

        def rank(option: _Option) -> tuple[int, int, int, int, int, int]:
            fine = sum(abs(a - b) for a, b in zip(option.form.fine, target.fine, strict=True))
            echoes = bool(option.stems & cues) != echo
            return coarse(option), echoes, slot not in option.slots, fine, nearness.get(option.text, 3), abs(len(option.text) - len(answer))

        # The first `count` in rank order all match the form as well as the `count`-th best match does: only those
        # candidates are ranked in full, in their shuffled order (sorted() is stable, and so is nsmallest).
        distances = [coarse(option) for option in candidates]
        worst = sorted(distances)[count - 1]
        best = [option for option, distance in zip(candidates, distances) if distance <= worst]
        return [option.text for option in heapq.nsmallest(count, best, key=rank)]

    def usable(self, chunk: Chunk, statement: Statement, shown: str, count: int = 3) -> bool:
        """Whether `choose` finds `count` distractors, without ranking them."""
        return len(self._candidates(chunk, statement.kind, statement.answer, shown, stop_at=count)) >= count

    def cued(self, chunk: Chunk, statement: Statement, shown: str, count: int = 3) -> bool:
        """`cued(answer, choose(...), shown)` for a statement `usable` takes, without choosing: whether the first
        `count` candidates in rank order (form, then echo) include one that does not echo `shown` when the answer does."""
        cues = stems(shown)
        if not stems(statement.answer) & cues:
            return False
        coarse = _coarse_distance(form(statement.answer, statement.kind))
        echoing: Counter[int] = Counter()
        silent: Counter[int] = Counter()
        for option in self._candidates(chunk, statement.kind, statement.answer, shown):
            (echoing if option.stems & cues else silent)[coarse(option)] += 1
        room = count  # places left among the first `count`; at each distance the echoing options rank first
        for distance in sorted(echoing.keys() | silent.keys()):
            if echoing[distance] >= room:
                return False
            room -= echoing[distance]
            if silent[distance]:
                return True
        return False  # fewer than `count` candidates: `choose` finds none

    def _candidates(self, chunk: Chunk, kind: str, answer: str, shown: str, stop_at: int | None = None) -> list[_Option]:
        """The task's spans of the answer's kind and language but the answer's own, one per spelling (ignoring
        case), none that `shown` mentions, in alphabetical order; the first `stop_at` only, if given."""
        folded_shown = folded_case(shown)
        folded_answer = answer.casefold()
        distinct: dict[str, _Option] = {}
        for option in self._pool(pool_key(chunk, kind)):
            if option.folded == folded_answer or option.folded in distinct:
                continue
            if (option.lowered is None or option.lowered in folded_shown) and mentions(shown, option.text):
                continue
            distinct[option.folded] = option
            if len(distinct) == stop_at:
                break
        return list(distinct.values())

    def _pool(self, key: tuple[str, str]) -> list[_Option]:
        if key not in self._options:
            slots = self._slots.get(key, {})
            self._options[key] = [
                _Option(
                    text,
                    text.casefold(),
                    text.strip().lower() if text.isascii() else None,
                    form(text, key[0]),
                    frozenset(stems(text)),
                    frozenset(slots[text]),
                )
                for text in sorted(slots)
            ]
        return self._options[key]

    def _nearness_of(self, chunk: Chunk, kind: str) -> dict[str, int]:
        """Each span's ring around the chunk (0: the chunk itself, 1: its neighbours, 2: the rest of its document)."""
        key = (_document(chunk), chunk["chunk_id"], kind)
        if key not in self._nearness:
            nearness: dict[str, int] = {}
            for level, chunk_ids in enumerate(self._rings(chunk)):
                for chunk_id in chunk_ids:
                    for option in self._by_chunk[chunk_id, kind]:
                        nearness.setdefault(option, level)
            self._nearness[key] = nearness
        return self._nearness[key]

    def _rings(self, chunk: Chunk) -> tuple[list[str], list[str], list[str]]:
        """The chunk itself, its neighbours in its document, the rest of its document."""
        siblings = self._document[_document(chunk)]
        at = siblings.index(chunk["chunk_id"])
        near = siblings[max(0, at - NEIGHBOUR_CHUNKS) : at] + siblings[at + 1 : at + 1 + NEIGHBOUR_CHUNKS]
        rest = [chunk_id for chunk_id in siblings if chunk_id != chunk["chunk_id"] and chunk_id not in near]
        return [chunk["chunk_id"]], near, rest


def stems(text: str) -> set[str]:
    """The word stems a reader could match between an option and the text shown before it."""
    pieces = (piece.lower() for piece in _PIECE.findall(text))
    return {piece[:_STEM] for piece in pieces if len(piece) >= 4 and piece not in _NOT_CUES}


def cued(answer: str, distractors: Sequence[str], shown: str) -> bool:
    """Whether the answer alone echoes the shown text: a distractor that does not lets word matching find it."""
    cues = stems(shown)
    return bool(stems(answer) & cues) and not all(stems(option) & cues for option in distractors)


def _document(chunk: Chunk) -> str:
    return chunk["source"].split("#", 1)[0]
