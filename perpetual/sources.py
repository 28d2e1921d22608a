"""Read a task's source (local folder, git repo at a commit, papers, product catalogue) into documents.

Unreadable files (binary, not UTF-8, empty, unparseable PDF) are skipped, counted and reported, never dropped
silently; a source that yields no document at all is a user error.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perpetual import papers
from perpetual.errors import UserError
from perpetual.fetch_params import CatalogueSource, GitSource, LocalSource, PapersSource
from perpetual.records import Document, content_id


@dataclass
class FetchReport:
    documents: list[Document] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source path -> reason
    cleaning: Counter[str] = field(default_factory=Counter)  # what cleaning removed or repaired, summed over documents
    revision: str | None = None  # the commit a git repository or hub dataset resolved to (None: read from disk)

    def add(self, task: str, source: str, language: str, text: str) -> None:
        if not text.strip():
            self.skipped[source] = "empty"
            return
        doc_id = content_id(task, source)
        self.documents.append(Document(doc_id=doc_id, task=task, source=source, language=language, text=text))


def _glob_files(root: Path, patterns: Iterable[str]) -> set[Path]:
    """Files matching any pattern; a pattern that matches a folder covers everything under it."""
    found: set[Path] = set()
    for pattern in patterns:
        for path in root.glob(pattern):
            if path.is_dir():
                found.update(child for child in path.rglob("*") if child.is_file())
            elif path.is_file():
                found.add(path)
    return found


def _select_files(root: Path, include: list[str], exclude: list[str]) -> list[Path]:
    excluded = _glob_files(root, exclude)
    return sorted(
        path
        for path in _glob_files(root, include) - excluded
        if ".git" not in path.relative_to(root).parts
    )


def _decode(path: Path) -> tuple[str | None, str]:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "not UTF-8"


def _language_of(path: Path, default: str) -> str:
    return {".py": "python", ".md": "markdown"}.get(path.suffix.lower(), default)


def read_folder(task: str, root: Path, include: list[str], exclude: list[str], language: str, label: str) -> FetchReport:
    if not root.is_dir():
        raise UserError(f"source folder {root} for task '{task}' does not exist; fix fetch.sources.{task}.path in params.yaml")
    report = FetchReport()
    for path in _select_files(root, include, exclude):
        relative = path.relative_to(root).as_posix()
        text, reason = _decode(path)
        if text is None:
            report.skipped[relative] = reason
            continue
        report.add(task, f"{label}{relative}", _language_of(path, language), text)
    return report


def fetch_local(task: str, source: LocalSource) -> FetchReport:
    return read_folder(task, Path(source.path), source.include, source.exclude, source.language, "")


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args[:2])} failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'}")
    return result.stdout


def checkout_git(source: GitSource, cache_dir: Path) -> Path:
    """Clone (once, cached) and check out the pinned commit; the commit pin makes the fetch reproducible."""
    checkout = cache_dir / content_id(source.url, length=12)
    if not (checkout / ".git").exists():
        checkout.parent.mkdir(parents=True, exist_ok=True)
        try:
            _git("clone", "--quiet", "--no-checkout", source.url, str(checkout))
        except UserError as error:
            raise UserError(f"cannot clone {source.url} ({error}); check fetch.remote_sources.*.url or use a local path") from None
    missing = subprocess.run(["git", "cat-file", "-e", f"{source.commit}^{{commit}}"], cwd=checkout, capture_output=True)
    if missing.returncode != 0:  # the pin may name a commit pushed after our cached clone was made
        _git("fetch", "--quiet", "origin", cwd=checkout)
    try:
        _git("checkout", "--quiet", "--force", source.commit, cwd=checkout)
    except UserError:
        raise UserError(
            f"commit {source.commit} not found in {source.url}; fix fetch.remote_sources.*.commit (a full or short sha)"
        ) from None
    return checkout


def fetch_git(task: str, source: GitSource, cache_dir: Path) -> FetchReport:
    checkout = checkout_git(source, cache_dir)
    resolved = _git("rev-parse", "HEAD", cwd=checkout).strip()
    report = read_folder(task, checkout, source.include, source.exclude, source.language, f"{source.url}@{resolved[:12]}:")
    report.revision = resolved
    return report


def fetch_papers(task: str, source: PapersSource) -> FetchReport:
    root = Path(source.path)
    options = {"drop_references": source.drop_references, "drop_appendices": source.drop_appendices}
    texts = read_folder(task, root, ["**/*.md", "**/*.txt"], [], "markdown", "")
    report = FetchReport(skipped=texts.skipped)
    for document in texts.documents:
        text, counts = papers.clean_text(document["text"], **options)
        report.cleaning.update(counts)
        report.add(task, document["source"], document["language"], text)
    for path in tqdm(_select_files(root, ["**/*.pdf"], []), desc=f"fetch {task}: PDFs", unit="file", disable=None):
        relative = path.relative_to(root).as_posix()
        try:
            pages = papers.pdf_pages(path)
        except Exception as error:  # pdfminer raises many types for damaged files; any of them means "skip this file"
            report.skipped[relative] = f"unreadable PDF ({type(error).__name__})"
            continue
        text, counts = papers.clean_pages(pages, **options)
        report.cleaning.update(counts)
        report.add(task, relative, "text", text)
    report.documents.sort(key=lambda doc: doc["source"])
    return report


def resolve_hub_revision(dataset: str, revision: str | None, endpoint: str | None = None) -> str:
    """The commit sha a hub dataset's branch, tag or sha names now (None: its default branch).

    Loading at that sha, rather than at the branch, makes the recorded revision the one that was read."""
    from huggingface_hub import HfApi

    sha = HfApi(endpoint=endpoint).dataset_info(dataset, revision=revision).sha
    if not sha:
        raise UserError(f"the hub gave no commit for dataset {dataset!r} at revision {revision!r}")
    return sha


def _load_hub_rows(task: str, source: CatalogueSource, report: FetchReport) -> list[dict[str, Any]]:
    import datasets

    name = source.hf_dataset or ""
    try:
        report.revision = resolve_hub_revision(name, source.hf_revision)
        dataset = datasets.load_dataset(name, split=source.hf_split, revision=report.revision)
    except Exception as error:  # hub errors vary by version; the message is what the user needs
        raise UserError(
            f"cannot load dataset {name!r} ({type(error).__name__}); without network, export it to a local "
            f"CSV/JSONL/Parquet file and move fetch.remote_sources.{task} under fetch.sources with its path"
        ) from None
    return [dict(row) for row in dataset]


def _load_catalogue_rows(task: str, source: CatalogueSource, report: FetchReport) -> list[dict[str, Any]]:
    """The catalogue's rows; a malformed line is skipped into the report (named by its line) or stops the stage."""
    if source.hf_dataset is not None:
        return _load_hub_rows(task, source, report)
    skipped = report.skipped
    path = Path(source.path or "")
    if not path.is_file():
        raise UserError(f"catalogue file {path} does not exist; fix fetch.sources.{task}.path in params.yaml")
    malformed: list[tuple[int, str]] = []
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = _read_jsonl(path, malformed)
        elif suffix == ".csv":
            rows = _read_csv(path, malformed)
        elif suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(path).to_dict(orient="records")
        else:
            raise UserError(f"catalogue {path} has an unsupported extension; use .csv, .jsonl or .parquet")
    except UserError:
        raise
    except Exception as error:  # pandas and pyarrow parser errors differ per format
        raise UserError(f"cannot parse catalogue {path}: {str(error).splitlines()[0]}") from None
    for line, reason in malformed:
        if source.on_malformed == "error":
            raise UserError(
                f"catalogue {path} line {line}: {reason}; fix the line, or set fetch.sources.{task}.on_malformed: skip"
            )
        skipped[f"{path.name}:{line}"] = f"malformed line ({reason})"
    return rows


