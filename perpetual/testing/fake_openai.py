"""A small OpenAI-compatible chat-completions server for tests and benchmarks (stdlib only, 127.0.0.1 only).

    with FakeOpenAI(latency_s=0.01) as server:
        server.inject(Fault("rate_limit", times=2, retry_after_s=0.05))
        teacher = OpenAITeacher(params.model_copy(update={"base_url": server.base_url}), api_key="sk-test")

Replies are built deterministically from the user message, in the shape the flashcard or MCQ schema asks for
(`questions` with question/answer, or question/choices/answer), with usage token counts; a request for items without
a response_format (`response_format: prompt`) gets the JSON amid prose, in a code fence, as a chat model writes it.
A request without a response_format or a system message (a self-study rephrasing or answer: plain text) is answered
with its user message's last paragraph rewritten, its words in reverse order (`rewrite`): every one-word fact (a number, an identifier) is kept and no word
pair is, so a rephrasing check keeps it, unless a fact of several words ("Aurora Labs") comes out reversed. Faults are injected on
demand and consumed by the requests they match. The server counts requests per prompt hash (system + the chunk's user
message, so feedback retries count against the prompt they retry) and keeps the Authorization headers it saw in
memory only, never on disk.

Run standalone (for benchmarks in another process): python -m perpetual.testing.fake_openai --latency 0.1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

FaultKind = Literal[
    "rate_limit",  # 429 with a Retry-After header
    "server_error",  # 500
    "hang",  # no reply for hang_s (the client should time out)
    "malformed",  # reply content that is not valid JSON
    "schema_violation",  # valid JSON in the wrong shape (too few items, missing answer, 3 choices)
    "duplicate_options",  # MCQ choices with a repeated option
    "letter_prefixed",  # MCQ choices like "A. foo"
    "unauthorized",  # 401, as for a wrong API key
    "truncated",  # finish_reason "length", as for a reply cut at the token budget (a plain one: its first half)
]
LETTERS = ("A", "B", "C", "D")
FALLBACK_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1  # how many matching requests it hits; None: every one
    retry_after_s: float = 0.05
    hang_s: float = 30.0
    item_kind: str | None = None  # only "flashcards" or "mcq" requests
    match: str | None = None  # only requests whose user message contains this text
    first_tries: int | None = None  # only each prompt's first this many requests (a model that gets it right once told)


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """Identifies a prompt across its retries: the system message and the prompt's user message."""
    system = next((str(m.get("content")) for m in messages if m.get("role") == "system"), "")
    return hashlib.sha256(f"{system}\x1f{prompt_user(messages)}".encode()).hexdigest()


def prompt_user(messages: list[dict[str, Any]]) -> str:
    """The user message that holds the chunk: the last one that is not feedback on a rejected reply (a worked example's
    user turn comes before it; feedback, after)."""
    users = [str(m.get("content")) for m in messages if m.get("role") == "user"]
    asked = [content for content in users if not content.startswith("Your previous reply was rejected")]
    return (asked or users or [""])[-1]


