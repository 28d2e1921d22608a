"""perpetual/papers.py: papers cleaned as a person reads them, on small PDFs that each carry a real paper's defects."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpetual import papers
from perpetual.fetch_params import PapersSource
from perpetual.sources import fetch
from perpetual.testing.params import spec
from tests.pdf_support import LIGATURE_FI, PRIVATE_GLYPH, make_pdf

HEADER = "Annals of Tiny Models, Vol. 3"
BODY = [
    [
        "Kiln Scheduling with Tiny Models",
        f"The {LIGATURE_FI}nal implementa-",
        "tion fires the kiln for seven hours.",
        "A well-known rule keeps the glaze stable.",
        "Each batch is well-",
        "known to the glazier before firing.",
    ],
    [f"The ledger{PRIVATE_GLYPH} records every firing.", "Results are in Table 2."],
    ["1 Conclusion", "The kiln never exceeds 1280 degrees."],
    [
        "References",
        "A. Smith and B. Jones. Tiny kilns. arXiv preprint arXiv:2401.00001, 2024.",
        "C. Brown. Glaze chemistry. In Proceedings of KilnConf, 2023.",
        "Appendix A Firing logs",
        "The logs list 42 firings.",
    ],
]


def _paper(*, tight_words: bool = False) -> bytes:
    pages = [[HEADER, *lines, str(number)] for number, lines in enumerate(BODY, start=1)]
    return make_pdf(pages, tight_words=tight_words)


def _clean(tmp_path: Path, pdf: bytes, **options: bool) -> tuple[str, dict[str, int]]:
    path = tmp_path / "paper.pdf"
    path.write_bytes(pdf)
    settings = {"drop_references": True, "drop_appendices": False, **options}
    text, counts = papers.clean_pages(papers.pdf_pages(path), **settings)
    return text, dict(counts)


def test_each_defect_is_repaired_and_counted(tmp_path: Path) -> None:
    text, counts = _clean(tmp_path, _paper())
    assert "The final implementation fires the kiln" in text  # ligature expanded, line-break hyphen joined
    assert "well-known to the glazier" in text  # the paper writes it with a hyphen elsewhere: kept
    assert "\ue000" not in text and "The ledger records" in text
    assert HEADER not in text
    assert not any(line.strip().isdigit() for line in text.splitlines())
    assert "arXiv preprint" not in text and "Proceedings" not in text
    assert "The logs list 42 firings." in text  # appendices stay unless asked
    assert "The kiln never exceeds 1280 degrees." in text
    assert counts == {
        "ligatures": 1,
        "private_use_chars": 1,
        "hyphenations_joined": 2,
        "running_header_lines": 4,
        "page_number_lines": 4,
        "reference_lines": 3,
        "appendix_lines": 0,
        "run_together_words": 0,
    }
    assert papers.split_word_share(text) == 0


def test_appendices_are_dropped_by_param(tmp_path: Path) -> None:
    text, counts = _clean(tmp_path, _paper(), drop_appendices=True)
    assert "Firing logs" not in text and "42 firings" not in text
    assert counts["appendix_lines"] == 2 and counts["reference_lines"] == 3


def test_references_are_kept_by_param(tmp_path: Path) -> None:
    text, counts = _clean(tmp_path, _paper(), drop_references=False)
    assert "arXiv preprint" in text and counts["reference_lines"] == 0


def test_words_placed_without_spaces_are_separated(tmp_path: Path) -> None:
    text, counts = _clean(tmp_path, _paper(tight_words=True))
    assert "fires the kiln for seven hours" in text
    assert counts["run_together_words"] == 0


def test_a_references_line_early_in_the_paper_is_not_the_bibliography() -> None:
    contents = ["Contents", "References", "Introduction", *[f"Fact {i} about kilns." for i in range(8)]]
    text, counts = papers.clean_text("\n".join(contents), drop_references=True, drop_appendices=False)
    assert text.count("Fact") == 8 and counts["reference_lines"] == 0


def test_a_number_at_a_page_edge_is_a_page_number_only_if_it_counts_along(tmp_path: Path) -> None:
    pages = [["Kiln notes", "Firings per day:", "4"], ["4", "Fact two.", "Each day."], ["Fact three.", "The end."]]
    text, counts = _clean(tmp_path, make_pdf(pages))
    assert text.splitlines().count("4") == 2 and counts["page_number_lines"] == 0


def test_running_lines_need_several_pages(tmp_path: Path) -> None:
    """A line at the top of two pages is content that happens to repeat; from three pages it is a header."""
    two = [["Kiln notes", "Fact one."], ["Kiln notes", "Fact two."]]
    text, counts = _clean(tmp_path, make_pdf(two))
    assert text.count("Kiln notes") == 2 and counts["running_header_lines"] == 0


@pytest.mark.parametrize("heading", ["## References", "References", "7 References", "Bibliography"])
def test_markdown_papers_lose_their_bibliography(tmp_path: Path, heading: str) -> None:
    lines = [f"Kiln fact {i}." for i in range(6)]
    paper = "\n".join(["# A study", *lines, heading, "- A. Smith. 2024. Tiny kilns. ArXiv:2401.00001 [cs]."])
    (tmp_path / "study.md").write_text(paper, encoding="utf-8")
    (tmp_path / "paper.pdf").write_bytes(_paper())
    report = fetch("research", PapersSource(**spec("papers", path=str(tmp_path))), tmp_path / "cache")
    by_source = {doc["source"]: doc["text"] for doc in report.documents}
    assert "ArXiv" not in by_source["study.md"] and "Kiln fact 5." in by_source["study.md"]
    assert report.cleaning["reference_lines"] == 2 + 3  # the markdown paper's and the PDF's
    assert report.cleaning["hyphenations_joined"] == 2
