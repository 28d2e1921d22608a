"""Runs a teacher backend over a task's chunks: one request per chunk per kind (flashcards, MCQs), in parallel.

Everything here is the same for every backend: the response cache (a rerun, or a run resumed after a crash or
kill -9, pays only for what is missing), concurrency, client-side rate limits, the cost budget, re-asking a reply
that fails validation with the error fed back, stopping a run whose first replies all fail validation (a teacher that
cannot answer is not paid for every chunk), progress, and failure accounting (anything that still fails becomes
a `Failure`; no chunk is dropped silently). A backend is a `Transport`: it sends one chat request and says what came
back; transport-level retries (rate limits, server errors, timeouts) are its own and are reported in `Reply.retries`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from tqdm import tqdm

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.records import LETTERS, Chunk
from perpetual.teacher.base import Failure, FlashcardDraft, GenerationResult, ItemKind, McqDraft
from perpetual.teacher.cache import CachedResponse, KeyField, ResponseCache, cache_key
from perpetual.teacher.items import InvalidResponse, complete_items, feedback_message, parse_reply
from perpetual.teacher.prompts import Messages, Prompt, load_prompt

KINDS: tuple[ItemKind, ...] = ("flashcards", "mcq")
# A rejected reply is echoed back with the feedback; very long ones are cut to keep the retry cheap.
MAX_ECHOED_CHARS = 8000
# Before any reply has been seen, assume this many completion tokens per item when estimating cost.
DEFAULT_COMPLETION_TOKENS_PER_ITEM = 150


@dataclass(frozen=True)
class Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None  # "length": cut off, asked again
    refusal: str | None
    requests: int = 1  # HTTP requests it took, the transport's own retries included


class RequestFailed(Exception):
    """A request the transport gave up on (after its own retries); the message is one line, free of secrets."""

    def __init__(self, reason: str, requests: int) -> None:
        super().__init__(reason)
        self.requests = requests


class Transport(Protocol):
    """One backend: sends a chat request, returns the reply or raises RequestFailed (that request) or UserError
    (a fault that would fail every request alike, such as a rejected key: the run stops)."""

    def cache_fields(self) -> Mapping[str, KeyField]:
        """Everything besides the prompt and chunk that determines a reply (backend, model, sampling, seed)."""
        ...

    def send(self, kind: ItemKind, messages: Messages) -> Reply: ...


STATS_KEYS = (
    "requests",  # HTTP requests sent, retries included
    "cache_hits",  # chunk x kind answered from the cache
    "failures",  # chunk x kind recorded as a Failure
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",  # estimated from the token counts and params prices; cache hits cost nothing
    "retries",  # transport retries (429, 5xx, timeouts, connection errors)
    "invalid_responses",  # replies rejected by validation and asked again
    "invalid_before_first_valid",  # of those, the ones before the run's first valid reply (see _StartCheck)
    "cut_replies_kept",  # replies cut off at max_tokens whose complete items passed validation and were kept
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


class _StartCheck:
    """Whether the replies so far say the teacher cannot answer at all (a server that ignores response_format, a model
    that does not follow the schema). When the first `limit` replies of a run all fail validation, one at least after
    its error was fed back (a model that fixes its reply once told is not stopped), the run stops; one valid reply
    settles it for the rest of the run."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._reasons: Counter[str] = Counter()
        self._after_feedback = False
        self._settled = False  # a valid reply came, or the run was already stopped

    def valid(self) -> None:
        with self._lock:
            self._settled = True

    def invalid(self, reason: str, after_feedback: bool) -> tuple[bool, str | None]:
        """Counts a rejected reply: whether it came before any valid one, and, the one time the run must stop, why."""
        with self._lock:
            if self._settled:
                return False, None
            self._reasons[reason] += 1
            self._after_feedback |= after_feedback
            replies = self._reasons.total()
            if self._limit is None or replies < self._limit or not self._after_feedback:
                return True, None
            self._settled = True
            most_common, count = self._reasons.most_common(1)[0]
            return True, f"the teacher's first {replies} replies all failed validation (most often, {count} of them: {most_common})"


class Aborted(Exception):
    """The run is stopping (Ctrl-C or a fatal error): a worker waiting for a rate limit or about to send gives up."""


class _BudgetExhausted(Exception):
    pass


class RateLimit:
    """At most `per_minute` units (requests or tokens) in any 60-second window, shared by all workers.

    The window is the `limits` library's; the wait is ours only so that an aborted run stops waiting at once.
    """

    def __init__(self, per_minute: int, abort: threading.Event) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._abort = abort

    def acquire(self, amount: float) -> None:
        cost = min(max(1, math.ceil(amount)), self._item.amount)  # a request larger than the limit still goes, alone
        while not self._limiter.hit(self._item, "teacher", cost=cost):
            reset_at = self._limiter.get_window_stats(self._item, "teacher").reset_time
            if self._abort.wait(max(reset_at - time.time(), 0.01)):
                raise Aborted()


