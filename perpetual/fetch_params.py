"""params.yaml's `fetch` section: where each task's documents come from, one source spec per task (`kind`: local,
git, papers or catalogue). Part of the params schema (perpetual/config.py); no field has a default but those whose
absence means none (a catalogue's `path` or `hf_dataset`, `hf_revision`, `hf_split` for a local file)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from perpetual.params_errors import union_tags
from perpetual.strict import Strict


class LocalSource(Strict):
    """A folder on disk (or a git checkout): files matching `include` and not `exclude` become documents.

    A project's tests assert what its code does, in fixtures and mocks: questions from them would test the tests, so
    the shipped code source excludes them.
    """

    kind: Literal["local"]
    path: str
    include: list[str]
    exclude: list[str]
    language: Literal["python", "markdown", "text"]


class GitSource(Strict):
    """A git repository (URL or local path) pinned to a commit; files matching `include` become documents."""

    kind: Literal["git"]
    url: str
    commit: str = Field(min_length=7)
    include: list[str]
    exclude: list[str]
    language: Literal["python", "markdown", "text"]


class PapersSource(Strict):
    """A folder of research papers: .pdf, .md and .txt files, cleaned as a reader skims (perpetual/papers.py).

    `drop_references`: the bibliography is not knowledge to learn; `drop_appendices`: nor, for some studies, the
    appendices (proofs, prompts, extra tables).
    """

    kind: Literal["papers"]
    path: str
    drop_references: bool
    drop_appendices: bool


class CatalogueSource(Strict):
    """A product catalogue: a local CSV/JSONL/Parquet file, or a Hugging Face dataset id (`hf_dataset`).

    `hf_revision` pins the dataset (a branch, tag or commit sha; none: the default branch); either way the commit it
    resolved to is recorded in metrics/fetch/<task>.json, so `dvc metrics diff` shows when a rerun read different
    data. `hf_split` (the dataset split) is written with `hf_dataset`.
    """

    kind: Literal["catalogue"]
    path: str | None = None
    hf_dataset: str | None = None
    hf_split: str | None = None
    hf_revision: str | None = None
    id_field: str
    text_fields: list[str]
    max_products: int | None = Field(ge=1)
    # A line that does not parse (CSV with too many fields, JSONL that is not a JSON object): skipped and counted
    # in metrics/fetch/<task>.json, or the stage stops naming it.
    on_malformed: Literal["skip", "error"]

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
    """Two maps, because DVC can only depend on a path every entry of a `foreach` has (dvc.yaml):

    * `sources`: read from disk, in the repository or outside it; each `path` is a dependency of fetch@<task>, so
      editing the file or folder makes the stage stale;
    * `remote_sources`: a git repository pinned to a commit, or a Hugging Face dataset; the pin is a param of
      fetch-remote@<task>, and the resolved commit is recorded in metrics/fetch/<task>.json.
    """

    sources: dict[str, OnDiskSource]
    remote_sources: dict[str, RemoteSource]

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
