"""Retention: does knowledge injection keep the model's assistant behaviour on general instructions?

Three measures on a held-out set of general Alpaca instructions (data/retention/general_instructions.jsonl, facts
that appear in no task), each computed for the model evaluate@ calls "base" and for the fine-tuned one:

* `loglik_per_token`: teacher-forced log-likelihood of the reference responses, summed over every reference token
  plus the closing EOS and divided by the number of those tokens (pooled over the set, natural log). Higher is
  better; a drop after fine-tuning means the model has moved away from answering instructions.
* `format_following`: the share of greedy answers that follow the format they were asked in (`train.template`:
  Alpaca, or the model's own chat template; see `classify`) within the generation budget.
* `similarity`: the cosine similarity of each greedy answer (its stop tokens stripped) with its reference answer, in
  the sentence embeddings of `index.embedder` (perpetual/retrieval.py `load_embedder`, the retriever's own model);
  an empty answer scores 0. What the answer says, whatever its length and wording; see docs/evaluation.md.

The generation budget is one number for the whole set (so lm-eval batches the answers as it likes):
`evaluate.retention.budget_factor` times the longest reference answer, counted in the scored model's own tokens with
its closing token (`generation_budget`), so that a model whose answers are longer than the references' still has
room to finish them.

The log-likelihoods and answers are computed through the lm the MCQs are scored with (perpetual/evaluation.py
`make_lm`: perpetual/scoring.py `SharedContextHFLM`, lm-eval's HFLM; the base model's, the same in every task, once
per model by base-retention@): its `_loglikelihood_tokens` for the log-likelihoods and its `generate_until` for the
answers, so batching, padding and generation are lm-eval's, in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from perpetual.errors import UserError
from perpetual.io import read_jsonl
from perpetual.retrieval import embed
from perpetual.templates import Template

if TYPE_CHECKING:
    from perpetual.scoring import SharedContextHFLM

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


def reference_tokens(tokenizer: Any, items: Sequence[Instruction], template: Template) -> list[list[int]]:
    """Each reference answer as training sees it: its tokens (without special tokens), then the closing token that
    training appends to an answer (EOS for alpaca, the end-of-turn token for chat)."""
    closing = int(tokenizer.convert_tokens_to_ids(template.end_of_answer))
    return [list(tokenizer(item.reference, add_special_tokens=False)["input_ids"]) + [closing] for item in items]


def generation_budget(lengths: Sequence[int], factor: float) -> int:
    """The greedy answers' budget in tokens, one for the whole set: `factor` times the longest reference (`lengths`:
    the references' token counts with their closing token, `reference_tokens`), rounded up."""
    if not lengths:
        raise ValueError("no reference answers to derive the generation budget from")
    return max(1, math.ceil(round(factor * max(lengths), 6)))  # round first: 1.1 * 10 is 11, not 12


def reference_loglik(lm: SharedContextHFLM, items: Sequence[Instruction], template: Template) -> list[tuple[float, int]]:
    """Per item: (sum of log p(reference tokens + the closing token | prompt), number of those tokens).

    The prompt is the instruction in `template`; the closing token is what training appends to an answer (EOS for
    alpaca, the end-of-turn token for chat). Prompt and reference are tokenised separately, as SFT sees them: the
    prompt as lm-eval encodes a context (with the tokenizer's own special tokens, e.g. Gemma's BOS, unless the text
    already starts with it), the reference without special tokens (`reference_tokens`). The pairs are scored by the
    lm's `_loglikelihood_tokens`, the method lm-eval's `loglikelihood` calls for the MCQs (perpetual/scoring.py).
    """
    requests = []
    for item, reference in zip(items, reference_tokens(lm.tokenizer, items, template), strict=True):
        prompt = template.instruction(item.instruction, item.input)
        requests.append(((prompt, item.reference), lm.tok_encode(prompt), reference))
    scored = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    return [(float(total), len(reference)) for (total, _), (_, _, reference) in zip(scored, requests, strict=True)]


def greedy_answers(
    lm: SharedContextHFLM,
    prompts: Sequence[str],
    template: Template,
    max_new_tokens: int,
    stop_ids: Collection[int] | None = None,
    temperature: float = 0.0,
) -> list[tuple[list[int], str]]:
    """Greedy continuations through the lm's `generate_until`: (new token ids, decoded text with special tokens),
    each ending at a stop token of `template` (`stop_ids`: EOS, the end-of-turn token) or at one of its stop strings
    (alpaca: "###"), or after `max_new_tokens`. A `temperature` above 0 samples instead (seed torch's generator
    first for a reproducible draw)."""
    from lm_eval.api.instance import Instance

    stop_ids = set(template.stop_token_ids() if stop_ids is None else stop_ids)
    stop_strings = list(template.stop_strings)
    sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    arguments: dict[str, Any] = {"until": stop_strings, "max_gen_toks": max_new_tokens, **sampling, "eos_token_id": sorted(stop_ids)}
    if stop_strings:
        arguments["stop_strings"] = stop_strings
    requests = [Instance("generate_until", {}, (prompt, arguments), index) for index, prompt in enumerate(prompts)]
    answers = []
    for _, generated in lm.generate_until_with_tokens(requests, disable_tqdm=True):
        tokens = answer_tokens(generated, stop_ids, stop_strings, lm.tokenizer)
        answers.append((tokens, lm.tokenizer.decode(tokens, skip_special_tokens=False)))
    return answers