def _read_jsonl(path: Path, malformed: list[tuple[int, str]]) -> list[dict[str, Any]]:
    # Line by line rather than pandas.read_json(lines=True): one bad line must cost that line, not the catalogue,
    # and pandas reports a character offset where the user needs a line number.
    rows = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                malformed.append((number, "not UTF-8"))
                continue
            except json.JSONDecodeError as error:
                malformed.append((number, f"invalid JSON: {error.msg} at column {error.colno}"))
                continue
            if not isinstance(row, dict):
                malformed.append((number, f"a JSON {type(row).__name__}, not an object"))
                continue
            rows.append(row)
    return rows


def _read_csv(path: Path, malformed: list[tuple[int, str]]) -> list[dict[str, Any]]:
    import pandas as pd

    # pandas names each bad line in a warning when asked to skip it: the C parser's speed, and line numbers.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        # Strings as written: a price of "89.30" must not become the float 89.3.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="warn")
    for warning in caught:
        for line, reason in re.findall(r"Skipping line (\d+): (.+)", str(warning.message)):
            malformed.append((int(line), reason.strip()))
    return frame.to_dict(orient="records")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def render_product(row: dict[str, Any], text_fields: list[str]) -> str:
    """The first field is the product's heading; the rest become 'Field: value' lines, free text stays as is."""
    lines = []
    for index, name in enumerate(text_fields):
        value = row.get(name)
        if _is_missing(value):
            continue
        text = str(value).strip()
        if index == 0 or name in {"description", "text", "body"}:
            lines.append(text)
        else:
            lines.append(f"{name.replace('_', ' ').capitalize()}: {text}")
    return "\n".join(lines)


def fetch_catalogue(task: str, source: CatalogueSource) -> FetchReport:
    report = FetchReport()
    rows = _load_catalogue_rows(task, source, report)
    columns = set().union(*rows) if rows else set()
    missing = [name for name in [source.id_field, *source.text_fields] if rows and name not in columns]
    if missing:
        raise UserError(
            f"catalogue has no column(s) {missing}; available: {sorted(columns)}; fix fetch.sources.{task}.text_fields/id_field"
        )
    label = source.hf_dataset or Path(source.path or "").name
    for index, row in enumerate(rows[: source.max_products]):
        product_id = str(row.get(source.id_field, index))
        report.add(task, f"{label}#{product_id}", "product", render_product(row, source.text_fields))
    return report


def fetch(task: str, source: object, cache_dir: Path) -> FetchReport:
    if isinstance(source, LocalSource):
        report = fetch_local(task, source)
    elif isinstance(source, GitSource):
        report = fetch_git(task, source, cache_dir)
    elif isinstance(source, PapersSource):
        report = fetch_papers(task, source)
    elif isinstance(source, CatalogueSource):
        report = fetch_catalogue(task, source)
    else:
        raise TypeError(f"unknown source type {type(source).__name__}")
    if not report.documents:
        reasons = f" ({len(report.skipped)} file(s) skipped: {sorted(set(report.skipped.values()))})" if report.skipped else ""
        raise UserError(f"task '{task}' source yielded no documents{reasons}; check fetch.sources.{task} in params.yaml")
    return report
