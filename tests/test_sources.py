"""perpetual/sources.py: local folders, git pinned to a commit, papers (PDF/markdown), product catalogues."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from perpetual.errors import UserError
from perpetual.fetch_params import CatalogueSource, GitSource, LocalSource, PapersSource
from perpetual.sources import fetch, render_product, resolve_hub_revision
from perpetual.testing.params import spec
from tests.pdf_support import make_pdf

FIELDS = ["title", "brand", "category", "price_usd", "description"]
PRODUCTS = [
    {
        "product_id": "PX-1",
        "title": "Tellavik Nova Kettle",
        "brand": "Tellavik",
        "category": "Kettles",
        "price_usd": "89.30",
        "description": "The Nova weighs 1336 grams.",
    },
    {
        "product_id": "PX-2",
        "title": "Ombrisk Thistle Lamp",
        "brand": "Ombrisk",
        "category": "Desk Lamps",
        "price_usd": "179.00",
        "description": "Its codename was Mirefly.",
    },
]


def _write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _sources(report) -> list[str]:
    return sorted(doc["source"] for doc in report.documents)


# ---------------------------------------------------------------- local folders
def test_local_include_and_exclude_globs(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/a.py", "def a():\n    return 1\n")
    _write(tmp_path, "pkg/sub/b.py", "def b():\n    return 2\n")
    _write(tmp_path, "pkg/sub/test_b.py", "def test_b():\n    assert True\n")
    _write(tmp_path, "docs/guide.md", "# Guide\nSome text.\n")
    _write(tmp_path, "notes.txt", "not included\n")
    source = LocalSource(
        kind="local", path=str(tmp_path), include=["**/*.py", "**/*.md"], exclude=["**/test_*.py"], language="python"
    )
    report = fetch("code", source, tmp_path / "cache")
    assert _sources(report) == ["docs/guide.md", "pkg/a.py", "pkg/sub/b.py"]
    languages = {doc["source"]: doc["language"] for doc in report.documents}
    assert languages == {"docs/guide.md": "markdown", "pkg/a.py": "python", "pkg/sub/b.py": "python"}
    by_source = {doc["source"]: doc for doc in report.documents}
    assert by_source["pkg/a.py"]["text"] == "def a():\n    return 1\n"
    assert all(doc["task"] == "code" for doc in report.documents)
    assert len({doc["doc_id"] for doc in report.documents}) == 3
    assert report.skipped == {}


def test_local_exclude_globs_match_like_include_globs(tmp_path: Path) -> None:
    """`**/x` must also exclude top-level files and `dir/**` everything below dir, as the same globs do in include."""
    _write(tmp_path, "README.md", "# Top-level readme\n")
    _write(tmp_path, "pkg/notes.md", "# Nested notes\n")
    _write(tmp_path, "pkg/a.py", "A = 1\n")
    _write(tmp_path, "build/lib/generated.py", "GENERATED = 1\n")
    source = LocalSource(**spec("local", path=str(tmp_path), include=["**/*"], exclude=["**/*.md", "build/**"], language="text"))
    report = fetch("code", source, tmp_path / "cache")
    assert _sources(report) == ["pkg/a.py"]


def test_binary_and_non_utf8_files_are_skipped_and_reported(tmp_path: Path) -> None:
    _write(tmp_path, "good.txt", "Plain readable text.\n")
    _write(tmp_path, "image.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _write(tmp_path, "latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"))
    _write(tmp_path, "blank.txt", "   \n\n")
    source = LocalSource(**spec("local", path=str(tmp_path), include=["**/*"], language="text"))
    report = fetch("notes", source, tmp_path / "cache")
    assert _sources(report) == ["good.txt"]
    assert report.skipped == {"image.bin": "binary", "latin1.txt": "not UTF-8", "blank.txt": "empty"}


def test_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    source = LocalSource(**spec("local", path=str(tmp_path / "empty"), include=["**/*"], language="text"))
    with pytest.raises(UserError, match="no documents"):
        fetch("code", source, tmp_path / "cache")


def test_folder_of_only_unreadable_files_names_the_reasons(tmp_path: Path) -> None:
    _write(tmp_path, "src/blob.bin", b"\x00\x01\x02")
    source = LocalSource(**spec("local", path=str(tmp_path / "src"), include=["**/*"], language="text"))
    with pytest.raises(UserError, match="binary"):
        fetch("code", source, tmp_path / "cache")


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    source = LocalSource(**spec("local", path=str(tmp_path / "nope"), include=["**/*"], language="text"))
    with pytest.raises(UserError, match="does not exist"):
        fetch("code", source, tmp_path / "cache")


# ---------------------------------------------------------------- git
def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=t", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = tmp_path / "upstream"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    commits = []
    for version in (1, 2):
        _write(repo, "lib/core.py", f"VERSION = {version}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "--quiet", "-m", f"v{version}")
        commits.append(_git(repo, "rev-parse", "HEAD"))
    return repo, commits


def test_git_pinned_to_first_commit_gets_first_version(tmp_path: Path, upstream: tuple[Path, list[str]]) -> None:
    repo, (first, second) = upstream
    source = GitSource(**spec("git", url=str(repo), commit=first, include=["**/*.py"]))
    report = fetch("code", source, tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == ["VERSION = 1\n"]
    assert report.documents[0]["source"].endswith(f"@{first[:12]}:lib/core.py")
    # A short sha of the second commit gets the second version (same cache, different pin).
    report = fetch("code", GitSource(**spec("git", url=str(repo), commit=second[:8], include=["**/*.py"])), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == ["VERSION = 2\n"]


def test_git_bad_commit_is_a_user_error(tmp_path: Path, upstream: tuple[Path, list[str]]) -> None:
    repo, _ = upstream
    source = GitSource(**spec("git", url=str(repo), commit="deadbeefdeadbeef", include=["**/*.py"]))
    with pytest.raises(UserError, match="deadbeefdeadbeef"):
        fetch("code", source, tmp_path / "cache")


def test_git_unreachable_url_is_a_user_error(tmp_path: Path) -> None:
    source = GitSource(**spec("git", url=str(tmp_path / "no-such-repo"), commit="abcdef1", include=["**/*.py"]))
    with pytest.raises(UserError, match="cannot clone"):
        fetch("code", source, tmp_path / "cache")


def test_git_commit_made_after_first_fetch_is_found(tmp_path: Path, upstream: tuple[Path, list[str]]) -> None:
    """Bumping the pin to a newer upstream commit must work even though the clone is cached."""
    repo, (first, _) = upstream
    cache = tmp_path / "cache"
    fetch("code", GitSource(**spec("git", url=str(repo), commit=first, include=["**/*.py"])), cache)
    _write(repo, "lib/core.py", "VERSION = 3\n")
    _git(repo, "commit", "--quiet", "-am", "v3")
    third = _git(repo, "rev-parse", "HEAD")
    report = fetch("code", GitSource(**spec("git", url=str(repo), commit=third, include=["**/*.py"])), cache)
    assert [doc["text"] for doc in report.documents] == ["VERSION = 3\n"]


# ---------------------------------------------------------------- papers
def test_papers_pdf_is_extracted_and_corrupt_pdf_reported(tmp_path: Path) -> None:
    _write(tmp_path, "a-paper.pdf", make_pdf([["Hello Perpetual 42"]]))
    _write(tmp_path, "b-notes.md", "# Notes\nThe optimiser uses 7 warm-up steps.\n")
    _write(tmp_path, "c-draft.txt", "A plain text draft.\n")
    _write(tmp_path, "d-broken.pdf", b"%PDF-1.4\nthis is not really a pdf\x01\x02")
    _write(tmp_path, "e-figure.png", b"\x89PNG\x00\x00")  # not a paper format: ignored, not reported
    report = fetch("research", PapersSource(**spec("papers", path=str(tmp_path))), tmp_path / "cache")
    assert _sources(report) == ["a-paper.pdf", "b-notes.md", "c-draft.txt"]
    assert [doc["source"] for doc in report.documents] == _sources(report)  # sorted by source
    by_source = {doc["source"]: doc for doc in report.documents}
    assert "Hello Perpetual 42" in by_source["a-paper.pdf"]["text"]
    assert by_source["b-notes.md"]["language"] == "markdown"
    assert set(report.skipped) == {"d-broken.pdf"}
    assert report.skipped["d-broken.pdf"].startswith("unreadable PDF")


def test_papers_folder_with_only_a_corrupt_pdf_is_a_user_error(tmp_path: Path) -> None:
    _write(tmp_path, "broken.pdf", b"garbage bytes, no header at all")
    with pytest.raises(UserError, match="no documents"):
        fetch("research", PapersSource(**spec("papers", path=str(tmp_path))), tmp_path / "cache")


# ---------------------------------------------------------------- catalogues
def _expected_texts() -> list[str]:
    return [render_product(row, FIELDS) for row in PRODUCTS]


def _catalogue(path: Path, **overrides) -> CatalogueSource:
    return CatalogueSource(**spec("catalogue", path=str(path), id_field="product_id", text_fields=FIELDS, **overrides))


def test_render_product() -> None:
    text = render_product({**PRODUCTS[0], "brand": ""}, FIELDS)
    assert text == "Tellavik Nova Kettle\nCategory: Kettles\nPrice usd: 89.30\nThe Nova weighs 1336 grams."
    assert render_product({"title": "X", "price_usd": float("nan"), "description": None}, FIELDS) == "X"


def test_csv_catalogue_keeps_strings_as_written(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(PRODUCTS).to_csv(path, index=False)
    assert "89.30" in path.read_text(encoding="utf-8")
    report = fetch("products", _catalogue(path), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == _expected_texts()
    assert "Price usd: 89.30" in report.documents[0]["text"]
    assert "Price usd: 179.00" in report.documents[1]["text"]
    assert [doc["source"] for doc in report.documents] == ["catalogue.csv#PX-1", "catalogue.csv#PX-2"]
    assert {doc["language"] for doc in report.documents} == {"product"}


def test_jsonl_catalogue_one_document_per_row(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PRODUCTS), encoding="utf-8")
    report = fetch("products", _catalogue(path), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == _expected_texts()
    assert [doc["source"] for doc in report.documents] == ["catalogue.jsonl#PX-1", "catalogue.jsonl#PX-2"]


def _jsonl_with_bad_lines(path: Path) -> None:
    good = [json.dumps(row) for row in PRODUCTS]
    path.write_text("\n".join([good[0], '{"product_id": "PX-9", "title": "Broken', "[1, 2]", "", good[1]]) + "\n", encoding="utf-8")


def test_jsonl_catalogue_skips_and_names_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.jsonl"
    _jsonl_with_bad_lines(path)
    report = fetch("products", _catalogue(path), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == _expected_texts()
    assert set(report.skipped) == {"catalogue.jsonl:2", "catalogue.jsonl:3"}  # the blank line 4 is no product
    assert "invalid JSON" in report.skipped["catalogue.jsonl:2"] and "not an object" in report.skipped["catalogue.jsonl:3"]


def test_jsonl_catalogue_malformed_line_stops_the_stage_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.jsonl"
    _jsonl_with_bad_lines(path)
    with pytest.raises(UserError, match=r"catalogue.jsonl line 2: invalid JSON.*on_malformed: skip") as caught:
        fetch("products", _catalogue(path, on_malformed="error"), tmp_path / "cache")
    assert "\n" not in str(caught.value)


def test_csv_catalogue_skips_and_names_a_line_with_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(PRODUCTS).to_csv(path, index=False)
    header, first, second = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header, first, "PX-3,Lamp,Ombrisk,Lighting,12.00,A lamp,EXTRA", second]) + "\n", encoding="utf-8")
    report = fetch("products", _catalogue(path), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == _expected_texts()
    assert list(report.skipped) == ["catalogue.csv:3"] and "saw 7" in report.skipped["catalogue.csv:3"]
    with pytest.raises(UserError, match="catalogue.csv line 3"):
        fetch("products", _catalogue(path, on_malformed="error"), tmp_path / "cache")


def test_parquet_catalogue_one_document_per_row(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.parquet"
    pd.DataFrame(PRODUCTS).to_parquet(path, index=False)
    report = fetch("products", _catalogue(path), tmp_path / "cache")
    assert [doc["text"] for doc in report.documents] == _expected_texts()


def test_catalogue_max_products(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(PRODUCTS).to_csv(path, index=False)
    report = fetch("products", _catalogue(path, max_products=1), tmp_path / "cache")
    assert [doc["source"] for doc in report.documents] == ["catalogue.csv#PX-1"]


def test_catalogue_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(PRODUCTS).drop(columns=["brand"]).to_csv(path, index=False)
    with pytest.raises(UserError, match="brand"):
        fetch("products", _catalogue(path), tmp_path / "cache")


def test_catalogue_missing_file_and_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        fetch("products", _catalogue(tmp_path / "nope.csv"), tmp_path / "cache")
    odd = tmp_path / "catalogue.xlsx"
    odd.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match="unsupported extension"):
        fetch("products", _catalogue(odd), tmp_path / "cache")


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A loopback stand-in for the hub's dataset-info endpoint: every revision resolves to one fixed sha.

    Reached directly and online as far as huggingface_hub knows, whatever the shell exports: it reads HF_HUB_OFFLINE
    (or TRANSFORMERS_OFFLINE) into a constant at import, so the constant is set, not only the environment; and its
    HTTP client, which reads the proxy variables when built, is built afresh under this test's environment."""
    import huggingface_hub.constants
    from huggingface_hub.utils import close_session

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    close_session()
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            body = json.dumps({"id": "wdc/products-2017", "sha": HUB_SHA, "private": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requested
    server.shutdown()
    close_session()  # the next user builds its client under its own environment


HUB_SHA = "0123abcd" * 5


def test_hub_revision_resolves_to_a_commit(hub_server: tuple[str, list[str]]) -> None:
    endpoint, requested = hub_server
    assert resolve_hub_revision("wdc/products-2017", "main", endpoint=endpoint) == HUB_SHA
    assert requested == ["/api/datasets/wdc/products-2017/revision/main"]


def test_hub_dataset_is_loaded_at_the_resolved_commit_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    loaded = []

    def local_load_dataset(name: str, split: str, revision: str) -> list[dict[str, str]]:
        loaded.append((name, split, revision))
        return [{"product_id": "p1", "title": "Kiln shelf"}]

    monkeypatch.setattr("perpetual.sources.resolve_hub_revision", lambda name, revision: HUB_SHA)
    monkeypatch.setattr(datasets, "load_dataset", local_load_dataset)
    source = CatalogueSource(**spec("catalogue", path=None, hf_dataset="wdc/products-2017", hf_split="train", hf_revision="main", text_fields=["title"]))
    report = fetch("products", source, tmp_path / "cache")
    assert loaded == [("wdc/products-2017", "train", HUB_SHA)]
    assert report.revision == HUB_SHA
    assert report.documents[0]["source"] == "wdc/products-2017#p1"


def test_hf_dataset_failure_suggests_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, revision: str | None) -> str:
        raise ConnectionError("no network")

    monkeypatch.setattr("perpetual.sources.resolve_hub_revision", offline)
    source = CatalogueSource(**spec("catalogue", path=None, hf_dataset="wdc/products-2017", hf_split="train", text_fields=["title"]))
    with pytest.raises(UserError) as caught:
        fetch("products", source, tmp_path / "cache")
    message = str(caught.value)
    assert "wdc/products-2017" in message
    assert "local" in message and "CSV" in message and "fetch.sources" in message
    assert "\n" not in message


def test_git_source_records_the_commit_it_read(tmp_path: Path, upstream: tuple[Path, list[str]]) -> None:
    repo, (first, *_) = upstream
    report = fetch("code", GitSource(**spec("git", url=str(repo), commit=first[:8], include=["**/*.py"])), tmp_path / "cache")
    assert report.revision == first


def test_test_files_are_left_out_unless_the_user_includes_them(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/kiln.py", "LIMIT = 1280\n")
    _write(tmp_path, "pkg/tests/test_kiln.py", "def test_limit():\n    assert LIMIT == 1280\n")
    _write(tmp_path, "pkg/kiln_test.py", "LIMIT = 1\n")
    _write(tmp_path, "conftest.py", "import pytest\n")
    report = fetch("code", LocalSource(**spec("local", path=str(tmp_path), include=["**/*.py"], language="text")), tmp_path / "cache")
    assert _sources(report) == ["pkg/kiln.py"]
    everything = LocalSource(**spec("local", path=str(tmp_path), include=["**/*.py"], exclude=[], language="text"))
    assert len(fetch("code", everything, tmp_path / "cache").documents) == 4
