"""evaluate@<task>-<model>: MCQ accuracy in every condition and format, with CIs and paired significance.

Each model (base, fine-tuned) is loaded once and lm-eval runs all its conditions and formats in one call.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from perpetual import paths
from perpetual.config import load_params
from perpetual.errors import exits_cleanly
from perpetual.evaluation import build_items, condition_model, score, task_config, task_name
from perpetual.io import read_jsonl, write_json, write_jsonl
from perpetual.models import load_local
from perpetual.statistics import baselines, bootstrap_ci, mcnemar_exact

PAIRED_REFERENCE = {"fine-tuned": "base", "rag": "base", "fine-tuned+rag": "rag"}


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    params = load_params()
    params.require_task(args.task)
    params.require_model(args.model)
    settings = params.evaluate

    mcqs = read_jsonl(paths.mcqs(args.task))[: settings.limit]
    retrieved = {row["mcq_id"]: row for row in read_jsonl(paths.retrieved(args.task))}
    folders = {"base": paths.base_model(args.model), "fine-tuned": paths.trained_model(args.task, args.model)}

    outcomes: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for which, folder in folders.items():
            conditions = [c for c in settings.conditions if condition_model(c) == which]
            if not conditions:
                continue
            configs, names = [], {}
            for condition in conditions:
                for fmt in settings.formats:
                    name = task_name(args.task, condition, fmt)
                    data_file = Path(scratch) / f"{name}.jsonl"
                    write_jsonl(data_file, build_items(mcqs, condition, fmt, retrieved, params.index.context_template))
                    configs.append(task_config(name, data_file))
                    names[name] = (condition, fmt)
            model, tokenizer = load_local(folder)
            for name, rows in score(model, tokenizer, configs, settings.batch_size, params.pipeline.seed).items():
                outcomes[names[name]] = rows
            del model

    cells: dict[str, dict[str, dict]] = {}
    predictions = []
    for (condition, fmt), rows in sorted(outcomes.items()):
        correct = [row["acc"] for row in rows]
        low, high = bootstrap_ci(correct, settings.bootstrap_samples, params.pipeline.seed, settings.alpha)
        cell = {
            "n": len(rows),
            "acc": round(sum(correct) / len(rows), 4),
            "acc_norm": round(sum(row["acc_norm"] for row in rows) / len(rows), 4),
            "ci_low": low,
            "ci_high": high,
        }
        reference = PAIRED_REFERENCE.get(condition)
        if reference and (reference, fmt) in outcomes:
            test = mcnemar_exact([row["acc"] for row in outcomes[(reference, fmt)]], correct)
            cell["p_value_vs_" + reference] = test["p_value"]
            cell["learned" if reference == "base" else "improved"] = bool(
                test["only_second"] > test["only_first"] and test["p_value"] < settings.alpha
            )
        cells.setdefault(condition, {})[fmt] = cell
        predictions.extend({"condition": condition, "format": fmt, **row} for row in rows)

    write_jsonl(paths.predictions(args.task, args.model), predictions)
    # Nested condition -> format -> value, so `dvc metrics diff` shows one line per cell and field.
    write_json(paths.stage_metrics("eval", f"{args.task}-{args.model}"), {**cells, "baselines": baselines(mcqs)})
    for condition, formats in cells.items():
        for fmt, cell in formats.items():
            print(f"{condition:>15} {fmt:>6}: acc {cell['acc']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}] n={cell['n']}", file=sys.stderr)


if __name__ == "__main__":
    main()
