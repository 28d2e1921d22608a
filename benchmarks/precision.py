"""fp32 vs bf16 on this machine: GEMM peak, training and scoring throughput of a real model, and what bf16 changes.

    python benchmarks/precision.py --model smollm2            # one JSON object on stdout (progress on stderr)
    python benchmarks/precision.py --task code --limit 160 --scoring-only   # agreement on a whole task's MCQs

Prints `gemm_gflops.{fp32,bf16}` (a 2048x576 . 576x1536 product on all cores), then for each precision
`train.{full,lora}.<precision>.{tokens_per_s,mfu,peak_rss_gib}` through the train stage's own trainer
(perpetual/training.py `train`, the stage's row selection and chat template, `--train-steps` optimizer steps on the
task's assembled rows), `scoring.<precision>.{tokens_per_s,peak_rss_gib}` through the evaluate stage's scorer
(`make_lm` + `score`, the closed-book, RAG and oracle prompts in both formats for the first `--limit` MCQs of
`--task`), `agreement`: the share of identical predictions, bf16 vs fp32, and `cells`: each condition x format
cell's accuracy in both precisions and the largest change of any cell. MFU: 6 x parameters x tokens/s over the
measured bf16 GEMM peak. Every measurement runs in a process of its own, so its peak memory is its own.

Needs the default pipeline's data (`make run`: data/generated, data/retrieved, data/datasets). bf16 here is what
`precision: bf16` runs: autocast over fp32 weights in training, bf16 weights with an fp32 log-softmax in scoring.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.config import load_params  # noqa: E402
from perpetual.precision import Choice, bf16_hardware  # noqa: E402
from perpetual.testing.params import with_sft  # noqa: E402

GEMM_SHAPE = (2048, 576, 1536)  # SmolLM2's MLP up-projection on 2048 tokens
PRECISIONS = ("fp32", "bf16")


def gemm_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    m, k, n = GEMM_SHAPE
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def measure_train(folder: Path, task: str, method: str, bf16: bool, steps: int) -> dict[str, Any]:
    import datasets

    from perpetual.models import load_local
    from perpetual.rows import examples, from_record, replay_rows, with_replay
    from perpetual.templates import make_template
    from perpetual.training import train

    params = load_params(REPO / "params.yaml")
    settings = params.train.for_task(task).model_copy(update={"method": method, "template": "chat", "resume": "never"})
    settings = with_sft(settings, max_steps=steps, save_steps=10**6, logging_steps=10**6)
    model, tokenizer = load_local(folder, torch.float32)
    template = make_template("chat", tokenizer, str(folder))
    rows = [from_record(record) for record in datasets.load_from_disk(str(paths.dataset(task)))["train"]]
    rendered = examples(with_replay(rows, settings, replay_rows(settings), int(settings.sft.seed)), template)  # the interleaved recipe
    with tempfile.TemporaryDirectory() as scratch:
        _, summary = train(model, tokenizer, rendered, settings, Path(scratch), template, Choice(bf16, "benchmark"))
    return {"tokens_per_s": summary["tokens_per_s"], "seconds": summary["train_runtime_s"], "steps": summary["steps"]}


def measure_scoring(folder: Path, task: str, limit: int, bf16: bool, predictions_out: Path) -> dict[str, Any]:
    from perpetual.evaluation import budget_for, build_items, make_lm, score, task_config, task_name
    from perpetual.io import read_jsonl, write_jsonl
    from perpetual.models import load_local
    from perpetual.templates import make_template

    params = load_params(REPO / "params.yaml")
    mcqs = read_jsonl(paths.mcqs(task))[:limit]
    retrieved = {row["mcq_id"]: row for row in read_jsonl(paths.retrieved(task))}
    sources = {row["chunk_id"]: row["text"] for row in read_jsonl(paths.chunks(task))}
    model, tokenizer = load_local(folder, torch.bfloat16 if bf16 else torch.float32)
    lm = make_lm(model, tokenizer, params.evaluate.batch_size)
    template = make_template("chat", tokenizer, str(folder))
    budget = budget_for(lm)
    # The tokens the model runs: each distinct context once, every continuation (the shared-context scorer's work).
    contexts: set[tuple[int, ...]] = set()
    continuation_tokens = 0
    original = lm._loglikelihood_tokens

    def counting(requests: list[Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal continuation_tokens
        for _, context, continuation in requests:
            contexts.add(tuple(context))
            continuation_tokens += len(continuation)
        return original(requests, *args, **kwargs)

    lm._loglikelihood_tokens = counting
    with tempfile.TemporaryDirectory() as scratch:
        configs, names = [], {}
        for condition in ("base", "rag", "oracle"):  # no context, a retrieved chunk, the MCQ's own chunk
            for fmt in params.evaluate.formats:
                name = task_name(task, condition, fmt)
                items = build_items(mcqs, condition, fmt, retrieved, params.index.context_template, template, sources, budget)
                write_jsonl(Path(scratch) / f"{name}.jsonl", items)
                configs.append(task_config(name, Path(scratch) / f"{name}.jsonl"))
                names[name] = (condition, fmt)
        start = time.perf_counter()
        results = score(lm, configs)
        seconds = time.perf_counter() - start
    rows = [{"condition": names[name][0], "format": names[name][1], "mcq_id": row["mcq_id"], "pred": row["pred"], "acc": row["acc"]} for name, found in results.items() for row in found]
    write_jsonl(predictions_out, rows)
    tokens = sum(len(context) for context in contexts) + continuation_tokens
    return {"tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 2), "tokens": tokens, "questions": len(mcqs)}


def one(args: argparse.Namespace) -> None:
    """A single measurement, in this process (the parent reads its JSON line)."""
    kind, precision = args.one.split(":")
    folder = Path(args.folder)
    if kind == "scoring":
        result = measure_scoring(folder, args.task, args.limit, precision == "bf16", Path(args.predictions))
    else:
        result = measure_train(folder, args.task, kind, precision == "bf16", args.train_steps)
    print(json.dumps({**result, "peak_rss_gib": round(peak_rss_gib(), 2)}))


def child(args: argparse.Namespace, folder: Path, what: str, **extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", what, "--folder", str(folder), "--task", args.task,
               "--limit", str(args.limit), "--train-steps", str(args.train_steps), "--threads", str(args.threads)]  # fmt: skip
    for key, value in extra.items():
        command += [f"--{key}", value]
    print(f"precision: {what} ...", file=sys.stderr)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(first: Path, second: Path) -> float:
    from perpetual.io import read_jsonl

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["condition"], row["format"], row["mcq_id"])

    a = {key(row): row["pred"] for row in read_jsonl(first)}
    b = {key(row): row["pred"] for row in read_jsonl(second)}
    assert a.keys() == b.keys(), "both precisions must score the same questions"
    return sum(a[k] == b[k] for k in a) / len(a)


def cell_changes(first: Path, second: Path) -> dict[str, Any]:
    """Accuracy per (condition, format) cell in each precision, and the largest change of any cell."""
    from perpetual.io import read_jsonl

    def accuracies(path: Path) -> dict[str, float]:
        cells: dict[str, list[float]] = {}
        for row in read_jsonl(path):
            cells.setdefault(f"{row['condition']}/{row['format']}", []).append(row["acc"])
        return {cell: round(sum(values) / len(values), 4) for cell, values in sorted(cells.items())}

    fp32, bf16 = accuracies(first), accuracies(second)
    changes = {cell: round(bf16[cell] - fp32[cell], 4) for cell in fp32}
    largest = max(changes, key=lambda cell: abs(changes[cell]))
    return {"fp32": fp32, "bf16": bf16, "largest_change": {"cell": largest, "change": changes[largest]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="a pretrained model of params.yaml init.models")
    parser.add_argument("--task", default="products")
    parser.add_argument("--limit", type=int, default=40, help="MCQs scored (x 3 conditions x 2 formats)")
    parser.add_argument("--train-steps", type=int, default=4, help="optimizer steps per training measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    parser.add_argument("--scoring-only", action="store_true", help="skip the training measurements (agreement on more MCQs)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--predictions", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        return one(args)

    from perpetual.init_params import PretrainedModel
    from perpetual.models import load_pretrained

    params = load_params(REPO / "params.yaml")
    spec = params.init.models[args.model]
    if not isinstance(spec, PretrainedModel):
        sys.exit(f"error: init.models.{args.model} is not a pretrained model; this benchmark measures real ones")
    report: dict[str, Any] = {"model": args.model, "task": args.task, "threads": torch.get_num_threads(),
                              "bf16_hardware": bf16_hardware(), "cpu": cpu_name()}  # fmt: skip
    report["gemm_gflops"] = {name: round(gemm_gflops(dtype), 1) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        model, tokenizer = load_pretrained(spec, args.model)  # once: the GGUF's dequantising is not what is measured
        parameters = sum(parameter.numel() for parameter in model.parameters())
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        del model
        report["parameters"] = parameters
        train: dict[str, dict[str, Any]] = {}
        for method in () if args.scoring_only else ("full", "lora"):
            for precision in PRECISIONS:
                result = child(args, folder, f"{method}:{precision}")
                result["mfu"] = round(6 * parameters * result["tokens_per_s"] / (report["gemm_gflops"]["bf16"] * 1e9), 4)
                train.setdefault(method, {})[precision] = result
            train[method]["speedup"] = round(train[method]["bf16"]["tokens_per_s"] / train[method]["fp32"]["tokens_per_s"], 2)
        if train:
            report["train"] = train
        scoring: dict[str, Any] = {}
        for precision in PRECISIONS:
            scoring[precision] = child(args, folder, f"scoring:{precision}", predictions=str(Path(scratch) / f"{precision}.jsonl"))
        scoring["speedup"] = round(scoring["bf16"]["tokens_per_s"] / scoring["fp32"]["tokens_per_s"], 2)
        report["scoring"] = scoring
        report["agreement"] = round(agreement(Path(scratch) / "fp32.jsonl", Path(scratch) / "bf16.jsonl"), 4)
        report["cells"] = cell_changes(Path(scratch) / "fp32.jsonl", Path(scratch) / "bf16.jsonl")
    report["gemm_gflops"]["ratio"] = round(report["gemm_gflops"]["bf16"] / report["gemm_gflops"]["fp32"], 2)
    print(json.dumps(report, indent=2))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
