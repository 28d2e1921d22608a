"""round-data@<round>: the round's material and the union of the rounds so far (perpetual/rounds.py).

The round's own training rows are its task's as assemble@<task> made them (data/datasets/<task>), of the round's slice
(`rounds.plan.<round>.sources`: its chunks' sources); its MCQs are the task's (generate@<task>) about those chunks, the
first `evaluate.limit`. The union (MCQs, chunks, flashcards, each with its round) is the round before's
(data/rounds/<after>/union; data/rounds/base is empty) and this round's: what the later stages of the round read.
"""

import sys

import datasets

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json, write_jsonl
from perpetual.rounds import UNION_PARTS, extend_union, round_material


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, round=True)
    spec = params.rounds.plan[args.round]
    rows = list(datasets.load_from_disk(str(paths.dataset(spec.task)))["train"])
    material = round_material(args.round, spec, read_jsonl(paths.chunks(spec.task)), rows, read_jsonl(paths.mcqs(spec.task)), params.evaluate.limit)
    before = {part: read_jsonl(paths.round_union(spec.after) / f"{part}.jsonl") for part in UNION_PARTS}
    union = extend_union(before, args.round, spec.task, material)

    write_jsonl(paths.round_rows(args.round), material.rows)
    with atomic_path(paths.round_union(args.round)) as folder:
        folder.mkdir()
        for part in UNION_PARTS:
            write_jsonl(folder / f"{part}.jsonl", union[part])
    counts = {
        "task": spec.task,
        "sources": spec.sources,
        "chunks": len(material.chunks),
        "rows": len(material.rows),
        "flashcards": len(material.flashcards),
        "mcqs": len(material.mcqs),
        "union": {part: len(records) for part, records in union.items()},
    }
    write_json(paths.stage_metrics("round-data", args.round), counts)
    print(f"round-data {args.round}: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
