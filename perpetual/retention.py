"""Retention: does knowledge injection keep the model's assistant behaviour on general instructions?

Two measures on a held-out set of general Alpaca instructions (data/retention/general_instructions.jsonl, facts
that appear in no task), each computed for the model evaluate@ calls "base" and for the fine-tuned one:

* `loglik_per_token`: teacher-forced log-likelihood of the reference responses, summed over every reference token
  plus the closing EOS and divided by the number of those tokens (pooled over the set, natural log). Higher is
  better; a drop after fine-tuning means the model has moved away from answering instructions.
* `format_following`: the share of greedy answers that follow the format they were asked in (`train.template`:
  Alpaca, or the model's own chat template; see `classify`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from perpetual.errors import UserError
from perpetual.io import read_jsonl
from perpetual.statistics import mcnemar_exact, wilcoxon_paired
from perpetual.templates import Template

Stop = Literal["eos", "header", "run_on", "empty"]


@dataclass(frozen=True)
class Instruction:
    instruction: str
    input: str
    reference: str


def load_instructions(path: Path, limit: int | None = None) -> list[Instruction]:
    """Alpaca JSONL (instruction, optional input, output); prompts are rendered in the model's template later."""
    rows = read_jsonl(path)
    if not rows:
        raise UserError(f"{path} has no instructions; evaluate.retention.path needs Alpaca JSONL rows")
    items = []
    for number, row in enumerate(rows[:limit], 1):
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise UserError(f"{path}:{number} needs string fields 'instruction' and 'output' (Alpaca JSONL)")
        items.append(Instruction(row["instruction"], row.get("input") or "", row["output"]))
    return items


def reference_loglik(model: Any, tokenizer: Any, items: Sequence[Instruction], template: Template, batch_size: int) -> list[tuple[float, int]]:
    """Per item: (sum of log p(reference tokens + the closing token | prompt), number of those tokens).

    The prompt is the instruction in `template`; the closing token is what training appends to an answer (EOS for
    alpaca, the end-of-turn token for chat). Prompt and reference are tokenised separately, as SFT sees them (the
    prompt with the tokenizer's own special tokens, e.g. Gemma's BOS, as lm-eval does), and right-padded: a causal
    model's scores at real positions cannot depend on padding that comes after them, so no attention mask is needed.
    """
    device = next(model.parameters()).device
    closing = int(tokenizer.convert_tokens_to_ids(template.end_of_answer))
    encoded = []
    for item in items:
        prompt = tokenizer(template.instruction(item.instruction, item.input))["input_ids"]
        reference = tokenizer(item.reference, add_special_tokens=False)["input_ids"] + [closing]
        encoded.append((prompt, reference))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    # Longest first, so each batch pads little (as lm-eval orders its requests).
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        sequences = [encoded[i][0] + encoded[i][1] for i in batch]
        width = max(len(sequence) for sequence in sequences)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
        with torch.inference_mode():
            logits = model(ids.to(device)).logits.float()
        for row, index in enumerate(batch):
            prompt, reference = encoded[index]
            # Positions that predict the reference tokens: the last prompt token up to the one before the closing one.
            predicting = logits[row, len(prompt) - 1 : len(prompt) + len(reference) - 1]
            logprobs = torch.log_softmax(predicting, dim=-1)
            total = logprobs.gather(1, torch.tensor(reference, device=device).unsqueeze(1)).sum()
            results[index] = (float(total), len(reference))
    return results


def greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[str], template: Template, max_new_tokens: int, batch_size: int) -> list[tuple[list[int], str]]:
    """Greedy continuations: (new token ids, decoded text), stopping at a stop token of `template` (EOS, the
    end-of-turn token) or at one of its stop strings (alpaca: "###")."""
    device = next(model.parameters()).device
    stop_ids = template.stop_token_ids()
    answers: list[tuple[list[int], str]] = [([], "")] * len(prompts)
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the last position, so pad on the left
    try:
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id,
                    stop_strings=list(template.stop_strings) or None,
                    tokenizer=tokenizer,
                )
            for row, index in enumerate(batch):
                new = trim_padding(output[row, inputs["input_ids"].shape[1] :].tolist(), tokenizer.pad_token_id, stop_ids)
                answers[index] = (new, tokenizer.decode(new, skip_special_tokens=False))
    finally:
        tokenizer.padding_side = previous_side
    return answers


