"""The openai teacher's batch transports: every request of a run in one JSONL file in the OpenAI Batch API's format
(`custom_id`, `method`, `url`, `body`), each line's `custom_id` its cache key, so that the replies land in the same
response cache as the synchronous transport's (a run may switch transports and pay for nothing twice).

* `batch`: the endpoint's Batch API through the openai client: the file uploaded with purpose `batch`,
  `batches.create`, `batches.retrieve` every `batch.poll_interval_s` behind a progress bar (completed / failed /
  total), then the output and error files downloaded and matched by `custom_id`. The batch is written to a state file
  when it is submitted (perpetual/paths.py `teacher_batch_state`, next to the cache), so a stage killed while polling
  (Ctrl-C, kill -9, a lost machine) polls the same batch again on its next run: nothing is submitted, or paid, twice.
* `vllm-run-batch`: the same file run by a local command on a GPU node, `vllm run-batch -i … -o … --model …`
  (`batch.command`); its results file, vLLM's format, goes through the same matching. Results it wrote before a crash
  or a kill are kept by the next run.

What both share is `BatchTeacher`: every reply is validated as the synchronous runner validates it; an invalid one is
asked again, with the error fed back, in a follow-up batch; a request that failed for a passing reason (429, 5xx) goes
in the follow-up too, one that failed for good (400, 401, ...) becomes a Failure; an expired or cancelled batch keeps
what it finished and only the unfinished are submitted again. A request is tried at most `max_retries` + 1 times,
whatever made it fail. A batch in which every request failed stops the run with one line naming its error file. Cost
is counted at the batch prices (`generate.teacher.batch`), and `max_cost_usd` holds back the requests that would
exceed it before a batch is submitted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import openai
from tqdm import tqdm

from perpetual import paths
from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.teacher.cache import CachedResponse
from perpetual.teacher.endpoint import api_key_from_environment, endpoint_url, error_reason, fatal_error, make_client, one_line
from perpetual.teacher.items import InvalidResponse, feedback_message
from perpetual.teacher.openai_backend import WITHOUT_AN_ENDPOINT, OpenAITransport
from perpetual.teacher.prompts import Messages
from perpetual.teacher.runner import MAX_ECHOED_CHARS, Reply, TeacherRunner, _Job, _Outcome, _validate, tokens_from_chars

CHAT_URL: Final = "/v1/chat/completions"
COMPLETION_WINDOW: Final = "24h"  # the only window the Batch API offers
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})  # an error-file line for a request that never ran
FILE_TIMEOUT_S = 600.0  # uploads and downloads of large files take longer than one chat request
STATE_FORMAT = 1
# vllm-run-batch reads no key; the transport it builds only renders request bodies and cache keys, and sends nothing.
NO_KEY = "unused-by-vllm-run-batch"

T = TypeVar("T")


def pause(seconds: float) -> None:
    """The wait between two polls (tests replace it to stop a run mid-batch)."""
    time.sleep(seconds)


# ---------------------------------------------------------------- requests and results
@dataclass(frozen=True)
class BatchRequest:
    custom_id: str  # the request's cache key
    body: dict[str, Any]  # the chat-completions request, as the synchronous transport sends it

    def line(self) -> str:
        return json.dumps({"custom_id": self.custom_id, "method": "POST", "url": CHAT_URL, "body": self.body}, ensure_ascii=False)


@dataclass(frozen=True)
class Completion:
    """A request that ran and answered 200: the reply, its usage when the server reported it."""

    content: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    refusal: str | None


@dataclass(frozen=True)
class RequestError:
    """A request that ran and failed: `retryable` for a passing cause (429, 5xx)."""

    reason: str
    retryable: bool


@dataclass
class RoundResult:
    """What one batch (or one run of the command) gave back, by custom_id."""

    label: str  # "batch <id>" or "vllm run-batch", for messages
    status: str  # completed, expired, cancelled; "partial" for results a killed run left
    asked: list[str]
    completions: dict[str, Completion] = field(default_factory=dict)
    errors: dict[str, RequestError] = field(default_factory=dict)
    error_file: str = ""  # where the failed requests' lines are, for messages
    fatal: str | None = None  # a one-line error to stop the run with, once what came back is cached

    def unfinished(self) -> list[str]:
        return [key for key in self.asked if key not in self.completions and key not in self.errors]

    def every_request_failed(self) -> bool:
        return self.status == "completed" and bool(self.asked) and not self.completions and len(self.errors) >= len(self.asked)


def parse_results(lines: Iterable[str], secret: str) -> tuple[dict[str, Completion], dict[str, RequestError]]:
    """The lines of a Batch API output or error file, or of vLLM's results file. A line that does not parse (the last
    one of a file whose writer was killed) and an unfinished request (expired, cancelled) are left out."""
    completions: dict[str, Completion] = {}
    errors: dict[str, RequestError] = {}
    for text in lines:
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        custom_id = record.get("custom_id") if isinstance(record, dict) else None
        if not isinstance(custom_id, str):
            continue
        response = record.get("response")
        body = _mapping(response).get("body")
        status = _mapping(response).get("status_code")
        if status == 200 and isinstance(body, dict) and isinstance(body.get("choices"), list):
            completions[custom_id] = _completion(body)
            continue
        error = record.get("error")
        if not isinstance(response, dict) and isinstance(error, dict) and error.get("code") in UNFINISHED_CODES:
            continue
        retryable = isinstance(status, int) and (status == 429 or status >= 500)
        errors[custom_id] = RequestError(one_line(f"{status or 'error'}: {_error_text(body, error)}", secret), retryable)
    return completions, errors


def _completion(body: dict[str, Any]) -> Completion:
    choices = body["choices"]
    choice = _mapping(choices[0] if choices else None)
    message = _mapping(choice.get("message"))
    usage = _mapping(body.get("usage"))
    return Completion(
        content=str(message.get("content") or ""),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        finish_reason=choice.get("finish_reason"),
        refusal=message.get("refusal"),
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _error_text(body: object, error: object) -> str:
    # OpenAI: body {"error": {"message": ...}} or error {"code", "message"}; vLLM: error a string, or an ErrorResponse.
    for candidate in (body, error):
        if isinstance(candidate, dict):
            inner = _mapping(candidate.get("error")) or candidate
            if inner.get("message"):
                return str(inner["message"])
        elif isinstance(candidate, str) and candidate:
            return candidate
    return "no reason given"


# ---------------------------------------------------------------- executors
class BatchExecutor(Protocol):
    """Runs the requests of one round and says what came back."""

    def resume(self) -> RoundResult | None:
        """The results of a round a killed run left unfinished (polled to its end), or None."""
        ...

    def run(self, requests: Sequence[BatchRequest]) -> RoundResult: ...

    def forget(self) -> None:
        """The round's results are cached: drop what would resume it."""
        ...


