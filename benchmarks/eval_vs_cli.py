"""The evaluate stage (lm-eval in-process) vs the plain lm-eval CLI: same model folders, tasks and questions.

The stage runs as `python -m stages.evaluate --task T --model M` (start-up, both models, all conditions and
formats; once as shipped, with retention, and once with retention off, which is exactly the CLI's work). The CLI
runs once per model folder, as a user would:

    python -m lm_eval --model hf --model_args pretrained=<folder> --tasks <the same task YAMLs> \
        --include_path <dir> --batch_size B --device cpu --log_samples --output_path <dir>

Both run `--rounds` times in turn (a busy spell of the machine slows both sides of a round alike). Checked:
per-question correctness identical for every task; reported: wall times, the stage / CLI ratio of each round and
their median (target <= 0.3 without retention, the CLI's work; figures in benchmarks/README.md and docs/results/evaluation-speed.md).

`--mode scoring` (or `all`, both measurements) times the scoring alone, in this process: the same tasks and
questions through `lm_eval.evaluator.evaluate` with lm-eval's plain `HFLM` and with
`perpetual.scoring.SharedContextHFLM` (each shared context run once), on the same loaded model, alternating
`--repeats` times and keeping each side's fastest run; checked: identical per-question predictions (pred, pred_norm,
acc, acc_norm) and is_greedy, and the largest log-likelihood difference.

    .venv/bin/python benchmarks/eval_vs_cli.py [--root .] [--task products] [--model gemma] [--threads N]
        [--mode cli|scoring|all] [--rounds 3] [--repeats 3] [--scoring-limit N]

Needs models/ and data/ from `dvc repro` under --root; when they are missing, a tiny demo project (a tiny Gemma,
two seeds standing in for base and fine-tuned, 40 MCQs) is built in a temporary folder instead.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.evaluation import build_items, condition_model, rows_from_samples, task_config, task_manager, task_name  # noqa: E402
from perpetual.io import read_jsonl, write_jsonl  # noqa: E402
from perpetual.templates import make_template  # noqa: E402
from perpetual.testing.params import params_dict  # noqa: E402
from perpetual.testing.params import spec as spec_of  # noqa: E402

INPUTS = ["data/generated", "data/retrieved", "data/retention", "data/chunks", "data/datasets", "models"]


def has_inputs(root: Path, task: str, model: str) -> bool:
    needed = [paths.mcqs(task), paths.retrieved(task), paths.chunks(task), paths.flashcard_groups(task),
              paths.base_model(model) / "config.json", paths.trained_model(task, model) / "config.json"]
    return all((root / path).exists() for path in needed)


def build_demo(root: Path) -> tuple[str, str]:
    """A tiny project: tokenizer, two tiny Gemmas, 40 cloze-able MCQs with retrieved context, 20 instructions."""
    from perpetual.init_params import TinyGemma, TokenizerParams
    from perpetual.models import build_tiny, train_tokenizer

    facts = [f"The Tellavik model {index} weighs {1000 + 37 * index} grams and ships from Marrowgate." for index in range(40)]
    mcqs: list[dict[str, Any]] = [
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
    spec = TinyGemma(**spec_of("tiny-gemma", hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32, intermediate_size=128, copying=False))
    for folder, seed in ((paths.base_model("tiny"), 0), (paths.trained_model("demo", "tiny"), 1)):
        model = build_tiny(spec, tokenizer, seed)
        model.save_pretrained(str(root / folder))
        tokenizer.save_pretrained(str(root / folder))
    write_jsonl(root / paths.mcqs("demo"), mcqs)
    write_jsonl(root / paths.retrieved("demo"), [{"mcq_id": m["mcq_id"], "contexts": [facts[int(m["mcq_id"][1:])]], "chunk_ids": [m["chunk_id"]], "source_retrieved": True} for m in mcqs])
    write_jsonl(root / paths.chunks("demo"), [{"chunk_id": f"c{i}", "task": "demo", "source": "s", "language": "text", "text": fact} for i, fact in enumerate(facts)])
    groups = root / paths.flashcard_groups("demo")
    groups.parent.mkdir(parents=True)
    groups.write_text(json.dumps({"share": 0.3, "seed": 0, "raw_only": [f"c{i}" for i in range(12)], "with_flashcards": [f"c{i}" for i in range(12, 40)]}))
    write_jsonl(root / "data/retention/general_instructions.jsonl", [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"{i} plus {i} is {2 * i}."} for i in range(20)])
    params = params_dict({
        "pipeline": {"tasks": ["demo"], "models": ["tiny"], "seed": 0},
        "fetch": {"sources": {"demo": spec_of("local", path="src")}},
        "init": {"models": {"tiny": spec.model_dump()}},
        "train": {"task_overrides": {}},
    })
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


def model_folders(root: Path, task: str, model: str) -> dict[str, Path]:
    return {"base": root / paths.base_model(model), "fine-tuned": root / paths.trained_model(task, model)}


def write_tasks(params, task: str, which: str, folder: Path, tokenizer, mcqs, retrieved, sources, target: Path) -> dict[str, tuple[str, str]]:
    """One JSONL + YAML per (condition, format) of model `which`, rendered as stages/evaluate.py renders them (with the
    task's prompt template for this model's tokenizer); returns task name -> (condition, format).

    Without the stage's context fitting (no budget): a context the stage shortens would differ here, and the
    identical-predictions check would say so (none is shortened on the default's models)."""
    template = make_template(params.train.for_task(task).template, tokenizer, str(folder))
    names = {}
    for condition in params.evaluate.conditions:
        if condition_model(condition) != which:
            continue
        for fmt in params.evaluate.formats:
            name = task_name(task, condition, fmt)
            write_jsonl(target / f"{name}.jsonl", build_items(mcqs, condition, fmt, retrieved, params.index.context_template, template, sources))
            (target / f"{name}.yaml").write_text(yaml.safe_dump(task_config(name, target / f"{name}.jsonl"), sort_keys=False))
            names[name] = (condition, fmt)
    return names


def compare_cli(root: Path, task: str, model: str, params, mcqs, retrieved, sources, scratch: Path, env: dict[str, str], rounds: int) -> dict:
    """The evaluate stage (subprocess, with and without retention) vs the lm_eval CLI (one subprocess per model),
    `rounds` times in turn (a busy spell of the machine slows both sides of a round alike); ratios per round and their
    median."""
    from transformers import AutoTokenizer

    settings = params.evaluate
    python = sys.executable

    # The same tasks for the CLI: identical rendered items, one YAML per task.
    include = scratch / "tasks"
    include.mkdir()
    by_model: dict[str, list[str]] = {}
    names = {}
    folders = model_folders(root, task, model)
    for which, folder in folders.items():
        written = write_tasks(params, task, which, folder, AutoTokenizer.from_pretrained(str(folder)), mcqs, retrieved, sources, include)
        if written:
            by_model[which] = list(written)
            names.update(written)

    runs: list[dict[str, float]] = []
    for round_index in range(rounds):
        # The stage, as dvc runs it: with retention (as shipped) and without (the CLI's work only).
        timings: dict[str, float] = {}
        for label, retention in (("stage_without_retention", False), ("stage", True)):
            folder = scratch / f"{label}-{round_index}"
            workspace(root, folder, retention)
            timings[label] = run([python, "-m", "stages.evaluate", "--task", task, "--model", model], folder, env)
        timings["cli"] = 0.0
        for which, tasks in by_model.items():
            output = scratch / "cli" / str(round_index) / which
            command = [python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folders[which]}", "--tasks", ",".join(tasks),
                       "--include_path", str(include), "--batch_size", str(settings.batch_size), "--device", "cpu",
                       "--log_samples", "--output_path", str(output)]  # fmt: skip
            timings["cli"] += run(command, scratch, env)
        runs.append(timings)
    predictions = read_jsonl(scratch / "stage-0" / paths.predictions(task, model))

    # Per-question correctness, task by task.
    comparison = {}
    for name, (condition, fmt) in names.items():
        ours = {row["mcq_id"]: row for row in predictions if (row["condition"], row["format"]) == (condition, fmt)}
        samples_file = next((scratch / "cli" / "0").rglob(f"samples_{name}_*.jsonl"))
        theirs = {sample["doc"]["mcq_id"]: sample for sample in read_jsonl(samples_file)}
        same = ours.keys() == theirs.keys() and all(ours[key]["acc"] == theirs[key]["acc"] for key in ours)
        max_ll_diff = max(abs(a - float(b[0])) for key in ours for a, b in zip(ours[key]["loglikelihoods"], theirs[key]["filtered_resps"]))
        comparison[f"{condition}/{fmt}"] = {
            "acc_stage": round(sum(row["acc"] for row in ours.values()) / len(ours), 4),
            "acc_cli": round(sum(float(s["acc"]) for s in theirs.values()) / len(theirs), 4),
            "identical_per_question": same,
            "max_loglik_diff": float(f"{max_ll_diff:.2g}"),
        }
    without = [timings["stage_without_retention"] / timings["cli"] for timings in runs]
    shipped = [timings["stage"] / timings["cli"] for timings in runs]
    return {
        "rounds": rounds,
        "wall_s": [{name: round(value, 1) for name, value in timings.items()} for timings in runs],
        "ratios_stage_without_retention_vs_cli": [round(value, 3) for value in without],
        "ratio_stage_without_retention_vs_cli": round(statistics.median(without), 3),
        "ratio_stage_vs_cli": round(statistics.median(shipped), 3),
        "all_identical": all(value["identical_per_question"] for value in comparison.values()),
        "tasks": comparison,
    }


