"""perpetual/evaluation.py and perpetual/retention.py on real (tiny, random) models: what lm-eval scores and how
retention is measured, checked against plain torch computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perpetual.config import TinyGemma, TinyMamba2, TokenizerParams
from perpetual.evaluation import build_items, score, task_config, task_manager
from perpetual.io import write_jsonl
from perpetual.models import build_tiny, train_tokenizer
from perpetual.records import Mcq
from perpetual.retention import Instruction, greedy_answers, measure, reference_loglik, summary
from perpetual.templates import make_template

TEXTS = [
    "The Tellavik Nova weighs 1336 grams and ships from Marrowgate.",
    "Weekly production of the Rookhaven Bramble Watch is capped at 2008.",
    "### Instruction:\nName the opposite of 'tall'.\n\n### Response:\nThe opposite of 'tall' is 'short'.",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, TokenizerParams(vocab_size=300, min_frequency=1))


@pytest.fixture(scope="module", params=["gemma", "mamba2"])
def model(request, tokenizer):
    spec = (
        TinyGemma(kind="tiny-gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64)
        if request.param == "gemma"
        else TinyMamba2(kind="tiny-mamba2", hidden_size=32, num_hidden_layers=1, head_dim=16, state_size=8, chunk_size=16)
    )
    return build_tiny(spec, tokenizer, seed=0).eval()


def _mcqs() -> list[Mcq]:
    return [
        Mcq(mcq_id="m1", chunk_id="c1", question='What completes "The Tellavik Nova weighs ___"?', options=["1170", "2016", "1336", "6586"],
            answer="C", cloze_prefix="The Tellavik Nova weighs ", kind="number"),  # fmt: skip
        Mcq(mcq_id="m2", chunk_id="c2", question="Where does the Nova ship from?", options=["Marrowgate", "Quenridge", "Saltcombe", "Ambry"],
            answer="A", cloze_prefix="", kind="name"),  # fmt: skip
    ]


def _continuation_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) the way lm-eval defines it: trailing context whitespace moves to the
    continuation, the pair is encoded whole and split at the context's length."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    split = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
    return float(sum(logprobs[position - 1, whole[position]] for position in range(split, len(whole))))


def test_task_manager_is_built_once_without_lm_evals_builtin_tasks() -> None:
    manager = task_manager()
    assert manager is task_manager()
    assert len(manager.all_tasks) == 0  # the 28k built-in YAMLs are never indexed


@pytest.mark.parametrize("fmt", ["letter", "cloze"])
def test_score_matches_direct_loglikelihoods(model, tokenizer, tmp_path: Path, fmt: str) -> None:
    retrieved = {"m1": {"contexts": ["The Nova weighs 1336 grams."]}}
    items = build_items(_mcqs(), "rag", fmt, retrieved, "Context:\n{context}\n\n", make_template("alpaca", tokenizer))
    write_jsonl(tmp_path / "items.jsonl", items)
    rows = score(model, tokenizer, [task_config(f"perpetual_test_{fmt}", tmp_path / "items.jsonl")], batch_size=3)[f"perpetual_test_{fmt}"]
    assert [row["mcq_id"] for row in rows] == ["m1", "m2"]
    for row, item in zip(rows, items):
        expected = [_continuation_loglik(model, tokenizer, item["query"], choice) for choice in item["choices"]]
        assert row["loglikelihoods"] == pytest.approx(expected, abs=2e-4)
        assert row["pred"] == max(range(4), key=expected.__getitem__)
        assert row["acc"] == float(row["pred"] == item["gold"])
        assert row["acc_norm"] == float(row["pred_norm"] == item["gold"])  # our pred_norm is lm-eval's acc_norm choice


def test_batch_size_does_not_change_predictions(model, tokenizer, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "items.jsonl", build_items(_mcqs() * 3, "base", "cloze", {}, "{context}", make_template("alpaca", tokenizer)))
    config = [task_config("perpetual_test_bs", tmp_path / "items.jsonl")]
    one, many = score(model, tokenizer, config, batch_size=1), score(model, tokenizer, config, batch_size=8)
    assert [row["pred"] for row in one["perpetual_test_bs"]] == [row["pred"] for row in many["perpetual_test_bs"]]
    for a, b in zip(one["perpetual_test_bs"], many["perpetual_test_bs"]):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)


def _instructions() -> list[Instruction]:
    pairs = [("Name the opposite of 'tall'.", "The opposite of 'tall' is 'short'."), ("What is 8 times 8?", "64."), ("Say hi.", "Hi!")]
    return [Instruction(instruction, "", reference) for instruction, reference in pairs]


@pytest.fixture(scope="module")
def template(tokenizer):
    return make_template("alpaca", tokenizer)


def test_reference_loglik_is_teacher_forced_reference_plus_eos(model, tokenizer, template) -> None:
    items = _instructions()
    batched = reference_loglik(model, tokenizer, items, template, batch_size=8)
    for (total, count), item in zip(batched, items):
        prompt = tokenizer(template.instruction(item.instruction))["input_ids"]
        reference = tokenizer(item.reference, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([prompt + reference])).logits[0].float(), dim=-1)
        expected = sum(float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(reference))
        assert count == len(reference)
        assert total == pytest.approx(expected, abs=1e-3)  # right padding in the batch changes nothing


def test_greedy_answers_do_not_depend_on_batching(model, tokenizer, template) -> None:
    prompts = [template.instruction(item.instruction) for item in _instructions()]
    together = greedy_answers(model, tokenizer, prompts, template, max_new_tokens=12, batch_size=8)
    alone = [greedy_answers(model, tokenizer, [prompt], template, max_new_tokens=12, batch_size=1)[0] for prompt in prompts]
    assert together == alone
    assert tokenizer.padding_side == "right"  # restored after left-padded generation


def test_measure_and_summary(model, tokenizer, template) -> None:
    measured = measure(model, tokenizer, _instructions(), template, max_new_tokens=6, batch_size=2)
    result = summary(measured)
    assert result["n"] == 3
    assert sum(result[f"stop_{kind}"] for kind in ("eos", "header", "run_on", "empty")) == 3
    assert result["format_following"] == (result["stop_eos"] + result["stop_header"]) / 3
    assert result["loglik_per_token"] < 0
