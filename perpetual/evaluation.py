"""Log-likelihood MCQ accuracy with lm-eval, in-process: each model is loaded once for all its conditions.

Two formats: the paper's letter format (options listed, the letter after `Answer:` scored) and the cloze format
(each option's text scored as the continuation of the passage it was cut from, or of "Question: ... Answer:").
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpetual.conditions import BY_NAME, ContextKind
from perpetual.errors import UserError
from perpetual.mcq_format import Rendered, render
from perpetual.records import FIT_FLAGS, Mcq
from perpetual.templates import Template

if TYPE_CHECKING:
    from perpetual.scoring import Encodings


def condition_model(condition: str) -> str:
    """Which model a condition scores: "base" or "fine-tuned" (perpetual/conditions.py)."""
    return BY_NAME[condition].model


def task_name(task: str, condition: str, fmt: str) -> str:
    return f"perpetual_{task}_{condition.replace('+', '_').replace('-', '_')}_{fmt}"


def task_config(name: str, data_file: Path) -> dict[str, Any]:
    """An lm-eval task over a local JSONL of rendered items (no hub access); also valid as a YAML for the CLI."""
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
        # Zero-shot, stated in the task so the in-process run and the CLI agree without a command-line flag.
        "num_fewshot": 0,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1},
    }


SEAM_MARGIN = 8  # tokens: far more than joining two texts changes their token count (one or two at the seam)


@dataclass(frozen=True)
class Budget:
    """The longest prompt the scorer reads whole, and how it counts tokens.

    HFLM feeds `(context + continuation)[-(max_length + 1):][:-1]`: the last token is only predicted, so a prompt
    (query + option, encoded as one string as lm-eval's `_encode_pair` does) of up to max_length + 1 tokens is scored
    whole, and a longer one loses its start (the context first, then the question) without a word.
    """

    count: Callable[[str], int]  # tokens of a text as the scorer encodes it (with BOS where it adds one)
    max_length: int  # lm.max_length
    # Tokens a text can take at most, without encoding it; None where the tokenizer gives no such bound.
    at_most: Callable[[str], int] | None = None

    def over(self, rendered: Rendered) -> bool:
        limit = self.max_length + 1
        if self.at_most is not None and self.at_most(rendered.query + max(rendered.choices, key=_utf8_length)) <= limit:
            return False  # the usual case, decided without encoding anything
        # Encoding the query once, and each short option alone, gives the prompt's length to within a token or two
        # (tokens can merge across the seam); only a prompt that close to the limit is encoded whole, once per
        # option. Encoding every query + option whole cost about as much as scoring them on the tiny models.
        estimate = self.count(rendered.query) + max(self.count(choice) for choice in rendered.choices)
        if estimate + SEAM_MARGIN <= limit:
            return False
        return max(self.count(rendered.query + choice) for choice in rendered.choices) > limit



def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def byte_level(tokenizer: Any) -> bool:
    """Whether every token of this tokenizer spans at least one byte of the text: a fast tokenizer with no normalizer
    and a byte-level pre-tokenizer (GPT-2 style BPE: the tiny models', SmolLM2's, Llama 3's)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    described = json.loads(backend.to_str())  # the one public view of a Sequence pre-tokenizer's members
    pre_tokenizer = described.get("pre_tokenizer") or {}
    parts = pre_tokenizer.get("pretokenizers", [pre_tokenizer]) if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    return described.get("normalizer") is None and any(part.get("type") == "ByteLevel" for part in parts)


def budget_for(lm: Any) -> Budget:
    """The budget of an lm-eval HFLM (`make_lm`): its own tokenizer call and the max length it truncates to. With a
    byte-level tokenizer a text takes at most its UTF-8 length in tokens plus the special tokens added to every text,
    so a prompt well within the limit is known to fit without being encoded (fitting by encoding every prompt cost
    a tenth of the stage on the tiny models)."""
    at_most = None
    if byte_level(lm.tokenizer):
        added = len(lm.tok_encode(""))
        at_most = lambda text: _utf8_length(text) + added  # noqa: E731
    return Budget(count=lambda text: len(lm.tok_encode(text)), max_length=int(lm.max_length), at_most=at_most)


@dataclass(frozen=True)
class Fitted:
    rendered: Rendered
    shortened: bool  # context passages dropped or cut so that the prompt fits
    truncated: bool  # still over the budget (the question alone is too long): lm-eval will cut it from the left


def passages(mcq: Mcq, kind: ContextKind, retrieved: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str]) -> list[str]:
    """The passages a condition's context is made of, best first."""
    if kind == "none":
        return []
    if kind == "retrieved":
        return list(retrieved.get(mcq["mcq_id"], {}).get("contexts", []))
    if mcq["chunk_id"] not in sources:
        raise UserError(
            f"MCQ {mcq['mcq_id']}'s source chunk {mcq['chunk_id']} is not in the task's chunks (data/chunks/<task>.jsonl): "
            "the MCQs and chunks are out of step; re-run generate"
        )
    return [sources[mcq["chunk_id"]]]


def fit(mcq: Mcq, fmt: str, template: Template, found: Sequence[str], context_template: str, budget: Budget | None) -> Fitted:
    """The MCQ rendered with as much of its context as fits the budget.

    Shortened here rather than left to lm-eval, which would cut the prompt's start: a half passage with no sign of
    the cut and, for long contexts, the question's opening. The lowest-ranked passages go first (they are the least
    likely to hold the answer); a single passage still too long keeps its start, ended with "…" so the model sees
    that it was cut. The question (the cloze prefix) is never touched.
    """

    def with_context(kept: Sequence[str]) -> Rendered:
        return render(mcq, fmt, template, context_template.format(context="\n\n".join(kept)) if kept else "")

    rendered = with_context(found)
    if budget is None or not budget.over(rendered):
        return Fitted(rendered, shortened=False, truncated=False)
    if not found:
        return Fitted(rendered, shortened=False, truncated=True)
    kept = list(found)
    while len(kept) > 1:
        kept.pop()
        rendered = with_context(kept)
        if not budget.over(rendered):
            return Fitted(rendered, shortened=True, truncated=False)
    text = kept[0]

    def cut(length: int) -> Rendered:
        return with_context([text[:length].rstrip() + "…"])

    bare = with_context([])
    if budget.over(cut(0)):
        return Fitted(bare, shortened=True, truncated=budget.over(bare))
    # cut(low) fits and the whole passage does not: the longest start that fits, by bisection (token counts grow
    # with the text's length, so this takes ~log2(characters) encodings, not one per character).
    low, high = 0, len(text)
    while high - low > 1:
        middle = (low + high) // 2
        if budget.over(cut(middle)):
            high = middle
        else:
            low = middle
    # Back to the last word boundary, so no word is shown half (a text without one is cut mid-word).
    boundary = max(text.rfind(space, 0, low + 1) for space in " \n\t")
    if boundary > 0 and not budget.over(cut(boundary)):
        low = boundary
    if not text[:low].strip():
        return Fitted(bare, shortened=True, truncated=False)
    return Fitted(cut(low), shortened=True, truncated=False)


def build_items(
    mcqs: Sequence[Mcq],
    condition: str,
    fmt: str,
    retrieved: Mapping[str, Mapping[str, Any]],
    context_template: str,
    template: Template,
    sources: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> list[dict[str, Any]]:
    """The lm-eval documents of one condition and format.

    `sources`: chunk id -> text, for conditions whose context is the MCQ's own chunk. With a `budget`, each context
    is fitted to the model's max length (`fit`), and every item says whether its context was shortened and whether
    the prompt is still too long, so each cell can report both.
    """
    kind = BY_NAME[condition].context
    rows = []
    for mcq in mcqs:
        fitted = fit(mcq, fmt, template, passages(mcq, kind, retrieved, sources or {}), context_template, budget)
        rendered = fitted.rendered
        row: dict[str, Any] = {"mcq_id": mcq["mcq_id"], "query": rendered.query, "choices": rendered.choices, "gold": rendered.gold}
        if budget is not None:
            row |= {"context_shortened": fitted.shortened, "truncated": fitted.truncated}
        rows.append(row)
    return rows


@functools.cache
def task_manager():
    """A TaskManager for our inline configs only, built once per process.

    The default one indexes lm-eval's ~28k built-in task YAMLs: about 13 s per construction on this machine,
    and `simple_evaluate` built one per model (a third of the stage's time) for tasks we never use.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def make_lm(model: Any, tokenizer: Any, batch_size: int, encodings: Encodings | None = None):
    """lm-eval's HFLM, with each question's shared prompt scored once for its four options (perpetual/scoring.py).

    The evaluate stage builds one per model and scores the MCQs (`score`) with it, and the fine-tuned model's
    retention (base-retention@ answers the base model's with one of its own); given the same `encodings`, the second
    model reuses the token ids of prompts the first one encoded."""
    import torch

    from perpetual.scoring import SharedContextHFLM

    weights = next(model.parameters())
    device = "cuda" if weights.is_cuda else "cpu"
    # bf16 weights (perpetual/precision.py): the log-softmax still in fp32, so that an option's log-likelihood, a sum
    # over its tokens, is not rounded to bf16's 8 bits at every step.
    softmax_dtype = torch.float32 if weights.dtype != torch.float32 else None
    lm = SharedContextHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device, softmax_dtype=softmax_dtype)
    lm.encodings = encodings
    return lm


def score(lm: Any, configs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Run lm-eval with `lm` (`make_lm`: the in-memory model); return per-question log-likelihoods for each task name.

    `lm_eval.evaluator.evaluate` is what `simple_evaluate` and the CLI call after loading the model and tasks; calling
    it directly skips their environment report (a `pip list` subprocess per call). Log-likelihood scoring draws no
    random numbers, so no seeds are needed.
    """
    from lm_eval.evaluator import evaluate

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    output = evaluate(
        lm=lm,
        task_dict=task_manager().load(configs),
        bootstrap_iters=0,
        log_samples=True,
        verbosity="WARNING",
    )
    return {name: rows_from_samples(samples) for name, samples in output["samples"].items()}


def rows_from_samples(samples: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """lm-eval's logged samples as prediction rows, in document order."""
    rows = []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        loglikelihoods = [float(resp[0]) for resp in sample["filtered_resps"]]
        choices = sample["doc"]["choices"]
        # lm-eval's acc_norm divides by the choice's length in characters; the same here so pred_norm matches it.
        normalised = [ll / max(1, len(choice)) for ll, choice in zip(loglikelihoods, choices)]
        rows.append(
            {
                "mcq_id": sample["doc"]["mcq_id"],
                "gold": int(sample["doc"]["gold"]),
                "loglikelihoods": [round(value, 5) for value in loglikelihoods],
                "pred": max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__),
                "pred_norm": max(range(len(normalised)), key=normalised.__getitem__),
                "acc": float(sample["acc"]),
                "acc_norm": float(sample["acc_norm"]),
                # Carried from the rendered item (build_items with a budget), so the cells can be recomputed from here.
                **{key: bool(sample["doc"][key]) for key in FIT_FLAGS if key in sample["doc"]},
            }
        )
    return rows
