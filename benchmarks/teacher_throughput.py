"""Throughput of the OpenAI teacher against the fake server at a fixed latency, and the cost of a rerun.

    .venv/bin/python benchmarks/teacher_throughput.py [--latency 0.1] [--waves 10]

With every reply taking `latency` seconds, `concurrency` workers can at best complete concurrency/latency
requests per second; the figure reported is the achieved fraction of that bound (target >= 0.85 at 32).
The fake server runs in its own process so its work does not compete with the client's for the GIL.
A rerun over the same cache must send no request at all (target 0).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual.config import TeacherParams  # noqa: E402
from perpetual.records import Chunk  # noqa: E402
from perpetual.teacher.openai_backend import OpenAITeacher  # noqa: E402

REQUESTS_PER_CHUNK = 2  # one flashcard request and one MCQ request


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "perpetual.testing.fake_openai", "--latency", str(latency_s)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def make_chunks(count: int, tag: str) -> list[Chunk]:
    return [
        Chunk(chunk_id=f"{tag}-{i}", task="bench", source="bench", language="text", text=f"Run {tag}: fact {i} is Zeta{i}.")
        for i in range(count)
    ]


def run(base_url: str, cache_dir: str, concurrency: int, chunks: list[Chunk]) -> tuple[float, dict[str, float]]:
    params = TeacherParams(backend="openai", base_url=base_url, cache_dir=cache_dir, concurrency=concurrency, prompts_dir=str(REPO / "prompts"))
    teacher = OpenAITeacher(params, api_key="sk-bench-not-a-key", base_url=base_url, show_progress=False)
    started = time.perf_counter()
    result = teacher.generate(chunks, flashcards_per_chunk=4, mcqs_per_chunk=5)
    return time.perf_counter() - started, result.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake server takes per reply")
    parser.add_argument("--waves", type=int, default=10, help="requests per worker at each concurrency")
    args = parser.parse_args()
    server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as cache_dir:
            print(f"fake server latency {args.latency * 1000:.0f} ms, {args.waves} requests per worker")
            for concurrency in (1, 8, 32):
                requests = max(20, concurrency * args.waves)
                chunks = make_chunks(requests // REQUESTS_PER_CHUNK, f"c{concurrency}")
                seconds, stats = run(base_url, cache_dir, concurrency, chunks)
                rate = stats["requests"] / seconds
                bound = concurrency / args.latency
                print(f"concurrency {concurrency:>2}: {int(stats['requests'])} requests in {seconds:.2f} s = {rate:.1f} req/s, {rate / bound:.2f} of the {bound:.0f} req/s bound")
            seconds, stats = run(base_url, cache_dir, 32, chunks)
            print(f"rerun of the last run: {int(stats['requests'])} requests, {int(stats['cache_hits'])} cache hits, {seconds:.2f} s")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
