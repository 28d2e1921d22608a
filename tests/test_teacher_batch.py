"""The batch transports against the project's fake Batch API server and a stand-in `vllm run-batch`: coverage, the
same requests and cache as the synchronous transport, follow-up batches, partial failures, expiry, resuming after
Ctrl-C and kill -9 without paying twice, the batch price, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from teacher_support import REPO, SECRET, make_chunks, serving

from perpetual import paths
from perpetual.config import TeacherParams, parse_params
from perpetual.errors import UserError
from perpetual.teacher.base import GenerationResult
from perpetual.teacher.batch import BatchTeacher
from perpetual.teacher.openai_backend import OpenAITeacher
from perpetual.testing.fake_batch import FakeBatchAPI
from perpetual.testing.fake_openai import FakeOpenAI, Fault
from perpetual.testing.params import params_dict, section

POLL = 0.01
CHUNKS = 12  # 24 requests: flashcards and MCQs per chunk


@pytest.fixture
def batch_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatchAPI]:
    yield from serving(monkeypatch, FakeBatchAPI())


def teacher_params(base_url: str | None, cache_dir: Path, **overrides: Any) -> TeacherParams:
    settings: dict[str, Any] = dict(
        backend="openai",
        transport="batch",
        base_url=base_url,
        cache_dir=str(cache_dir),
        prompts_dir=str(REPO / "prompts"),
        max_retries=3,
        timeout_s=5.0,
        batch={"poll_interval_s": POLL},
    )
    settings.update(overrides)
    return section(TeacherParams, "generate.teacher", **settings)


def batch_teacher(server: FakeOpenAI, cache_dir: Path, **overrides: Any) -> BatchTeacher:
    return BatchTeacher.from_params(teacher_params(server.base_url, cache_dir, **overrides), show_progress=False)


def sync_teacher(server: FakeOpenAI, cache_dir: Path) -> OpenAITeacher:
    return OpenAITeacher.from_params(teacher_params(server.base_url, cache_dir, transport="sync"), show_progress=False)


def drafts(result: GenerationResult) -> tuple[list[Any], list[Any]]:
    return result.flashcards, result.mcqs


def batch_cost(stats: dict[str, float]) -> float:
    return stats["prompt_tokens"] / 1000 * 0.005 + stats["completion_tokens"] / 1000 * 0.015  # params.yaml's batch prices


# ---------------------------------------------------------------- the Batch API
def test_batch_gives_what_sync_gives_through_the_same_requests_and_cache(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    chunks = make_chunks(CHUNKS)
    synchronous = sync_teacher(batch_server, tmp_path / "sync").generate(chunks, 4, 2)
    sync_bodies = sorted(json.dumps(body, sort_keys=True) for body in batch_server.bodies)
    batch_server.reset_counts()

    result = batch_teacher(batch_server, tmp_path / "batch").generate(chunks, 4, 2)

    assert not result.failures and drafts(result) == drafts(synchronous)
    assert batch_server.batches_created == 1 and len(batch_server.uploads) == 1
    assert sorted(json.dumps(body, sort_keys=True) for body in batch_server.bodies) == sync_bodies  # the very same requests
    assert sum(batch_server.executed.values()) == 24 and set(batch_server.executed.values()) == {1}
    assert result.stats["requests"] == 24 and result.stats["failures"] == 0 and result.stats["retries"] == 0
    assert result.stats["prompt_tokens"] == synchronous.stats["prompt_tokens"] > 0
    assert result.stats["cost_usd"] == pytest.approx(batch_cost(result.stats))
    assert result.stats["cost_usd"] == pytest.approx(synchronous.stats["cost_usd"] / 2)  # the batch price: half
    assert not paths.teacher_batch(tmp_path / "batch").exists()  # the work folder goes once everything is cached

    # The replies are in the synchronous transport's cache: switching transports sends nothing.
    batch_server.reset_counts()
    again = sync_teacher(batch_server, tmp_path / "batch").generate(chunks, 4, 2)
    assert again.stats["cache_hits"] == 24 and batch_server.total_requests == 0
    assert batch_teacher(batch_server, tmp_path / "batch").generate(chunks, 4, 2).stats["requests"] == 0
    assert batch_server.batches_created == 1


def test_the_requests_file_is_the_batch_api_format_keyed_by_cache_key(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_teacher(batch_server, tmp_path).generate(make_chunks(2), 3, 1)
    lines = [json.loads(line) for line in batch_server.files[batch_server.uploads[0]].data.decode().splitlines()]
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    cached = {path.stem for path in tmp_path.glob("*/*.json")}
    assert {line["custom_id"] for line in lines} == cached and len(cached) == 4
    created = batch_server.batch()
    assert created.endpoint == "/v1/chat/completions" and created.completion_window == "24h"


def test_validation_failures_are_asked_again_in_a_follow_up_batch(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_server.inject(Fault("malformed", times=1, match="Zorblax1", item_kind="mcq"))
    result = batch_teacher(batch_server, tmp_path).generate(make_chunks(CHUNKS), 4, 2)

    assert not result.failures and result.stats["invalid_responses"] == 1
    assert batch_server.batches_created == 2
    follow_up = batch_server.batch(1)
    assert len(follow_up.lines) == 1
    messages = follow_up.lines[0]["body"]["messages"]
    assert messages[2]["role"] == "assistant" and "not valid JSON" in messages[3]["content"]  # the error fed back
    assert result.stats["requests"] == 25


def test_a_persistently_invalid_reply_fails_after_max_retries_plus_one_tries(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_server.inject(Fault("schema_violation", times=None, match="Zorblax0", item_kind="flashcards"))
    result = batch_teacher(batch_server, tmp_path, max_retries=2).generate(make_chunks(3), 4, 2)
    assert [(f.chunk_id, f.kind) for f in result.failures] == [("c0", "flashcards")]
    assert result.failures[0].reason.startswith("invalid response after 3 attempt(s)")
    assert batch_server.batches_created == 3 and result.stats["invalid_responses"] == 3 and result.stats["failures"] == 1


@pytest.mark.parametrize("end", ["expired", "cancelled"])
def test_an_ended_batch_keeps_its_results_and_resubmits_only_the_unfinished(batch_server: FakeBatchAPI, tmp_path: Path, end: str) -> None:
    batch_server.requests_per_poll = 3
    (batch_server.expire_next if end == "expired" else batch_server.cancel_next)(after=10)
    result = batch_teacher(batch_server, tmp_path).generate(make_chunks(CHUNKS), 4, 2)

    assert not result.failures
    first, second = batch_server.batch(0), batch_server.batch(1)
    assert first.status == end and first.ran == 10
    assert second.custom_ids == first.custom_ids[10:]  # only the unfinished
    assert sum(batch_server.executed.values()) == 24 and set(batch_server.executed.values()) == {1}
    assert result.stats["requests"] == 24 and result.stats["cost_usd"] == pytest.approx(batch_cost(result.stats))


def test_a_batch_cancelled_by_hand_keeps_its_results(batch_server: FakeBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_server.requests_per_poll = 4
    client = openai.OpenAI(api_key=SECRET, base_url=batch_server.base_url)

    def cancel_half_way(seconds: float) -> None:  # as `openai api batches.cancel` or the dashboard would, mid-run
        if batch_server.batches_created == 1 and batch_server.batch().ran >= 8 and batch_server.batch().status == "in_progress":
            client.batches.cancel(batch_server.batch().id)
        time.sleep(seconds)

    monkeypatch.setattr("perpetual.teacher.batch.pause", cancel_half_way)
    result = batch_teacher(batch_server, tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    first, second = batch_server.batch(0), batch_server.batch(1)
    assert first.status == "cancelled" and 8 <= first.ran < 24 and second.custom_ids == first.custom_ids[first.ran :]
    assert not result.failures and set(batch_server.executed.values()) == {1} and result.stats["requests"] == 24


def test_failed_requests_retry_when_passing_and_fail_when_not(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_server.inject(Fault("server_error", times=1, match="Zorblax2", item_kind="mcq"))
    batch_server.inject(Fault("unauthorized", times=None, match="Zorblax3", item_kind="flashcards"))
    result = batch_teacher(batch_server, tmp_path).generate(make_chunks(5), 4, 2)

    assert [(f.chunk_id, f.kind) for f in result.failures] == [("c3", "flashcards")]
    assert result.failures[0].reason.startswith("api error: 401")
    assert batch_server.batches_created == 2 and len(batch_server.batch(1).lines) == 1  # the 500, asked again
    assert result.stats["requests"] == 11 and result.stats["failures"] == 1


def test_a_batch_in_which_every_request_failed_is_one_line_naming_its_error_file(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_server.inject(Fault("server_error", times=None))
    with pytest.raises(UserError) as error:
        batch_teacher(batch_server, tmp_path).generate(make_chunks(3), 4, 2)
    message = str(error.value)
    failed = batch_server.batch()
    assert failed.error_file_id and failed.error_file_id in message and "every one of its 6 requests failed" in message
    assert "\n" not in message and SECRET not in message
    assert not paths.teacher_batch_state(tmp_path).exists()  # a rerun submits anew

    batch_server.clear_faults()
    assert not batch_teacher(batch_server, tmp_path).generate(make_chunks(3), 4, 2).failures
    assert batch_server.batches_created == 2


def test_a_batch_that_fails_validation_is_one_line(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    batch_server.reject_next("The model gpt-nope does not support the Batch API")
    with pytest.raises(UserError) as error:
        batch_teacher(batch_server, tmp_path).generate(make_chunks(2), 4, 2)
    assert "failed validation" in str(error.value) and "does not support the Batch API" in str(error.value)
    assert "\n" not in str(error.value) and not paths.teacher_batch_state(tmp_path).exists()


def test_an_endpoint_without_a_batch_api_is_one_line(server: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        batch_teacher(server, tmp_path).generate(make_chunks(2), 4, 2)
    assert "no Batch API" in str(error.value) and "transport: sync" in str(error.value) and "\n" not in str(error.value)


def test_the_budget_holds_back_what_would_exceed_it(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    chunks = make_chunks(10)
    probe = batch_teacher(batch_server, tmp_path / "probe").generate(chunks[:1], 4, 2)
    budget = probe.stats["cost_usd"] / 2 * 10  # about half of the 20 requests
    result = batch_teacher(batch_server, tmp_path / "cache", max_cost_usd=budget).generate(chunks, 4, 2)

    held = [f for f in result.failures if f.reason == "budget"]
    assert held and len(held) == len(result.failures) < 20
    assert len(batch_server.batch().lines) == 20 - len(held) and result.stats["cost_usd"] <= budget


def test_interrupted_while_polling_the_next_run_resumes_the_same_batch(
    batch_server: FakeBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_server.requests_per_poll, batch_server.hold_at = 2, 6

    def interrupt_once_held(seconds: float) -> None:  # Ctrl-C while the batch sits at 6 of 24
        if sum(batch_server.executed.values()) >= 6:
            raise KeyboardInterrupt
        time.sleep(seconds)

    with monkeypatch.context() as patch:
        patch.setattr("perpetual.teacher.batch.pause", interrupt_once_held)
        with pytest.raises(KeyboardInterrupt):
            batch_teacher(batch_server, tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    state = json.loads(paths.teacher_batch_state(tmp_path).read_text())
    assert state["batch_id"] == batch_server.batch().id and len(state["custom_ids"]) == 24

    # Killed between creating the batch and writing its id: the next run finds it by its input file.
    paths.teacher_batch_state(tmp_path).write_text(json.dumps({**state, "batch_id": None}))
    batch_server.release()
    result = batch_teacher(batch_server, tmp_path).generate(make_chunks(CHUNKS), 4, 2)

    assert not result.failures and batch_server.batches_created == 1 and len(batch_server.uploads) == 1
    assert sum(batch_server.executed.values()) == 24 and set(batch_server.executed.values()) == {1}
    assert result.stats["requests"] == 24 and not paths.teacher_batch(tmp_path).exists()


def test_a_state_file_naming_a_batch_the_endpoint_does_not_know_is_one_line(batch_server: FakeBatchAPI, tmp_path: Path) -> None:
    state = paths.teacher_batch_state(tmp_path)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"format": 1, "input_file_id": "file-x", "batch_id": "batch-elsewhere", "custom_ids": ["k"]}))
    with pytest.raises(UserError) as error:
        batch_teacher(batch_server, tmp_path).generate(make_chunks(1), 4, 2)
    assert "batch-elsewhere" in str(error.value) and str(state) in str(error.value) and "\n" not in str(error.value)


def test_transport_batch_needs_the_openai_backend() -> None:
    raw = params_dict({"generate": {"teacher": {"backend": "offline", "transport": "batch"}}})
    with pytest.raises(UserError) as error:
        parse_params(raw)
    assert "generate.teacher" in str(error.value) and "backend: openai" in str(error.value)


# ---------------------------------------------------------------- the stage, killed with kill -9 while polling
def make_project(root: Path, base_url: str) -> dict[str, str]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    teacher = params["generate"]["teacher"]
    teacher.update(
        {"backend": "openai", "transport": "batch", "base_url": base_url, "model": "fake-model", "max_retries": 2, "timeout_s": 5}
    )
    teacher["batch"]["poll_interval_s"] = 0.05
    params["generate"]["max_mcqs_per_task"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "prompts").symlink_to(REPO / "prompts")
    chunks = [
        {"chunk_id": f"c{i:02d}", "task": "code", "source": f"f{i}.py", "language": "python", "text": f"VALUE_{i} = {i * 7}\n# fact {i}"}
        for i in range(CHUNKS)
    ]
    (root / "data/chunks").mkdir(parents=True)
    (root / "data/chunks/code.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunks))
    return {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}


def generate_command() -> list[str]:
    return [sys.executable, "-m", "stages.generate", "--task", "code"]


def wait_for(condition: Any, timeout_s: float, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process is None or process.poll() is None, f"the stage ended early: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stage_killed_with_kill_9_while_polling_resumes_the_same_batch_and_pays_nothing_twice(tmp_path: Path) -> None:
    with FakeBatchAPI(requests_per_poll=2, hold_at=6) as server:
        env = make_project(tmp_path, server.base_url)
        stage = subprocess.Popen(generate_command(), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: sum(server.executed.values()) >= 6, 120, stage)
            batch_id = server.batch().id
            polled = server.polls[batch_id]
            wait_for(lambda: server.polls[batch_id] >= polled + 3, 30, stage)  # still polling, held at 6 of 24
            stage.send_signal(signal.SIGKILL)
            stage.wait(timeout=30)
        finally:
            if stage.poll() is None:
                stage.kill()
        assert stage.returncode == -signal.SIGKILL
        state = json.loads(paths.teacher_batch_state(tmp_path / "data/cache/teacher/code").read_text())
        assert state["batch_id"] == batch_id

        server.release()
        second = subprocess.run(generate_command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        assert f"resuming batch {batch_id}" in second.stderr
        assert server.batches_created == 1 and len(server.uploads) == 1, "the same batch is resumed, none submitted"
        assert sum(server.executed.values()) == 24 and set(server.executed.values()) == {1}, "no request paid twice"
        metrics = json.loads((tmp_path / "metrics/generate/code.json").read_text())
        assert metrics["failures"] == 0 and metrics["chunks_without_flashcards"] == 0 and metrics["requests"] == 24
        assert metrics["cost_usd"] == pytest.approx(batch_cost(metrics)) and metrics["cost_usd"] > 0
        assert not (tmp_path / "data/cache/teacher/code/batch").exists()

        third = subprocess.run(generate_command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert third.returncode == 0, third.stderr[-2000:]
        assert json.loads((tmp_path / "metrics/generate/code.json").read_text())["requests"] == 0
        assert server.batches_created == 1 and sum(server.executed.values()) == 24

    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="ignore"), f"API key leaked into {path}"
    assert SECRET not in second.stderr + second.stdout


# ---------------------------------------------------------------- vllm run-batch (a stand-in executable)
@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The stand-in's log of every request it ran; no key in the environment (vllm run-batch needs none)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    log = tmp_path / "vllm-ran.log"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    return log


def vllm_teacher(cache_dir: Path, **overrides: Any) -> BatchTeacher:
    batch = {
        "poll_interval_s": POLL,
        "command": [sys.executable, "-m", "perpetual.testing.fake_vllm", "run-batch", "--max-model-len", "4096"],
    }
    params = teacher_params(None, cache_dir, transport="vllm-run-batch", model="fake-model", batch=batch, **overrides)
    return BatchTeacher.from_params(params, show_progress=False)


def ran(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_vllm_run_batch_gives_what_sync_gives(server: FakeOpenAI, vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = make_chunks(CHUNKS)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    synchronous = OpenAITeacher.from_params(
        teacher_params(server.base_url, tmp_path / "sync", transport="sync", model="fake-model"), show_progress=False
    ).generate(chunks, 4, 2)
    monkeypatch.delenv("OPENAI_API_KEY")

    result = vllm_teacher(tmp_path / "vllm").generate(chunks, 4, 2)

    assert not result.failures and drafts(result) == drafts(synchronous)
    assert len(ran(vllm)) == 24 == len(set(ran(vllm))) and result.stats["requests"] == 24
    assert result.stats["cost_usd"] == pytest.approx(batch_cost(result.stats))
    assert set(ran(vllm)) == {path.stem for path in (tmp_path / "vllm").glob("*/*.json")}  # custom_id = cache key
    assert not paths.teacher_batch(tmp_path / "vllm").exists()
    assert vllm_teacher(tmp_path / "sync").generate(chunks, 4, 2).stats["cache_hits"] == 24  # one cache for both
    assert len(ran(vllm)) == 24


def test_vllm_run_batch_failures_and_re_asks(vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_FAIL", "Zorblax1")
    monkeypatch.setenv("FAKE_VLLM_MALFORMED", "Zorblax2")
    result = vllm_teacher(tmp_path, max_retries=1).generate(make_chunks(4), 4, 2)

    failures = {(f.chunk_id, f.kind): f.reason for f in result.failures}
    assert set(failures) == {("c1", "flashcards"), ("c1", "mcq"), ("c2", "flashcards"), ("c2", "mcq")}
    assert failures[("c1", "mcq")].startswith("api error: 400: fake vllm")
    assert failures[("c2", "mcq")].startswith("invalid response after 2 attempt(s)")
    assert len(ran(vllm)) == 8 + 2  # the malformed two asked once more, with the error fed back


def test_vllm_run_batch_that_crashes_keeps_what_it_finished(vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_DIE_AFTER", "5")
    with pytest.raises(UserError) as error:
        vllm_teacher(tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    assert "exited with status 1 after 5 of 24 requests" in str(error.value) and "\n" not in str(error.value)

    monkeypatch.delenv("FAKE_VLLM_DIE_AFTER")
    result = vllm_teacher(tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    assert not result.failures and result.stats["cache_hits"] == 5
    assert len(ran(vllm)) == 24 == len(set(ran(vllm)))  # the five it finished are not run again


def test_vllm_results_a_killed_run_left_are_kept(vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = paths.teacher_batch(tmp_path) / "results.jsonl"

    def interrupt_after_three(seconds: float) -> None:  # Ctrl-C once vLLM has written three results
        if results.exists() and results.read_text().count("\n") >= 3:
            raise KeyboardInterrupt
        time.sleep(seconds)

    with monkeypatch.context() as patch:
        patch.setenv("FAKE_VLLM_DELAY_S", "0.05")
        patch.setattr("perpetual.teacher.batch.pause", interrupt_after_three)
        with pytest.raises(KeyboardInterrupt):
            vllm_teacher(tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    finished = [json.loads(line)["custom_id"] for line in results.read_text().splitlines()]
    assert 3 <= len(finished) < 24
    with results.open("a") as torn:
        torn.write('{"id": "vllm-torn", "custom_id": "')  # as a kill -9 mid-write leaves it
    before = len(ran(vllm))

    result = vllm_teacher(tmp_path).generate(make_chunks(CHUNKS), 4, 2)
    assert not result.failures and result.stats["requests"] == 24
    rerun = ran(vllm)[before:]
    assert not set(finished) & set(rerun) and len(rerun) == 24 - len(finished)  # what it finished is not run again


def test_stage_killed_with_kill_9_stops_vllm_and_its_rerun_keeps_what_vllm_finished(vllm: Path, tmp_path: Path) -> None:
    env = make_project(tmp_path, "http://127.0.0.1:9/v1")  # no server: vllm-run-batch needs none, nor a key
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    teacher = params["generate"]["teacher"]
    teacher.update({"transport": "vllm-run-batch", "base_url": None})
    teacher["batch"]["command"] = [sys.executable, "-m", "perpetual.testing.fake_vllm", "run-batch"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env.pop("OPENAI_API_KEY")
    pidfile, results = tmp_path / "vllm.pid", tmp_path / "data/cache/teacher/code/batch/results.jsonl"
    slow = {**env, "FAKE_VLLM_DELAY_S": "0.2", "FAKE_VLLM_PIDFILE": str(pidfile)}  # 24 requests: about 5 s
    stage = subprocess.Popen(generate_command(), cwd=tmp_path, env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: results.exists() and results.read_text().count("\n") >= 3, 120, stage)
        stage.send_signal(signal.SIGKILL)
        stage.wait(timeout=30)
    finally:
        if stage.poll() is None:
            stage.kill()
    child = int(pidfile.read_text())
    wait_for(lambda: gone(child), 2)  # stopped with the stage, not left running (it would need 4 s more)
    finished = {json.loads(line)["custom_id"] for line in results.read_text().splitlines() if line.endswith("}")}
    assert 3 <= len(finished) < 24
    before = len(ran(vllm))

    rerun = subprocess.run(generate_command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    again = ran(vllm)[before:]
    assert finished and not finished & set(again) and len(again) == 24 - len(finished)
    metrics = json.loads((tmp_path / "metrics/generate/code.json").read_text())
    assert metrics["failures"] == 0 and metrics["requests"] == 24


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet
    except FileNotFoundError:
        return True


def test_a_missing_vllm_command_is_one_line(vllm: Path, tmp_path: Path) -> None:
    params = teacher_params(
        None, tmp_path, transport="vllm-run-batch", batch={"poll_interval_s": POLL, "command": ["no-such-vllm-here", "run-batch"]}
    )
    with pytest.raises(UserError) as error:
        BatchTeacher.from_params(params, show_progress=False).generate(make_chunks(1), 4, 2)
    assert "no-such-vllm-here" in str(error.value) and "generate.teacher.batch.command" in str(error.value)
