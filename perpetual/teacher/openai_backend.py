"""The OpenAI teacher: one chat-completion request per chunk per kind (flashcards, MCQs), in parallel.

Every validated reply is cached on disk the moment it arrives (see `cache.py`), so reruns and resumed runs after a
crash only pay for what is missing. Retries are ours (the openai client's own are switched off) so that transport
errors, rate limits and invalid replies are counted in one place. Anything that still fails becomes a `Failure`;
no chunk is ever dropped silently.

Works with any OpenAI-compatible server (`base_url` in params or OPENAI_BASE_URL); the key comes only from
OPENAI_API_KEY and is handed to the client alone: it never reaches cache keys, cache files, logs or errors.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from itertools import chain
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tqdm import tqdm

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.records import LETTERS, Chunk
from perpetual.teacher.base import Failure, FlashcardDraft, GenerationResult, ItemKind, McqDraft
from perpetual.teacher.cache import CachedResponse, ResponseCache, cache_key

KINDS: tuple[ItemKind, ...] = ("flashcards", "mcq")
FLASHCARDS_MIN, FLASHCARDS_MAX = 3, 5
# Longest Retry-After we honour; a server asking for more is treated as asking for this.
MAX_RETRY_AFTER_S = 120.0
# A rejected reply is echoed back with the feedback; very long ones are cut to keep the retry cheap.
MAX_ECHOED_CHARS = 8000
# Before any reply has been seen, assume this many completion tokens per item when estimating cost.
DEFAULT_COMPLETION_TOKENS_PER_ITEM = 150


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    # Strict structured outputs require every property listed as required and no extra properties.
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


SCHEMAS: dict[ItemKind, dict[str, Any]] = {
    "flashcards": _object(
        {
            "questions": {
                "type": "array",
                "minItems": FLASHCARDS_MIN,
                "maxItems": FLASHCARDS_MAX,
                "items": _object({"question": {"type": "string"}, "answer": {"type": "string"}}),
            }
        }
    ),
    "mcq": _object(
        {
            "questions": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "question": {"type": "string"},
                        "choices": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "string"}},
                        "answer": {"type": "string", "enum": list(LETTERS)},
                    }
                ),
            }
        }
    ),
}

SCHEMA_TEXTS = {kind: json.dumps(schema, indent=2) for kind, schema in SCHEMAS.items()}  # as shown in prompts


def response_format(kind: ItemKind, mode: str) -> dict[str, Any]:
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": kind, "strict": True, "schema": SCHEMAS[kind]}}


# ---------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """A prompt file from prompts_dir: `## system` and `## user` sections with {count}, {schema}, {text}."""

    kind: ItemKind
    version: str  # the file's `version:` line, for people; caching uses `sha256`
    sha256: str  # of the whole file: any edit changes the cache keys
    system: str
    user: str

    def render(self, text: str, count: int) -> list[dict[str, str]]:
        schema = SCHEMA_TEXTS[self.kind]
        return [
            {"role": "system", "content": _fill(self.system, count, schema, text)},
            {"role": "user", "content": _fill(self.user, count, schema, text)},
        ]


def _fill(template: str, count: int, schema: str, text: str) -> str:
    # {text} goes last so that braces inside a chunk are never taken for placeholders.
    return template.replace("{count}", str(count)).replace("{schema}", schema).replace("{text}", text)


def load_prompt(prompts_dir: Path, kind: ItemKind) -> Prompt:
    path = Path(prompts_dir) / f"{kind}.md"
    if not path.exists():
        raise UserError(f"prompt file {path} not found; set generate.teacher.prompts_dir to the folder holding {kind}.md")
    raw = path.read_text(encoding="utf-8")
    body = re.sub(r"<!--.*?-->", "", raw, flags=re.DOTALL)
    version_match = re.match(r"\s*version:\s*(\S.*?)\s*$", body, flags=re.MULTILINE)
    sections = dict(re.findall(r"^## (system|user)[ \t]*\n(.*?)(?=^## (?:system|user)[ \t]*$|\Z)", body, re.M | re.S))
    if "user" not in sections or "{text}" not in sections["user"] + sections.get("system", ""):
        raise UserError(f"{path} needs a '## user' section and a {{text}} placeholder for the chunk")
    return Prompt(
        kind=kind,
        version=version_match.group(1) if version_match else "",
        sha256=hashlib.sha256(raw.encode("utf-8")).hexdigest(),
        system=sections.get("system", "").strip(),
        user=sections["user"].strip(),
    )


# ---------------------------------------------------------------- reply validation
class InvalidResponse(ValueError):
    """A reply that breaks the schema or the basic item rules; the message is fed back to the model."""


def parse_items(kind: ItemKind, content: str, count: int) -> list[dict[str, Any]]:
    """Check a reply against the schema and basic rules; return at most `count` normalised items."""
    try:
        payload = json.loads(content)
    except json.JSONDecodeError as error:
        raise InvalidResponse(f"the reply is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    questions = payload.get("questions") if isinstance(payload, dict) else None
    if not isinstance(questions, list):
        raise InvalidResponse("the reply must be a JSON object with a `questions` list")
    if kind == "flashcards":
        if not FLASHCARDS_MIN <= len(questions) <= FLASHCARDS_MAX:
            raise InvalidResponse(f"`questions` has {len(questions)} items; it must have {FLASHCARDS_MIN} to {FLASHCARDS_MAX}")
        items = [_flashcard(item, index) for index, item in enumerate(questions)]
    else:
        if not questions:
            raise InvalidResponse("`questions` is empty; it must hold at least one question")
        items = [_mcq(item, index) for index, item in enumerate(questions)]
    return items[:count]


def _flashcard(item: object, index: int) -> dict[str, Any]:
    where = f"questions[{index}]"
    if not isinstance(item, dict):
        raise InvalidResponse(f"{where} must be an object with `question` and `answer`")
    return {"question": _text(item, "question", where), "answer": _text(item, "answer", where)}


def _mcq(item: object, index: int) -> dict[str, Any]:
    where = f"questions[{index}]"
    if not isinstance(item, dict):
        raise InvalidResponse(f"{where} must be an object with `question`, `choices` and `answer`")
    choices = item.get("choices")
    if not isinstance(choices, list) or len(choices) != 4:
        found = len(choices) if isinstance(choices, list) else type(choices).__name__
        raise InvalidResponse(f"{where}.choices must be a list of exactly 4 strings (got {found})")
    for position, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            raise InvalidResponse(f"{where}.choices[{position}] must be a non-empty string")
    answer = item.get("answer")
    # Tolerate "b", "B)" or "(B)": the letter is unambiguous; anything else is fed back as an error.
    letter = re.fullmatch(r"\s*\(?([A-Da-d])[).:]?\s*", answer) if isinstance(answer, str) else None
    if letter is None:
        raise InvalidResponse(f"{where}.answer must be a single letter A, B, C or D (got {answer!r})")
    return {"question": _text(item, "question", where), "choices": list(choices), "answer": letter.group(1).upper()}


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidResponse(f"{where}.{key} must be a non-empty string")
    return value.strip()


def feedback_message(error: InvalidResponse) -> str:
    return f"Your previous reply was rejected: {error}. Reply again with only a JSON object that follows the schema."


# ---------------------------------------------------------------- pacing, budget, counters
class _Pacer:
    """Spaces out `amount`s to `rate_per_s` on average, allowing a burst of `burst_s` seconds' worth.

    Virtual scheduling: each acquisition books amount/rate seconds on a timeline and may start at most `burst_s`
    before its slot, so the long-run rate holds even for amounts larger than the burst.
    """

    def __init__(self, rate_per_s: float, abort: threading.Event, burst_s: float = 1.0) -> None:
        self._rate = rate_per_s
        self._burst_s = burst_s
        self._abort = abort
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()

    def acquire(self, amount: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._next_slot = max(self._next_slot, now)  # idle time earns no credit beyond the burst
            start = max(now, self._next_slot - self._burst_s)
            self._next_slot += amount / self._rate
        if start > now:
            self._abort.wait(start - now)  # sleeps, but wakes at once when the run is aborted


class _Budget:
    """Reserves each request's estimated cost before it is sent; once one does not fit, no request does."""

    def __init__(self, limit_usd: float | None) -> None:
        self._limit = limit_usd
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved = 0.0
        self.exhausted = False

    def reserve(self, estimate: float) -> bool:
        with self._lock:
            if self.exhausted:
                return False
            if self._limit is not None and self._spent + self._reserved + estimate > self._limit:
                self.exhausted = True  # sticky: stopping cleanly means no new requests at all
                return False
            self._reserved += estimate
            return True

    def settle(self, estimate: float, actual: float) -> None:
        with self._lock:
            self._reserved -= estimate
            self._spent += actual


