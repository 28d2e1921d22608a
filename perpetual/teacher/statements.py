"""A chunk's statements and the salient span each can be cut before: what the offline teacher asks about and the
reading items (perpetual/reading.py) are cut from.

A statement is a prose sentence or a line of code; its span is the last salient one (a number, an identifier, a
quoted string, a capitalised name, else a final word). No boilerplate answer (Python keywords and builtins,
function words), no import lines or bibliography entries.
"""

from __future__ import annotations

import builtins
import functools
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from perpetual.records import Chunk
from perpetual.teacher.quality import mentions

# Ordered by how specific a span is: the first kind that matches near the end of a statement wins.
_SPAN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("number", re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?:%|\b)")),
    # Text inside quotes that does not start or end with a space: `" or "` between two quoted strings is no string.
    ("quoted", re.compile(r"\"(?! )[^\"\n]{1,40}(?<! )\"|'(?! )[^'\n]{1,40}(?<! )'")),
    ("identifier", re.compile(r"\b[A-Za-z]+_[A-Za-z0-9_]+\b|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b")),
    ("name", re.compile(r"\b[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*\b")),
    ("word", re.compile(r"\b[a-z][a-z-]{2,}[a-z]\b")),
)
_PATTERN_OF = dict(_SPAN_PATTERNS)
FACT_KINDS = frozenset({"number", "quoted", "identifier", "name"})  # the kinds `facts` collects: all but "word"
_OPENS_STATEMENT = re.compile(r"^\s*(?:#+|[-*+>]|\d+\.)?\s*$|[.!?]\s+$")  # matched on the line before a span
_LEFT_WORD = re.compile(r"(\w+|[^\w\s])\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_ENDS_STATEMENT = re.compile(r"\s*(?:[a-z%]+\s*)?[.,;:!?)\"']*\s*$")
_MARKUP = re.compile(r"^\s*(?:#+|[-*+]|\d+\.|>)\s+")
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s")
# A bibliography entry (left in a paper, or a docstring citing one): its names and venues are no knowledge to test.
_REFERENCE_ENTRY = re.compile(r"arXiv(?: preprint|:\s?\d)|In Proceedings|\bdoi:|\bet al\.,? \(?\d{4}", re.IGNORECASE)
_PYTHON_BOILERPLATE = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls", "args", "kwargs"}
_FUNCTION_WORDS = frozenset(
    "about above after again also among been before being below between both cannot could does doing down during each "
    "from further have having here into more most much must only other over same should some such than that their "
    "them then there these they this those through under until upon very were what when where which while whom whose "
    "will with within without would your".split()
)
_MIN_PREFIX_CHARS = 6
_MIN_STEM_WORDS = 3  # of a statement cut before an earlier fact than its last span
CONTEXT_CHARS = 300  # how much of the chunk before a statement the cloze item keeps, so "It weighs" has a subject


@dataclass(frozen=True)
class Statement:
    start: int  # offset of the statement in the chunk text
    text: str
    span_start: int  # offset of the answer span inside `text`
    answer: str
    kind: str


def split_statements(text: str, language: str) -> list[tuple[int, str]]:
    """Statements with their offsets: lines for code and catalogue fields, sentences for prose."""
    statements = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if language == "python":
            pieces = [(0, body)]
        else:
            pieces, cursor = [], 0
            for match in _SENTENCE_END.finditer(body):
                pieces.append((cursor, body[cursor : match.start()]))
                cursor = match.end()
            pieces.append((cursor, body[cursor:]))
        for local, piece in pieces:
            markup = _MARKUP.match(piece)
            skip = markup.end() if markup else 0
            stripped = piece[skip:].rstrip()
            if stripped.strip():
                lead = len(stripped) - len(stripped.lstrip())
                statements.append((offset + local + skip + lead, stripped.strip()))
        offset += len(line)
    return statements


def find_span(statement: str, accept: Callable[[int, str, str], bool] = lambda *_: True) -> tuple[int, str, str] | None:
    """The last salient span that leaves a usable prefix and that `accept(offset, text, kind)` takes."""
    best: tuple[int, str, str] | None = None
    for kind, pattern in _SPAN_PATTERNS:
        for match in pattern.finditer(statement):
            if match.start() < _MIN_PREFIX_CHARS or not accept(match.start(), match.group(0), kind):
                continue
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(0), kind)
        if best is not None and _ENDS_STATEMENT.match(statement, best[0] + len(best[1])):
            return best  # a specific span that ends the statement (a unit may follow): stop before weaker kinds
    return best


def extract_statements(chunk: Chunk) -> list[Statement]:
    """Statements with an answer worth asking: no boilerplate, and nothing the question or its passage gives away."""
    found = []
    for start, text in split_statements(chunk["text"], chunk["language"]):
        line_start = chunk["text"].rfind("\n", 0, start) + 1
        line_end = chunk["text"].find("\n", start)
        line = chunk["text"][line_start : line_end if line_end >= 0 else None]
        if _IMPORT_LINE.match(line) or _REFERENCE_ENTRY.search(line):
            continue
        span = find_span(text, _acceptor(chunk, start))
        if span is not None:
            found.append(Statement(start=start, text=text, span_start=span[0], answer=span[1], kind=span[2]))
    return found


