"""The OpenAI teacher: a `TeacherRunner` over a thin transport to any OpenAI-compatible chat-completions server.

The transport is the client's generic `post` to `/chat/completions` (not the typed `chat.completions.create`, whose
per-request work cost a third of the throughput at 32 in flight: see `OpenAITransport.send`) and its own retries,
which already back off with jitter and honour Retry-After; how many it took is read back from the retry count header
the client sent with the last attempt, whether it succeeded or failed, so the runner's counters stay exact.

The key comes only from OPENAI_API_KEY and is handed to the client alone: it never reaches cache keys, cache files,
logs or errors (servers may echo it back; messages are masked: perpetual/teacher/endpoint.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import httpx2
import openai

from perpetual.config import TeacherParams
from perpetual.teacher.base import ItemKind
from perpetual.teacher.cache import KeyField
from perpetual.teacher.endpoint import api_key_from_environment, endpoint_url, error_reason, fatal_error, make_client
from perpetual.teacher.items import json_schema
from perpetual.teacher.prompts import Messages
from perpetual.teacher.runner import KINDS, Reply, RequestFailed, TeacherRunner, tokens_from_chars

# The setting that needs no key, named in the errors that stop a run.
WITHOUT_AN_ENDPOINT = "generate.teacher.backend: offline"


class OpenAITransport:
    def __init__(self, params: TeacherParams, *, api_key: str, base_url: str | None) -> None:
        self.params = params
        self._client = make_client(params, api_key=api_key, base_url=base_url)
        self._response_formats = {kind: response_format(kind, params.response_format) for kind in KINDS}

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
        body = self.request_body(kind, messages)
        try:
            # The client's generic post(), which keeps its auth, retries, timeouts and error classes, rather than the
            # typed chat.completions.create(): create() walks every request through its TypedDict transformer (each
            # message against every message type; `model` against a Literal of every model name, hashed per call) and
            # builds a typed ChatCompletion from the reply, about 0.9 ms of CPU under the GIL per request, which held
            # 32 workers to 0.71-0.79 of the latency bound (benchmarks/teacher_throughput.py). The body is plain JSON
            # already, so the transformer would return it unchanged, and the reply needs five fields.
            response = self._client.post("/chat/completions", cast_to=httpx2.Response, body=body)
        except openai.APIStatusError as error:
            fatal = fatal_error(error, self._secret(), WITHOUT_AN_ENDPOINT)
            if fatal is not None:
                raise fatal from None
            raise RequestFailed(error_reason(error, self._secret()), _attempts(error.response.request)) from None
        except openai.APIConnectionError as error:  # timeouts included
            raise RequestFailed(error_reason(error, self._secret()), _attempts(error.request)) from None
        requests = _attempts(response.request)
        try:
            completion = response.json()
        except ValueError:
            raise RequestFailed(f"the server's reply is not JSON (HTTP {response.status_code})", requests) from None
        return _reply(completion, messages, requests)

    def _secret(self) -> str:
        return str(self._client.api_key or "")

    def request_body(self, kind: ItemKind, messages: Messages) -> dict[str, Any]:
        """The body `send` posts: also a line of the batch transports' requests file (perpetual/teacher/batch.py)."""
        body: dict[str, Any] = {
            "model": self.params.model,
            "messages": [dict(message) for message in messages],
            "temperature": self.params.temperature,
            "seed": self.params.seed,
        }
        if self._response_formats[kind] is not None:
            body["response_format"] = self._response_formats[kind]
        if self.params.max_tokens is not None:
            body["max_tokens"] = self.params.max_tokens
        return body


def response_format(kind: ItemKind, mode: str) -> dict[str, Any] | None:
    if mode == "prompt":
        return None  # the shape is asked for in the prompt only; servers such as transformers serve ignore one
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": kind, "strict": True, "schema": json_schema(kind)}}


def _reply(completion: object, messages: Messages, requests: int) -> Reply:
    """The fields of a chat completion the runner needs, read leniently: one missing or of the wrong type is absent."""
    choices = _field(completion, "choices", list) or [None]
    choice, usage = choices[0], _field(completion, "usage", dict)
    message = _field(choice, "message", dict)
    content = _field(message, "content", str) or ""
    prompt_tokens, completion_tokens = _field(usage, "prompt_tokens", int), _field(usage, "completion_tokens", int)
    # Without usage figures, fall back on the same rough estimate the budget uses (never under-count cost).
    return Reply(
        content=content,
        prompt_tokens=prompt_tokens if prompt_tokens is not None else tokens_from_chars(sum(len(m["content"]) for m in messages)),
        completion_tokens=completion_tokens if completion_tokens is not None else tokens_from_chars(len(content)),
        finish_reason=_field(choice, "finish_reason", str),
        refusal=_field(message, "refusal", str),
        requests=requests,
    )


FieldType = TypeVar("FieldType")


def _field(mapping: object, key: str, kind: type[FieldType]) -> FieldType | None:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):  # a token count of true or -1 is none
        return None
    return value if isinstance(value, kind) else None


def _attempts(request: Any) -> int:
    # The client numbers each attempt in this header; the request a response or an error carries is the last one sent.
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