STATS_KEYS = (
    "requests",  # HTTP requests sent, retries included
    "cache_hits",  # chunk x kind answered from the cache
    "failures",  # chunk x kind recorded as a Failure
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",  # estimated from the token counts and params prices; cache hits cost nothing
    "retries",  # transport retries (429, 5xx, timeouts, connection errors)
    "invalid_responses",  # replies rejected by validation and asked again
)


class _Stats:
    """Thread-safe counters; every key in STATS_KEYS is always reported, so metrics files keep one shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, **amounts: float) -> None:
        with self._lock:
            self._values.update(amounts)

    def get(self, key: str) -> float:
        with self._lock:
            return self._values[key]

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {key: float(self._values[key]) for key in STATS_KEYS}


# ---------------------------------------------------------------- errors
class _BudgetExhausted(Exception):
    pass


class _Aborted(Exception):
    pass


def _is_transient(error: BaseException) -> bool:
    """429, 5xx, 408/409, timeouts and dropped connections are worth retrying; other 4xx are not."""
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return False


def _retry_after_s(error: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After-Ms, Retry-After as seconds or HTTP date), if any."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if math.isfinite(seconds):
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    return None


def _fatal(error: openai.APIStatusError, detail: str) -> UserError | None:
    """Errors that would fail every chunk alike: stop the run with one line instead of N failures."""
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return UserError(f"the teacher API refused the key ({error.status_code}: {detail}); check OPENAI_API_KEY")
    if isinstance(error, openai.NotFoundError):
        return UserError(f"the teacher API answered 404 ({detail}); check generate.teacher.model and base_url")
    if error.status_code == 429 and error.code == "insufficient_quota":
        return UserError(f"the teacher API account has no quota left ({detail}); add credit or use backend: offline")
    return None


def _one_line(text: str, secret: str = "", limit: int = 200) -> str:
    """Error text fit for a terminal line or a Failure reason, with the key (or anything shaped like one) masked."""
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")  # servers may echo the key in their error messages
    text = re.sub(r"\bsk-[\w*.-]+", "sk-***", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- the teacher
@dataclass(frozen=True)
class _Job:
    chunk_index: int
    chunk_id: str
    kind: ItemKind
    count: int
    messages: list[dict[str, str]]
    key: str


@dataclass(frozen=True)
class _Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    refusal: str | None


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    items: list[dict[str, Any]] | None
    failure: str | None
    new_reply: CachedResponse | None = None  # a validated reply the main thread has yet to cache


class OpenAITeacher:
    """Generates flashcards and MCQs with an OpenAI-compatible chat-completions API."""

    def __init__(
        self,
        params: TeacherParams,
        *,
        api_key: str,
        base_url: str | None = None,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        show_progress: bool = True,
    ) -> None:
        self.params = params
        self.prompts = {kind: load_prompt(Path(params.prompts_dir), kind) for kind in KINDS}
        self.cache = ResponseCache(params.cache_dir)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._show_progress = show_progress
        # max_retries=0: retries are ours (counted, budget-checked, Retry-After honoured) rather than hidden.
        base_url = base_url or params.base_url  # None: the client's own default (OPENAI_BASE_URL, else OpenAI)
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=params.timeout_s)
        self._abort = threading.Event()
        self._stats = _Stats()
        self._budget = _Budget(params.max_cost_usd)
        self._completion_tokens_per_item = float(DEFAULT_COMPLETION_TOKENS_PER_ITEM)
        self._completion_size_known = False
        self._estimate_lock = threading.Lock()
        self._response_formats = {kind: response_format(kind, params.response_format) for kind in KINDS}
        self._request_pacer = self._pacer(params.requests_per_minute)
        self._token_pacer = self._pacer(params.tokens_per_minute)

    @classmethod
    def from_params(cls, params: TeacherParams, **options: Any) -> OpenAITeacher:
        """Build from params; the key is read from OPENAI_API_KEY only, never from params files."""
        api_key = os.environ.get("OPENAI_API_KEY", "").strip()
        if not api_key:
            raise UserError("OPENAI_API_KEY is not set; export OPENAI_API_KEY=... or set generate.teacher.backend: offline")
        base_url = params.base_url or os.environ.get("OPENAI_BASE_URL") or None
        return cls(params, api_key=api_key, base_url=base_url, **options)

    # ------------------------------------------------------------ public
    def generate(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> GenerationResult:
        self._abort.clear()
        self._stats = _Stats()
        self._budget = _Budget(self.params.max_cost_usd)
        self.cache.remove_stale_temps()
        jobs = self._plan(chunks, flashcards_per_chunk, mcqs_per_chunk)
        outcomes = self._run_all(jobs, len(chunks))
        return self._assemble(jobs, outcomes)

    # ------------------------------------------------------------ planning and assembly
    def _plan(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> list[_Job]:
        jobs = []
        for index, chunk in enumerate(chunks):
            kinds: tuple[tuple[ItemKind, int], ...] = (("flashcards", flashcards_per_chunk), ("mcq", mcqs_per_chunk))
            for kind, count in kinds:
                if count > 0:
                    jobs.append(self._job(index, chunk, kind, count))
        return jobs

    def _job(self, index: int, chunk: Chunk, kind: ItemKind, count: int) -> _Job:
        prompt = self.prompts[kind]
        messages = prompt.render(chunk["text"], count)
        key = cache_key(
            {
                "backend": "openai",
                "model": self.params.model,
                "prompt_sha256": prompt.sha256,
                "kind": kind,
                "count": count,
                "text": chunk["text"],
                "temperature": self.params.temperature,
                "response_format": self.params.response_format,
                "seed": self.params.seed,
            }
        )
        return _Job(index, chunk["chunk_id"], kind, count, messages, key)

    def _assemble(self, jobs: list[_Job], outcomes: dict[int, _Outcome]) -> GenerationResult:
        # Chunk order, not completion order: the same inputs always give the same output file.
        result = GenerationResult()
        for position, job in enumerate(jobs):
            outcome = outcomes[position]
            if outcome.items is None:
                result.failures.append(Failure(job.chunk_id, job.kind, outcome.failure or "unknown"))
            elif job.kind == "flashcards":
                result.flashcards += [FlashcardDraft(job.chunk_id, item["question"], item["answer"]) for item in outcome.items]
            else:
                result.mcqs += [_mcq_draft(job.chunk_id, item) for item in outcome.items]
        result.stats = self._stats.snapshot()
        return result

    # ------------------------------------------------------------ running
    def _run_all(self, jobs: list[_Job], chunk_count: int) -> dict[int, _Outcome]:
        outcomes, to_ask, twins = self._answer_from_cache(jobs)
        pending = Counter(jobs[position].chunk_index for position in [*to_ask, *chain.from_iterable(twins.values())])
        bar = tqdm(total=chunk_count, unit="chunk", desc="teacher", disable=None if self._show_progress else True)
        bar.update(chunk_count - len(pending))  # chunks answered entirely from the cache
        with bar, ThreadPoolExecutor(max_workers=self.params.concurrency, thread_name_prefix="teacher") as pool:
            futures = {pool.submit(self._ask, jobs[position]): position for position in to_ask}
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[futures[future]] = outcome
                    self._record(outcome, pending, bar)
                    for twin in twins.get(futures[future], []):
                        outcomes[twin] = replace(outcome, job=jobs[twin], new_reply=None)
                        self._stats.add(cache_hits=int(outcome.items is not None))
                        self._record(outcomes[twin], pending, bar)
            except BaseException:
                # A fatal API error or Ctrl-C: queued jobs are dropped, running ones stop before their next request
                # (the pool would be joined at exit anyway), and every reply already paid for still reaches the cache.
                self._abort.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for future, position in futures.items():
                    if position not in outcomes and future.done() and not future.cancelled() and future.exception() is None:
                        self._store(future.result())
                raise
        return outcomes

    def _answer_from_cache(self, jobs: list[_Job]) -> tuple[dict[int, _Outcome], list[int], dict[int, list[int]]]:
        """Outcomes of cached jobs; positions to ask; and, per position asked, later jobs with the same key.

        Cached jobs never take a worker. Chunks with identical text (licence headers, empty modules) make
        identical requests: only the first is sent, and its twins share the reply as if it were cached.
        """
        outcomes: dict[int, _Outcome] = {}
        to_ask: list[int] = []
        first_with_key: dict[str, int] = {}
        twins: dict[int, list[int]] = {}
        for position, job in enumerate(jobs):
            if job.key in first_with_key:
                twins.setdefault(first_with_key[job.key], []).append(position)
                continue
            cached = self._from_cache(job)
            if cached is None:
                first_with_key[job.key] = position
                to_ask.append(position)
            else:
                outcomes[position] = cached
        return outcomes, to_ask, twins

    def _record(self, outcome: _Outcome, pending: Counter[int], bar: tqdm) -> None:
        self._store(outcome)
        if outcome.items is None:
            self._stats.add(failures=1)
        pending[outcome.job.chunk_index] -= 1
        if pending[outcome.job.chunk_index] == 0:
            bar.update(1)
            bar.set_postfix(cost=f"${self._stats.get('cost_usd'):.2f}", failed=int(self._stats.get("failures")))

    def _store(self, outcome: _Outcome) -> None:
        # The main thread, otherwise idle, writes each reply the moment its worker hands it over. A single writer
        # keeps file-system work off the workers' request path: writing from 32 workers cost them about a tenth
        # of their throughput in the benchmark.
        if outcome.new_reply is not None:
            job = outcome.job
            info = {"model": self.params.model, "kind": job.kind, "chunk_id": job.chunk_id}
            self.cache.put(job.key, outcome.new_reply, info)

    def _from_cache(self, job: _Job) -> _Outcome | None:
        cached = self.cache.get(job.key)
        if cached is None:
            return None
        try:
            items = parse_items(job.kind, cached.content, job.count)
        except InvalidResponse:
            return None  # cached under older, looser rules: ask again
        self._stats.add(cache_hits=1)
        return _Outcome(job, items, None)

    def _ask(self, job: _Job) -> _Outcome:
        """Request until a reply passes validation, feeding each rejection back, up to max_retries times."""
        messages = job.messages
        error: InvalidResponse | None = None
        for _ in range(self.params.max_retries + 1):
            try:
                reply = self._request(job, messages)
            except _BudgetExhausted:
                return _Outcome(job, None, "budget")
            except _Aborted:
                return _Outcome(job, None, "aborted")
            except openai.APIError as api_error:
                return _Outcome(job, None, f"api error: {type(api_error).__name__}: {self._one_line(str(api_error))}")
            try:
                items = self._validate(job, reply)
            except InvalidResponse as invalid:
                error = invalid
                self._stats.add(invalid_responses=1)
                echoed = {"role": "assistant", "content": reply.content[:MAX_ECHOED_CHARS]}
                messages = [*job.messages, echoed, {"role": "user", "content": feedback_message(invalid)}]
                continue
            return _Outcome(job, items, None, CachedResponse(reply.content, reply.prompt_tokens, reply.completion_tokens))
        attempts = self.params.max_retries + 1
        return _Outcome(job, None, f"invalid response after {attempts} attempt(s): {error}")

    def _validate(self, job: _Job, reply: _Reply) -> list[dict[str, Any]]:
        if reply.refusal:
            raise InvalidResponse(f"the model refused ({_one_line(reply.refusal)})")
        if reply.finish_reason == "length":
            raise InvalidResponse("the reply was cut off at the length limit; write shorter items")
        return parse_items(job.kind, reply.content, job.count)

    def _request(self, job: _Job, messages: list[dict[str, str]]) -> _Reply:
        """One logical request: transport errors retried with backoff (Retry-After honoured)."""
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.params.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda _state: self._stats.add(retries=1),
            reraise=True,
        )
        return retrying(self._attempt, job, messages)

    def _attempt(self, job: _Job, messages: list[dict[str, str]]) -> _Reply:
        if self._abort.is_set():
            raise _Aborted()
        estimate_tokens, estimate_cost = self._estimate(job, messages)
        if not self._budget.reserve(estimate_cost):
            raise _BudgetExhausted()
        actual_cost = 0.0
        try:
            if self._request_pacer is not None:
                self._request_pacer.acquire(1)
            if self._token_pacer is not None:
                self._token_pacer.acquire(estimate_tokens)
            if self._abort.is_set():
                raise _Aborted()
            self._stats.add(requests=1)
            reply = self._send(job, messages)
            actual_cost = self._cost(reply.prompt_tokens, reply.completion_tokens)
            self._stats.add(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, cost_usd=actual_cost)
            self._learn_completion_size(job, reply)
            return reply
        except openai.APIStatusError as error:
            fatal = _fatal(error, self._one_line(error.message))
            if fatal is not None:
                raise fatal from None
            raise
        finally:
            self._budget.settle(estimate_cost, actual_cost)

    def _send(self, job: _Job, messages: list[dict[str, str]]) -> _Reply:
        body = {
            "model": self.params.model,
            "messages": messages,
            "response_format": self._response_formats[job.kind],
            "temperature": self.params.temperature,
            "seed": self.params.seed,
        }
        # The client's generic post() rather than chat.completions.create(): create() walks every request, nested
        # JSON schema included, through its TypedDict transformer (~0.7 ms of CPU under the GIL per call), which
        # alone kept 32 workers well below the latency bound. The body is already in wire format; auth, base_url,
        # timeout, error classes and the typed ChatCompletion reply are the same either way.
        completion = self._client.post("/chat/completions", cast_to=ChatCompletion, body=body)
        choice = completion.choices[0] if completion.choices else None
        content = (choice.message.content if choice else None) or ""
        usage = completion.usage
        # Without usage figures, fall back on the same rough estimate the budget uses (never under-count cost).
        prompt_tokens = usage.prompt_tokens if usage else _tokens_from_chars(sum(len(m["content"]) for m in messages))
        completion_tokens = usage.completion_tokens if usage else _tokens_from_chars(len(content))
        return _Reply(
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=choice.finish_reason if choice else None,
            refusal=getattr(choice.message, "refusal", None) if choice else None,
        )

    def _one_line(self, text: str) -> str:
        return _one_line(text, secret=str(self._client.api_key or ""))

    # ------------------------------------------------------------ retries, cost, pacing
    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after_s(error) if error is not None else None
        if retry_after is not None:
            # The server's own figure, plus a little jitter so parallel workers do not return in lockstep.
            return retry_after + random.uniform(0, 0.1 * retry_after + 0.01)
        # "Full jitter" exponential backoff: uniform in [0, base * 2^n], capped.
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def _sleep(self, seconds: float) -> None:
        self._abort.wait(seconds)  # an aborted run stops waiting; the next attempt then raises _Aborted

    def _estimate(self, job: _Job, messages: list[dict[str, str]]) -> tuple[float, float]:
        """Tokens and dollars a request may use, erring high so the budget is not overshot."""
        prompt_tokens = _tokens_from_chars(sum(len(message["content"]) for message in messages))
        with self._estimate_lock:
            completion_tokens = self._completion_tokens_per_item * job.count * 1.25
        return prompt_tokens + completion_tokens, self._cost(prompt_tokens, completion_tokens)

    def _learn_completion_size(self, job: _Job, reply: _Reply) -> None:
        # The first real reply replaces the default guess; after that, the largest per-item size seen so far.
        per_item = reply.completion_tokens / max(job.count, 1)
        with self._estimate_lock:
            if self._completion_size_known:
                per_item = max(self._completion_tokens_per_item, per_item)
            self._completion_tokens_per_item = per_item
            self._completion_size_known = True

    def _cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens / 1000 * self.params.price_per_1k_input_usd
            + completion_tokens / 1000 * self.params.price_per_1k_output_usd
        )

    def _pacer(self, per_minute: int | None) -> _Pacer | None:
        return _Pacer(per_minute / 60.0, self._abort) if per_minute else None


def _tokens_from_chars(chars: int) -> int:
    # About 4 characters per token for English prose, nearer 3 for code: 3 keeps estimates on the high side.
    return math.ceil(chars / 3)


def _mcq_draft(chunk_id: str, item: dict[str, Any]) -> McqDraft:
    return McqDraft(
        chunk_id=chunk_id,
        question=item["question"],
        options=tuple(item["choices"]),
        correct_index=LETTERS.index(item["answer"]),
        cloze_prefix="",
        kind="text",
    )
