"""Throughput of the OpenAI teacher against the fake server at a fixed latency, and the cost of a rerun.

    .venv/bin/python benchmarks/teacher_throughput.py [--latency 0.1] [--waves 10]

With every reply taking `latency` seconds, `concurrency` workers can at best complete concurrency/latency
requests per second; the figure reported is the achieved fraction of that bound (target >= 0.85 at 32), with the
client process's CPU time per request (user + system), which depends far less than the rate on what else the machine
is running: the load average is printed with it.
The fake server runs in its own process so its work does not compete with the client's for the GIL.
A rerun over the same cache must send no request at all (target 0).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual.config import TeacherParams  # noqa: E402
from perpetual.records import Chunk  # noqa: E402
from perpetual.teacher.openai_backend import OpenAITeacher, OpenAITransport  # noqa: E402
from perpetual.testing.params import section  # noqa: E402

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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(base_url: str, cache_dir: str, concurrency: int, chunks: list[Chunk]) -> tuple[float, dict[str, float]]:
    params = section(
        TeacherParams, "generate.teacher",
        backend="openai", base_url=base_url, cache_dir=cache_dir, concurrency=concurrency, prompts_dir=str(REPO / "prompts"),
    )  # fmt: skip
    teacher = OpenAITeacher(OpenAITransport(params, api_key="sk-bench-not-a-key", base_url=base_url), params, show_progress=False)
    started = time.perf_counter()
    result = teacher.generate(chunks, flashcards_per_chunk=4, mcqs_per_chunk=5)
    return time.perf_counter() - started, result.stats


def bare_client_fraction(base_url: str, latency_s: float, concurrency: int, requests: int) -> float:
    """The same load sent by the openai client alone (no teacher): what the client library and GIL allow."""
    client = openai.OpenAI(api_key="sk-bench-not-a-key", base_url=base_url, max_retries=0)
    def send(_: int) -> object:
        return client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": "Fact 1 is Zeta1."}], response_format={"type": "json_object"}
        )

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(concurrency)))  # open connections first
        started = time.perf_counter()
        list(pool.map(send, range(requests)))
        seconds = time.perf_counter() - started
    return requests / seconds / (concurrency / latency_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake server takes per reply")
    parser.add_argument("--waves", type=int, default=20, help="requests per worker at each concurrency")
    parser.add_argument("--repeats", type=int, default=3, help="runs per concurrency; the median is reported (shared CPUs are noisy)")
    # The cache lives where the pipeline keeps it (data/cache); file creation under /tmp can be far slower.
    parser.add_argument("--cache-parent", default=str(REPO / "data" / "cache"), help="folder for the throwaway cache")
    args = parser.parse_args()
    Path(args.cache_parent).mkdir(parents=True, exist_ok=True)
    server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-teacher-", dir=args.cache_parent) as cache_dir:
            load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
            print(f"fake server latency {args.latency * 1000:.0f} ms, {args.waves} requests per worker, {os.cpu_count()} CPUs, load average {load}")
            for concurrency in (1, 8, 32):
                requests = max(20, concurrency * args.waves)
                fractions, cpu_ms = [], []
                for repeat in range(args.repeats):  # fresh chunks each time, so every request is a miss
                    chunks = make_chunks(requests // REQUESTS_PER_CHUNK, f"c{concurrency}r{repeat}")
                    cpu_before = cpu_seconds()
                    seconds, stats = run(base_url, cache_dir, concurrency, chunks)
                    cpu_ms.append((cpu_seconds() - cpu_before) / stats["requests"] * 1000)
                    fractions.append(stats["requests"] / seconds / (concurrency / args.latency))
                median = statistics.median(fractions)
                print(
                    f"concurrency {concurrency:>2}: {median * concurrency / args.latency:.1f} req/s = {median:.2f} of the"
                    f" {concurrency / args.latency:.0f} req/s bound (median of {args.repeats} runs of {requests} requests;"
                    f" range {min(fractions):.2f}-{max(fractions):.2f}); client CPU {statistics.median(cpu_ms):.2f} ms a request"
                )
            seconds, stats = run(base_url, cache_dir, 32, chunks)
            print(f"rerun of the last run: {int(stats['requests'])} requests, {int(stats['cache_hits'])} cache hits, {seconds:.2f} s")
            cpu_before = cpu_seconds()
            reference = bare_client_fraction(base_url, args.latency, 32, 32 * args.waves)
            cpu_ms = (cpu_seconds() - cpu_before) / (32 * args.waves + 32) * 1000
            print(f"reference, bare openai client at concurrency 32: {reference:.2f} of the bound; client CPU {cpu_ms:.2f} ms a request")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
