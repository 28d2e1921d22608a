"""rag-round@<round>: the base model's side of the round, for comparison. Closed-book on the round's own MCQs (the
base row of the forgetting matrix: what the model knew before any round), and with RAG over the union of the rounds
so far: a Chroma index of every chunk of the rounds up to this one, built as index@<task> builds a task's, the top
`index.top_k` chunks put before each MCQ of the union. The first round also answers the retention set with the base
model (the reference of every round's retention). Predictions to data/rounds/<round>/base.jsonl.
"""

import sys
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.retention import answer_rows, load_instructions
from perpetual.retrieval import load_embedder
from perpetual.round_scoring import Asked, score_model, union_retrieval
from perpetual.scoring import Encodings


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, round=True)
    rounds, settings, index = params.rounds, params.evaluate, params.index
    mcqs, chunks = read_jsonl(paths.union_mcqs(args.round)), read_jsonl(paths.union_chunks(args.round))
    embedder = load_embedder(index.embedder)
    retrieved, recall = union_retrieval(chunks, mcqs, embedder, index.embedder, index.top_k, index.batch_size)
    own = [mcq for mcq in mcqs if mcq["round"] == args.round]
    first = rounds.first(args.round)
    instructions = load_instructions(Path(settings.retention.path), settings.retention.limit) if settings.retention.enabled and first else []
    result = score_model(paths.base_model(rounds.model), [Asked("none", own), Asked("rag", mcqs, retrieved)], settings, params.train.template,
                         index.context_template, Encodings(), instructions, embedder, index.batch_size)  # fmt: skip
    write_jsonl(paths.round_base(args.round), [{"arm": "base", **row} for row in result.rows])
    write_jsonl(paths.round_base_retention(args.round), answer_rows(instructions, {"base": result.retention} if result.retention else {}))
    summary = {"chunks": len(chunks), "mcqs": len(mcqs), "top_k": index.top_k, "recall_at_k": recall,
               "precision": result.precision}  # fmt: skip
    write_json(paths.stage_metrics("rag-round", f"{args.round}-{rounds.model}"), summary)
    print(f"rag-round {args.round}: union of {summary['chunks']} chunks, recall@{index.top_k} {recall} on {len(mcqs)} MCQs", file=sys.stderr)


if __name__ == "__main__":
    main()