def trim_padding(new_tokens: list[int], pad_token_id: int, stop_token_ids: Sequence[int]) -> list[int]:
    """Drop the padding `generate` appends to answers that finished before the rest of their batch."""
    trimmed = list(new_tokens)
    while trimmed and trimmed[-1] == pad_token_id:
        trimmed.pop()
    if pad_token_id in stop_token_ids and len(trimmed) < len(new_tokens):
        trimmed.append(pad_token_id)  # where padding is a stop token, the first of those was the answer's own stop
    return trimmed


def classify(new_tokens: Sequence[int], text: str, template: Template) -> Stop:
    """How a greedy answer ended.

    * `eos`: the model emitted a stop token (EOS; for chat, the end-of-turn token) after a non-empty answer.
    * `header` (alpaca only): the answer is non-empty and is followed by a line starting with "###" (the model
      closed its answer and began a new Alpaca section; a chat front end would cut there).
    * `empty`: a stop token or a header came before any non-whitespace text.
    * `run_on`: no stop within the token budget (raw text running on, e.g. catalogue prose), or "###" in the middle
      of a line.
    """
    stop_tokens = dict.fromkeys([template.eos_token, template.end_of_answer])
    header = re.compile("|".join(rf"(?:^|\n)[ \t]*{re.escape(marker)}" for marker in template.stop_strings)) if template.stop_strings else None
    if any(token in template.stop_token_ids() for token in new_tokens):
        answer = re.split("|".join(re.escape(token) for token in stop_tokens), text, maxsplit=1)[0]
        found = header.search(answer) if header else None
        if found:
            answer = answer[: found.start()]
        return "eos" if answer.strip() else "empty"
    found = header.search(text) if header else None
    if found is None:
        return "run_on"
    return "header" if text[: found.start()].strip() else "empty"


def follows_format(stop: Stop) -> bool:
    """An answer follows the format iff it is non-empty and ends cleanly: with a stop token or (alpaca) before a
    new "###" header, within the generation budget. Run-on text and empty answers do not."""
    return stop in ("eos", "header")


def measure(model: Any, tokenizer: Any, items: Sequence[Instruction], template: Template, max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    """Both retention measures for one model, with per-item values for paired tests."""
    model.eval()
    scored = reference_loglik(model, tokenizer, items, template, batch_size)
    prompts = [template.instruction(item.instruction, item.input) for item in items]
    answers = greedy_answers(model, tokenizer, prompts, template, max_new_tokens, batch_size)
    stops = [classify(tokens, text, template) for tokens, text in answers]
    return {
        "loglik_per_token": sum(total for total, _ in scored) / max(1, sum(count for _, count in scored)),
        "per_item_loglik_per_token": [total / count for total, count in scored],
        "follows": [follows_format(stop) for stop in stops],
        "stops": stops,
        "answers": [text for _, text in answers],
        "prompts": prompts,
    }


def summary(measured: dict[str, Any]) -> dict[str, Any]:
    """The numbers that go into metrics: no per-item lists."""
    follows = measured["follows"]
    return {
        "n": len(follows),
        "loglik_per_token": round(measured["loglik_per_token"], 4),
        "format_following": round(sum(follows) / len(follows), 4) if follows else 0.0,
        **{f"stop_{kind}": sum(1 for stop in measured["stops"] if stop == kind) for kind in ("eos", "header", "run_on", "empty")},
    }


def compare(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Metrics per model ("base", "fine-tuned") and, when both are there, paired tests of the change:
    Wilcoxon signed-rank on per-instruction log-likelihood per token, exact McNemar on format following."""
    result: dict[str, Any] = {which: summary(values) for which, values in measured.items()}
    if {"base", "fine-tuned"} <= measured.keys():
        base, tuned = measured["base"], measured["fine-tuned"]
        result["p_value_loglik"] = wilcoxon_paired(base["per_item_loglik_per_token"], tuned["per_item_loglik_per_token"])
        result["p_value_format"] = mcnemar_exact(base["follows"], tuned["follows"])["p_value"]
    return result


def answer_rows(items: Sequence[Instruction], measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per instruction and model: the greedy answer, how it ended, the reference's log-likelihood per token."""
    rows = []
    for which, values in measured.items():
        for index, item in enumerate(items):
            rows.append(
                {
                    "model": which,
                    "index": index,
                    "prompt": values["prompts"][index],
                    "reference": item.reference,
                    "answer": values["answers"][index],
                    "stop": values["stops"][index],
                    "follows": values["follows"][index],
                    "loglik_per_token": round(values["per_item_loglik_per_token"][index], 5),
                }
            )
    return rows
