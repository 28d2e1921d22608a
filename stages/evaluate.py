"""evaluate@<task>-<model>: MCQ accuracy in every condition and format, with CIs, paired significance, knowledge
consistency, retention of assistant behaviour (base vs fine-tuned), and what the flashcards add (MCQs on chunks
trained with their flashcards vs on raw text only: assemble.flashcard_holdout).

Each model (base, fine-tuned) is loaded once, as one lm-eval HFLM: lm-eval runs all its conditions and formats in one
call, then the same HFLM scores and answers the retention set. Contexts are fitted to that HFLM's max length first
(perpetual/evaluation.py `fit`), so lm-eval never cuts a prompt unseen; each cell counts what was shortened or cut.
"""

import sys
import tempfile
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.conditions import selected
from perpetual.errors import exits_cleanly
from perpetual.evaluation import (
    budget_for,
    build_items,
    cells_from_predictions,
    flashcard_comparison,
    make_lm,
    score,
    task_config,
    task_name,
)
from perpetual.io import read_json, read_jsonl, write_json, write_jsonl
from perpetual.models import load_local, local_config
from perpetual.precision import choose
from perpetual.retention import answer_rows, compare, load_instructions, measure
from perpetual.scoring import Encodings
from perpetual.statistics import baselines
from perpetual.templates import make_template


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    settings = params.evaluate

    mcqs = read_jsonl(paths.mcqs(args.task))[: settings.limit]
    groups = read_json(paths.flashcard_groups(args.task))  # read first: a stale dataset stops before any model loads
    retrieved = {row["mcq_id"]: row for row in read_jsonl(paths.retrieved(args.task))}
    # The chunk texts only when a condition reads the MCQ's own chunk (the largest task's chunks are tens of MB).
    reads_source = any(condition.context == "source" for condition in selected(settings.conditions))
    sources = {row["chunk_id"]: row["text"] for row in read_jsonl(paths.chunks(args.task))} if reads_source else {}
    instructions = (
        load_instructions(Path(settings.retention.path), settings.retention.limit) if settings.retention.enabled else []
    )
    folders = {"base": paths.base_model(args.model), "fine-tuned": paths.trained_model(args.task, args.model)}

    template_name = params.train.for_task(args.task).template  # the format the model was taught in
    predictions: list[dict] = []
    retained: dict[str, dict] = {}
    precisions: dict[str, dict[str, str]] = {}
    encodings = Encodings()  # both models share the tokenizer: the prompts are encoded once, not once per model
    with tempfile.TemporaryDirectory() as scratch:
        for which, folder in folders.items():
            conditions = [c.name for c in selected(settings.conditions) if c.model == which]
            if not conditions:
                continue
            choice = choose(settings.precision, "evaluate", local_config(folder))
            precisions[which] = choice.record()
            model, tokenizer = load_local(folder, choice.dtype)
            lm = make_lm(model, tokenizer, settings.batch_size, encodings)
            budget = budget_for(lm)
            template = make_template(template_name, tokenizer, str(folder))
            configs, names = [], {}
            for condition in conditions:
                for fmt in settings.formats:
                    name = task_name(args.task, condition, fmt)
                    data_file = Path(scratch) / f"{name}.jsonl"
                    items = build_items(mcqs, condition, fmt, retrieved, params.index.context_template, template, sources, budget)
                    write_jsonl(data_file, items)
                    configs.append(task_config(name, data_file))
                    names[name] = (condition, fmt)
            for name, rows in score(lm, configs).items():
                condition, fmt = names[name]
                predictions.extend({"condition": condition, "format": fmt, **row} for row in rows)
            if instructions:
                retained[which] = measure(lm, instructions, template, settings.retention.max_new_tokens)
            del model, lm

    predictions.sort(key=lambda row: (row["condition"], row["format"]))
    cells = cells_from_predictions(predictions, settings.bootstrap_samples, params.pipeline.seed, settings.alpha)
    metrics: dict = {**cells, "baselines": baselines(mcqs), "template": template_name, "precision": precisions}
    chunk_of = {mcq["mcq_id"]: mcq["chunk_id"] for mcq in mcqs}
    comparison = flashcard_comparison(predictions, chunk_of, groups, params.pipeline.seed, settings.alpha)
    metrics["flashcards"] = {"share": groups["share"], **comparison}
    if retained:
        metrics["retention"] = compare(retained)
    # Written even when retention is off (then empty), since dvc.yaml declares it.
    write_jsonl(paths.retention_predictions(args.task, args.model), answer_rows(instructions, retained))

    write_jsonl(paths.predictions(args.task, args.model), predictions)
    # Nested condition -> format -> value, so `dvc metrics diff` shows one line per cell and field.
    write_json(paths.stage_metrics("eval", f"{args.task}-{args.model}"), metrics)
    for shown, formats in cells.items():
        for shown_format, cell in formats.items():
            print(
                f"{shown:>17} {shown_format:>6}: acc {cell['acc']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}] n={cell['n']}"
                f" contexts shortened {cell['context_shortened']}, prompts over max length {cell['truncated']}",
                file=sys.stderr,
            )
    for shown_format, cell in comparison.items():
        with_cards, raw_only = cell["with_flashcards"], cell["raw_only"]
        print(f"{'flashcards':>17} {shown_format:>6}: gain {with_cards['gain']:+.3f} (n={with_cards['n']}) vs raw-only {raw_only['gain']:+.3f} (n={raw_only['n']}), p={cell['p_value']}", file=sys.stderr)
    for which, values in metrics.get("retention", {}).items():
        if isinstance(values, dict):
            print(f"{'retention':>17} {which}: loglik/token {values['loglik_per_token']:.3f}, format-following {values['format_following']:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