@dataclass(frozen=True)
class _Job:
    chunk_index: int
    chunk_id: str
    kind: ItemKind
    count: int
    messages: Messages
    key: str


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    items: list[dict[str, Any]] | None
    failure: str | None
    new_reply: CachedResponse | None = None  # a validated reply the main thread has yet to cache


class TeacherRunner:
    """A `Teacher` made of any `Transport`, with the settings every backend shares from `generate.teacher`."""

    def __init__(self, transport: Transport, params: TeacherParams, *, show_progress: bool = True) -> None:
        self.transport = transport
        self.params = params
        self.prompts: dict[ItemKind, Prompt] = {kind: load_prompt(Path(params.prompts_dir), kind) for kind in KINDS}
        # Without structured outputs the shape is asked for in the prompt only: the prompt's worked example goes too.
        self._with_example = params.response_format == "prompt"
        self.cache = ResponseCache(params.cache_dir)
        self._show_progress = show_progress
        self._abort = threading.Event()
        self._stats = _Stats()
        self._budget = _Budget(params.max_cost_usd)
        self._start = _StartCheck(params.stop_after_invalid_replies)
        self._completion_tokens_per_item = float(DEFAULT_COMPLETION_TOKENS_PER_ITEM)
        self._completion_size_known = False
        self._estimate_lock = threading.Lock()
        self._request_limit = RateLimit(params.requests_per_minute, self._abort) if params.requests_per_minute else None
        self._token_limit = RateLimit(params.tokens_per_minute, self._abort) if params.tokens_per_minute else None

    def generate(self, chunks: Sequence[Chunk], flashcards_per_chunk: int, mcqs_per_chunk: int) -> GenerationResult:
        self._abort.clear()
        self._stats = _Stats()
        self._budget = _Budget(self.params.max_cost_usd)
        self._start = _StartCheck(self.params.stop_after_invalid_replies)
        self.cache.remove_stale_temps()
        counts: tuple[tuple[ItemKind, int], ...] = (("flashcards", flashcards_per_chunk), ("mcq", mcqs_per_chunk))
        jobs = [
            self._job(index, chunk, kind, count) for index, chunk in enumerate(chunks) for kind, count in counts if count > 0
        ]
        outcomes = self._run_all(jobs, len(chunks))
        return self._assemble(jobs, outcomes)

    # ------------------------------------------------------------ planning and assembly
    def _job(self, index: int, chunk: Chunk, kind: ItemKind, count: int) -> _Job:
        prompt = self.prompts[kind]
        fields = {**self.transport.cache_fields(), "prompt_sha256": prompt.sha256, "kind": kind, "count": count, "text": chunk["text"]}
        messages = prompt.render(chunk["text"], count, with_example=self._with_example)
        return _Job(index, chunk["chunk_id"], kind, count, messages, cache_key(fields))

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
                # A fatal error or Ctrl-C: queued jobs are dropped, running ones stop before their next request
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
            info = {"model": str(self.transport.cache_fields().get("model")), "kind": job.kind, "chunk_id": job.chunk_id}
            self.cache.put(job.key, outcome.new_reply, info)

    def _from_cache(self, job: _Job) -> _Outcome | None:
        cached = self.cache.get(job.key)
        if cached is None:
            return None
        try:
            items = parse_reply(job.kind, cached.content, job.count)
        except InvalidResponse:
            return None  # cached under older, looser rules: ask again
        self._stats.add(cache_hits=1)
        return _Outcome(job, items, None)

    def _ask(self, job: _Job) -> _Outcome:
        """Request until a reply passes validation, feeding each rejection back, up to max_retries times."""
        messages = job.messages
        error: InvalidResponse | None = None
        for attempt in range(self.params.max_retries + 1):
            try:
                reply = self._request(job, messages)
            except Aborted:
                return _Outcome(job, None, "aborted")
            except _BudgetExhausted:
                return _Outcome(job, None, "budget")
            except RequestFailed as failed:
                return _Outcome(job, None, f"api error: {failed}")
            try:
                items, content = _validate(job, reply, self.prompts[job.kind] if self._with_example else None)
            except InvalidResponse as invalid:
                error = invalid
                self._stats.add(invalid_responses=1)
                self._check_start(invalid, after_feedback=attempt > 0)
                echoed = {"role": "assistant", "content": reply.content[:MAX_ECHOED_CHARS]}
                messages = [*job.messages, echoed, {"role": "user", "content": feedback_message(invalid)}]
                continue
            self._start.valid()
            if content != reply.content:
                self._stats.add(cut_replies_kept=1)
            return _Outcome(job, items, None, CachedResponse(content, reply.prompt_tokens, reply.completion_tokens))
        return _Outcome(job, None, f"invalid response after {self.params.max_retries + 1} attempt(s): {error}")

    def _check_start(self, invalid: InvalidResponse, after_feedback: bool) -> None:
        """Count a rejected reply against the start of the run; stop the run when its first replies all failed."""
        counted, stop = self._start.invalid(invalid.reason, after_feedback)
        if counted:
            self._stats.add(invalid_before_first_valid=1)
        if stop is None:
            return
        self._abort.set()  # no worker sends another request; the main thread re-raises this error
        settings = self.params
        structured = " (OpenAI structured outputs; else set json_object)" if settings.response_format == "json_schema" else ""
        raise UserError(
            f"{stop}; check that generate.teacher.model answers in JSON, that its server supports response_format: "
            f"{settings.response_format}{structured}, and the prompts in {settings.prompts_dir}; stopped by "
            f"generate.teacher.stop_after_invalid_replies, an estimated ${self._stats.get('cost_usd'):.2f} spent"
        )

    def _request(self, job: _Job, messages: Messages) -> Reply:
        if self._abort.is_set():
            raise Aborted()
        estimate_tokens, estimate_cost = self._estimate(job, messages)
        if not self._budget.reserve(estimate_cost):
            raise _BudgetExhausted()
        actual_cost = 0.0
        try:
            if self._request_limit is not None:
                self._request_limit.acquire(1)
            if self._token_limit is not None:
                self._token_limit.acquire(estimate_tokens)
            if self._abort.is_set():
                raise Aborted()
            try:
                reply = self.transport.send(job.kind, messages)
            except RequestFailed as failed:
                self._stats.add(requests=failed.requests, retries=failed.requests - 1)
                raise
            # Failed attempts (429, 5xx, timeouts) are not billed: only the reply's tokens cost money.
            actual_cost = self._cost(reply.prompt_tokens, reply.completion_tokens)
            self._stats.add(
                requests=reply.requests,
                retries=reply.requests - 1,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                cost_usd=actual_cost,
            )
            self._learn_completion_size(job, reply)
            return reply
        finally:
            self._budget.settle(estimate_cost, actual_cost)

    # ------------------------------------------------------------ cost
    def _estimate(self, job: _Job, messages: Messages) -> tuple[float, float]:
        """Tokens and dollars a request may use, erring high so the budget is not overshot."""
        prompt_tokens = tokens_from_chars(sum(len(message["content"]) for message in messages))
        with self._estimate_lock:
            completion_tokens = self._completion_tokens_per_item * job.count * 1.25
        return prompt_tokens + completion_tokens, self._cost(prompt_tokens, completion_tokens)

    def _learn_completion_size(self, job: _Job, reply: Reply) -> None:
        # The first real reply replaces the default guess; after that, the largest per-item size seen so far.
        per_item = reply.completion_tokens / max(job.count, 1)
        with self._estimate_lock:
            if self._completion_size_known:
                per_item = max(self._completion_tokens_per_item, per_item)
            self._completion_tokens_per_item = per_item
            self._completion_size_known = True

    def _cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return prompt_tokens / 1000 * self.params.price_per_1k_input_usd + completion_tokens / 1000 * self.params.price_per_1k_output_usd


