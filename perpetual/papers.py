"""Papers as a person reads them: PDF text extracted page by page and cleaned before chunking.

What a reader skips, the pipeline drops, and counts: ligature and private-use glyphs, words split by a line-break
hyphen, running headers and footers, page numbers, the bibliography and (by param) the appendices. Each count
goes to metrics/fetch/<task>.json, so a reviewer sees what was removed.

Extraction is pdfminer.six's layout analysis rather than pypdf: where a PDF positions its words without space
characters, pdfminer infers the spaces from the gaps (`LAParams.word_margin`); pypdf ran them together
("Thispaperreviewstheevolution") on such files, in both its plain and layout modes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

# Tokens of this many letters and more are words the PDF ran together (no English word in a paper is that long).
RUN_TOGETHER_LETTERS = 25
# A line repeated at the top or bottom of this many pages is a running header or footer, not content.
RUNNING_LINE_MIN_PAGES = 3
EDGE_LINES = 2  # lines at each end of a page that may be a header, footer or page number

# What cleaning reports for every paper (metrics/fetch/<task>.json), zero included.
COUNTS = (
    "ligatures",
    "private_use_chars",
    "hyphenations_joined",
    "running_header_lines",
    "page_number_lines",
    "reference_lines",
    "appendix_lines",
    "run_together_words",
)
_LIGATURES = {chr(code) for code in range(0xFB00, 0xFB07)}
# An arabic page number (group 1) or a roman one (front matter), alone or as "Page 3 of 12".
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?(?:(\d{1,4})|[ivxlc]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?$", re.IGNORECASE)
_SECTION_NUMBER = r"(?:(?:\d+(?:\.\d+)*|[A-Z])\.?\s+)?"
_REFERENCES_HEADING = re.compile(
    rf"^#*\s*{_SECTION_NUMBER}(?:references|bibliography|works\s+cited|literature\s+cited|reference\s+list)\s*:?\s*$",
    re.IGNORECASE,
)
_APPENDIX_HEADING = re.compile(
    rf"^#*\s*{_SECTION_NUMBER}(?:appendix|appendices|supplementary\s+materials?|supplemental\s+materials?)\b.{{0,80}}$",
    re.IGNORECASE,
)
_LINE_BREAK_HYPHEN = re.compile(r"(\w*[a-z])-\n([a-z]\w*)")
_WORD = re.compile(r"[A-Za-z]+")
_LONG_TOKEN = re.compile(rf"\b[A-Za-z]{{{RUN_TOGETHER_LETTERS},}}\b")


def pdf_pages(path: Path) -> list[str]:
    """The text of each page, in reading order."""
    from pdfminer.high_level import extract_text
    from pdfminer.layout import LAParams

    text = extract_text(str(path), laparams=LAParams())
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages.pop()  # pdfminer ends every page, the last included, with a form feed
    return pages


def normalise_unicode(text: str, counts: Counter[str]) -> str:
    """NFKC (ligatures become their letters), soft hyphens and private-use glyphs dropped."""
    counts["ligatures"] += sum(text.count(ligature) for ligature in _LIGATURES)
    private = sum(1 for char in text if unicodedata.category(char) == "Co")
    counts["private_use_chars"] += private
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    if private:
        text = "".join(char for char in text if unicodedata.category(char) != "Co")
    return text


def _edge_key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def _page_number_offset(page_lines: list[list[str]], edges: list[set[int]]) -> int | None:
    """The offset between printed page numbers and page positions, if numbers at the page edges keep one.

    A number at a page edge is a page number only when it counts along with the pages: a table's last row
    ("4") at the top of a page does not.
    """
    offsets: Counter[int] = Counter()
    for position, (lines, edge) in enumerate(zip(page_lines, edges, strict=True)):
        numbers = {int(match.group(1)) for i in edge if (match := _PAGE_NUMBER.match(lines[i].strip())) and match.group(1)}
        offsets.update({number - position for number in numbers})
    if not offsets:
        return None
    offset, pages = offsets.most_common(1)[0]
    return offset if pages >= 2 else None


def remove_running_lines(pages: list[str], counts: Counter[str]) -> list[str]:
    """Drop page numbers, and lines repeated at the top or bottom of several pages (digits aside: 'Page 3' = 'Page 4').

    A line found at the edges of enough pages is a running header wherever it sits on a page: layout analysis
    sometimes places it after the first lines.
    """
    page_lines = [[line for line in page.splitlines() if line.strip()] for page in pages]
    edges = [set(range(min(EDGE_LINES, len(lines)))) | set(range(max(len(lines) - EDGE_LINES, 0), len(lines))) for lines in page_lines]
    pages_with_key: Counter[str] = Counter()
    for lines, edge in zip(page_lines, edges, strict=True):
        pages_with_key.update({_edge_key(lines[index]) for index in edge})
    running = {key for key, count in pages_with_key.items() if count >= RUNNING_LINE_MIN_PAGES and _WORD.search(key)}
    offset = _page_number_offset(page_lines, edges)
    cleaned = []
    for position, (lines, edge) in enumerate(zip(page_lines, edges, strict=True)):
        kept = []
        for index, line in enumerate(lines):
            number = _PAGE_NUMBER.match(line.strip()) if index in edge else None
            if number and (number.group(1) is None or offset is not None and int(number.group(1)) - position == offset):
                counts["page_number_lines"] += 1
            elif _edge_key(line) in running:
                counts["running_header_lines"] += 1
            else:
                kept.append(line)
        cleaned.append("\n".join(kept))
    return cleaned


def join_hyphenated(text: str, counts: Counter[str]) -> str:
    """'implementa-' + 'tion' -> 'implementation'; a compound the text writes with a hyphen elsewhere keeps it."""
    vocabulary = Counter(word.lower() for word in _WORD.findall(_LINE_BREAK_HYPHEN.sub(" ", text)))
    hyphenated = Counter(match.lower() for match in re.findall(r"\b[a-z]+-[a-z]+\b", text, re.IGNORECASE))

    def join(match: re.Match[str]) -> str:
        head, tail = match.group(1), match.group(2)
        counts["hyphenations_joined"] += 1
        if f"{head}-{tail}".lower() in hyphenated and f"{head}{tail}".lower() not in vocabulary:
            return f"{head}-{tail}"
        return f"{head}{tail}"

    return _LINE_BREAK_HYPHEN.sub(join, text)


def drop_back_matter(text: str, counts: Counter[str], *, drop_references: bool, drop_appendices: bool) -> str:
    """Cut the bibliography (its last heading up to an appendix heading or the end) and, by param, the appendices."""
    lines = text.split("\n")
    references = [i for i, line in enumerate(lines) if _REFERENCES_HEADING.match(line.strip())]
    # Only headings in the second half: a "References" line in a table of contents or an abstract is not the section.
    references = [i for i in references if i >= len(lines) // 2]
    appendices = [i for i, line in enumerate(lines) if i >= len(lines) // 2 and _APPENDIX_HEADING.match(line.strip())]
    drop = [False] * len(lines)
    if drop_references and references:
        start = references[-1]
        end = next((i for i in appendices if i > start), len(lines))
        for i in range(start, end):
            drop[i] = True
        counts["reference_lines"] += end - start
    if drop_appendices and appendices:
        for i in range(appendices[0], len(lines)):
            if not drop[i]:
                drop[i] = True
                counts["appendix_lines"] += 1
    return "\n".join(line for line, dropped in zip(lines, drop, strict=True) if not dropped)


def clean_pages(pages: list[str], *, drop_references: bool, drop_appendices: bool) -> tuple[str, Counter[str]]:
    """One paper's pages as clean text, and what was removed or repaired."""
    counts = Counter(dict.fromkeys(COUNTS, 0))
    pages = remove_running_lines([normalise_unicode(page, counts) for page in pages], counts)
    text = join_hyphenated("\n".join(pages), counts)
    text = drop_back_matter(text, counts, drop_references=drop_references, drop_appendices=drop_appendices)
    counts["run_together_words"] += len(_LONG_TOKEN.findall(text))
    return text, counts


def clean_text(text: str, *, drop_references: bool, drop_appendices: bool) -> tuple[str, Counter[str]]:
    """A paper already in text (markdown, plain text): no pages, headers or typeset hyphenation to undo."""
    counts = Counter(dict.fromkeys(COUNTS, 0))
    text = drop_back_matter(normalise_unicode(text, counts), counts, drop_references=drop_references, drop_appendices=drop_appendices)
    counts["run_together_words"] += len(_LONG_TOKEN.findall(text))
    return text, counts


def split_word_share(text: str) -> float:
    """Share of non-empty lines that end in a word split by a hyphen (the figure the cleaning should bring to ~0)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(1 for line in lines if re.search(r"[a-z]-$", line.rstrip())) / max(len(lines), 1)
