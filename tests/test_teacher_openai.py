"""The OpenAI teacher against the project's fake server: coverage, retries, feedback, failures, budget, secrets."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pytest
from teacher_support import REPO, SECRET, make_chunks, make_teacher

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.records import Chunk
from perpetual.teacher.base import GenerationResult
from perpetual.teacher.openai_backend import OpenAITeacher, _reply
from perpetual.teacher.runner import Aborted, RateLimit
from perpetual.testing.fake_openai import FakeOpenAI, Fault
from perpetual.testing.params import section

STATS_KEYS = {"requests", "cache_hits", "failures", "prompt_tokens", "completion_tokens", "cost_usd"}


def covered(result: GenerationResult) -> set[tuple[str, str]]:
    return {(card.chunk_id, "flashcards") for card in result.flashcards} | {(mcq.chunk_id, "mcq") for mcq in result.mcqs}


def all_jobs(chunks: list[Chunk]) -> set[tuple[str, str]]:
    return {(chunk["chunk_id"], kind) for chunk in chunks for kind in ("flashcards", "mcq")}


def test_every_chunk_is_covered_in_order(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(12)
    result = make_teacher(server, tmp_path).generate(chunks, flashcards_per_chunk=4, mcqs_per_chunk=3)

    assert not result.failures
    assert covered(result) == all_jobs(chunks)
    assert len(result.flashcards) == 12 * 4 and len(result.mcqs) == 12 * 3
    order = [chunk["chunk_id"] for chunk in chunks]
    assert [card.chunk_id for card in result.flashcards] == [cid for cid in order for _ in range(4)]
    for mcq in result.mcqs:
        assert len(mcq.options) == 4 and 0 <= mcq.correct_index < 4
        assert mcq.cloze_prefix == "" and mcq.kind == "text"
    assert STATS_KEYS <= set(result.stats)
    assert result.stats["requests"] == 24 == server.total_requests
    assert result.stats["cache_hits"] == 0 and result.stats["failures"] == 0
    expected_cost = result.stats["prompt_tokens"] / 1000 * 0.01 + result.stats["completion_tokens"] / 1000 * 0.03
    assert result.stats["cost_usd"] == pytest.approx(expected_cost) and expected_cost > 0


def test_request_shape_follows_params(server: FakeOpenAI, tmp_path: Path) -> None:
    make_teacher(server, tmp_path, model="gpt-test", temperature=0.3, seed=7).generate(make_chunks(1), 3, 2)
    formats = {body["response_format"]["json_schema"]["name"]: body for body in server.bodies}
    assert set(formats) == {"flashcards", "mcq"}
    for body in server.bodies:
        assert body["model"] == "gpt-test" and body["temperature"] == 0.3 and body["seed"] == 7
        assert body["response_format"]["json_schema"]["strict"] is True
        assert "world-class university professor" in body["messages"][0]["content"]
    assert "exactly 2" in formats["mcq"]["messages"][0]["content"]


def test_json_object_mode(server: FakeOpenAI, tmp_path: Path) -> None:
    result = make_teacher(server, tmp_path, response_format="json_object").generate(make_chunks(3), 4, 2)
    assert not result.failures and len(result.mcqs) == 6
    assert all(body["response_format"] == {"type": "json_object"} for body in server.bodies)


def test_rate_limits_and_server_errors_are_retried(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("rate_limit", times=2, retry_after_s=0.05))
    server.inject(Fault("server_error", times=2))
    result = make_teacher(server, tmp_path).generate(make_chunks(6), 4, 2)
    assert not result.failures and covered(result) == all_jobs(make_chunks(6))
    assert result.stats["retries"] == 4
    assert result.stats["requests"] == 12 + 4 == server.total_requests


def test_retry_after_is_honoured(server: FakeOpenAI, tmp_path: Path) -> None:
    # Backoff alone would wait at most 0.05 s here; a gap near 0.4 s can only come from Retry-After.
    server.inject(Fault("rate_limit", times=1, retry_after_s=0.4, match="Zorblax0", item_kind="mcq"))
    result = make_teacher(server, tmp_path).generate(make_chunks(1), 4, 2)
    assert not result.failures
    hit = [stamp for stamp, digest in server.arrivals if server.requests_by_prompt[digest] == 2]
    assert len(hit) == 2 and hit[1] - hit[0] >= 0.4


def test_hung_request_times_out_and_is_retried(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("hang", times=1, hang_s=5.0))
    started = time.monotonic()
    result = make_teacher(server, tmp_path, timeout_s=0.3).generate(make_chunks(2), 4, 2)
    assert not result.failures and result.stats["retries"] == 1
    assert time.monotonic() - started < 3.0


def test_invalid_reply_is_retried_with_the_error_fed_back(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("malformed", times=1, item_kind="mcq"))
    result = make_teacher(server, tmp_path).generate(make_chunks(1), 4, 2)
    assert not result.failures and len(result.mcqs) == 2
    assert result.stats["invalid_responses"] == 1
    retry = [body for body in server.bodies if len(body["messages"]) > 2]
    assert len(retry) == 1
    assistant, feedback = retry[0]["messages"][2:]
    assert assistant["role"] == "assistant" and assistant["content"].startswith('{"questions"')
    assert feedback["role"] == "user" and "not valid JSON" in feedback["content"]


@pytest.mark.parametrize("fault", ["malformed", "schema_violation"])
@pytest.mark.parametrize("item_kind", ["flashcards", "mcq"])
def test_persistently_invalid_reply_becomes_a_counted_failure(
    server: FakeOpenAI, tmp_path: Path, fault: str, item_kind: str
) -> None:
    server.inject(Fault(fault, times=None, item_kind=item_kind, match="Zorblax0"))  # type: ignore[arg-type]
    chunks = make_chunks(3)
    result = make_teacher(server, tmp_path, max_retries=2).generate(chunks, 4, 2)

    assert [(f.chunk_id, f.kind) for f in result.failures] == [("c0", item_kind)]
    assert result.failures[0].reason.startswith("invalid response after 3 attempt(s)")
    assert result.stats["failures"] == 1 and result.stats["invalid_responses"] == 3
    assert covered(result) == all_jobs(chunks) - {("c0", item_kind)}
    assert max(server.requests_by_prompt.values()) == 3  # the first try plus max_retries


@pytest.mark.parametrize("fault", ["malformed", "schema_violation"])
def test_a_teacher_whose_replies_never_validate_stops_early_with_one_line(server: FakeOpenAI, tmp_path: Path, fault: str) -> None:
    server.inject(Fault(fault, times=None))  # type: ignore[arg-type]
    teacher = make_teacher(server, tmp_path, concurrency=4, max_retries=5, stop_after_invalid_replies=10)
    with pytest.raises(UserError) as error:
        teacher.generate(make_chunks(40), 4, 2)  # 80 jobs: 480 requests, were each asked six times
    message = str(error.value)
    assert "\n" not in message and message.startswith("the teacher's first 10 replies all failed validation")
    reason = "not valid JSON" if fault == "malformed" else "questions."
    assert f"of them: {reason}" in message
    assert "generate.teacher.model" in message and "response_format: json_schema" in message and "stop_after_invalid_replies" in message
    assert server.total_requests <= 10 + 3  # the tenth, and at most the other workers' requests already in flight
    assert not list(tmp_path.rglob("*.json"))  # nothing invalid was cached


def test_a_model_that_fixes_its_reply_once_told_is_not_stopped(server: FakeOpenAI, tmp_path: Path) -> None:
    # Every job's first reply is invalid and its re-ask valid: 8 workers see 8 rejections in a row before any valid
    # reply, more than the limit, but none after feedback.
    server.inject(Fault("malformed", times=None, first_tries=1))
    server.latency_s = 0.2  # every worker's first request is out before the first reply is back
    result = make_teacher(server, tmp_path, concurrency=8, stop_after_invalid_replies=5).generate(make_chunks(10), 4, 2)
    assert not result.failures and covered(result) == all_jobs(make_chunks(10))
    assert result.stats["invalid_responses"] == 20 and result.stats["invalid_before_first_valid"] >= 5


def test_invalid_replies_after_a_valid_one_never_stop_the_run(server: FakeOpenAI, tmp_path: Path) -> None:
    make_teacher(server, tmp_path / "probe").generate(make_chunks(1, "p"), 4, 2)  # no rejection in a healthy run
    server.inject(Fault("malformed", times=None, match="Zorblax1"))
    server.inject(Fault("malformed", times=None, match="Zorblax2"))
    teacher = make_teacher(server, tmp_path / "cache", concurrency=1, max_retries=2, stop_after_invalid_replies=3)
    result = teacher.generate(make_chunks(3), 4, 2)  # c0 first: valid; then 12 rejections in a row
    assert len(result.failures) == 4 and result.stats["invalid_responses"] == 12
    assert result.stats["invalid_before_first_valid"] == 0


def test_persistent_server_error_becomes_a_failure(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("server_error", times=None, match="Zorblax1", item_kind="flashcards"))
    result = make_teacher(server, tmp_path, max_retries=2).generate(make_chunks(3), 4, 2)
    assert [(f.chunk_id, f.kind) for f in result.failures] == [("c1", "flashcards")]
    assert result.failures[0].reason.startswith("api error: InternalServerError")
    assert result.stats["failures"] == 1 and len(result.mcqs) == 6


def test_duplicate_and_prefixed_options_are_passed_through(server: FakeOpenAI, tmp_path: Path) -> None:
    # Letter prefixes and duplicates are the quality module's business; the backend keeps options as returned.
    server.inject(Fault("letter_prefixed", times=1, match="Zorblax0", item_kind="mcq"))
    server.inject(Fault("duplicate_options", times=1, match="Zorblax1", item_kind="mcq"))
    result = make_teacher(server, tmp_path).generate(make_chunks(2), 3, 1)
    assert not result.failures
    prefixed, duplicated = result.mcqs
    assert [option[:3] for option in prefixed.options] == ["A. ", "B. ", "C. ", "D. "]
    assert len(set(duplicated.options)) == 3
    assert duplicated.options[duplicated.correct_index] in duplicated.options


def test_a_reply_missing_fields_reads_as_absent_and_never_under_counts_cost() -> None:
    messages = [{"role": "user", "content": "x" * 300}]
    bare = _reply({"choices": [{"message": {"content": "{}"}}]}, messages, 1)
    assert (bare.content, bare.finish_reason, bare.refusal) == ("{}", None, None)
    assert bare.prompt_tokens == 100 and bare.completion_tokens == 1  # the budget's estimate: 3 characters a token
    for odd in (None, [], {"choices": []}, {"choices": [None]}, {"choices": [{"message": {"content": None}}], "usage": None}):
        assert _reply(odd, messages, 2).content == "" and _reply(odd, messages, 2).requests == 2
    counted = _reply({"choices": [{"message": {"content": "a", "refusal": "no"}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 7, "completion_tokens": True}}, messages, 1)  # fmt: skip
    assert (counted.prompt_tokens, counted.completion_tokens, counted.refusal, counted.finish_reason) == (7, 1, "no", "stop")


def test_missing_key_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError) as error:
        OpenAITeacher.from_params(section(TeacherParams, "generate.teacher", backend="openai", cache_dir=str(tmp_path), prompts_dir=str(REPO / "prompts")))
    message = str(error.value)
    assert "export OPENAI_API_KEY" in message and "backend: offline" in message and "\n" not in message


@pytest.mark.parametrize("key", [SECRET, "plain-KEY-shaped-otherwise-42"])
def test_rejected_key_stops_the_run_with_a_user_error(
    server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server.inject(Fault("unauthorized", times=None))  # its message echoes the key it was sent
    with pytest.raises(UserError) as error:
        make_teacher(server, tmp_path).generate(make_chunks(20), 4, 2)
    assert "OPENAI_API_KEY" in str(error.value) and key not in str(error.value)
    assert server.total_requests < 40  # stopped early instead of failing every chunk


def test_budget_stops_cleanly_and_records_the_rest(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(10)
    # One request to learn the cost of a reply, then a budget for roughly half of the 20 requests.
    probe = make_teacher(server, tmp_path / "probe").generate(chunks[:1], 4, 2)
    budget = probe.stats["cost_usd"] / 2 * 10
    server.reset_counts()

    teacher = make_teacher(server, tmp_path / "cache", concurrency=1, max_cost_usd=budget)
    result = teacher.generate(chunks, 4, 2)
    budget_failures = [f for f in result.failures if f.reason == "budget"]
    assert budget_failures and len(budget_failures) == len(result.failures)
    assert result.stats["cost_usd"] <= budget
    assert covered(result) | {(f.chunk_id, f.kind) for f in result.failures} == all_jobs(chunks)
    assert result.stats["requests"] == server.total_requests == 20 - len(budget_failures)

    # A later run with more money pays only for what the budget stopped.
    more = make_teacher(server, tmp_path / "cache", max_cost_usd=budget * 10).generate(chunks, 4, 2)
    assert not more.failures and more.stats["cache_hits"] == 20 - len(budget_failures)
    assert more.stats["requests"] == len(budget_failures)


def test_rate_limit_holds_a_minute_window_and_stops_waiting_on_abort() -> None:
    abort = threading.Event()
    limit = RateLimit(per_minute=3, abort=abort)
    started = time.monotonic()
    for _ in range(3):
        limit.acquire(1)
    assert time.monotonic() - started < 0.5  # within the limit: no wait
    threading.Timer(0.3, abort.set).start()
    with pytest.raises(Aborted):
        limit.acquire(1)  # the fourth must wait for the window (a minute); the abort ends the wait instead
    assert 0.25 < time.monotonic() - started < 5.0


def test_rate_limited_run_still_covers_everything(server: FakeOpenAI, tmp_path: Path) -> None:
    teacher = make_teacher(server, tmp_path, requests_per_minute=6000, tokens_per_minute=10_000_000)
    result = teacher.generate(make_chunks(4), 4, 2)
    assert not result.failures and result.stats["requests"] == 8


def test_api_key_is_never_written_anywhere(server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A private temp folder catches anything written through tempfile, without racing other processes' /tmp files.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    server.inject(Fault("malformed", times=2))
    server.inject(Fault("rate_limit", times=1))
    server.inject(Fault("schema_violation", times=None, match="Zorblax2"))
    teacher = make_teacher(server, tmp_path / "cache", max_retries=1)
    result = teacher.generate(make_chunks(4), 4, 2)

    assert server.authorizations and set(server.authorizations) == {f"Bearer {SECRET}"}  # it was really sent
    assert result.failures and all(SECRET not in failure.reason for failure in result.failures)
    assert SECRET not in repr(vars(teacher)) and SECRET not in repr(result)
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".json" for path in written)
    assert [path for path in written if SECRET.encode() in path.read_bytes()] == []
