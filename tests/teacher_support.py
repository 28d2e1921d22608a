"""Shared by the teacher tests: chunks, and an OpenAITeacher pointed at the project's fake server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from perpetual.config import TeacherParams
from perpetual.records import Chunk
from perpetual.teacher.openai_backend import OpenAITeacher
from perpetual.testing.fake_openai import FakeOpenAI
from perpetual.testing.params import section

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-123"


def make_chunks(count: int, tag: str = "c") -> list[Chunk]:
    return [
        Chunk(chunk_id=f"{tag}{i}", task="t", source=f"doc{i}.md", language="text", text=f"Fact {tag}{i}: the Zorblax{i} river feeds lake Quell{i}.")
        for i in range(count)
    ]


def make_teacher(server: FakeOpenAI, cache_dir: Path, **overrides: Any) -> OpenAITeacher:
    settings: dict[str, Any] = dict(
        backend="openai",
        base_url=server.base_url,
        cache_dir=str(cache_dir),
        prompts_dir=str(REPO / "prompts"),
        concurrency=4,
        max_retries=3,
        timeout_s=2.0,
    )
    settings.update(overrides)
    return OpenAITeacher.from_params(section(TeacherParams, "generate.teacher", **settings), show_progress=False)


Fake = TypeVar("Fake", bound=FakeOpenAI)


def serving(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> Iterator[Fake]:
    """A fake endpoint, started, with the test key in the environment (and no other endpoint's)."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with fake:
        yield fake