class OpenAIBatches:
    """The Batch API of an OpenAI-compatible endpoint, one batch per round, its state on disk from submit to forget."""

    def __init__(self, client: openai.OpenAI, cache_dir: str | Path, poll_interval_s: float, *, show_progress: bool) -> None:
        self._client = client
        self.workdir = paths.teacher_batch(cache_dir)
        self.state_path = paths.teacher_batch_state(cache_dir)
        self._poll_interval_s = poll_interval_s
        self._show_progress = show_progress

    # ------------------------------------------------------------ rounds
    def resume(self) -> RoundResult | None:
        state = self._load()
        if state is None:
            return None
        if state.get("batch_id") is None:
            # Killed between the upload and writing the batch id: the batch may exist already.
            found = self._find(str(state["input_file_id"]))
            if found is None:
                self._create(state)
            else:
                state["batch_id"] = found
                self._save(state)
        self._say(f"resuming batch {state['batch_id']} ({len(state['custom_ids'])} requests), submitted by an earlier run")
        return self._wait(state)

    def run(self, requests: Sequence[BatchRequest]) -> RoundResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        requests_file = self.workdir / "requests.jsonl"
        requests_file.write_text("".join(request.line() + "\n" for request in requests), encoding="utf-8")
        with requests_file.open("rb") as handle:
            uploaded = self._call(
                "the upload of the requests file (POST /files)",
                lambda: self._client.files.create(
                    file=(requests_file.name, handle, "application/jsonl"), purpose="batch", timeout=FILE_TIMEOUT_S
                ),
            )
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "input_file_id": uploaded.id,
            "batch_id": None,
            "custom_ids": [request.custom_id for request in requests],
        }
        self._save(state)
        self._create(state)
        self._say(f"submitted batch {state['batch_id']} ({len(requests)} requests); if this run stops, rerun it to resume the batch")
        return self._wait(state)

    def forget(self) -> None:
        self.state_path.unlink(missing_ok=True)
        (self.workdir / "requests.jsonl").unlink(missing_ok=True)

    # ------------------------------------------------------------ the API
    def _create(self, state: dict[str, Any]) -> None:
        batch = self._call(
            "creating the batch (POST /batches)",
            lambda: self._client.batches.create(
                completion_window=COMPLETION_WINDOW, endpoint=CHAT_URL, input_file_id=str(state["input_file_id"])
            ),
        )
        state["batch_id"] = batch.id
        self._save(state)

    def _find(self, input_file_id: str) -> str | None:
        page = self._call("listing the batches (GET /batches)", lambda: self._client.batches.list(limit=100))
        return next((batch.id for batch in page.data if batch.input_file_id == input_file_id), None)

    def _wait(self, state: dict[str, Any]) -> RoundResult:
        batch_id = str(state["batch_id"])
        asked = [str(key) for key in state["custom_ids"]]
        bar = tqdm(total=len(asked), unit="request", desc=f"batch {batch_id}", disable=None if self._show_progress else True)
        with bar:
            while True:
                batch = self._retrieve(batch_id)
                if batch is not None:
                    counts = batch.request_counts
                    if counts is not None:
                        bar.total = counts.total or len(asked)
                        bar.n = counts.completed + counts.failed
                    bar.set_postfix(status=batch.status, failed=counts.failed if counts else 0)
                    if batch.status in TERMINAL:
                        break
                pause(self._poll_interval_s)
        if batch.status == "failed":
            self.forget()
            problems = batch.errors.data if batch.errors and batch.errors.data else []
            first = problems[0] if problems else None
            where = f" (line {first.line})" if first is not None and first.line else ""
            detail = one_line(f"{first.code}: {first.message}", self._secret()) if first is not None else "no reason given"
            raise UserError(f"batch {batch_id} failed validation{where}: {detail}; nothing ran (fix the cause and rerun to submit anew)")
        result = RoundResult(f"batch {batch_id}", batch.status, asked)
        for file_id, name in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if not file_id:
                continue
            saved = self._download(file_id, self.workdir / f"{batch_id}.{name}.jsonl")
            completions, errors = parse_results(saved.read_text(encoding="utf-8").splitlines(), self._secret())
            result.completions.update(completions)
            result.errors.update(errors)
            if name == "errors":
                result.error_file = f"{file_id}, saved as {saved}"
        return result

    def _retrieve(self, batch_id: str) -> Any:
        """The batch, or None while the endpoint cannot be reached (looked at again after the poll interval)."""
        try:
            return self._client.batches.retrieve(batch_id)
        except openai.NotFoundError:
            raise UserError(
                f"batch {batch_id} (named in {self.state_path}) is unknown to the endpoint (404): was it submitted with another key "
                f"or base_url? Delete {self.state_path} to submit a new batch"
            ) from None
        except openai.APIStatusError as error:
            fatal = fatal_error(error, self._secret(), WITHOUT_AN_ENDPOINT)
            if fatal is not None:
                raise fatal from None
            return None
        except openai.APIConnectionError:
            return None

    def _download(self, file_id: str, target: Path) -> Path:
        content = self._call(
            f"downloading {file_id} (GET /files/{file_id}/content)", lambda: self._client.files.content(file_id, timeout=FILE_TIMEOUT_S)
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        content.write_to_file(target)
        return target

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """One API call; its failure (after the client's retries) as a one-line UserError."""
        secret = self._secret()
        try:
            return request()
        except openai.NotFoundError as error:
            raise UserError(
                f"the teacher endpoint has no Batch API: {what} answered 404 ({one_line(error.message, secret)}); "
                "set generate.teacher.transport: sync"
            ) from None
        except openai.APIStatusError as error:
            fatal = fatal_error(error, secret, WITHOUT_AN_ENDPOINT)
            raise (fatal or UserError(f"the teacher endpoint refused {what} ({error_reason(error, secret)}); rerun to try again")) from None
        except openai.APIConnectionError as error:
            raise UserError(
                f"could not reach the teacher endpoint for {what} ({error_reason(error, secret)}); rerun to try again"
            ) from None

    # ------------------------------------------------------------ the state file
    def _load(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            if state["format"] != STATE_FORMAT or not isinstance(state["input_file_id"], str) or not isinstance(state["custom_ids"], list):
                raise ValueError
            return dict(state)
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(
                f"{self.state_path} is not a batch state file this version can read; delete it to submit a new batch "
                "(a batch it named may still run, and be billed)"
            ) from None

    def _save(self, state: dict[str, Any]) -> None:
        """Atomically: a kill at any instant leaves the old state or the new one, never a torn file."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temp, self.state_path)

    def _secret(self) -> str:
        return str(self._client.api_key or "")

    def _say(self, message: str) -> None:
        if self._show_progress:
            print(f"teacher: {message}", file=sys.stderr, flush=True)


class VllmRunBatch:
    """`vllm run-batch` (or `batch.command`) run locally on the requests file; vLLM writes its results in input order
    as they finish, so a killed run's results file is read by the next run before anything is asked again."""

    def __init__(self, command: Sequence[str], model: str, cache_dir: str | Path, poll_interval_s: float, *, show_progress: bool) -> None:
        self._command = list(command)
        self._model = model
        self.workdir = paths.teacher_batch(cache_dir)
        self._results = self.workdir / "results.jsonl"
        self._poll_interval_s = poll_interval_s
        self._show_progress = show_progress

    def resume(self) -> RoundResult | None:
        if not self._results.exists():
            return None
        completions, errors = parse_results(self._results.read_text(encoding="utf-8").splitlines(), "")
        return RoundResult(
            "vllm run-batch (an earlier run's results)", "partial", [*completions, *errors], completions, errors, str(self._results)
        )

    def run(self, requests: Sequence[BatchRequest]) -> RoundResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        requests_file = self.workdir / "requests.jsonl"
        requests_file.write_text("".join(request.line() + "\n" for request in requests), encoding="utf-8")
        self._results.unlink(missing_ok=True)
        command = [*self._command, "-i", str(requests_file), "-o", str(self._results), "--model", self._model]
        shown = " ".join(self._command)
        try:
            # Its log and its own progress go to the terminal; it stops with the stage, even one killed with kill -9.
            process = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except OSError as error:
            raise UserError(
                f"could not start `{shown}` ({error.strerror or error}); install vLLM on this GPU machine (pip install vllm) "
                "or set generate.teacher.batch.command"
            ) from None
        bar = tqdm(total=len(requests), unit="request", desc=shown, disable=None if self._show_progress else True)
        try:
            with bar:
                while process.poll() is None:
                    bar.n = self._lines_written()
                    bar.refresh()
                    pause(self._poll_interval_s)
                bar.n = self._lines_written()
        except BaseException:
            process.terminate()  # Ctrl-C: what it wrote so far is kept for the next run
            process.wait()
            raise
        completions, errors = parse_results(self._read(), "")
        result = RoundResult(shown, "completed", [request.custom_id for request in requests], completions, errors, str(self._results))
        if process.returncode != 0:
            result.status = "stopped"
            result.fatal = (
                f"`{shown}` exited with status {process.returncode} after {len(completions) + len(errors)} of {len(requests)} requests "
                "(its messages are above); what it finished is cached, rerun to ask for the rest"
            )
        return result

    def forget(self) -> None:
        self._results.unlink(missing_ok=True)
        (self.workdir / "requests.jsonl").unlink(missing_ok=True)

    def _read(self) -> list[str]:
        return self._results.read_text(encoding="utf-8").splitlines() if self._results.exists() else []

    def _lines_written(self) -> int:
        try:
            return self._results.read_bytes().count(b"\n")
        except OSError:
            return 0


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGTERM when the stage dies (Linux's PR_SET_PDEATHSIG), so a
    stage killed with kill -9 does not leave vLLM holding the GPU while its rerun starts another."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


# ---------------------------------------------------------------- the teacher
class BatchTeacher(TeacherRunner):
    """The openai teacher with a batch transport: the runner's cache, validation, twins, budget and accounting, with
    every request sent in rounds of one batch each instead of one at a time."""

    def __init__(self, transport: OpenAITransport, executor: BatchExecutor, params: TeacherParams, *, show_progress: bool = True) -> None:
        super().__init__(transport, params, show_progress=show_progress)
        self.requests = transport
        self.executor = executor

    @classmethod
    def from_params(cls, params: TeacherParams, *, show_progress: bool = True) -> BatchTeacher:
        batch = params.batch
        executor: BatchExecutor
        if params.transport == "vllm-run-batch":
            transport = OpenAITransport(params, api_key=NO_KEY, base_url=None)
            executor = VllmRunBatch(batch.command, params.model, params.cache_dir, batch.poll_interval_s, show_progress=show_progress)
        else:
            api_key = api_key_from_environment(WITHOUT_AN_ENDPOINT)
            base_url = endpoint_url(params)
            transport = OpenAITransport(params, api_key=api_key, base_url=base_url)
            client = make_client(params, api_key=api_key, base_url=base_url)
            executor = OpenAIBatches(client, params.cache_dir, batch.poll_interval_s, show_progress=show_progress)
        return cls(transport, executor, params, show_progress=show_progress)

    def note(self, message: str) -> None:
        if self._show_progress:
            print(f"teacher: {message}", file=sys.stderr, flush=True)

    def _cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        prices = self.params.batch
        return prompt_tokens / 1000 * prices.price_per_1k_input_usd + completion_tokens / 1000 * prices.price_per_1k_output_usd

    def _run_all(self, jobs: list[_Job], chunk_count: int) -> dict[int, _Outcome]:
        outcomes, to_ask, twins = self._answer_from_cache(jobs)
        rounds = _Rounds(self, jobs, outcomes, {jobs[position].key: position for position in to_ask})
        resumed = self.executor.resume()
        if resumed is not None:
            rounds.take(resumed)
        while rounds.waiting:
            requests = rounds.plan()
            if not requests:
                break  # the budget held every one back
            rounds.take(self.executor.run(requests))
        shutil.rmtree(paths.teacher_batch(self.params.cache_dir), ignore_errors=True)
        for first, positions in twins.items():
            for twin in positions:
                outcome = outcomes[twin] = replace(outcomes[first], job=jobs[twin], new_reply=None)
                self._stats.add(cache_hits=int(outcome.items is not None), failures=int(outcome.items is None))
        return outcomes


class _Rounds:
    """One run's requests, round after round: what still waits for a reply, the messages each is asked with (the
    feedback of an invalid reply appended), how often each has been tried, and what the budget holds for each."""

    def __init__(self, teacher: BatchTeacher, jobs: list[_Job], outcomes: dict[int, _Outcome], waiting: dict[str, int]) -> None:
        self.teacher = teacher
        self.jobs = jobs
        self.outcomes = outcomes
        self.waiting = waiting  # cache key -> position, in job order
        self.messages: dict[str, Messages] = {key: jobs[position].messages for key, position in waiting.items()}
        self.tries: Counter[str] = Counter()
        self.reserved: dict[str, float] = {}
        self.again: Counter[str] = Counter()  # this round's requests asked again, by why

    def plan(self) -> list[BatchRequest]:
        teacher = self.teacher
        requests = []
        for key in list(self.waiting):
            job = self.jobs[self.waiting[key]]
            _, estimate = teacher._estimate(job, self.messages[key])
            if not teacher._budget.reserve(estimate):
                self.settle(key, _Outcome(job, None, "budget"))
                continue
            self.reserved[key] = estimate
            requests.append(BatchRequest(key, teacher.requests.request_body(job.kind, self.messages[key])))
        return requests

    def take(self, result: RoundResult) -> None:
        """Cache what came back, decide what is asked again, and stop the run if the round says so."""
        teacher = self.teacher
        self.again.clear()
        for key, completion in result.completions.items():
            self._take_reply(key, completion)
        for key, error in result.errors.items():
            teacher._stats.add(requests=1)
            self._release(key, 0.0)
            if key not in self.waiting:
                continue
            if error.retryable:
                self._again(key, f"api error: {error.reason}", "failed for a passing reason")
            else:
                self.settle(key, _Outcome(self.jobs[self.waiting[key]], None, f"api error: {error.reason}"))
        for key in result.unfinished():
            self._release(key, 0.0)
            if key in self.waiting and result.fatal is None:
                self._again(key, f"{result.label} ended ({result.status}) without running it", f"unfinished ({result.status})")
        teacher.executor.forget()
        if result.every_request_failed():
            first = next(iter(result.errors.values())).reason
            raise UserError(
                f"{result.label} completed with every one of its {len(result.asked)} requests failed (the first: {first}); "
                f"see its error file {result.error_file or '(the endpoint gave none)'}"
            )
        if result.fatal is not None:
            raise UserError(result.fatal)
        if self.again:
            told = ", ".join(f"{count} {why}" for why, count in self.again.items())
            teacher.note(f"{result.label}: {len(result.completions)} replies; asked again in a follow-up batch: {told}")

    def _take_reply(self, key: str, completion: Completion) -> None:
        teacher = self.teacher
        messages = self.messages.get(key, [])
        reply = Reply(
            content=completion.content,
            # Without usage figures, the same rough estimate the budget uses (never under-count cost).
            prompt_tokens=completion.prompt_tokens
            if completion.prompt_tokens is not None
            else tokens_from_chars(sum(len(m["content"]) for m in messages)),
            completion_tokens=completion.completion_tokens
            if completion.completion_tokens is not None
            else tokens_from_chars(len(completion.content)),
            finish_reason=completion.finish_reason,
            refusal=completion.refusal,
        )
        cost = teacher._cost(reply.prompt_tokens, reply.completion_tokens)
        teacher._stats.add(requests=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, cost_usd=cost)
        self._release(key, cost)
        if key not in self.waiting:
            # A resumed batch's request this run no longer needs (its chunk or prompt changed meanwhile): paid for, and
            # the cache is content-addressed, so it is kept (read back through validation, like any cached reply).
            if teacher.cache.get(key) is None:
                teacher.cache.put(key, CachedResponse(reply.content, reply.prompt_tokens, reply.completion_tokens), {"model": str(teacher.transport.cache_fields().get("model"))})
            return
        job = self.jobs[self.waiting[key]]
        teacher._learn_completion_size(job, reply)
        try:
            items, content = _validate(job, reply, teacher.prompts[job.kind] if teacher._with_example else None)
        except InvalidResponse as invalid:
            teacher._stats.add(invalid_responses=1)
            echoed = {"role": "assistant", "content": reply.content[:MAX_ECHOED_CHARS]}
            self.messages[key] = [*job.messages, echoed, {"role": "user", "content": feedback_message(invalid)}]
            self._again(key, f"invalid response after {self.tries[key] + 1} attempt(s): {invalid}", "invalid replies (the error fed back)")
            return
        if content != reply.content:
            teacher._stats.add(cut_replies_kept=1)
        self.settle(key, _Outcome(job, items, None, CachedResponse(content, reply.prompt_tokens, reply.completion_tokens)))

    def _again(self, key: str, reason: str, why: str) -> None:
        """Into the next round, unless this was its last try (then a Failure with `reason`)."""
        self.tries[key] += 1
        if self.tries[key] > self.teacher.params.max_retries:
            self.settle(key, _Outcome(self.jobs[self.waiting[key]], None, reason))
        else:
            self.again[why] += 1

    def settle(self, key: str, outcome: _Outcome) -> None:
        self.outcomes[self.waiting.pop(key)] = outcome
        self.teacher._store(outcome)
        if outcome.items is None:
            self.teacher._stats.add(failures=1)

    def _release(self, key: str, actual_cost: float) -> None:
        self.teacher._budget.settle(self.reserved.pop(key, 0.0), actual_cost)