def answer_tokens(generated: Sequence[int], stop_ids: Collection[int], stop_strings: Sequence[str], tokenizer: Any) -> list[int]:
    """The answer in a row of generated ids: up to and including the first stop token, or the token that completes
    the first stop string, whichever comes first. What follows (the padding of a row that finished before its batch)
    is dropped; without a stop, all of it."""
    end = next((index + 1 for index, token in enumerate(generated) if token in stop_ids), len(generated))
    answer = list(generated[:end])
    if stop_strings and any(stop in tokenizer.decode(answer, skip_special_tokens=False) for stop in stop_strings):
        end = next(
            length
            for length in range(1, len(answer) + 1)
            if any(stop in tokenizer.decode(answer[:length], skip_special_tokens=False) for stop in stop_strings)
        )
        answer = answer[:end]
    return answer


def classify(new_tokens: Sequence[int], text: str, template: Template, stop_ids: Collection[int] | None = None) -> Stop:
    """How a greedy answer ended.

    * `eos`: the model emitted a stop token (EOS; for chat, the end-of-turn token) after a non-empty answer.
    * `header` (alpaca only): the answer is non-empty and is followed by a line starting with "###" (the model
      closed its answer and began a new Alpaca section; a chat front end would cut there).
    * `empty`: a stop token or a header came before any non-whitespace text.
    * `run_on`: no stop within the token budget (raw text running on, e.g. catalogue prose), or "###" in the middle
      of a line.

    `stop_ids`: `template.stop_token_ids()`, when the caller has them already.
    """
    stop_ids = set(template.stop_token_ids() if stop_ids is None else stop_ids)
    stop_tokens = dict.fromkeys([template.eos_token, template.end_of_answer])
    header = re.compile("|".join(rf"(?:^|\n)[ \t]*{re.escape(marker)}" for marker in template.stop_strings)) if template.stop_strings else None
    if any(token in stop_ids for token in new_tokens):
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


def answer_text(text: str, template: Template) -> str:
    """What a greedy answer says: its text up to the template's first stop token (EOS, end-of-turn) or stop string
    (alpaca: "###"), stripped."""
    for stop in dict.fromkeys([template.end_of_answer, template.eos_token, *template.stop_strings]):
        text = text.split(stop, 1)[0]
    return text.strip()


def similarity(embedder: Any, answers: Sequence[str], references: Sequence[str], batch_size: int) -> list[float]:
    """Per pair: the cosine similarity of the answer's and the reference's sentence embeddings (unit length,
    perpetual/retrieval.py `embed`), in [-1, 1]; 1 for an answer that says what its reference says. An empty answer
    says nothing: 0 (an embedder still maps "" to some vector: all-MiniLM-L6-v2's is about 0.1 from a short answer)."""
    if len(answers) != len(references):
        raise ValueError("each answer needs its reference")
    said = [index for index, answer in enumerate(answers) if answer.strip()]
    values = [0.0] * len(answers)
    if said:
        vectors = embed(embedder, [answers[index] for index in said] + [references[index] for index in said], batch_size)
        for row, index in enumerate(said):
            values[index] = float(vectors[row] @ vectors[len(said) + row])
    return values


def measure(
    lm: SharedContextHFLM, items: Sequence[Instruction], template: Template, budget_factor: float, embedder: Any, embed_batch_size: int
) -> dict[str, Any]:
    """The retention measures for one model, with per-item values for paired tests, through `lm`: the HFLM
    (perpetual/evaluation.py `make_lm`) that scores the model's MCQs, with its batch size. The answers' budget comes
    from the references' lengths in `lm`'s tokenizer (`generation_budget`); `embedder` (perpetual/retrieval.py
    `load_embedder`) compares each answer with its reference (`similarity`)."""
    scored = reference_loglik(lm, items, template)
    budget = generation_budget([count for _, count in scored], budget_factor)
    prompts = [template.instruction(item.instruction, item.input) for item in items]
    stop_ids = template.stop_token_ids()
    answers = greedy_answers(lm, prompts, template, budget, stop_ids)
    stops = [classify(tokens, text, template, stop_ids) for tokens, text in answers]
    texts = [answer_text(text, template) for _, text in answers]
    return {
        "per_item_loglik": [(total, count) for total, count in scored],  # summed over the reference, its token count
        "follows": [follows_format(stop) for stop in stops],
        "stops": stops,
        "similarity": similarity(embedder, texts, [item.reference for item in items], embed_batch_size),
        "answer_tokens": [len(tokens) for tokens, _ in answers],
        "budget": budget,
        "answers": [text for _, text in answers],
        "prompts": prompts,
    }


def answer_rows(items: Sequence[Instruction], measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per instruction and model: the greedy answer, how it ended, its length and the budget it had, its
    similarity with the reference, the reference's log-likelihood per token."""
    rows = []
    for which, values in measured.items():
        for index, item in enumerate(items):
            total, count = values["per_item_loglik"][index]
            rows.append(
                {
                    "model": which,
                    "index": index,
                    "prompt": values["prompts"][index],
                    "reference": item.reference,
                    "answer": values["answers"][index],
                    "stop": values["stops"][index],
                    "follows": values["follows"][index],
                    "answer_tokens": values["answer_tokens"][index],
                    "budget": values["budget"],
                    "similarity": values["similarity"][index],
                    "loglik_per_token": round(total / count, 5),
                    # Exact, so the analysis stage computes the pooled figure and the paired test from these.
                    "loglik_total": total,
                    "loglik_tokens": count,
                }
            )
    return rows