def _evaluate(lm, configs: list[dict]) -> tuple[float, dict[str, list[dict]]]:
    """perpetual.evaluation.score's `evaluate` call with the given LM: (seconds, task name -> samples by doc_id).
    Tasks are loaded before the clock starts (the same work for both LMs)."""
    from lm_eval.evaluator import evaluate

    task_dict = task_manager().load(configs)
    gc.collect()
    start = time.perf_counter()
    output = evaluate(lm=lm, task_dict=task_dict, bootstrap_iters=0, log_samples=True, verbosity="WARNING")
    elapsed = time.perf_counter() - start
    return elapsed, {name: sorted(samples, key=lambda s: s["doc_id"]) for name, samples in output["samples"].items()}


def _time_method(lm) -> list[float]:
    """Accumulate the seconds spent in `lm._loglikelihood_tokens` (instance attribute over the class method)."""
    spent = [0.0]
    method = type(lm)._loglikelihood_tokens

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(lm, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    lm._loglikelihood_tokens = timed
    return spent


def compare_scoring(root: Path, task: str, model: str, params, mcqs, retrieved, sources, scratch: Path, repeats: int) -> dict:
    """Plain HFLM vs SharedContextHFLM in this process: same model object, tasks, questions and batch size."""
    import logging

    import torch
    from lm_eval.models.huggingface import HFLM

    from perpetual.models import load_local
    from perpetual.scoring import SharedContextHFLM

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    batch_size = params.evaluate.batch_size
    target = scratch / "scoring_tasks"
    target.mkdir()
    per_model: dict[str, dict] = {}
    tasks: dict[str, dict] = {}
    totals = {"hflm": 0.0, "shared_context": 0.0}
    for which, folder in model_folders(root, task, model).items():
        model_object, tokenizer = load_local(folder, torch.float32)
        names = write_tasks(params, task, which, folder, tokenizer, mcqs, retrieved, sources, target)
        if not names:
            continue
        configs = [task_config(name, target / f"{name}.jsonl") for name in names]
        device = "cuda" if next(model_object.parameters()).is_cuda else "cpu"
        lms = {label: cls(pretrained=model_object, tokenizer=tokenizer, batch_size=batch_size, device=device)
               for label, cls in (("hflm", HFLM), ("shared_context", SharedContextHFLM))}  # fmt: skip
        times: dict[str, list[float]] = {label: [] for label in lms}
        in_method: dict[str, list[float]] = {label: [] for label in lms}
        samples: dict[str, dict[str, list[dict]]] = {}
        for _ in range(repeats):  # alternate, so a busy machine slows both sides alike
            for label, lm in lms.items():
                spent = _time_method(lm)
                elapsed, samples[label] = _evaluate(lm, configs)
                times[label].append(elapsed)
                in_method[label].append(spent[0])
        best = {label: min(values) for label, values in times.items()}
        best_method = {label: min(values) for label, values in in_method.items()}
        for label in totals:
            totals[label] += best[label]
        per_model[which] = {
            "shared_context_mode": lms["shared_context"].shared_context_mode() or "none (lm-eval's HFLM method)",
            "hflm_s": round(best["hflm"], 3),
            "shared_context_s": round(best["shared_context"], 3),
            "speedup": round(best["hflm"] / best["shared_context"], 2),
            # The part the class replaces, without lm-eval's request building, tokenizing and metrics.
            "loglikelihood_tokens_s": {label: round(value, 3) for label, value in best_method.items()},
            "loglikelihood_tokens_speedup": round(best_method["hflm"] / best_method["shared_context"], 2),
            "runs_s": {label: [round(value, 3) for value in values] for label, values in times.items()},
        }
        for name, (condition, fmt) in names.items():
            plain, shared = samples["hflm"][name], samples["shared_context"][name]
            plain_rows, shared_rows = rows_from_samples(plain), rows_from_samples(shared)
            keys = ("mcq_id", "pred", "pred_norm", "acc", "acc_norm")
            same = [tuple(row[k] for k in keys) for row in plain_rows] == [tuple(row[k] for k in keys) for row in shared_rows]
            greedy_same = [[bool(r[0][1]) for r in s["resps"]] for s in plain] == [[bool(r[0][1]) for r in s["resps"]] for s in shared]
            max_ll_diff = max(abs(float(a[0][0]) - float(b[0][0])) for p, q in zip(plain, shared) for a, b in zip(p["resps"], q["resps"]))
            tasks[f"{condition}/{fmt}"] = {
                "acc": round(sum(row["acc"] for row in shared_rows) / len(shared_rows), 4),
                "identical_per_question": same and greedy_same,
                "max_loglik_diff": float(f"{max_ll_diff:.2g}"),
            }
        del lms, model_object
        gc.collect()
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "wall_s": {label: round(value, 3) for label, value in totals.items()},
        "speedup": round(totals["hflm"] / totals["shared_context"], 2),
        "models": per_model,
        "all_identical": all(value["identical_per_question"] for value in tasks.values()),
        "tasks": tasks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--task", default="products")
    parser.add_argument("--model", default="gemma")
    parser.add_argument("--threads", type=int, default=None, help="OMP/torch threads for both sides (default: torch's choice)")
    parser.add_argument("--mode", choices=["cli", "scoring", "all"], default="cli",
                        help="cli: the stage vs the lm_eval CLI (subprocesses); scoring: HFLM vs SharedContextHFLM in "
                             "this process; all: both")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="cli mode: stage and CLI runs in turn; the median ratio is reported")
    parser.add_argument("--repeats", type=int, default=3, help="scoring mode: runs per side, fastest kept")
    parser.add_argument("--scoring-limit", type=int, default=None,
                        help="scoring mode: only the first N questions (a real model on CPU scores ~350 tokens/s)")  # fmt: skip
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        if args.mode != "cli":
            import torch

            torch.set_num_threads(args.threads)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM"):
        os.environ.setdefault(name, env[name])
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        root, task, model = args.root.resolve(), args.task, args.model
        if not has_inputs(root, task, model):
            print(f"no models/data for {task}-{model} under {root}: building a tiny demo project", file=sys.stderr)
            root = scratch / "demo"
            root.mkdir()
            task, model = build_demo(root)
        params = load_params(root / "params.yaml")
        mcqs = read_jsonl(root / paths.mcqs(task))[: params.evaluate.limit]
        retrieved = {row["mcq_id"]: row for row in read_jsonl(root / paths.retrieved(task))}
        sources = {row["chunk_id"]: row["text"] for row in read_jsonl(root / paths.chunks(task))}

        result: dict = {
            "project": str(root) if root == args.root.resolve() else "tiny demo (built)",
            "cell": f"{task}-{model}",
            "questions": len(mcqs),
            "batch_size": params.evaluate.batch_size,
            "threads": args.threads or "torch default",
        }
        if args.mode in ("cli", "all"):
            cli = compare_cli(root, task, model, params, mcqs, retrieved, sources, scratch, env, args.rounds)
            result.update(cli if args.mode == "cli" else {"cli": cli})
        if args.mode in ("scoring", "all"):
            subset = mcqs[: args.scoring_limit]
            result["scoring"] = {"questions": len(subset), **compare_scoring(root, task, model, params, subset, retrieved, sources, scratch, args.repeats)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
