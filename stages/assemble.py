"""assemble@<task>: the interleaved training set and the held-out MCQ set, saved with `datasets`.

With `assemble.flashcard_holdout` > 0 the flashcards of a seeded share of the chunks are left out of the training set
(their raw text stays); which chunks, is written next to the dataset for evaluate@ (perpetual/paths.py
flashcard_groups) and counted in metrics/assemble/<task>.json.
"""

import sys

import datasets

from perpetual import paths
from perpetual.assembly import flashcard_row, hold_out_flashcards, interleave, split_validation
from perpetual.cli import stage_args
from perpetual.errors import UserError, exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json
from perpetual.rows import Question, Text, to_records


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True)

    chunks = read_jsonl(paths.chunks(args.task))
    flashcards = read_jsonl(paths.flashcards(args.task))
    mcqs = read_jsonl(paths.mcqs(args.task))
    if not mcqs:
        raise UserError(f"task '{args.task}' has no MCQs to evaluate; check metrics/generate/{args.task}.json for why")
    groups = hold_out_flashcards(chunks, flashcards, mcqs, params.assemble.flashcard_holdout, params.pipeline.seed)
    trained, validation = split_validation(flashcards, params.assemble.validation_share, params.pipeline.seed, set(groups["raw_only"]))
    train_rows = interleave(chunks, trained, held_out=set(groups["raw_only"]))

    splits = {"train": datasets.Dataset.from_list(to_records(train_rows)), "eval": datasets.Dataset.from_list(mcqs)}
    if validation:  # only when asked for: the default's dataset stays as it was
        splits["validation"] = datasets.Dataset.from_list(to_records([flashcard_row(card) for card in validation]))
    dataset = datasets.DatasetDict(splits)
    with atomic_path(paths.dataset(args.task)) as tmp:
        dataset.save_to_disk(str(tmp))
        # Inside the dataset folder so that it is one DVC out with the training set it describes.
        write_json(tmp / paths.flashcard_groups(args.task).name, {"share": params.assemble.flashcard_holdout, "seed": params.pipeline.seed, **groups})
    counts = {kind.type: sum(1 for row in train_rows if isinstance(row, kind)) for kind in (Text, Question)}
    raw_only, with_cards = set(groups["raw_only"]), set(groups["with_flashcards"])
    holdout = {
        "share": params.assemble.flashcard_holdout,
        "chunks_raw_only": len(raw_only),
        "chunks_with_flashcards": len(with_cards),
        "flashcards_left_out": sum(1 for card in flashcards if card["chunk_id"] in raw_only),
        "mcqs_raw_only": sum(1 for mcq in mcqs if mcq["chunk_id"] in raw_only),
        "mcqs_with_flashcards": sum(1 for mcq in mcqs if mcq["chunk_id"] in with_cards),
        # Chunks the teacher gave no flashcards: raw-only by accident, not by the draw, so in neither group.
        "mcqs_in_neither": sum(1 for mcq in mcqs if mcq["chunk_id"] not in raw_only | with_cards),
    }
    write_json(
        paths.stage_metrics("assemble", args.task),
        {"train_docs": counts["doc"], "train_flashcards": counts["qna"], "validation_flashcards": len(validation), "eval_mcqs": len(mcqs),
         "flashcard_holdout": holdout},  # fmt: skip
    )
    print(
        f"assemble {args.task}: {len(train_rows)} training rows, {len(mcqs)} MCQs; flashcards of {len(raw_only)} chunks "
        f"left out ({holdout['mcqs_raw_only']} MCQs raw-only, {holdout['mcqs_with_flashcards']} with flashcards)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
