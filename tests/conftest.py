from __future__ import annotations

from typing import Iterator

import pytest

from perpetual.testing.fake_openai import FakeOpenAI
from teacher_support import SECRET


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The project's OpenAI-compatible server on 127.0.0.1, with the test key in the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAI() as fake:
        yield fake
