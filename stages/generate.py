"""generate@<task>: flashcards for training and MCQs for evaluation from the task's chunks, via the teacher."""

import sys
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.teacher.factory import make_teacher
from perpetual.teacher.quality import QualityReport, clean_flashcards, clean_mcqs, mcq_set_metrics


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True)
    settings = params.generate

    chunks = read_jsonl(paths.chunks(args.task))
    # One response cache per task, so each generate@<task> owns its DVC out (shared via `dvc push`/`dvc pull`).
    cache_dir = Path(settings.teacher.cache_dir) / args.task
    cache_dir.mkdir(parents=True, exist_ok=True)
    teacher_params = settings.teacher.model_copy(update={"cache_dir": str(cache_dir)})
    teacher = make_teacher(teacher_params, params.pipeline.seed, settings.near_duplicate_threshold)
    result = teacher.generate(chunks, settings.flashcards_per_chunk, settings.mcqs_per_chunk)

    report = QualityReport()
    flashcards = clean_flashcards(result.flashcards, settings.near_duplicate_threshold, report)
    mcqs = clean_mcqs(result.mcqs, flashcards, settings.near_duplicate_threshold, params.pipeline.seed, report, settings.max_mcqs_per_task)
    for failure in result.failures:
        print(f"failed {failure.kind} for chunk {failure.chunk_id}: {failure.reason}", file=sys.stderr)

    write_jsonl(paths.flashcards(args.task), flashcards)
    write_jsonl(paths.mcqs(args.task), mcqs)
    covered = {card["chunk_id"] for card in flashcards}
    write_json(
        paths.stage_metrics("generate", args.task),
        {
            "chunks": len(chunks),
            "chunks_without_flashcards": sum(1 for chunk in chunks if chunk["chunk_id"] not in covered),
            "flashcards": len(flashcards),
            "failures": len(result.failures),
            **{key: value for key, value in sorted(result.stats.items())},
            **report.as_metrics(),
            **mcq_set_metrics(mcqs),
        },
    )
    print(
        f"generate {args.task}: {len(flashcards)} flashcards, {len(mcqs)} MCQs, {len(result.failures)} failures",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
