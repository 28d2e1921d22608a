"""params.yaml's `fetch` section: where each task's documents come from, one source spec per task (`kind`: local,
git, papers or catalogue). Part of the params schema (perpetual/config.py); no field has a default but those whose
absence means none (a catalogue's `path` or `hf_dataset`, `hf_revision`, `hf_split` for a local file)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from perpetual.params_errors import union_tags
from perpetual.strict import Strict


class LocalSource(Strict):
    """A folder on disk (or a git checkout): the files matching `include` and not `exclude` become documents."""

    kind: Literal["local"] = Field(description="a folder read from disk")
    path: str = Field(description="the folder")
    include: list[str] = Field(description="glob patterns of the files to read")
    exclude: list[str] = Field(
        description="glob patterns of the files left out, e.g. tests: they assert what the code does in fixtures and mocks, so "
        "questions from them would test the tests"
    )
    language: Literal["python", "markdown", "text"] = Field(description="`python` (cut at its definitions), `markdown` or `text`")


class GitSource(Strict):
    """A git repository (URL or local path) pinned to a commit: the files matching `include` and not `exclude` become
    documents."""

    kind: Literal["git"] = Field(description="a git repository pinned to a commit")
    url: str = Field(description="URL or local path", examples=["https://github.com/scottsus/flamethrower"])
    commit: str = Field(min_length=7, description="the commit read", examples=["<sha>"])
    include: list[str] = Field(description="glob patterns of the files to read", examples=[["**/*.py"]])
    exclude: list[str] = Field(
        description="glob patterns of the files left out (as for `local`)",
        examples=[["**/tests", "**/test_*.py", "**/*_test.py", "**/conftest.py"]],
    )
    language: Literal["python", "markdown", "text"] = Field(
        description="`python` (cut at its definitions), `markdown` or `text`", examples=["python"]
    )


class PapersSource(Strict):
    """A folder of research papers: `.pdf`, `.md` and `.txt` files, cleaned as a reader skims (`perpetual/papers.py`)."""

    kind: Literal["papers"] = Field(description="a folder of papers")
    path: str = Field(description="the folder")
    drop_references: bool = Field(description="drop the bibliography before chunking: it is not knowledge to learn")
    drop_appendices: bool = Field(description="drop the appendices too (proofs, prompts, extra tables)")


class CatalogueSource(Strict):
    """A product catalogue, one chunk per product: either a local CSV/JSONL/Parquet file (`path`, in `fetch.sources`)
    or a Hugging Face dataset (`hf_dataset`, in `fetch.remote_sources`); exactly one of the two."""

    kind: Literal["catalogue"] = Field(description="a product catalogue")
    path: str | None = Field(None, description="a local CSV, JSONL or Parquet file")
    hf_dataset: str | None = Field(None, description="a Hugging Face dataset id", examples=["wdc/products-2017"])
    hf_split: str | None = Field(None, description="the dataset split: written with `hf_dataset`", examples=["train"])
    hf_revision: str | None = Field(
        None,
        description="a branch, tag or commit of the dataset; left out (or null), the default branch. Either way the commit is "
        "resolved first, loaded, and recorded in `metrics/fetch/<task>.json`, so `dvc metrics diff` shows when a rerun read "
        "different data",
        examples=["<sha>"],
    )
    id_field: str = Field(description="the column that identifies a product")
    text_fields: list[str] = Field(description="the columns that make a product's text")
    max_products: int | None = Field(ge=1, description="the first N products only (null: all)")
    on_malformed: Literal["skip", "error"] = Field(
        description="a line that does not parse (CSV with too many fields, JSONL that is not a JSON object) is skipped and counted "
        "in `metrics/fetch/<task>.json` (`skip`), or stops the stage, naming it (`error`)"
    )

    @model_validator(mode="after")
    def exactly_one_location(self) -> CatalogueSource:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError("set exactly one of `path` (a local file) or `hf_dataset` (a hub id)")
        if self.hf_dataset is not None and self.hf_split is None:
            raise ValueError("a Hugging Face dataset needs `hf_split` (e.g. train)")
        return self


Source = LocalSource | GitSource | PapersSource | CatalogueSource
OnDiskSource = Annotated[LocalSource | PapersSource | CatalogueSource, Field(discriminator="kind")]
RemoteSource = Annotated[GitSource | CatalogueSource, Field(discriminator="kind")]
ON_DISK_KINDS, REMOTE_KINDS = union_tags(OnDiskSource), union_tags(RemoteSource)


class FetchParams(Strict):
    """Two maps, because a DVC `foreach` can only depend on a path every entry has. A source in the wrong map is a
    one-line error saying where it goes; a task in both maps is an error too. Every source in either map gets its fetch
    stage, whether `pipeline.tasks` uses it or not (a `foreach` cannot filter): remove a source you do not use. How each
    kind is read and cleaned: [sources.md](sources.md)."""

    sources: dict[str, OnDiskSource] = Field(
        description="read from disk, in the repository or outside it: `fetch@<task>` depends on the `path`, so editing the file "
        "or folder makes the stage stale"
    )
    remote_sources: dict[str, RemoteSource] = Field(
        description="fetched by `fetch-remote@<task>`: a git repository pinned to a commit, or a Hugging Face dataset. The pin is a "
        "param, so the stage re-runs when it changes; the commit read is recorded as `revision` in `metrics/fetch/<task>.json`"
    )

    @model_validator(mode="before")
    @classmethod
    def each_kind_in_its_map(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for section, allowed in (("sources", ON_DISK_KINDS), ("remote_sources", REMOTE_KINDS)):
            for task, spec in (data.get(section) or {}).items():
                kind = spec.get("kind") if isinstance(spec, dict) else None
                if kind is None or kind in allowed:
                    continue
                if section == "sources":
                    raise ValueError(f"fetch.sources.{task}: a {kind} source is fetched, not read from disk; move it under fetch.remote_sources")
                raise ValueError(f"fetch.remote_sources.{task}: a {kind} source is read from disk; move it under fetch.sources, where its path is a dependency of fetch@{task}")
        return data

    @model_validator(mode="after")
    def catalogues_in_their_map(self) -> FetchParams:
        for task, spec in self.sources.items():
            if isinstance(spec, CatalogueSource) and spec.path is None:
                raise ValueError(f"fetch.sources.{task}: a Hugging Face dataset is not on disk; move it under fetch.remote_sources")
        for task, remote in self.remote_sources.items():
            if isinstance(remote, CatalogueSource) and remote.hf_dataset is None:
                raise ValueError(f"fetch.remote_sources.{task}: a catalogue file is read from disk; move it under fetch.sources, where its path is a dependency of fetch@{task}")
        both = sorted(set(self.sources) & set(self.remote_sources))
        if both:
            raise ValueError(f"task(s) {both} have a source in both fetch.sources and fetch.remote_sources; keep one")
        return self

    def source(self, task: str) -> Source:
        return {**self.sources, **self.remote_sources}[task]

    def tasks(self) -> set[str]:
        return set(self.sources) | set(self.remote_sources)
