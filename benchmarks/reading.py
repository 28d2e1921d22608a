"""Can a base model read? Oracle vs base MCQ accuracy on the evaluated tasks: the measurement behind instruct.reading.

    .venv/bin/python benchmarks/reading.py [--models mamba2,gemma] [--tasks code,research,products]
        [--from models] [--train OUT] (a task "world": unseen reading items of the instruction world) [--set instruct.sft.num_train_epochs=6 --set instruct.reading.items_per_passage=40]

"base": each MCQ of data/generated/<task>/mcq.jsonl as evaluation asks it, no context. "oracle": the same with the
MCQ's own source chunk (data/chunks/<task>.jsonl) in the context, through index.context_template, rendered as the
RAG condition renders a retrieved chunk (perpetual.evaluation.build_items). Printed per task x model x format:
both accuracies and the exact McNemar p (oracle vs base). A model that reads beats base in the oracle condition.

Without --train it scores models/base-<model> (what instruct@ wrote; --from another folder holding base-*). With
--train OUT it first runs instruct@'s training on models/init-<model> with params.yaml's instruct section (changed by
--set) and saves OUT/base-<model>, reporting the training time too. Nothing of the DVC pipeline is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import Params, load_params  # noqa: E402
from perpetual.evaluation import build_items, make_lm, score, task_config  # noqa: E402
from perpetual.io import read_jsonl, write_jsonl  # noqa: E402
from perpetual.models import load_local  # noqa: E402
from perpetual.precision import Choice  # noqa: E402
from perpetual.statistics import mcnemar_exact  # noqa: E402
from perpetual.templates import make_template  # noqa: E402


def with_settings(params: Params, settings: list[str]) -> Params:
    """params with `a.b.c=value` settings applied (values parsed as YAML) and validated again."""
    data = params.model_dump()
    for setting in settings:
        key, _, value = setting.partition("=")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return Params.model_validate(data)


def train_start(params: Params, model_name: str, base_dir: Path, out: Path) -> dict[str, Any]:
    """instruct@'s training (stages/instruct.py) into out/base-<model>; returns its summary."""
    import shutil

    from perpetual.reading import reading_rows
    from perpetual.rows import examples, instruct_rows
    from perpetual.training import save_trained, train

    params.check_sft()
    settings = params.instruct
    model, tokenizer = load_local(base_dir / f"init-{model_name}", torch.float32)
    template = make_template(params.train.template, tokenizer, model_name)
    rows = instruct_rows(settings) + reading_rows(settings, params.index.context_template, params.pipeline.seed)
    rendered = examples(rows, template)
    scratch = out / f"checkpoints-{model_name}"
    shutil.rmtree(scratch, ignore_errors=True)
    trainer, summary = train(model, tokenizer, rendered, settings.model_copy(update={"resume": "never"}), scratch, template, Choice(False, "fp32"))
    target = out / f"base-{model_name}"
    shutil.rmtree(target, ignore_errors=True)
    save_trained(trainer, target)
    shutil.rmtree(scratch, ignore_errors=True)
    return summary


def world_items(params: Params) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """Task "world": reading items of the instruction world that training never saw (another seed, every span
    rewritten), to tell "did not learn to read" from "learned it on the world but it does not carry over"."""
    from perpetual.reading import reading_rows

    settings = params.instruct.model_copy(update={"reading": params.instruct.reading.model_copy(update={"enabled": True, "counterfactual": 1.0, "formats": ["cloze"], "items_per_passage": 30})})
    rows = reading_rows(settings, params.index.context_template, params.pipeline.seed + 1000)
    mcqs = [{**dataclasses.asdict(row), "options": list(row.options), "mcq_id": f"w{index}"} for index, row in enumerate(rows)]
    return mcqs, {mcq["mcq_id"]: {"contexts": [mcq["passage"]]} for mcq in mcqs}


def measure(params: Params, folder: Path, tasks: list[str], formats: list[str]) -> list[dict[str, Any]]:
    model, tokenizer = load_local(folder, torch.float32)
    lm = make_lm(model, tokenizer, params.evaluate.batch_size)
    template = make_template(params.train.template, tokenizer, str(folder))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        configs, names = [], {}
        for task in tasks:
            if task == "world":
                mcqs, oracle = world_items(params)
            else:
                mcqs = read_jsonl(paths.mcqs(task))[: params.evaluate.limit]
                oracle = {}
                sources = {row["chunk_id"]: row["text"] for row in read_jsonl(paths.chunks(task))}
            for condition in ("base", "oracle"):
                for fmt in formats:
                    name = f"reading_{task}_{condition}_{fmt}"
                    if task == "world":  # the world's passages are not chunks: given as the one retrieved context
                        items = build_items(mcqs, "base" if condition == "base" else "rag", fmt, oracle, params.index.context_template, template)
                    else:  # the evaluate stage's own oracle condition (the MCQ's chunk, perpetual/conditions.py)
                        items = build_items(mcqs, condition, fmt, {}, params.index.context_template, template, sources)
                    data_file = Path(scratch) / f"{name}.jsonl"
                    write_jsonl(data_file, items)
                    configs.append(task_config(name, data_file))
                    names[name] = (task, condition, fmt)
        outcomes: dict[tuple[str, str, str], list[float]] = {}
        for name, rows in score(lm, configs).items():
            outcomes[names[name]] = [row["acc"] for row in rows]
    for task in tasks:
        for fmt in formats:
            base, read = outcomes[(task, "base", fmt)], outcomes[(task, "oracle", fmt)]
            test = mcnemar_exact(base, read)
            results.append(
                {
                    "task": task,
                    "format": fmt,
                    "n": len(base),
                    "base": round(sum(base) / len(base), 3),
                    "oracle": round(sum(read) / len(read), 3),
                    "p": test["p_value"],
                    "reads": bool(test["only_second"] > test["only_first"] and test["p_value"] < 0.05),
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mamba2,gemma")
    parser.add_argument("--tasks", default="code,research,products")
    parser.add_argument("--formats", default="cloze,letter")
    parser.add_argument("--from", dest="source", default="models", help="folder with base-<model> and base-<model>")
    parser.add_argument("--train", type=Path, help="train base models into this folder first")
    parser.add_argument("--set", action="append", default=[], help="a params override, e.g. instruct.sft.learning_rate=5e-3")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    params = with_settings(load_params(REPO / "params.yaml"), args.set)
    tasks, formats = args.tasks.split(","), args.formats.split(",")
    report: dict[str, Any] = {"settings": args.set, "models": {}}
    for model_name in args.models.split(","):
        entry: dict[str, Any] = {}
        folder = Path(args.source) / f"base-{model_name}"
        if args.train:
            started = time.perf_counter()
            entry["instruct"] = train_start(params, model_name, Path(args.source), args.train)
            entry["instruct"]["wall_s"] = round(time.perf_counter() - started, 1)
            folder = args.train / f"base-{model_name}"
            print(f"{model_name}: instruct {entry['instruct']}", file=sys.stderr)
        started = time.perf_counter()
        entry["results"] = measure(params, folder, tasks, formats)
        entry["eval_wall_s"] = round(time.perf_counter() - started, 1)
        for row in entry["results"]:
            print(f"{model_name:>7} {row['task']:>9} {row['format']:>6}: base {row['base']:.3f}  oracle {row['oracle']:.3f}  p={row['p']:.3g}{'  reads' if row['reads'] else ''}")
        report["models"][model_name] = entry
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
