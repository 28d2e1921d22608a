"""What paper cleaning removes from a folder of real PDFs: split words and reference entries before and after.

    .venv/bin/python benchmarks/paper_cleaning.py FOLDER [FOLDER ...]

"before" is pdfminer's text as extracted; "after" is what fetch writes (perpetual/papers.py). The figures the
issue sets: lines ending in a word split by a hyphen (target <= 1%), and reference-entry lines (target <= 10% of
before), with every cleaning count.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import papers  # noqa: E402

REFERENCE_ENTRY = re.compile(r"arXiv preprint|arXiv:\d|In Proceedings|\bdoi\b|et al\.,? \(?\d{4}|\bpp\. \d", re.IGNORECASE)


def reference_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if REFERENCE_ENTRY.search(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--drop-appendices", action="store_true")
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    before_lines = after_lines = before_split = after_split = before_refs = after_refs = 0
    started = time.perf_counter()
    files = sorted(path for folder in args.folders for path in folder.rglob("*.pdf"))
    for path in files:
        pages = papers.pdf_pages(path)
        raw = "\n".join(pages)
        text, counts = papers.clean_pages(pages, drop_references=True, drop_appendices=args.drop_appendices)
        totals.update(counts)
        raw_lines = [line for line in raw.splitlines() if line.strip()]
        lines = [line for line in text.splitlines() if line.strip()]
        before_lines, after_lines = before_lines + len(raw_lines), after_lines + len(lines)
        before_split += round(papers.split_word_share(raw) * len(raw_lines))
        after_split += round(papers.split_word_share(text) * len(lines))
        before_refs, after_refs = before_refs + reference_lines(raw), after_refs + reference_lines(text)
        print(f"{path.name}: {len(pages)} pages, {dict(counts)}")
    seconds = time.perf_counter() - started
    print(f"\n{len(files)} PDFs in {seconds:.1f} s")
    print(f"lines ending in a split word: {before_split}/{before_lines} = {before_split / max(before_lines, 1):.2%} before, "
          f"{after_split}/{after_lines} = {after_split / max(after_lines, 1):.2%} after")  # fmt: skip
    print(f"reference-entry lines: {before_refs} before, {after_refs} after")
    print(f"cleaning counts: {dict(sorted(totals.items()))}")


if __name__ == "__main__":
    main()
