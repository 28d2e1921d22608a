"""What every client of an OpenAI-compatible endpoint shares (generate@'s teacher, perpetual/teacher/openai_backend.py,
and self-study's, perpetual/teacher/chat_teacher.py): the key, read from OPENAI_API_KEY only; the client, built from
`generate.teacher`; and the errors that would fail every request alike, which stop the run with one line.

The key is handed to the client alone: it never reaches cache keys, cache files, logs or errors (servers may echo it
back; messages are masked).
"""

from __future__ import annotations

import os
import re

import openai

from perpetual.config import TeacherParams
from perpetual.errors import UserError


def api_key_from_environment(instead: str) -> str:
    """The key in OPENAI_API_KEY; a one-line UserError when it is missing. `instead` is the setting that needs no key,
    e.g. "generate.teacher.backend: offline"."""
    api_key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not api_key:
        raise UserError(f"OPENAI_API_KEY is not set; export OPENAI_API_KEY=... or set {instead}")
    return api_key


def endpoint_url(params: TeacherParams) -> str | None:
    # None: the client's own default (OPENAI_BASE_URL, else OpenAI).
    return params.base_url or os.environ.get("OPENAI_BASE_URL") or None


def make_client(params: TeacherParams, *, api_key: str, base_url: str | None) -> openai.OpenAI:
    """The client, with its own retries (backoff with jitter, honouring Retry-After) and timeout from params."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=params.max_retries, timeout=params.timeout_s)


def fatal_error(error: openai.APIStatusError, secret: str, instead: str) -> UserError | None:
    """The one-line UserError for an error that would fail every request alike (a refused key, an unknown model or
    URL, an empty account), or None for one that concerns this request only."""
    detail = one_line(error.message, secret)
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return UserError(f"the teacher API refused the key ({error.status_code}: {detail}); check OPENAI_API_KEY")
    if isinstance(error, openai.NotFoundError):
        return UserError(f"the teacher API answered 404 ({detail}); check generate.teacher.model and base_url")
    if error.status_code == 429 and error.code == "insufficient_quota":
        return UserError(f"the teacher API account has no quota left ({detail}); add credit or set {instead}")
    return None


def error_reason(error: openai.APIError, secret: str) -> str:
    """A failed request's reason, for a count or a message: its type and its text on one line, masked."""
    return f"{type(error).__name__}: {one_line(str(error), secret)}"


def one_line(text: str, secret: str, limit: int = 200) -> str:
    """Error text fit for a terminal line or a Failure reason, with the key (or anything shaped like one) masked."""
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"\bsk-[\w*.-]+", "sk-***", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
