"""Reading items for instruct@: MCQs whose answer is copied from a passage of the instruction world put in the context.

A tiny model trained from scratch never learns to use a context on its own, so RAG cannot beat base. These items
teach it: each is one of the instruction world's Markdown sections as the context (index.context_template, as the
RAG conditions put a retrieved chunk), then a cloze item cut from that section by the offline teacher's span
selection (perpetual/teacher/offline.py), asked in the cloze and letter formats exactly as evaluation renders them
(perpetual/mcq_format.render). Only the instruction world is used, never an evaluated corpus.

The model also learns the world's facts from its raw text, so it could answer from memory: a share of each passage's
spans (`counterfactual`) is rewritten to other values, the world's own value then being a distractor, so only reading
gets those right. The cloze completion copies the rest of the passage too, a lesson in reading at every token.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from perpetual.config import InstructParams
from perpetual.records import LETTERS, Chunk, content_id
from perpetual.rows import Reading, read_world, world_sections
from perpetual.teacher.quality import mentions
from perpetual.teacher.statements import CONTEXT_CHARS, Statement, extract_statements, source_name, subject, tail


def world_chunks(sections: list[str], source: str) -> list[Chunk]:
    """The world's sections as chunks, so the offline teacher's statement and span selection applies unchanged."""
    return [
        {"chunk_id": content_id(source, text), "task": "instruct", "source": f"{source}#{i}", "language": "markdown", "text": text}
        for i, text in enumerate(sections)
    ]


def reading_rows(params: InstructParams, context_template: str, seed: int) -> list[Reading]:
    """`instruct.reading.items_per_passage` items per section of `instruct.world`, each as one row per format in
    `instruct.reading.formats`; the same rows for the same world, settings and seed."""
    settings = params.reading
    if not settings.enabled:
        return []
    chunks = world_chunks(world_sections(read_world(params.world)), str(Path(params.world)))
    statements = {chunk["chunk_id"]: extract_statements(chunk) for chunk in chunks}
    pool: dict[str, set[str]] = defaultdict(set)
    for found in statements.values():
        for statement in found:
            pool[statement.kind].add(statement.answer)
    rows: list[Reading] = []
    for chunk in chunks:
        found = statements[chunk["chunk_id"]]
        if not found:
            continue
        rng = random.Random(content_id(str(seed), "reading", chunk["chunk_id"]))
        for k in range(settings.items_per_passage):
            item = _item(chunk, found, k % len(found), pool, settings.counterfactual, rng)
            if item is None:
                continue
            context = context_template.format(context=item["passage"])
            rows.extend(Reading(**item, format=fmt, context=context) for fmt in settings.formats)
    return rows


def _replacement(original: str, kind: str, pool: dict[str, set[str]], taken: str, rng: random.Random) -> str:
    """Another value for a span: a random number of as many digits, or another span of the same kind; never one
    the passage already shows, so the copy the item asks for is unambiguous."""
    for _ in range(20):
        if kind == "number" and original.isdigit():
            value = str(rng.randrange(10 ** (len(original) - 1), 10 ** len(original))) if len(original) > 1 else str(rng.randrange(2, 10))
        else:
            value = rng.choice(sorted(pool[kind]))
        if value.casefold() != original.casefold() and not mentions(taken, value):
            return value
    return original


def _item(chunk: Chunk, found: list[Statement], asked: int, pool: dict[str, set[str]], counterfactual: float, rng: random.Random) -> dict[str, Any] | None:
    """One item about statement `asked` of the section: its spans (each with probability `counterfactual`) rewritten
    to other values, so the passage is a variant the model has not memorised and only reading answers it."""
    text = chunk["text"]
    pieces, cursor, taken = [], 0, text
    asked_at, gold = 0, ""
    for index, statement in enumerate(found):
        at = statement.start + statement.span_start
        if at < cursor:  # overlapping spans (never in prose, but cheap to guard): keep the first
            continue
        value = statement.answer
        if rng.random() < counterfactual:
            value = _replacement(value, statement.kind, pool, taken, rng)
            taken += "\n" + value
        pieces.append(text[cursor:at])
        if index == asked:
            asked_at, gold = sum(len(piece) for piece in pieces), value
        pieces.append(value)
        cursor = at + len(statement.answer)
    pieces.append(text[cursor:])
    passage = "".join(pieces)
    if not gold:
        return None
    statement = found[asked]
    cloze_prefix = tail(passage[:asked_at], CONTEXT_CHARS)
    shown = statement.text[: statement.span_start].rstrip()
    question = f"In {source_name(chunk)} ({subject(chunk)}), what completes \"{shown} ___\"?"
    # Same kind, not shown by the question or the prefix, similar length; the world's own value, when the passage
    # changed it, among them (what memory would answer). Simpler than the evaluated MCQs' (teacher/distractors.py):
    # these items teach copying from the passage, which any wrong option of the kind tests.
    shown_text = f"{question} {cloze_prefix}"
    candidates = sorted(
        {
            option.casefold(): option
            for option in sorted(pool[statement.kind] | {statement.answer})
            if option.casefold() != gold.casefold() and not mentions(shown_text, option)
        }.values()
    )
    if len(candidates) < 3:
        return None
    rng.shuffle(candidates)
    candidates.sort(key=lambda option: (option != statement.answer, abs(len(option) - len(gold))))
    options = [gold, *candidates[:3]]
    rng.shuffle(options)
    # The rest of the passage is copied too: every token of it is a lesson in reading, for the price of one item.
    return {
        "chunk_id": chunk["source"],
        "question": question,
        "options": tuple(options),
        "answer": LETTERS[options.index(gold)],
        "cloze_prefix": cloze_prefix,
        "kind": statement.kind,
        "rest": passage[asked_at + len(gold) :],
        "passage": passage,
    }
