"""The teacher's response cache: reruns are free, keys track every input, and kill -9 never costs a reply twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from teacher_support import REPO, SECRET, make_chunks, make_teacher

from perpetual.records import Chunk
from perpetual.teacher.cache import CachedResponse, ResponseCache, cache_key
from perpetual.testing.fake_openai import FakeOpenAI


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*/*.json"))


def test_rerun_makes_zero_requests_and_gives_the_same_items(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(8)
    first = make_teacher(server, tmp_path).generate(chunks, 4, 3)
    sent = server.total_requests
    again = make_teacher(server, tmp_path).generate(chunks, 4, 3)

    assert server.total_requests == sent == 16
    assert again.stats["requests"] == 0 and again.stats["cache_hits"] == 16
    assert again.stats["cost_usd"] == 0
    assert (again.flashcards, again.mcqs) == (first.flashcards, first.mcqs)
    assert len(cache_files(tmp_path)) == 16
    assert not list(tmp_path.rglob("*.tmp"))


def test_key_covers_every_input() -> None:
    base = dict(
        backend="openai", model="m", prompt_sha256="p", kind="mcq", count=5, text="t", temperature=0.0, response_format="json_schema", seed=0
    )
    keys = {cache_key(base)}
    for field, other in [("model", "m2"), ("prompt_sha256", "p2"), ("kind", "flashcards"), ("count", 4), ("text", "t2"),
                         ("temperature", 0.7), ("response_format", "json_object"), ("seed", 1), ("backend", "other")]:
        keys.add(cache_key({**base, field: other}))
    assert len(keys) == 10
    assert cache_key(dict(reversed(list(base.items())))) == cache_key(base)  # order of fields does not matter


def test_changed_settings_or_prompt_ask_again(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(2)
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    make_teacher(server, tmp_path / "cache", prompts_dir=str(prompts)).generate(chunks, 4, 2)
    assert server.total_requests == 4

    make_teacher(server, tmp_path / "cache", prompts_dir=str(prompts), seed=1).generate(chunks, 4, 2)
    assert server.total_requests == 8  # new seed: new replies

    mcq = prompts / "mcq.md"
    mcq.write_text(mcq.read_text().replace("world-class", "very good"))
    result = make_teacher(server, tmp_path / "cache", prompts_dir=str(prompts)).generate(chunks, 4, 2)
    assert server.total_requests == 10  # only the edited MCQ prompt is asked again
    assert result.stats["cache_hits"] == 2


def test_corrupt_partial_or_foreign_files_are_misses(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(4)
    make_teacher(server, tmp_path).generate(chunks, 4, 2)
    files = cache_files(tmp_path)
    files[0].write_text(files[0].read_text()[:40])  # torn write
    files[1].write_text("")  # empty
    record = json.loads(files[2].read_text())
    files[2].write_text(json.dumps({**record, "key": "0" * 64}))  # a file under the wrong name
    record = json.loads(files[3].read_text())
    files[3].write_text(json.dumps({**record, "prompt_tokens": "many"}))  # wrong type

    result = make_teacher(server, tmp_path).generate(chunks, 4, 2)
    assert not result.failures
    assert result.stats["requests"] == 4 and result.stats["cache_hits"] == 4
    assert all(ResponseCache(tmp_path).get(path.stem) is not None for path in cache_files(tmp_path))


def test_put_is_atomic_and_stale_temps_are_cleaned(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key({"text": "x"})
    cache.put(key, CachedResponse('{"questions": []}', 3, 4), {"kind": "mcq"})
    assert cache.get(key) == CachedResponse('{"questions": []}', 3, 4)
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == [f"{key}.json"]

    stale = cache.path(key).with_name(f".{key[:16]}.1.2.tmp")
    stale.write_text('{"half')
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = cache.path(key).with_name(f".{key[:16]}.3.4.tmp")
    fresh.write_text('{"being written')
    assert cache.remove_stale_temps() == 1
    assert not stale.exists() and fresh.exists()  # a young temp file may belong to a live run


KILL_SCRIPT = """
import sys
from perpetual.config import TeacherParams
from perpetual.records import Chunk
from perpetual.teacher.openai_backend import OpenAITeacher
from perpetual.testing.params import section
base_url, cache_dir, prompts_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
chunks = [Chunk(chunk_id=f"c{i}", task="t", source=f"doc{i}.md", language="text",
                text=f"Fact c{i}: the Zorblax{i} river feeds lake Quell{i}.") for i in range(count)]
params = section(TeacherParams, "generate.teacher", backend="openai", base_url=base_url, cache_dir=cache_dir, prompts_dir=prompts_dir, concurrency=2)
OpenAITeacher.from_params(params, show_progress=False).generate(chunks, 4, 2)
print("finished")
"""


def test_kill_9_mid_run_then_rerun_sends_no_completed_request_twice(server: FakeOpenAI, tmp_path: Path) -> None:
    count, cache_dir = 30, tmp_path / "cache"
    server.latency_s = 0.03  # 60 requests two at a time: about a second, so the kill lands mid-run
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}
    command = [sys.executable, "-c", KILL_SCRIPT, server.base_url, str(cache_dir), str(REPO / "prompts"), str(count)]
    child = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while len(cache_files(cache_dir)) < 10 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        _, stderr = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, stderr.decode()

    survivors = cache_files(cache_dir)
    cache = ResponseCache(cache_dir)
    assert 10 <= len(survivors) < 2 * count
    assert all(cache.get(path.stem) is not None for path in survivors)  # every file whole
    before_kill = dict(server.requests_by_prompt)

    server.latency_s = 0.0
    result = make_teacher(server, cache_dir).generate(make_chunks(count), 4, 2)
    assert not result.failures
    assert result.stats["cache_hits"] == len(survivors)
    assert result.stats["requests"] == 2 * count - len(survivors)
    # Only requests that were in flight at the kill (at most one per worker) were ever sent twice.
    twice = [digest for digest, sent in server.requests_by_prompt.items() if sent > 1]
    assert len(twice) <= 2 and all(before_kill.get(digest) == 1 for digest in twice)
    assert not any(SECRET.encode() in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())


def test_identical_chunks_share_one_request(server: FakeOpenAI, tmp_path: Path) -> None:
    chunks = make_chunks(3)
    chunks.append(Chunk(chunk_id="copy", task="t", source="copy.md", language="text", text=chunks[0]["text"]))
    result = make_teacher(server, tmp_path).generate(chunks, 4, 2)

    assert not result.failures and server.total_requests == 6
    assert result.stats["requests"] == 6 and result.stats["cache_hits"] == 2
    copies = [card for card in result.flashcards if card.chunk_id == "copy"]
    originals = [card for card in result.flashcards if card.chunk_id == "c0"]
    assert [card.question for card in copies] == [card.question for card in originals] and len(copies) == 4
    assert [mcq.chunk_id for mcq in result.mcqs].count("copy") == 2
