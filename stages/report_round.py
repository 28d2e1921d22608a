"""report-round@<round>: the forgetting matrix after the round, and every statistic of the rounds so far
(perpetual/forgetting.py): metrics/rounds/<model>/<round>.{json,md,png}.

From the history of the round before (data/rounds/<after>/history.jsonl; data/rounds/base's is empty) and this round's
predictions (score-round@, rag-round@), written as this round's history: so a round's report depends on the rounds up
to it only, and the last round's report is the whole run's. No model is loaded.
"""

import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.forgetting import history_rows, markdown, plot, rounds_report
from perpetual.io import atomic_path, read_jsonl, write_json, write_jsonl, write_text


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, round=True)
    spec, model = params.rounds.plan[args.round], params.rounds.model
    mcq_rows = read_jsonl(paths.round_base(args.round)) + read_jsonl(paths.round_scores(args.round))
    retention_rows = read_jsonl(paths.round_base_retention(args.round)) + read_jsonl(paths.round_retention(args.round))
    history = read_jsonl(paths.round_history(spec.after)) + history_rows(args.round, mcq_rows, retention_rows)
    report = {"model": model, **rounds_report(history, params.analysis.bootstrap_samples, params.analysis.alpha, params.pipeline.seed)}

    write_jsonl(paths.round_history(args.round), history)
    write_json(paths.round_report(model, args.round, ".json"), report)
    write_text(paths.round_report(model, args.round, ".md"), markdown(report, model))
    with atomic_path(paths.round_report(model, args.round, ".png")) as tmp:
        plot(report, str(tmp))
    for arm, formats in report["per_round"].items():
        for fmt, by_round in formats.items():
            values = by_round.get(args.round, {})
            print(f"report-round {args.round} {arm} {fmt}: own {values.get('own')}, earlier {values.get('earlier')}, "
                  f"mean forgetting {values.get('mean_forgetting')}, FUAR {values.get('fuar')}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
