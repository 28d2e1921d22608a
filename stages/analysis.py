"""analysis@<task>-<model>: every statistic of a results cell from evaluate@'s predictions, into
metrics/eval/<task>-<model>.json: accuracy with CIs, paired tests and their verdicts, knowledge consistency, what the
flashcards add, retention (perpetual/analysis.py). No model is loaded: seconds, not the minutes of scoring.
"""

import sys

from perpetual import paths
from perpetual.analysis import cell_metrics
from perpetual.cli import stage_args
from perpetual.conditions import BY_NAME
from perpetual.errors import exits_cleanly
from perpetual.io import read_json, read_jsonl, write_json


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    cell = f"{args.task}-{args.model}"
    metrics = cell_metrics(
        predictions=read_jsonl(paths.predictions(args.task, args.model)),
        retention_rows=read_jsonl(paths.retention_predictions(args.task, args.model)),
        mcqs=read_jsonl(paths.mcqs(args.task)),
        groups=read_json(paths.flashcard_groups(args.task)),
        scoring=read_json(paths.stage_metrics("scoring", cell)),
        bootstrap_samples=params.analysis.bootstrap_samples,
        alpha=params.analysis.alpha,
        seed=params.pipeline.seed,
    )
    # Nested condition -> format -> value, so `dvc metrics diff` shows one line per cell and field.
    write_json(paths.stage_metrics("eval", cell), metrics)
    for condition, formats in metrics.items():
        if condition not in BY_NAME:  # baselines, template, precision, flashcards, retention follow
            continue
        for fmt, values in formats.items():
            print(
                f"{condition:>17} {fmt:>6}: acc {values['acc']:.3f} [{values['ci_low']:.3f}, {values['ci_high']:.3f}] n={values['n']}"
                f" contexts shortened {values.get('context_shortened', 0)}, prompts over max length {values.get('truncated', 0)}",
                file=sys.stderr,
            )
    for fmt, values in metrics["flashcards"].items():
        if isinstance(values, dict):
            with_cards, raw_only = values["with_flashcards"], values["raw_only"]
            print(f"{'flashcards':>17} {fmt:>6}: gain {with_cards['gain']:+.3f} (n={with_cards['n']}) vs raw-only {raw_only['gain']:+.3f} (n={raw_only['n']}), p={values['p_value']}", file=sys.stderr)
    for which, values in metrics.get("retention", {}).items():
        if isinstance(values, dict):
            similarity = f", similarity {values['similarity']:.3f}" if "similarity" in values else ""
            print(
                f"{'retention':>17} {which}: loglik/token {values['loglik_per_token']:.3f}, format-following {values['format_following']:.3f}"
                f" within {values.get('budget', '?')} tokens{similarity}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
