"""The evaluate stage (lm-eval in-process) vs the plain lm-eval CLI: same model folders, tasks and questions.

The stage runs as `python -m stages.evaluate --task T --model M` (start-up, both models, all conditions and
formats; once as shipped, with retention, and once with retention off, which is exactly the CLI's work). The CLI
runs once per model folder, as a user would:

    python -m lm_eval --model hf --model_args pretrained=<folder> --tasks <the same task YAMLs> \
        --include_path <dir> --batch_size B --device cpu --log_samples --output_path <dir>

Checked: per-question correctness identical for every task; reported: wall times and stage / CLI ratio (target
<= 1.0).

    .venv/bin/python benchmarks/eval_vs_cli.py [--root .] [--task products] [--model gemma] [--threads N]

Needs models/ and data/ from `dvc repro` under --root; when they are missing, a tiny demo project (a tiny Gemma,
two seeds standing in for base and fine-tuned, 40 MCQs) is built in a temporary folder instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.evaluation import build_items, condition_model, task_config, task_name  # noqa: E402
from perpetual.io import read_jsonl, write_jsonl  # noqa: E402

INPUTS = ["data/generated", "data/retrieved", "data/retention", "models"]


def has_inputs(root: Path, task: str, model: str) -> bool:
    needed = [paths.mcqs(task), paths.retrieved(task), paths.start_model(model) / "config.json", paths.trained_model(task, model) / "config.json"]
    return all((root / path).exists() for path in needed)


def build_demo(root: Path) -> tuple[str, str]:
    """A tiny project: tokenizer, two tiny Gemmas, 40 cloze-able MCQs with retrieved context, 20 instructions."""
    from perpetual.config import TinyGemma, TokenizerParams
    from perpetual.models import build_tiny, train_tokenizer

    facts = [f"The Tellavik model {index} weighs {1000 + 37 * index} grams and ships from Marrowgate." for index in range(40)]
    mcqs = [
        {"mcq_id": f"m{index}", "chunk_id": f"c{index}", "question": f'What completes "The Tellavik model {index} weighs ___"?',
         "options": [str(1000 + 37 * ((index + shift) % 40)) for shift in range(4)], "answer": "A",
         "cloze_prefix": f"The Tellavik model {index} weighs ", "kind": "number"}
        for index in range(40)
    ]  # fmt: skip
    for index, mcq in enumerate(mcqs):  # balance the correct letter
        gold = index % 4
        mcq["options"][0], mcq["options"][gold] = mcq["options"][gold], mcq["options"][0]
        mcq["answer"] = "ABCD"[gold]
    tokenizer = train_tokenizer(facts * 3, TokenizerParams(vocab_size=400, min_frequency=1))
    spec = TinyGemma(kind="tiny-gemma", hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32, intermediate_size=128)
    for folder, seed in ((paths.start_model("tiny"), 0), (paths.trained_model("demo", "tiny"), 1)):
        model = build_tiny(spec, tokenizer, seed)
        model.save_pretrained(str(root / folder))
        tokenizer.save_pretrained(str(root / folder))
    write_jsonl(root / paths.mcqs("demo"), mcqs)
    write_jsonl(root / paths.retrieved("demo"), [{"mcq_id": m["mcq_id"], "contexts": [facts[int(m["mcq_id"][1:])]], "chunk_ids": [m["chunk_id"]], "source_retrieved": True} for m in mcqs])
    write_jsonl(root / "data/retention/general_instructions.jsonl", [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"{i} plus {i} is {2 * i}."} for i in range(20)])
    params = {
        "pipeline": {"tasks": ["demo"], "models": ["tiny"], "seed": 0},
        "fetch": {"sources": {"demo": {"kind": "local", "path": "src"}}},
        "base": {"models": {"tiny": spec.model_dump()}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return "demo", "tiny"


def workspace(source: Path, target: Path, retention: bool) -> None:
    """A folder where the stage reads the source project's inputs (links) and writes its own outputs."""
    (target / "data").mkdir(parents=True)
    for name in INPUTS:
        if (source / name).exists():
            (target / name).symlink_to((source / name).resolve())
    raw = yaml.safe_load((source / "params.yaml").read_text())
    raw.setdefault("evaluate", {}).setdefault("retention", {})["enabled"] = retention
    (target / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--task", default="products")
    parser.add_argument("--model", default="gemma")
    parser.add_argument("--threads", type=int, default=None, help="OMP/torch threads for both sides (default: torch's choice)")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        root, task, model = args.root.resolve(), args.task, args.model
        if not has_inputs(root, task, model):
            print(f"no models/data for {task}-{model} under {root}: building a tiny demo project", file=sys.stderr)
            root = scratch / "demo"
            root.mkdir()
            task, model = build_demo(root)
        params = load_params(root / "params.yaml")
        settings = params.evaluate
        python = sys.executable

        # The stage, as dvc runs it: with retention (as shipped) and without (the CLI's work only).
        timings: dict[str, float] = {}
        for label, retention in (("stage_without_retention", False), ("stage", True)):
            folder = scratch / label
            workspace(root, folder, retention)
            timings[label] = run([python, "-m", "stages.evaluate", "--task", task, "--model", model], folder, env)
        predictions = read_jsonl(scratch / "stage" / paths.predictions(task, model))

        # The same tasks for the CLI: identical rendered items, one YAML per task.
        mcqs = read_jsonl(root / paths.mcqs(task))[: settings.limit]
        retrieved = {row["mcq_id"]: row for row in read_jsonl(root / paths.retrieved(task))}
        include = scratch / "tasks"
        include.mkdir()
        by_model: dict[str, list[str]] = {}
        names = {}
        for condition in settings.conditions:
            for fmt in settings.formats:
                name = task_name(task, condition, fmt)
                write_jsonl(include / f"{name}.jsonl", build_items(mcqs, condition, fmt, retrieved, params.index.context_template))
                (include / f"{name}.yaml").write_text(yaml.safe_dump(task_config(name, include / f"{name}.jsonl"), sort_keys=False))
                by_model.setdefault(condition_model(condition), []).append(name)
                names[name] = (condition, fmt)
        folders = {"base": root / paths.start_model(model), "fine-tuned": root / paths.trained_model(task, model)}
        timings["cli"] = 0.0
        for which, tasks in by_model.items():
            command = [python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folders[which]}", "--tasks", ",".join(tasks),
                       "--include_path", str(include), "--batch_size", str(settings.batch_size), "--device", "cpu",
                       "--log_samples", "--output_path", str(scratch / "cli" / which)]  # fmt: skip
            timings["cli"] += run(command, scratch, env)

        # Per-question correctness, task by task.
        comparison = {}
        for name, (condition, fmt) in names.items():
            ours = {row["mcq_id"]: row for row in predictions if (row["condition"], row["format"]) == (condition, fmt)}
            samples_file = next((scratch / "cli").rglob(f"samples_{name}_*.jsonl"))
            theirs = {sample["doc"]["mcq_id"]: sample for sample in read_jsonl(samples_file)}
            same = ours.keys() == theirs.keys() and all(ours[key]["acc"] == theirs[key]["acc"] for key in ours)
            max_ll_diff = max(abs(a - float(b[0])) for key in ours for a, b in zip(ours[key]["loglikelihoods"], theirs[key]["filtered_resps"]))
            comparison[f"{condition}/{fmt}"] = {
                "acc_stage": round(sum(row["acc"] for row in ours.values()) / len(ours), 4),
                "acc_cli": round(sum(float(s["acc"]) for s in theirs.values()) / len(theirs), 4),
                "identical_per_question": same,
                "max_loglik_diff": float(f"{max_ll_diff:.2g}"),
            }

    result = {
        "project": str(root) if root == args.root.resolve() else "tiny demo (built)",
        "cell": f"{task}-{model}",
        "questions": len(mcqs),
        "batch_size": settings.batch_size,
        "threads": args.threads or "torch default",
        "wall_s": {name: round(value, 1) for name, value in timings.items()},
        "ratio_stage_without_retention_vs_cli": round(timings["stage_without_retention"] / timings["cli"], 3),
        "ratio_stage_vs_cli": round(timings["stage"] / timings["cli"], 3),
        "all_identical": all(value["identical_per_question"] for value in comparison.values()),
        "tasks": comparison,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
