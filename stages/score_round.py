"""score-round@<round>: after the round, each replay arm's model asked every MCQ of the rounds so far (its own round's
and every earlier round's: a row of the forgetting matrix), closed-book, in every format of `evaluate.formats`, and
the retention set (perpetual/round_scoring.py; evaluate@'s scoring and retention). Predictions to
data/rounds/<round>/scores.jsonl, retention answers to data/rounds/<round>/retention.jsonl; report-round@<round>
computes the statistics. Two arms whose models are the same files (copied by train-round@) are scored once.
"""

import sys
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.records import model_fingerprint
from perpetual.retention import answer_rows, load_instructions
from perpetual.retrieval import load_embedder
from perpetual.round_scoring import Asked, Scored, score_model
from perpetual.scoring import Encodings


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, round=True)
    rounds, settings = params.rounds, params.evaluate
    mcqs = read_jsonl(paths.union_mcqs(args.round))
    instructions = load_instructions(Path(settings.retention.path), settings.retention.limit) if settings.retention.enabled else []
    embedder = load_embedder(params.index.embedder) if instructions else None
    encodings = Encodings()  # every arm shares the tokenizer: each prompt is encoded once
    scored: dict[str, Scored] = {}
    by_files: dict[str, str] = {}
    rows: list[dict] = []
    retained: dict[str, dict] = {}
    precision: dict[str, dict] = {}
    for arm in rounds.replay.arms:
        folder = paths.round_arm_model(args.round, rounds.model, arm)
        files = model_fingerprint(folder)
        if files not in by_files:
            by_files[files] = arm
            scored[arm] = score_model(folder, [Asked("none", mcqs)], settings, params.train.template, params.index.context_template,
                                      encodings, instructions, embedder, params.index.batch_size)  # fmt: skip
        result = scored[by_files[files]]
        rows.extend({"arm": arm, **row} for row in result.rows)
        if result.retention is not None:
            retained[arm] = result.retention
        precision[arm] = {**result.precision, **({"same_as": by_files[files]} if by_files[files] != arm else {})}
        accuracy = {fmt: round(sum(r["acc"] for r in result.rows if r["format"] == fmt) / max(1, sum(r["format"] == fmt for r in result.rows)), 4)
                    for fmt in settings.formats}  # fmt: skip
        print(f"score-round {args.round} {arm}: union accuracy {accuracy} (n={len(mcqs)})", file=sys.stderr)
    write_jsonl(paths.round_scores(args.round), rows)
    write_jsonl(paths.round_retention(args.round), answer_rows(instructions, retained))  # empty when retention is off
    write_json(paths.stage_metrics("score-round", f"{args.round}-{rounds.model}"),
               {"template": params.train.template, "precision": precision, "mcqs": len(mcqs)})  # fmt: skip


if __name__ == "__main__":
    main()
