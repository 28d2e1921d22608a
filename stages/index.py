"""index@<task>: embed the task's chunks into ChromaDB (incrementally) and retrieve top-k context for each MCQ."""

import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.retrieval import load_embedder, open_collection, retrieve, sync_index


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True)
    settings = params.index

    embedder = load_embedder(settings.embedder)
    collection = open_collection(paths.index(args.task), args.task, settings.embedder)
    counts = sync_index(collection, read_jsonl(paths.chunks(args.task)), embedder, settings.batch_size)
    mcqs = read_jsonl(paths.mcqs(args.task))
    rows = retrieve(collection, mcqs, embedder, settings.top_k, settings.batch_size)

    write_jsonl(paths.retrieved(args.task), rows)
    hits = sum(row["source_retrieved"] for row in rows)
    recall = round(hits / len(rows), 4) if rows else 0.0
    # A fixed key (with k alongside), so `dvc metrics diff` compares recall across a change of top_k.
    write_json(paths.stage_metrics("index", args.task), {**counts, "top_k": settings.top_k, "recall_at_k": recall, "mcqs": len(rows)})
    print(f"index {args.task}: {counts}, recall@{settings.top_k}={recall}", file=sys.stderr)


if __name__ == "__main__":
    main()
