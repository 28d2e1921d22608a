"""Our index embedding path vs plain `SentenceTransformer.encode`, same texts, same batch size.

"ours" is what index@<task> runs: `sync_index` into a fresh persistent Chroma collection (embedding plus insert).
"plain" is `embedder.encode(texts, batch_size=B, normalize_embeddings=True)` alone. Also shown: the previous path,
which called encode on consecutive slices of B chunks (each slice padded to its own longest text).
Target: ours / plain throughput >= 0.9.

    .venv/bin/python benchmarks/embedding_throughput.py [--batch-size 64] [--repeats 3] [--threads N]

Texts: every task's data/chunks/*.jsonl (from `dvc repro`); if there are none, paragraphs cut from data/sources.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual.config import load_params  # noqa: E402
from perpetual.io import read_jsonl  # noqa: E402
from perpetual.records import Chunk  # noqa: E402
from perpetual.retrieval import load_embedder, open_collection, sync_index  # noqa: E402


def load_chunks(root: Path) -> list[Chunk]:
    chunks = [chunk for path in sorted((root / "data/chunks").glob("*.jsonl")) for chunk in read_jsonl(path)]
    if chunks:
        return chunks
    # No pipeline outputs yet: paragraphs of the shipped sources stand in for chunks.
    texts = [block.strip() for path in sorted((root / "data/sources").rglob("*.md")) for block in path.read_text(encoding="utf-8").split("\n\n")]
    return [Chunk(chunk_id=f"p{index}", task="bench", source="sources", language="text", text=text) for index, text in enumerate(texts) if len(text) > 40]


def per_slice(embedder, texts: list[str], batch_size: int) -> None:
    for start in range(0, len(texts), batch_size):
        embedder.encode(texts[start : start + batch_size], batch_size=batch_size, normalize_embeddings=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--batch-size", type=int, default=None, help="default: index.batch_size from params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.root / "params.yaml")
    batch_size = args.batch_size or params.index.batch_size
    chunks = load_chunks(args.root)
    texts = [chunk["text"] for chunk in chunks]
    embedder = load_embedder(params.index.embedder)
    embedder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first-call allocations

    seconds: dict[str, list[float]] = {"plain": [], "ours": [], "previous_per_slice": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):  # interleaved, so drift in machine load hits every variant alike
            start = time.perf_counter()
            embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True)
            seconds["plain"].append(time.perf_counter() - start)

            collection = open_collection(Path(scratch) / f"run{repeat}", "bench", params.index.embedder)
            start = time.perf_counter()
            counts = sync_index(collection, chunks, embedder, batch_size)
            seconds["ours"].append(time.perf_counter() - start)
            assert counts["embedded_now"] == len({chunk["chunk_id"] for chunk in chunks})

            start = time.perf_counter()
            per_slice(embedder, texts, batch_size)
            seconds["previous_per_slice"].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "texts": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "embedder": params.index.embedder,
        "texts_per_s": {name: round(len(texts) / value, 1) for name, value in median.items()},
        "ratio_ours_vs_plain": round(median["plain"] / median["ours"], 3),
        "ratio_previous_vs_plain": round(median["plain"] / median["previous_per_slice"], 3),
        "seconds": {name: [round(value, 2) for value in values] for name, values in seconds.items()},
    }
    print(json.dumps(result, indent=2))
    print(f"ours/plain throughput ratio {result['ratio_ours_vs_plain']} (target >= 0.9)", file=sys.stderr)


if __name__ == "__main__":
    main()
