"""params.yaml's `generate` section: the teacher (the LLM that writes the flashcards and MCQs, perpetual/teacher/) and
what each task asks of it. Part of the params schema (perpetual/config.py); no field has a default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from perpetual.strict import Strict


class TeacherBatchParams(Strict):
    """Every request of a run goes in one JSONL file, each line's `custom_id` its cache key; a batch killed while polling
    is resumed by the next run: [teachers.md](teachers.md#batch-the-openai-batch-api-and-vllm-run-batch)."""

    poll_interval_s: float = Field(
        gt=0, description="seconds between two looks at a submitted batch (`batch`) or at the command's output (`vllm-run-batch`)"
    )
    price_per_1k_input_usd: float = Field(
        ge=0,
        description="USD per 1,000 input tokens of a batch request: the cost estimate and `max_cost_usd` use it instead of the synchronous price",
    )
    price_per_1k_output_usd: float = Field(ge=0, description="USD per 1,000 output tokens of a batch request")
    command: list[str] = Field(
        min_length=1,
        description="`vllm-run-batch`: the command, to which `-i <requests> -o <results> --model <model>` is appended; add vLLM's own "
        "flags here (e.g. `[vllm, run-batch, --max-model-len, '8192']`)",
    )


class TeacherParams(Strict):
    """How to reach and pace the teacher, and where its prompts and answers are: [teachers.md](teachers.md)."""

    backend: Literal["offline", "openai"] = Field(
        description="`offline` (deterministic, no model, no network) or `openai` (any OpenAI-compatible endpoint; the key from "
        "`OPENAI_API_KEY` only)"
    )
    model: str = Field(description="the model the endpoint serves (openai only)")
    base_url: str | None = Field(
        description="the endpoint (null: OpenAI's); e.g. `http://localhost:8000/v1` for vLLM, `http://localhost:11434/v1` for Ollama"
    )
    response_format: Literal["json_schema", "json_object", "prompt"] = Field(
        description="`json_schema`: OpenAI Structured Outputs; `json_object` for servers without them; `prompt` for servers "
        "that enforce no format (`transformers serve`): none is sent, the prompt's worked example shows the shape, and "
        "replies are parsed leniently (code fences, text around the JSON), validated and re-asked"
    )
    temperature: float = Field(ge=0.0, le=2.0, description="the sampling temperature")
    seed: int = Field(description="the seed sent with each request")
    concurrency: int = Field(ge=1, description="requests in flight")
    max_retries: int = Field(ge=0, description="retries on 429, 5xx and timeouts (the openai client's backoff, honouring `Retry-After`)")
    timeout_s: float = Field(gt=0, description="seconds per request")
    stop_after_invalid_replies: int | None = Field(
        ge=1,
        description="stop the run with a one-line error when its first this many replies all fail validation, one at least "
        "after the error was fed back (a model or server that ignores the schema), instead of paying for every chunk; "
        "counted in `metrics/generate/<task>.json` as `invalid_before_first_valid`. null: never",
    )
    max_tokens: int | None = Field(
        ge=1,
        description="the longest reply, in tokens (null: the server's default); a reply cut off at it keeps the items it "
        "completed if they pass validation, else it is asked again, so a small model that repeats itself stops costing time",
    )
    requests_per_minute: int | None = Field(ge=1, description="client-side pacing for rate-limited endpoints (null: none)")
    tokens_per_minute: int | None = Field(ge=1, description="the same in tokens (null: none)")
    max_cost_usd: float | None = Field(ge=0, description="stop cleanly before the estimated cost exceeds this (null: no budget)")
    price_per_1k_input_usd: float = Field(
        ge=0, description="USD per 1,000 input tokens, for the cost estimate in `metrics/generate/<task>.json`"
    )
    price_per_1k_output_usd: float = Field(ge=0, description="USD per 1,000 output tokens, for the same estimate")
    prompts_dir: str = Field(description="holds `flashcards.md` and `mcq.md` (a stage dependency: editing one re-runs generation)")
    cache_dir: str = Field(description="the response cache, one folder per task; a DVC output, so `dvc push` shares it")
    transport: Literal["sync", "batch", "vllm-run-batch"] = Field(
        description="openai only: `sync`, one request per chunk and kind, `concurrency` in flight; `batch`, all of them through the "
        "endpoint's Batch API (files and batches, polled; resumed after a kill; billed at `batch`'s prices); `vllm-run-batch`, all of "
        "them through a local `vllm run-batch` command on a GPU node. The replies land in the same cache whichever is used"
    )
    batch: TeacherBatchParams = Field(description="the batch transports' settings (`transport: batch` or `vllm-run-batch`)")

    @model_validator(mode="after")
    def batch_needs_an_endpoint_backend(self) -> TeacherParams:
        if self.transport != "sync" and self.backend != "openai":
            raise ValueError(f"transport {self.transport} needs backend: openai (the {self.backend} teacher sends no requests)")
        return self


class GenerateParams(Strict):
    teacher: TeacherParams = Field(
        description="the teacher: the LLM that writes the flashcards and MCQs; its endpoint also writes the self-study "
        "material when `train.self_study.teacher` is `openai`"
    )
    flashcards_per_chunk: int = Field(ge=3, le=5, description="flashcards per chunk, for training")
    mcqs_per_chunk: int = Field(ge=1, le=50, description="MCQs asked per chunk, before the cap")
    max_mcqs_per_task: int | None = Field(
        ge=1,
        description="the cap, which bounds evaluation cost; the MCQs kept are spread over all chunks and the number dropped is "
        "reported. At least 200 lets a few points' difference show. null: no cap",
    )
    near_duplicate_threshold: float = Field(
        gt=0,
        le=1,
        description="Jaccard similarity of word bigrams at or above which an MCQ counts as a near-duplicate of another MCQ, or of a "
        "flashcard's question (a leak from training), and is dropped",
    )