class FakeOpenAI:
    """The server and its knobs; a context manager that starts it on a free port and stops it on exit."""

    def __init__(self, latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency_s = latency_s
        self.requests_by_prompt: Counter[str] = Counter()
        self.authorizations: list[str] = []  # in memory only
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), prompt hash) per request
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = _Server((host, port), self.handler())
        self._httpd.fake = self
        # A short poll interval makes stop() quick (serve_forever checks for shutdown only this often).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="fake-openai", daemon=True)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()  # wakes handlers sleeping in latency or hang faults
        self._httpd.shutdown()
        self._httpd.server_close()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class; a server with more routes (perpetual/testing/fake_batch.py) returns its own."""
        return _Handler

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # ------------------------------------------------------------ knobs and counters
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests_by_prompt.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.requests_by_prompt.clear()
            self.bodies.clear()
            self.arrivals.clear()
            self.authorizations.clear()

    # ------------------------------------------------------------ request handling (called by the handler)
    def record(self, body: dict[str, Any], authorization: str) -> Fault | None:
        """Count the request and take the first fault that matches it, if any."""
        messages = body.get("messages") or []
        kind = request_kind(body)
        user = prompt_user(messages)
        with self._lock:
            digest = prompt_hash(messages)
            self.requests_by_prompt[digest] += 1
            self.arrivals.append((time.monotonic(), digest))
            self.authorizations.append(authorization)
            self.bodies.append(body)
            for fault in self._faults:
                if fault.times is not None and fault.times <= 0:
                    continue
                if fault.item_kind not in (None, kind) or (fault.match is not None and fault.match not in user):
                    continue
                if fault.first_tries is not None and self.requests_by_prompt[digest] > fault.first_tries:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)


# ---------------------------------------------------------------- reply content
def request_kind(body: dict[str, Any]) -> str:
    """'flashcards' or 'mcq': from the json_schema name, else from the system prompt's wording."""
    response_format = body.get("response_format") or {}
    name = (response_format.get("json_schema") or {}).get("name")
    if name in ("flashcards", "mcq"):
        return str(name)
    system = " ".join(str(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "system")
    return "mcq" if "choices" in system else "flashcards"


def _wanted_count(body: dict[str, Any], kind: str) -> int:
    system = " ".join(str(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "system")
    found = re.search(r"exactly (\d+)", system)
    count = int(found.group(1)) if found else (3 if kind == "flashcards" else 1)
    return min(max(count, 3), 5) if kind == "flashcards" else max(count, 1)


def is_plain(body: dict[str, Any]) -> bool:
    """A request for prose (no response_format and no system message), as self-study sends."""
    return not body.get("response_format") and not any(m.get("role") == "system" for m in body.get("messages") or [])


def rewrite(text: str) -> str:
    """The plain reply: the last paragraph of `text` (what a self-study prompt applies its instruction to) with its
    words in reverse order."""
    return " ".join(reversed(text.split("\n\n")[-1].split()))


def build_content(body: dict[str, Any], fault: Fault | None) -> str:
    text = prompt_user(body.get("messages") or [])
    if is_plain(body):
        reply = rewrite(text)
        return reply[: len(reply) // 2] if fault is not None and fault.kind == "truncated" else reply
    kind = request_kind(body)
    count = _wanted_count(body, kind)
    fault_kind = fault.kind if fault else None
    if fault_kind == "malformed":
        return '{"questions": [{"question": "unterminated'
    words = re.findall(r"[A-Za-z][A-Za-z0-9_]{2,}", text) or list(FALLBACK_WORDS)
    seed = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
    if kind == "flashcards":
        items = [_flashcard(words, seed + index, index) for index in range(count)]
        if fault_kind == "schema_violation":
            items = [{"question": item["question"]} for item in items[:2]]  # too few, and no answers
    else:
        items = [_mcq(words, seed + index, index, fault_kind) for index in range(count)]
    reply = json.dumps({"questions": items})
    if not body.get("response_format"):  # asked in the prompt only: the JSON amid prose, as a chat model writes it
        return f"Here are the questions about the text.\n```json\n{reply}\n```\nI hope they help!"
    return reply


def _flashcard(words: list[str], seed: int, index: int) -> dict[str, Any]:
    word = words[seed % len(words)]
    return {"question": f"What does the text say about {word} (point {index + 1})?", "answer": f"It discusses {word}."}


def _mcq(words: list[str], seed: int, index: int, fault_kind: str | None) -> dict[str, Any]:
    correct = words[seed % len(words)]
    distractors = [f"{correct}-not-{n}" for n in range(1, 4)]
    letter_index = seed % 4
    choices = distractors[:letter_index] + [correct] + distractors[letter_index:]
    if fault_kind == "schema_violation":
        return {"question": f"Which term does the text use (item {index + 1})?", "choices": choices[:3]}
    if fault_kind == "duplicate_options":
        duplicate = (letter_index + 1) % 4
        choices[duplicate] = correct
    if fault_kind == "letter_prefixed":
        choices = [f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices)]
    return {"question": f"Which term does the text use (item {index + 1})?", "choices": choices, "answer": LETTERS[letter_index]}


def completion_body(body: dict[str, Any], content: str, finish_reason: str = "stop") -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content"))) for m in body.get("messages") or [])
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": "chatcmpl-fake-" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# ---------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when dozens of clients connect at once.
    request_queue_size = 256
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do; otherwise every request pays a new connection
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm on, the body would wait for the
        # client's delayed ACK (~40 ms), which would swamp the latency being simulated.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and benchmarks read counters, not logs

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error", "code": None}})
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error", "code": None}})
            return
        fake = self.server.fake
        fault = fake.record(body, self.headers.get("Authorization", ""))
        fake.pause(fake.latency_s)
        if fault is not None and self._send_fault(fault):
            return
        finish_reason = "length" if fault is not None and fault.kind == "truncated" else "stop"
        self._send_json(200, completion_body(body, build_content(body, fault), finish_reason))

    def _send_fault(self, fault: Fault) -> bool:
        """Send an HTTP-level fault; False when the fault is in the content instead."""
        fake = self.server.fake
        if fault.kind == "rate_limit":
            error = {"error": {"message": "Rate limit reached (fake)", "type": "requests", "code": "rate_limit_exceeded"}}
            self._send_json(429, error, {"Retry-After": f"{fault.retry_after_s:g}"})
        elif fault.kind == "server_error":
            self._send_json(500, {"error": {"message": "internal error (fake)", "type": "server_error", "code": None}})
        elif fault.kind == "unauthorized":
            # Echoes the key in full, as a careless server might, so tests can check that errors mask it.
            message = f"Incorrect API key provided: {self.headers.get('Authorization', '').removeprefix('Bearer ')}"
            self._send_json(401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif fault.kind == "hang":
            fake.pause(fault.hang_s)
            self.close_connection = True  # the client has given up by now; do not reuse this connection
        else:
            return False
        return True

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client timed out and left


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI chat-completions API on 127.0.0.1.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    with FakeOpenAI(latency_s=args.latency, port=args.port) as server:
        print(server.base_url, flush=True)  # the parent process reads the URL from this line
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
