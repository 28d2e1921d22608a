"""A stand-in for `vllm run-batch`, for tests on machines without a GPU: the same command line, the same files.

    python -m perpetual.testing.fake_vllm run-batch -i requests.jsonl -o results.jsonl --model M [vLLM's other flags]

It reads the OpenAI Batch API's JSONL (`custom_id`, `method`, `url`, `body`) and writes one line per request, in input
order and as each finishes, in vLLM's format: `{"id": "vllm-…", "custom_id", "response": {"status_code": 200,
"request_id": "vllm-batch-…", "body": <chat completion>}, "error": null}`; a failed request as `{"status_code": 400,
"request_id", "body": null}` with the reason in `error`; a request for another model than --model as vLLM answers it,
a 404 with an ErrorResponse in `error`. Replies are the project's fake server's (perpetual/testing/fake_openai.py).

Knobs, from the environment (a test sets them):
  FAKE_VLLM_LOG        a file; the custom_id of every request run is appended to it (what a test counts as run)
  FAKE_VLLM_FAIL       a request whose user message contains this text fails (a 400 line)
  FAKE_VLLM_MALFORMED  a request whose user message contains this text is answered with invalid JSON content
  FAKE_VLLM_DIE_AFTER  write this many lines, then exit 1 (a crash, or a node lost)
  FAKE_VLLM_DELAY_S    seconds each request takes (so that a test can stop a run half-way)
  FAKE_VLLM_PIDFILE    a file its process id is written to (to check that it stops with the stage)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

from perpetual.testing.fake_openai import Fault, build_content, completion_body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm", description="A stand-in for `vllm run-batch`.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_batch = commands.add_parser("run-batch")
    run_batch.add_argument("-i", "--input-file", required=True)
    run_batch.add_argument("-o", "--output-file", required=True)
    run_batch.add_argument("--model", required=True)
    args, _ = parser.parse_known_args(argv)  # vLLM's engine flags are accepted and ignored

    log = os.environ.get("FAKE_VLLM_LOG")
    fail = os.environ.get("FAKE_VLLM_FAIL")
    malformed = os.environ.get("FAKE_VLLM_MALFORMED")
    die_after = int(os.environ.get("FAKE_VLLM_DIE_AFTER", "-1"))
    delay_s = float(os.environ.get("FAKE_VLLM_DELAY_S", "0"))
    if os.environ.get("FAKE_VLLM_PIDFILE"):
        with open(os.environ["FAKE_VLLM_PIDFILE"], "w", encoding="utf-8") as pidfile:
            pidfile.write(str(os.getpid()))
    with open(args.input_file, encoding="utf-8") as requests, open(args.output_file, "w", encoding="utf-8") as results:
        for number, text in enumerate(line for line in requests if line.strip()):
            if number == die_after:
                print("fake vllm: killed", file=sys.stderr)
                return 1
            request = json.loads(text)
            body = request["body"]
            user = next((str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user"), "")
            if log:
                with open(log, "a", encoding="utf-8") as ran:
                    ran.write(request["custom_id"] + "\n")
            time.sleep(delay_s)
            results.write(json.dumps(_result(request, body, user, args.model, fail, malformed)) + "\n")
            results.flush()
    return 0


def _result(
    request: dict[str, Any], body: dict[str, Any], user: str, model: str, fail: str | None, malformed: str | None
) -> dict[str, Any]:
    request_id = f"vllm-batch-{uuid.uuid4().hex}"
    line: dict[str, Any] = {"id": f"vllm-{uuid.uuid4().hex}", "custom_id": request["custom_id"]}
    if body.get("model") != model:
        error = {
            "error": {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError", "param": None, "code": 404}
        }
        return {**line, "response": {"status_code": 404, "request_id": request_id, "body": None}, "error": error}
    if fail and fail in user:
        return {**line, "response": {"status_code": 400, "request_id": request_id, "body": None}, "error": "fake vllm: this request failed"}
    fault = Fault("malformed") if malformed and malformed in user else None
    reply = completion_body(body, build_content(body, fault))
    return {**line, "response": {"status_code": 200, "request_id": request_id, "body": reply}, "error": None}


if __name__ == "__main__":
    sys.exit(main())
