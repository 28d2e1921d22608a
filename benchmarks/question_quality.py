"""Surface cues in the offline teacher's questions on real corpora: what a model could answer without knowing.

    .venv/bin/python benchmarks/question_quality.py [--code DIR] [--papers DIR] [--catalogue FILE --text-fields a,b]

Each source is fetched and chunked as the pipeline does (default params), then questions are generated and
cleaned. Per task: MCQs, the share whose correct option appears in the question (target <= 1%) and in the
passage before the blank (target <= 5%), boilerplate answers (Python keywords/builtins, function words; target 0),
and the share of MCQs with an option found only in chunks of another language than the question's.
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import py3langid  # noqa: E402

from perpetual.chunking import chunk_documents  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.fetch_params import CatalogueSource, LocalSource, PapersSource  # noqa: E402
from perpetual.records import LETTERS  # noqa: E402
from perpetual.sources import fetch  # noqa: E402
from perpetual.teacher.offline import OfflineTeacher  # noqa: E402
from perpetual.teacher.quality import QualityReport, clean_flashcards, clean_mcqs  # noqa: E402
from perpetual.testing.params import spec  # noqa: E402

# Defined here, not imported from the code measured, so that the figures do not share its mistakes.
PYTHON_BOILERPLATE = set(keyword.kwlist) | set(dir(builtins)) | {"self", "cls"}
PROSE_BOILERPLATE = {"None", "True", "False", "self"}


def mentions(text: str, answer: str) -> bool:
    return bool(answer.strip()) and re.search(rf"(?<!\w){re.escape(answer.strip())}(?!\w)", text, re.IGNORECASE) is not None


def measure(task: str, source: object) -> None:
    params = load_params(REPO / "params.yaml")
    report = fetch(task, source, REPO / "data" / "cache" / "git")
    chunks, _ = chunk_documents(report.documents, params.chunk)
    settings = params.generate
    result = OfflineTeacher(seed=0, near_duplicate_threshold=settings.near_duplicate_threshold).generate(chunks, settings.flashcards_per_chunk, settings.mcqs_per_chunk)
    quality = QualityReport()
    cards = clean_flashcards(result.flashcards, settings.near_duplicate_threshold, quality)
    mcqs = clean_mcqs(result.mcqs, cards, settings.near_duplicate_threshold, 0, quality)
    language = {chunk["chunk_id"]: py3langid.classify(chunk["text"])[0] for chunk in chunks}
    by_id = {chunk["chunk_id"]: chunk for chunk in chunks}
    in_question = in_passage = boilerplate = other_language = 0
    for mcq in mcqs:
        correct = mcq["options"][LETTERS.index(mcq["answer"])]
        in_question += mentions(mcq["question"], correct)
        in_passage += mentions(mcq["cloze_prefix"], correct)
        code = by_id[mcq["chunk_id"]]["language"] == "python"
        boilerplate += correct in (PYTHON_BOILERPLATE if code else PROSE_BOILERPLATE)
        if not code and mcq["kind"] != "number":
            # A distractor is a span of other chunks: in the question's language if some chunk in that language has it.
            own = language[mcq["chunk_id"]]
            other_language += any(
                not any(language[c["chunk_id"]] == own and mentions(c["text"], option) for c in chunks)
                for option in mcq["options"]
            )
    n = max(len(mcqs), 1)
    print(f"{task}: {len(report.documents)} documents, {len(chunks)} chunks, {len(mcqs)} MCQs")
    print(f"  correct option in the question: {in_question} ({in_question / n:.1%}); in the passage before the blank: "
          f"{in_passage} ({in_passage / n:.1%}); boilerplate answers: {boilerplate}; "
          f"MCQs with an option from another language only: {other_language} ({other_language / n:.1%})")  # fmt: skip
    print(f"  quality drops: {quality.as_metrics()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path)
    parser.add_argument("--papers", type=Path)
    parser.add_argument("--catalogue", type=Path)
    parser.add_argument("--text-fields", default="title,description")
    parser.add_argument("--id-field", default="id")
    args = parser.parse_args()
    if args.code:
        measure("code", LocalSource(**spec("local", path=str(args.code), include=["**/*.py"], language="python")))
    if args.papers:
        measure("research", PapersSource(**spec("papers", path=str(args.papers))))
    if args.catalogue:
        fields = args.text_fields.split(",")
        measure("products", CatalogueSource(**spec("catalogue", path=str(args.catalogue), id_field=args.id_field, text_fields=fields)))


if __name__ == "__main__":
    main()
