"""generate@<task>: flashcards for training and MCQs for evaluation from the task's chunks, via the teacher."""

import sys
from collections import Counter
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import UserError, exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.teacher.base import GenerationResult
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
    if not flashcards or not mcqs:
        # Never a success that produced nothing: assemble would fail later, far from the cause.
        raise UserError(nothing_written(args.task, len(flashcards), len(mcqs), result, report))
    print(
        f"generate {args.task}: {len(flashcards)} flashcards, {len(mcqs)} MCQs, {len(result.failures)} failures",
        file=sys.stderr,
    )


def nothing_written(task: str, flashcards: int, mcqs: int, result: GenerationResult, report: QualityReport) -> str:
    """One line: what is missing, and the most common reason, from the teacher's failures or the quality rules."""
    missing = " and ".join(f"0 {name}" for name, count in (("flashcards", flashcards), ("MCQs", mcqs)) if count == 0)
    purpose = " or ".join(use for use, count in (("train", flashcards), ("evaluate", mcqs)) if count == 0)
    what = f"generate@{task} wrote {missing}, nothing to {purpose} on"
    if result.failures:
        # A reason's kind is what precedes its particulars: "invalid response after 6 attempt(s)", "api error", "budget".
        kinds = Counter(failure.reason.split(":")[0] for failure in result.failures)
        kind, count = kinds.most_common(1)[0]
        example = next(f for f in result.failures if f.reason.split(":")[0] == kind)
        detail = " ".join(example.reason.split())[:160]
        cause = f"the teacher failed {len(result.failures)} chunk x kind requests, {count} of them with {kind}"
        if detail != kind:
            cause += f" (e.g. {example.chunk_id} {example.kind}: {detail})"
    elif report.dropped:
        rule, count = report.dropped.most_common(1)[0]
        cause = f"the quality rules dropped every item ({count} of them as {rule})"
    else:
        cause = "the teacher proposed none"
    return f"{what}: {cause}; see {paths.stage_metrics('generate', task)}"


if __name__ == "__main__":
    main()
