"""Log-likelihood MCQ accuracy with lm-eval, in-process: each model is loaded once for all its conditions.

Two formats: the paper's letter format (options listed, the letter after `Answer:` scored) and the cloze format
(each option's text scored as the continuation of the passage it was cut from, or of "Question: ... Answer:").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from perpetual.records import LETTERS, Mcq

RAG_CONDITIONS = {"rag", "fine-tuned+rag"}
FINE_TUNED_CONDITIONS = {"fine-tuned", "fine-tuned+rag"}


@dataclass(frozen=True)
class Rendered:
    query: str
    choices: list[str]
    gold: int


def render(mcq: Mcq, fmt: str, context: str = "") -> Rendered:
    gold = LETTERS.index(mcq["answer"])
    if fmt == "letter":
        # The paper's prompt: question, options A-D, then the letter after "Answer:".
        listed = "\n".join(f"{letter}: {option}" for letter, option in zip(LETTERS, mcq["options"]))
        return Rendered(f"{context}{mcq['question']}\n{listed}\nAnswer:", [f" {letter}" for letter in LETTERS], gold)
    if mcq.get("cloze_prefix"):
        # lm-eval moves the prefix's trailing whitespace onto the continuation, so tokens match the training text.
        return Rendered(f"{context}{mcq['cloze_prefix']}", list(mcq["options"]), gold)
    return Rendered(f"{context}Question: {mcq['question']}\nAnswer:", [f" {option}" for option in mcq["options"]], gold)


def condition_model(condition: str) -> str:
    return "fine-tuned" if condition in FINE_TUNED_CONDITIONS else "base"


def task_name(task: str, condition: str, fmt: str) -> str:
    return f"perpetual_{task}_{condition.replace('+', '_').replace('-', '_')}_{fmt}"


def task_config(name: str, data_file: Path) -> dict[str, Any]:
    """An lm-eval task over a local JSONL of rendered items (no hub access)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1},
    }


def context_for(mcq_id: str, retrieved: dict[str, dict[str, Any]], template: str) -> str:
    contexts = retrieved.get(mcq_id, {}).get("contexts", [])
    return template.format(context="\n\n".join(contexts)) if contexts else ""


def build_items(
    mcqs: Sequence[Mcq], condition: str, fmt: str, retrieved: dict[str, dict[str, Any]], template: str
) -> list[dict[str, Any]]:
    rows = []
    for mcq in mcqs:
        context = context_for(mcq["mcq_id"], retrieved, template) if condition in RAG_CONDITIONS else ""
        rendered = render(mcq, fmt, context)
        rows.append({"mcq_id": mcq["mcq_id"], "query": rendered.query, "choices": rendered.choices, "gold": rendered.gold})
    return rows


def score(model: Any, tokenizer: Any, configs: list[dict[str, Any]], batch_size: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Run lm-eval on the in-memory model; return per-question log-likelihoods for each task name."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    output = simple_evaluate(
        model=lm,
        tasks=configs,
        bootstrap_iters=0,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    per_task: dict[str, list[dict[str, Any]]] = {}
    for name, samples in output["samples"].items():
        rows = []
        for sample in sorted(samples, key=lambda s: s["doc_id"]):
            loglikelihoods = [float(resp[0]) for resp in sample["filtered_resps"]]
            choices = sample["doc"]["choices"]
            lengths = [max(1, len(choice.encode("utf-8"))) for choice in choices]
            normalised = [ll / length for ll, length in zip(loglikelihoods, lengths)]
            rows.append(
                {
                    "mcq_id": sample["doc"]["mcq_id"],
                    "gold": int(sample["doc"]["gold"]),
                    "loglikelihoods": [round(value, 5) for value in loglikelihoods],
                    "pred": max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__),
                    "pred_norm": max(range(len(normalised)), key=normalised.__getitem__),
                    "acc": float(sample["acc"]),
                    "acc_norm": float(sample["acc_norm"]),
                }
            )
        per_task[name] = rows
    return per_task


def accuracy(rows: Iterable[dict[str, Any]], key: str = "acc") -> float:
    values = [row[key] for row in rows]
    return sum(values) / len(values) if values else 0.0
