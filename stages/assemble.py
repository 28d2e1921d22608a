"""assemble@<task>: the interleaved training set and the held-out MCQ set, saved with `datasets`."""

import sys

import datasets

from perpetual import paths
from perpetual.assembly import interleave
from perpetual.cli import stage_args
from perpetual.errors import UserError, exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True)

    chunks = read_jsonl(paths.chunks(args.task))
    train_rows = interleave(chunks, read_jsonl(paths.flashcards(args.task)))
    mcqs = read_jsonl(paths.mcqs(args.task))
    if not mcqs:
        raise UserError(f"task '{args.task}' has no MCQs to evaluate; check metrics/generate/{args.task}.json for why")

    dataset = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train_rows), "eval": datasets.Dataset.from_list(mcqs)}
    )
    with atomic_path(paths.dataset(args.task)) as tmp:
        dataset.save_to_disk(str(tmp))
    counts = {kind: sum(1 for row in train_rows if row["type"] == kind) for kind in ("doc", "qna")}
    write_json(paths.stage_metrics("assemble", args.task), {"train_docs": counts["doc"], "train_flashcards": counts["qna"], "eval_mcqs": len(mcqs)})
    print(f"assemble {args.task}: {len(train_rows)} training rows, {len(mcqs)} MCQs", file=sys.stderr)


if __name__ == "__main__":
    main()
