"""evaluate@<task>-<model>: every MCQ scored in every condition and format, and the retention set answered, by the
base and the fine-tuned model; the per-question predictions go to data/predictions/, and analysis@<task>-<model>
computes every statistic from them (so a change of analysis.alpha re-scores nothing).

Each model (base, fine-tuned) is loaded once, as one lm-eval HFLM: lm-eval runs all its conditions and formats in one
call, then the fine-tuned model's HFLM scores and answers the retention set (the retriever's embedder,
`index.embedder`, compares each answer with its reference); the base model's answers, the same in every task, come from
base-retention@<model> (stages/base_retention.py). Contexts are fitted to that HFLM's max length first (perpetual/evaluation.py `fit`),
so lm-eval never cuts a prompt unseen; each cell counts what was shortened or cut.
"""

import tempfile
from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.conditions import selected
from perpetual.errors import UserError, exits_cleanly
from perpetual.evaluation import budget_for, build_items, make_lm, score, task_config, task_name
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.models import load_local, local_config
from perpetual.precision import choose
from perpetual.retention import answer_rows, load_instructions, measure
from perpetual.retrieval import load_embedder
from perpetual.scoring import Encodings
from perpetual.templates import make_template


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    settings = params.evaluate

    mcqs = read_jsonl(paths.mcqs(args.task))[: settings.limit]
    retrieved = {row["mcq_id"]: row for row in read_jsonl(paths.retrieved(args.task))}
    # The chunk texts only when a condition reads the MCQ's own chunk (the largest task's chunks are tens of MB).
    reads_source = any(condition.context == "source" for condition in selected(settings.conditions))
    sources = {row["chunk_id"]: row["text"] for row in read_jsonl(paths.chunks(args.task))} if reads_source else {}
    instructions = (
        load_instructions(Path(settings.retention.path), settings.retention.limit) if settings.retention.enabled else []
    )
    # The retriever's sentence embedder: how close each of the fine-tuned model's greedy answers is to its reference.
    embedder = load_embedder(params.index.embedder) if instructions else None
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
            if instructions and which == "fine-tuned":
                retained[which] = measure(lm, instructions, template, settings.retention.budget_factor, embedder, params.index.batch_size)
            del model, lm

    predictions.sort(key=lambda row: (row["condition"], row["format"]))
    # Written even when retention is off (then empty), since dvc.yaml declares it.
    base_answers = read_jsonl(paths.base_retention(args.model, template_name)) if instructions else []
    if len(base_answers) != len(instructions):
        raise UserError(f"{paths.base_retention(args.model, template_name)} answers {len(base_answers)} retention instructions, "
                        f"not {len(instructions)}; run `dvc repro base-retention@{args.model}` first")  # fmt: skip
    write_jsonl(paths.retention_predictions(args.task, args.model), base_answers + answer_rows(instructions, retained))
    write_jsonl(paths.predictions(args.task, args.model), predictions)
    write_json(paths.stage_metrics("scoring", f"{args.task}-{args.model}"), {"template": template_name, "precision": precisions})


if __name__ == "__main__":
    main()