def _validate(job: _Job, reply: Reply, example: Prompt | None) -> tuple[list[dict[str, Any]], str]:
    """The reply's items and the content to cache. A reply cut off at the length limit keeps its first complete items
    when they pass validation (cached as a reply of those items). With a worked example in the prompt, a reply that
    copies it instead of asking about the text is rejected."""
    if reply.refusal:
        raise InvalidResponse(f"the model refused ({' '.join(reply.refusal.split())[:200]})", "the model refused")
    content = reply.content
    if reply.finish_reason == "length":
        cut_off = "the reply was cut off at the length limit; write shorter items"
        kept = complete_items(content, job.count)
        if kept is None:
            raise InvalidResponse(cut_off, "cut off at the length limit")
        try:
            items = parse_reply(job.kind, kept, job.count)
        except InvalidResponse as invalid:
            raise InvalidResponse(f"{cut_off} (its complete items: {invalid})", f"cut off at the length limit, then {invalid.reason}") from None
        content = kept
    else:
        items = parse_reply(job.kind, content, job.count)
    copied = example.copied_example(items, job.messages[-1]["content"]) if example is not None else None
    if copied is not None:
        raise InvalidResponse(copied, "copies the worked example")
    return items, content


def tokens_from_chars(chars: int) -> int:
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