def fact_statement(chunk: Chunk, statement: Statement) -> Statement | None:
    """The statement cut before its last fact-carrying span (a number, quoted string, identifier or name), or None.

    Evaluation asks facts only: a fluent model infers a plain word from plausibility ("escape local ___": optima),
    so SmolLM2-135M-Instruct's base answered 80-87% of the word items right with nothing learned (4 options).
    """
    if statement.kind in FACT_KINDS:
        return statement
    accept = _acceptor(chunk, statement.start)

    def asks_a_fact(offset: int, answer: str, kind: str) -> bool:
        # An earlier span leaves a shorter stem: at least a few words of it, or the question asks nothing ("The ** ___").
        stem_words = len(re.findall(r"\w+", statement.text[:offset]))
        return kind in FACT_KINDS and stem_words >= _MIN_STEM_WORDS and accept(offset, answer, kind)

    span = find_span(statement.text, asks_a_fact)
    if span is None:
        return None
    return Statement(start=statement.start, text=statement.text, span_start=span[0], answer=span[1], kind=span[2])


def _acceptor(chunk: Chunk, start: int) -> Callable[[int, str, str], bool]:
    """Whether a span of the statement at `start` is worth asking: no boilerplate, not shown by the question's
    names (every question about the chunk shows its source and subject) nor by the passage before the blank."""
    named = f"{source_name(chunk)} {subject(chunk)}"

    def accept(offset: int, answer: str, kind: str) -> bool:
        if _is_boilerplate(answer, kind, chunk["language"]):
            return False
        shown = f"{named} {tail(chunk['text'][: start + offset], CONTEXT_CHARS)}"
        return not mentions(shown, answer)

    return accept


def spans(chunk: Chunk, kind: str) -> list[tuple[str, str]]:
    """Every span of `kind` in the chunk that could be an answer, with the word (or sign) before it: the candidates
    for distractors of that kind, in text order. No boilerplate; a name without a leading common word (as `facts`
    cuts it), and never one that only opens a line or a sentence (a heading's "Results" is no name)."""
    found = []
    text = chunk["text"]
    common = _common_words(text) if kind == "name" else frozenset()
    for match in _PATTERN_OF[kind].finditer(text):
        before = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]  # the line up to the span
        span = match.group(0)
        if kind == "name":
            if _OPENS_STATEMENT.search(before):
                continue
            span = _strip_common(span, common)
        if span and not _is_boilerplate(span, kind, chunk["language"]):
            found.append((span, left_word(before)))
    return found


def left_word(before: str) -> str:
    """The word or sign just before a span ("called", "in", "="): the slot it fills, which its distractors share."""
    match = _LEFT_WORD.search(before)
    return match.group(1).lower() if match else ""


@functools.lru_cache(maxsize=65536)
def _language(text: str) -> str:
    import py3langid

    return str(py3langid.classify(text)[0])


def pool_key(chunk: Chunk, kind: str) -> tuple[str, str]:
    """Distractors come from answers of the same kind and the same language (numbers from any language).

    A catalogue in several languages must not offer "precio" beside "price": the odd one out is the cue.
    """
    if kind == "number":
        return kind, "*"
    if chunk["language"] == "python":
        return kind, "python"
    return kind, _language(chunk["text"])


def _is_boilerplate(answer: str, kind: str, language: str) -> bool:
    """Answers that test the language, not the knowledge: Python keywords and builtins in code, function words in prose."""
    if language == "python":
        return answer in _PYTHON_BOILERPLATE
    return kind == "word" and answer.lower() in _FUNCTION_WORDS


def source_name(chunk: Chunk) -> str:
    source = chunk["source"].split("#", 1)[0].rsplit(":", 1)[-1]
    return PurePosixPath(source).name or chunk["task"]


def subject(chunk: Chunk) -> str:
    """The chunk's first line (a product title, a heading, a def): tells otherwise identical questions apart.

    A Python chunk opens with its `# path (class X)` header (perpetual/code_chunks.py), the same for every chunk
    of a file: its first line of code says which part of the file the question is about.
    """
    lines = [line for line in chunk["text"].strip().splitlines() if line.strip()]
    if chunk["language"] == "python" and len(lines) > 1 and lines[0].startswith("# "):
        lines = lines[1:]
    first = lines[0].lstrip("#").strip()
    return first if len(first) <= 60 else first[:57] + "..."


def tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    boundary = cut.find("\n")
    return cut[boundary + 1 :] if 0 <= boundary < limit // 2 else cut


def facts(text: str) -> set[str]:
    """The spans of `text` that carry facts: its numbers, quoted strings, identifiers and names (the salient kinds
    above, not plain words). A capitalised word that also occurs in lower case, or is a function word ("The",
    "Returns"), is no name, nor part of one at its start ("The Vellum" is "Vellum")."""
    common = _common_words(text)
    found: set[str] = set()
    for kind, pattern in _SPAN_PATTERNS:
        if kind not in FACT_KINDS:
            continue
        for match in pattern.finditer(text):
            span = _strip_common(match.group(0), common) if kind == "name" else match.group(0)
            if span:
                found.add(span)
    return found


def _common_words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\b[a-z][\w-]*\b", text)) | _FUNCTION_WORDS | _SENTENCE_STARTERS


def _strip_common(name: str, common: frozenset[str]) -> str:
    words = name.split(" ")
    while words and words[0].lower() in common:
        words.pop(0)
    return " ".join(words)


_SENTENCE_STARTERS = frozenset("a an and as at but by for if in it its of on or so the to we you".split())
