"""The project's fake OpenAI server with the Batch API too: files and batches, for tests (stdlib only, 127.0.0.1 only).

    with FakeBatchAPI(requests_per_poll=2) as server:
        server.expire_next(after=10)  # the next batch expires once 10 of its requests have run
        ...
        assert server.batches_created == 2 and max(server.executed.values()) == 1

It is FakeOpenAI (perpetual/testing/fake_openai.py; its /v1/chat/completions still answers, faults included) with the
routes a batch client uses: POST /v1/files (multipart, purpose `batch`), GET /v1/files/{id} and /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches (the list, newest first), GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.

A batch moves only when it is looked at (GET /v1/batches/{id}), so a test decides how far it gets: `validating` ->
`in_progress` on the first look (or `failed`, with its `errors`, when its file is not a valid requests file or
`reject_next` asked for it), then `requests_per_poll` of its requests run per look, each answered as
/v1/chat/completions would answer it, injected faults included (`server_error`, `rate_limit`, `hang`: a 500, 429 or
500 line in the error file; `unauthorized`: a 401 line; the content faults: a 200 with that content); then
`finalizing`, then `completed`, with `output_file_id` (the 200s) and `error_file_id` (the rest), `request_counts` kept
up to date all along. `hold_at` stops every batch after that many of its requests until `release()` (a batch that
takes hours); `expire_next` / `cancel_next` end the next batch `expired` / `cancelled` once that many of its requests
have run, its unfinished requests in the error file with code `batch_expired` / `batch_cancelled`, as OpenAI writes
them. A cancel request (POST .../cancel) ends a batch `cancelled` on its next look.

What was paid is counted: `executed` (requests run, per custom_id), `batches` (every batch created, with its
custom_ids, in order), `uploads`, and FakeOpenAI's own counters (`requests_by_prompt`, `bodies`, `total_requests`).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from perpetual.testing.fake_openai import FakeOpenAI, Fault, _Handler, build_content, completion_body

TERMINAL = ("completed", "expired", "cancelled", "failed")
REQUEST_ERRORS = {  # a fault that is an HTTP error on the synchronous route, as a line of the error file
    "server_error": (500, "server_error", "internal error (fake)"),
    "rate_limit": (429, "rate_limit_exceeded", "Rate limit reached (fake)"),
    "hang": (500, "timeout", "the request timed out (fake)"),
    "unauthorized": (401, "invalid_api_key", "Incorrect API key provided (fake)"),
}


@dataclass
class FakeFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    authorization: str
    created_at: int
    metadata: dict[str, Any] | None
    lines: list[dict[str, Any]] = field(default_factory=list)
    status: str = "validating"
    ran: int = 0  # requests run so far, in file order
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] | None = None  # why validation failed
    output_file_id: str | None = None
    error_file_id: str | None = None
    end_after: tuple[str, int] | None = None  # ("expired" | "cancelled", after how many requests)
    reject: str | None = None
    times: dict[str, int] = field(default_factory=dict)

    @property
    def custom_ids(self) -> list[str]:
        return [str(line.get("custom_id")) for line in self.lines]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "request_counts": {"total": len(self.lines), "completed": len(self.outputs), "failed": len(self.failures)},
            **{f"{name}_at": at for name, at in self.times.items()},
        }


class FakeBatchAPI(FakeOpenAI):
    def __init__(self, requests_per_poll: int | None = None, hold_at: int | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.requests_per_poll = requests_per_poll  # None: all of them on one look
        self.hold_at = hold_at
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}  # in creation order
        self.executed: Counter[str] = Counter()
        self.uploads: list[str] = []
        self.polls: Counter[str] = Counter()
        self._batch_lock = threading.Lock()
        self._next_end: tuple[str, int] | None = None
        self._next_reject: str | None = None
        self._ids = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _BatchHandler

    # ------------------------------------------------------------ knobs and counters
    def expire_next(self, after: int) -> None:
        """The next batch created expires once `after` of its requests have run."""
        with self._batch_lock:
            self._next_end = ("expired", after)

    def cancel_next(self, after: int) -> None:
        """The next batch created is cancelled (as from the dashboard) once `after` of its requests have run."""
        with self._batch_lock:
            self._next_end = ("cancelled", after)

    def reject_next(self, message: str) -> None:
        """The next batch created fails validation with this message."""
        with self._batch_lock:
            self._next_reject = message

    def release(self) -> None:
        """Batches held at `hold_at` run on."""
        with self._batch_lock:
            self.hold_at = None

    @property
    def batches_created(self) -> int:
        with self._batch_lock:
            return len(self.batches)

    def batch(self, index: int = -1) -> FakeBatch:
        with self._batch_lock:
            return list(self.batches.values())[index]

    # ------------------------------------------------------------ the API (called by the handler)
    def upload(self, filename: str, purpose: str, data: bytes) -> FakeFile:
        with self._batch_lock:
            file = FakeFile(self._new_id("file"), filename, purpose, data, int(time.time()))
            self.files[file.id] = file
            self.uploads.append(file.id)
            return file

    def create_batch(self, body: dict[str, Any], authorization: str) -> FakeBatch:
        with self._batch_lock:
            input_file = self.files.get(str(body.get("input_file_id")))
            if input_file is None:
                raise KeyError(f"No file found with id '{body.get('input_file_id')}'.")
            if input_file.purpose != "batch":
                raise ValueError(f"file {input_file.id} has purpose {input_file.purpose!r}, not 'batch'")
            batch = FakeBatch(
                id=self._new_id("batch"),
                input_file_id=input_file.id,
                endpoint=str(body.get("endpoint")),
                completion_window=str(body.get("completion_window")),
                authorization=authorization,
                created_at=int(time.time()),
                metadata=body.get("metadata"),
                end_after=self._next_end,
                reject=self._next_reject,
            )
            self._next_end = self._next_reject = None
            batch.lines, batch.errors = _read_requests(input_file.data, batch.endpoint)
            self.batches[batch.id] = batch
            return batch

    def look(self, batch_id: str) -> FakeBatch:
        """GET /v1/batches/{id}: the batch, one step further."""
        with self._batch_lock:
            batch = self.batches[batch_id]
            self.polls[batch_id] += 1
            self._advance(batch)
            return batch

    def cancel(self, batch_id: str) -> FakeBatch:
        with self._batch_lock:
            batch = self.batches[batch_id]
            if batch.status not in TERMINAL:
                batch.status = "cancelling"
                batch.times["cancelling"] = int(time.time())
            return batch

    def file_content(self, file_id: str) -> bytes:
        with self._batch_lock:
            return self.files[file_id].data

    def file(self, file_id: str) -> FakeFile:
        with self._batch_lock:
            return self.files[file_id]

    def listing(self) -> list[FakeBatch]:
        with self._batch_lock:
            return list(reversed(self.batches.values()))

    # ------------------------------------------------------------ the batch's life (under the batch lock)
    def _advance(self, batch: FakeBatch) -> None:
        now = int(time.time())
        if batch.status == "validating":
            if batch.reject is not None and not batch.errors:
                batch.errors = [{"code": "invalid_request", "message": batch.reject, "param": None, "line": None}]
            batch.status = "failed" if batch.errors else "in_progress"
            batch.times["failed" if batch.errors else "in_progress"] = now
        elif batch.status == "cancelling":
            self._end(batch, "cancelled")
        elif batch.status == "finalizing":
            self._end(batch, "completed")
        elif batch.status == "in_progress":
            steps = len(batch.lines) if self.requests_per_poll is None else self.requests_per_poll
            for _ in range(steps):
                if batch.end_after is not None and batch.ran >= batch.end_after[1]:
                    self._end(batch, batch.end_after[0])
                    return
                if batch.ran >= len(batch.lines) or (self.hold_at is not None and batch.ran >= self.hold_at):
                    break
                self._run(batch, batch.lines[batch.ran])
                batch.ran += 1
            if batch.ran >= len(batch.lines):
                batch.status = "finalizing"
                batch.times["finalizing"] = now

    def _run(self, batch: FakeBatch, line: dict[str, Any]) -> None:
        custom_id, body = str(line["custom_id"]), line["body"]
        fault = self.record(body, batch.authorization)
        self.executed[custom_id] += 1
        request_id = self._new_id("req")
        if fault is not None and fault.kind in REQUEST_ERRORS:
            status, code, message = REQUEST_ERRORS[fault.kind]
            error_body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error", "code": code}}
            batch.failures.append(_result(custom_id, {"status_code": status, "request_id": request_id, "body": error_body}, None))
            return
        finish_reason = "length" if fault is not None and fault.kind == "truncated" else "stop"
        reply = completion_body(body, build_content(body, fault), finish_reason)
        batch.outputs.append(_result(custom_id, {"status_code": 200, "request_id": request_id, "body": reply}, None))

    def _end(self, batch: FakeBatch, status: str) -> None:
        unfinished = []
        if status in ("expired", "cancelled"):
            code = f"batch_{status}"
            message = (
                "This request could not be executed before the completion window expired."
                if status == "expired"
                else "The batch was cancelled."
            )
            unfinished = [_result(str(line["custom_id"]), None, {"code": code, "message": message}) for line in batch.lines[batch.ran :]]
        if batch.outputs:
            batch.output_file_id = self._store_results(batch, "output", batch.outputs)
        if batch.failures or unfinished:
            batch.error_file_id = self._store_results(batch, "error", batch.failures + unfinished)
        batch.status = status
        batch.times[status] = int(time.time())

    def _store_results(self, batch: FakeBatch, name: str, lines: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        file = FakeFile(self._new_id("file"), f"{batch.id}_{name}.jsonl", "batch_output", data, int(time.time()))
        self.files[file.id] = file
        return file.id

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-fake{self._ids:04d}"


def _result(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"batch_req_{custom_id[:12]}", "custom_id": custom_id, "response": response, "error": error}


def _read_requests(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The requests of a batch input file, or the validation errors OpenAI would report for it."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, text in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            return [], [_problem("invalid_json_line", "This line is not parseable as valid JSON.", number)]
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            return [], [_problem("missing_required_parameter", "custom_id is required.", number)]
        if custom_id in seen:
            return [], [
                _problem("duplicate_custom_id", f"The custom_id for this request is a duplicate of another request: {custom_id}", number)
            ]
        if line.get("method") != "POST" or line.get("url") != endpoint or not isinstance(line.get("body"), dict):
            return [], [_problem("invalid_request", f"method must be POST, url {endpoint} and body an object", number)]
        seen.add(custom_id)
        lines.append(line)
    if not lines:
        return [], [_problem("empty_file", "The batch input file is empty.", None)]
    return lines, None


def _problem(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _not_found(what: str) -> dict[str, Any]:
    return {"error": {"message": what, "type": "invalid_request_error", "code": None}}


class _BatchHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?")[0].rstrip("/")
        fake = self._fake()
        if path == "/v1/files":
            self._upload()
        elif path == "/v1/batches":
            try:
                body = json.loads(self._body())
                batch = fake.create_batch(body, self.headers.get("Authorization", ""))
            except KeyError as missing:
                self._send_json(404, _not_found(str(missing.args[0])))
                return
            except (ValueError, AttributeError) as error:
                self._send_json(400, {"error": {"message": str(error), "type": "invalid_request_error", "code": None}})
                return
            self._send_json(200, batch.json())
        elif cancel := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
            self._body()
            if cancel.group(1) not in fake.batches:
                self._send_json(404, _not_found(f"No batch found with id '{cancel.group(1)}'."))
                return
            self._send_json(200, fake.cancel(cancel.group(1)).json())
        else:
            super().do_POST()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?")[0].rstrip("/")
        fake = self._fake()
        if path == "/v1/batches":
            data = [batch.json() for batch in fake.listing()]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            self._send_json(200, {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False})
        elif found := re.fullmatch(r"/v1/batches/([^/]+)", path):
            if found.group(1) not in fake.batches:
                self._send_json(404, _not_found(f"No batch found with id '{found.group(1)}'."))
                return
            self._send_json(200, fake.look(found.group(1)).json())
        elif found := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            if found.group(1) not in fake.files:
                self._send_json(404, _not_found(f"No such File object: {found.group(1)}"))
            elif found.group(2):
                self._send_bytes(fake.file_content(found.group(1)))
            else:
                self._send_json(200, fake.file(found.group(1)).json())
        else:
            self._send_json(404, _not_found(f"no route {self.path}"))

    def _fake(self) -> FakeBatchAPI:
        fake = self.server.fake
        assert isinstance(fake, FakeBatchAPI)
        return fake

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _upload(self) -> None:
        raw = self._body()
        header = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if "file" not in fields or purpose != "batch":
            self._send_json(
                400, {"error": {"message": "a file and purpose 'batch' are required (fake)", "type": "invalid_request_error", "code": None}}
            )
            return
        filename, data = fields["file"]
        self._send_json(200, self._fake().upload(filename or "upload.jsonl", purpose, data).json())

    def _send_bytes(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


__all__ = ["FakeBatchAPI", "FakeBatch", "Fault"]
