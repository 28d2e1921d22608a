"""The real generate stage (subprocess, as DVC runs it) against the project's fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from perpetual.records import LETTERS
from perpetual.testing.fake_openai import FakeOpenAI, Fault

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-stage-987"


def make_project(root: Path, base_url: str, **teacher: object) -> dict[str, str]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generate"]["teacher"].update(
        {"backend": "openai", "base_url": base_url, "model": "fake-model", "max_retries": 2, "timeout_s": 5, "concurrency": 4, **teacher}
    )
    params["generate"]["max_mcqs_per_task"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(REPO / "prompts", root / "prompts")
    chunks = [
        {"chunk_id": f"c{i:02d}", "task": "code", "source": f"f{i}.py", "language": "python", "text": f"VALUE_{i} = {i * 7}\n# fact {i}"}
        for i in range(12)
    ]
    (root / "data/chunks").mkdir(parents=True)
    (root / "data/chunks/code.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunks))
    return {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}


def generate(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.generate", "--task", "code"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_stage_against_fake_server_covers_reports_and_never_pays_twice(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        env = make_project(tmp_path, server.base_url)
        server.inject(Fault("server_error", times=2))
        server.inject(Fault("schema_violation", times=1))
        first = generate(tmp_path, env)
        assert first.returncode == 0, first.stderr[-2000:]
        requests_after_first = sum(server.requests_by_prompt.values())

        metrics = json.loads((tmp_path / "metrics/generate/code.json").read_text())
        assert metrics["chunks"] == 12
        assert metrics["failures"] == 0 and metrics["chunks_without_flashcards"] == 0
        assert metrics["requests"] >= 24  # one per chunk per kind, plus the retries
        mcqs = [json.loads(line) for line in (tmp_path / "data/generated/code/mcq.jsonl").read_text().splitlines()]
        assert mcqs and all(len(m["options"]) == 4 and m["answer"] in LETTERS for m in mcqs)
        assert {m["chunk_id"] for m in mcqs} <= {f"c{i:02d}" for i in range(12)}

        second = generate(tmp_path, env)
        assert second.returncode == 0, second.stderr[-2000:]
        assert sum(server.requests_by_prompt.values()) == requests_after_first, "a rerun must send no request"
        assert json.loads((tmp_path / "metrics/generate/code.json").read_text())["requests"] == 0

    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), f"API key leaked into {path}"
    assert SECRET not in first.stderr + first.stdout + second.stderr + second.stdout


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        env = make_project(tmp_path, server.base_url)
        env.pop("OPENAI_API_KEY")
        result = generate(tmp_path, env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "OPENAI_API_KEY" in result.stderr


def test_a_server_whose_replies_never_validate_stops_the_stage_within_a_few_dozen_requests(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        env = make_project(tmp_path, server.base_url, max_retries=5)  # unchecked: 12 chunks x 2 kinds x 6 attempts
        server.inject(Fault("schema_violation", times=None))
        result = generate(tmp_path, env)
        requests = server.total_requests
    limit = yaml.safe_load((REPO / "params.yaml").read_text())["generate"]["teacher"]["stop_after_invalid_replies"]
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: the teacher's first {limit} replies all failed")
    assert "most often" in result.stderr and "questions." in result.stderr and "response_format: json_schema" in result.stderr
    assert limit <= requests <= limit + 3  # the concurrency of 4: the limit's reply and the 3 others in flight
    assert not (tmp_path / "data/generated/code/mcq.jsonl").exists()


def test_a_stage_that_wrote_no_items_fails_with_one_line(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        env = make_project(tmp_path, server.base_url, max_cost_usd=0)  # a budget that lets no request through
        result = generate(tmp_path, env)
        assert server.total_requests == 0
    assert result.returncode == 2
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: generate@code wrote 0 flashcards and 0 MCQs, nothing to train or evaluate on")
    assert "24 chunk x kind requests, 24 of them with budget" in error and "metrics/generate/code.json" in error
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "metrics/generate/code.json").read_text())["failures"] == 24
