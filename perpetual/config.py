"""Typed params: params.yaml is validated into these models when any stage starts.

A misspelled key or a wrong type stops the stage with one line naming the key and what is allowed
(perpetual/params_errors.py). `train.sft` and `instruct.sft` are TRL's SFTConfig options, passed through: the stages
that train check them against the installed TRL (`Params.check_sft`, perpetual/sft_options.py), since importing it
takes seconds that the other stages need not spend.

The sections with per-entry specs have modules of their own: `fetch` (perpetual/fetch_params.py) and `init`
(perpetual/init_params.py). No field has a default: every setting is written in params.yaml. The only fields that may
be left out are those whose absence means "none": a catalogue's `path` or `hf_dataset` and a pretrained model's
`name_or_path` or `package` (exactly one of each pair), `hf_split` (a local catalogue), `hf_revision` and `revision`
(the default branch), `gguf_file` (no GGUF), and a field of a tiny model's own copy lessons (`CopyingOverrides`: then
init.copying's).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from perpetual.errors import UserError
from perpetual.fetch_params import FetchParams, OnDiskSource, RemoteSource
from perpetual.init_params import InitParams, ModelSpec
from perpetual.mappings import deep_merge
from perpetual.params_errors import describe, problem, union_tags
from perpetual.sft_options import PERPETUAL_OWNED, check_sft
from perpetual.strict import Strict

# The number format a stage runs a model in (perpetual/precision.py decides what auto means on this machine).
Precision = Literal["auto", "bf16", "fp32"]


# ---------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    tasks: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seed: int


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


class SftSection(BaseModel):
    """TRL's SFTConfig options, passed to SFTConfig as they are: any of its fields, by its own names
    (perpetual/sft_options.py SFT_CONFIG_DOCS).

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
        merged = {**deep_merge(self.model_dump(), override), "task_overrides": {}}
        try:
            return TrainParams.model_validate(merged)
        except ValidationError as error:
            raise ValueError(f"train.task_overrides.{task}.{problem(error.errors()[0], self.section)}") from None


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
    precision: Precision  # perpetual/precision.py: bf16 weights for scoring and retention where it pays
    retention: RetentionParams


# ---------------------------------------------------------------- analysis
class AnalysisParams(Strict):
    """The statistics of a cell, computed from its predictions (analysis@<task>-<model>)."""

    bootstrap_samples: int = Field(ge=100)  # resamples for the 95% percentile-bootstrap CI
    alpha: float = Field(gt=0, lt=1)  # significance level of the paired tests ("learned", "improved")


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
    analysis: AnalysisParams

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


# The tags of the discriminated unions: pydantic puts them in an error's location, where the user never wrote them.
UNION_TAGS = union_tags(OnDiskSource, RemoteSource, ModelSpec)


def parse_params(raw: object, source: Path = Path("params.yaml")) -> Params:
    if not isinstance(raw, dict):
        raise UserError(f"{source} must be a YAML mapping of stage names to settings")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(describe(error, source, Params, UNION_TAGS)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found; run stages from the repository root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    return parse_params(raw, path)
