"""The OpenAI teacher: a `TeacherRunner` over a thin transport to any OpenAI-compatible chat-completions server.

The transport is the client's typed API (`chat.completions.create`) and its own retries, which already back off with
jitter and honour Retry-After; how many it took is read back from the response (`retries_taken`) or, for a request
that failed, from the retry count header the client sent, so the runner's counters stay exact.

The key comes only from OPENAI_API_KEY and is handed to the client alone: it never reaches cache keys, cache files,
logs or errors (servers may echo it back; messages are masked: perpetual/teacher/endpoint.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from perpetual.config import TeacherParams
from perpetual.teacher.base import ItemKind
from perpetual.teacher.cache import KeyField
from perpetual.teacher.endpoint import api_key_from_environment, endpoint_url, error_reason, fatal_error, make_client
from perpetual.teacher.items import json_schema
from perpetual.teacher.prompts import Messages
from perpetual.teacher.runner import Reply, RequestFailed, TeacherRunner, tokens_from_chars

# The setting that needs no key, named in the errors that stop a run.
WITHOUT_AN_ENDPOINT = "generate.teacher.backend: offline"


class OpenAITransport:
    def __init__(self, params: TeacherParams, *, api_key: str, base_url: str | None) -> None:
        self.params = params
        self._client = make_client(params, api_key=api_key, base_url=base_url)

    def cache_fields(self) -> Mapping[str, KeyField]:
        # Neither the key nor the base URL (which may embed credentials) is part of a cache key.
        settings = self.params
        return {
            "backend": "openai",
            "model": settings.model,
            "temperature": settings.temperature,
            "response_format": settings.response_format,
            "seed": settings.seed,
            **({"max_tokens": settings.max_tokens} if settings.max_tokens is not None else {}),  # null: keys as before
        }

    def send(self, kind: ItemKind, messages: Messages) -> Reply:
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.params.model,
                messages=cast(list[ChatCompletionMessageParam], messages),  # role/content dicts, as the prompt renders them
                response_format=self._response_format(kind),
                temperature=self.params.temperature,
                seed=self.params.seed,
                max_tokens=openai.omit if self.params.max_tokens is None else self.params.max_tokens,
            )
        except openai.APIStatusError as error:
            fatal = fatal_error(error, self._secret(), WITHOUT_AN_ENDPOINT)
            if fatal is not None:
                raise fatal from None
            raise RequestFailed(error_reason(error, self._secret()), _attempts(error.response.request)) from None
        except openai.APIConnectionError as error:  # timeouts included
            raise RequestFailed(error_reason(error, self._secret()), _attempts(error.request)) from None
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
        if self.params.response_format == "prompt":
            return openai.omit  # the shape is asked for in the prompt only; servers such as transformers serve ignore one
        if self.params.response_format == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": kind, "strict": True, "schema": json_schema(kind)}}

    def _secret(self) -> str:
        return str(self._client.api_key or "")


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
        transport = OpenAITransport(params, api_key=api_key_from_environment(WITHOUT_AN_ENDPOINT), base_url=endpoint_url(params))
        return cls(transport, params, show_progress=show_progress)
