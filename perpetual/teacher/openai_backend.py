"""The OpenAI teacher: a `TeacherRunner` over a thin transport to any OpenAI-compatible chat-completions server.

The transport is the client's typed API (`chat.completions.create`) and its own retries, which already back off with
jitter and honour Retry-After; how many it took is read back from the response (`retries_taken`) or, for a request
that failed, from the retry count header the client sent, so the runner's counters stay exact.

The key comes only from OPENAI_API_KEY and is handed to the client alone: it never reaches cache keys, cache files,
logs or errors (servers may echo it back; messages are masked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.teacher.base import ItemKind
from perpetual.teacher.cache import KeyField
from perpetual.teacher.items import json_schema
from perpetual.teacher.prompts import Messages
from perpetual.teacher.runner import Reply, RequestFailed, TeacherRunner, tokens_from_chars


class OpenAITransport:
    def __init__(self, params: TeacherParams, *, api_key: str, base_url: str | None) -> None:
        self.params = params
        # base_url None: the client's own default (OPENAI_BASE_URL, else OpenAI).
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=params.max_retries, timeout=params.timeout_s)

    def cache_fields(self) -> Mapping[str, KeyField]:
        # Neither the key nor the base URL (which may embed credentials) is part of a cache key.
        settings = self.params
        return {
            "backend": "openai",
            "model": settings.model,
            "temperature": settings.temperature,
            "response_format": settings.response_format,
            "seed": settings.seed,
        }

    def send(self, kind: ItemKind, messages: Messages) -> Reply:
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.params.model,
                messages=cast(list[ChatCompletionMessageParam], messages),  # role/content dicts, as the prompt renders them
                response_format=self._response_format(kind),
                temperature=self.params.temperature,
                seed=self.params.seed,
            )
        except openai.APIStatusError as error:
            fatal = self._fatal(error)
            if fatal is not None:
                raise fatal from None
            raise RequestFailed(self._reason(error), _attempts(error.response.request)) from None
        except openai.APIConnectionError as error:  # timeouts included
            raise RequestFailed(self._reason(error), _attempts(error.request)) from None
        completion = raw.parse()
        choice = completion.choices[0] if completion.choices else None
        content = (choice.message.content if choice else None) or ""
        usage = completion.usage
        # Without usage figures, fall back on the same rough estimate the budget uses (never under-count cost).
        return Reply(
            content=content,
            prompt_tokens=usage.prompt_tokens if usage else tokens_from_chars(sum(len(m["content"]) for m in messages)),
            completion_tokens=usage.completion_tokens if usage else tokens_from_chars(len(content)),
            finish_reason=choice.finish_reason if choice else None,
            refusal=choice.message.refusal if choice else None,
            requests=raw.retries_taken + 1,
        )

    def _response_format(self, kind: ItemKind) -> Any:
        if self.params.response_format == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": kind, "strict": True, "schema": json_schema(kind)}}

    def _fatal(self, error: openai.APIStatusError) -> UserError | None:
        """Errors that would fail every chunk alike: stop the run with one line instead of N failures."""
        detail = self._one_line(error.message)
        if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return UserError(f"the teacher API refused the key ({error.status_code}: {detail}); check OPENAI_API_KEY")
        if isinstance(error, openai.NotFoundError):
            return UserError(f"the teacher API answered 404 ({detail}); check generate.teacher.model and base_url")
        if error.status_code == 429 and error.code == "insufficient_quota":
            return UserError(f"the teacher API account has no quota left ({detail}); add credit or use backend: offline")
        return None

    def _reason(self, error: openai.APIError) -> str:
        return f"{type(error).__name__}: {self._one_line(str(error))}"

    def _one_line(self, text: str, limit: int = 200) -> str:
        """Error text fit for a terminal line or a Failure reason, with the key (or anything shaped like one) masked."""
        text = " ".join(str(text).split())
        secret = str(self._client.api_key or "")
        if secret:
            text = text.replace(secret, "***")
        text = re.sub(r"\bsk-[\w*.-]+", "sk-***", text)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _attempts(request: Any) -> int:
    # The client numbers each attempt in this header; the request an error carries is the last one it sent.
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except (AttributeError, RuntimeError, ValueError):
        return 1


class OpenAITeacher(TeacherRunner):
    """Flashcards and MCQs from an OpenAI-compatible chat-completions API."""

    @classmethod
    def from_params(cls, params: TeacherParams, *, show_progress: bool = True) -> OpenAITeacher:
        """Build from params; the key is read from OPENAI_API_KEY only, never from params files."""
        api_key = os.environ.get("OPENAI_API_KEY", "").strip()
        if not api_key:
            raise UserError("OPENAI_API_KEY is not set; export OPENAI_API_KEY=... or set generate.teacher.backend: offline")
        base_url = params.base_url or os.environ.get("OPENAI_BASE_URL") or None
        return cls(OpenAITransport(params, api_key=api_key, base_url=base_url), params, show_progress=show_progress)
