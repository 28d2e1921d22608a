"""chunk@<task>: split documents into chunks with stable content-hash ids (data/chunks/<task>.jsonl)."""

import sys

from perpetual import paths
from perpetual.chunking import chunk_documents
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True)

    documents = read_jsonl(paths.raw(args.task))
    chunks, duplicates = chunk_documents(documents, params.chunk)

    write_jsonl(paths.chunks(args.task), chunks)
    sizes = sorted(len(chunk["text"]) for chunk in chunks)
    write_json(
        paths.stage_metrics("chunk", args.task),
        {
            "chunks": len(chunks),
            "duplicate_chunks_merged": duplicates,
            "chars_total": sum(sizes),
            "chars_median": sizes[len(sizes) // 2] if sizes else 0,
        },
    )
    print(f"chunk {args.task}: {len(documents)} documents -> {len(chunks)} chunks", file=sys.stderr)


if __name__ == "__main__":
    main()
