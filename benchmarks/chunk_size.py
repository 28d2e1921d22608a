"""Retrieval recall of a task's MCQs for several chunk sizes: the measurement behind chunk.chunk_size.

    .venv/bin/python benchmarks/chunk_size.py [--task code] [--sizes 800,1200,1600,2400]

For each size the task is fetched and chunked as the pipeline does, MCQs are generated and cleaned (the task's
teacher: offline by default), the chunks are embedded in a throw-away Chroma collection and each MCQ retrieves
index.top_k chunks. Printed: chunks, median size, MCQs, recall@k of the MCQ's own chunk. Learning (fine-tuned vs
base) needs a full `dvc repro` per size; see docs/results/data-quality.md for what was measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.chunking import chunk_documents  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.retrieval import load_embedder, open_collection, retrieve, sync_index  # noqa: E402
from perpetual.sources import fetch  # noqa: E402
from perpetual.teacher.offline import OfflineTeacher  # noqa: E402
from perpetual.teacher.quality import QualityReport, clean_flashcards, clean_mcqs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="code")
    parser.add_argument("--sizes", default="800,1200,1600,2400")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    documents = fetch(args.task, params.fetch.source(args.task), paths.git_cache()).documents
    embedder = load_embedder(params.index.embedder)
    generate = params.generate
    for size in (int(value) for value in args.sizes.split(",")):
        settings = params.chunk.model_copy(update={"chunk_size": size})
        chunks, _ = chunk_documents(documents, settings)
        drafts = OfflineTeacher(seed=params.pipeline.seed, near_duplicate_threshold=generate.near_duplicate_threshold).generate(chunks, generate.flashcards_per_chunk, generate.mcqs_per_chunk)
        report = QualityReport()
        cards = clean_flashcards(drafts.flashcards, generate.near_duplicate_threshold, report)
        mcqs = clean_mcqs(drafts.mcqs, cards, generate.near_duplicate_threshold, params.pipeline.seed, report, generate.max_mcqs_per_task)
        with tempfile.TemporaryDirectory() as folder:
            collection = open_collection(Path(folder), args.task, params.index.embedder)
            sync_index(collection, chunks, embedder, params.index.batch_size)
            rows = retrieve(collection, mcqs, embedder, params.index.top_k, params.index.batch_size)
        recall = sum(row["source_retrieved"] for row in rows) / max(len(rows), 1)
        sizes = sorted(len(chunk["text"]) for chunk in chunks)
        print(f"chunk_size {size}: {len(chunks)} chunks (median {sizes[len(sizes) // 2]} chars), {len(mcqs)} MCQs, "
              f"recall@{params.index.top_k} {recall:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
