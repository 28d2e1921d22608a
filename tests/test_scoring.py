"""perpetual/scoring.py: SharedContextHFLM gives lm-eval's own HFLM results (log-likelihoods, is_greedy, predictions)
on tiny random models of each family, through `lm_eval.evaluator.evaluate` and at the token level, with left
truncation, contexts of different lengths in a batch, and greedy continuations."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Mamba2Config,
    Mamba2ForCausalLM,
    MambaConfig,
    MambaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from perpetual.evaluation import rows_from_samples, task_config, task_manager
from perpetual.init_params import TokenizerParams
from perpetual.io import write_jsonl
from perpetual.models import train_tokenizer
from perpetual.records import LETTERS, Mcq
from perpetual.scoring import Encodings, FixedVocabTokenizer, SharedContextHFLM

TEXTS = [
    "The Tellavik Nova weighs 1336 grams and ships from Marrowgate.",
    "Weekly production of the Rookhaven Bramble Watch is capped at 2008.",
    "Context:\nThe Quenridge lamp is sold in Saltcombe and Ambry.\n\n",
] * 20
# Small enough that the longest RAG prompts below (about 90 tokens) are truncated from the left, and the shortest not.
MAX_LENGTH = 48


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, TokenizerParams(vocab_size=300, min_frequency=1))


def _build(family: str, tokenizer, **overrides: Any):
    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
           "bos_token_id": tokenizer.eos_token_id, "tie_word_embeddings": True}  # fmt: skip
    attention = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                 "intermediate_size": 64, "max_position_embeddings": 256}  # fmt: skip
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**attention, **ids, **overrides))
    elif family == "gemma":
        model = GemmaForCausalLM(GemmaConfig(**attention, **ids, **overrides))
    elif family == "gpt2":  # learned absolute positions, exactly MAX_LENGTH of them: no position may go past the window
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=MAX_LENGTH, n_embd=32, n_layer=2, n_head=2,
                                           bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, **overrides))
    elif family == "mistral":
        model = MistralForCausalLM(MistralConfig(**attention, **ids, **overrides))
    elif family == "mamba2":
        model = Mamba2ForCausalLM(Mamba2Config(hidden_size=32, num_hidden_layers=2, head_dim=16, num_heads=4, state_size=8, expand=2,
                                               n_groups=1, chunk_size=16, **ids, **overrides))  # fmt: skip
    else:
        model = MambaForCausalLM(MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=8, expand=2, **ids, **overrides))
    return model.eval()


def _pair(model, tokenizer, batch_size: int, max_length: int | None = MAX_LENGTH) -> tuple[HFLM, SharedContextHFLM]:
    settings = {"pretrained": model, "tokenizer": tokenizer, "batch_size": batch_size, "device": "cpu", "max_length": max_length}
    return HFLM(**settings), SharedContextHFLM(**settings)


# ---- through lm-eval's evaluate, as perpetual/evaluation.py runs it ------------------------------------------------


def _mcqs() -> list[Mcq]:
    return [
        Mcq(mcq_id="m1", chunk_id="c1", question='What completes "The Tellavik Nova weighs ___"?', options=["1170", "2016", "1336", "6586"],
            answer="C", cloze_prefix="The Tellavik Nova weighs ", kind="number"),
        Mcq(mcq_id="m2", chunk_id="c2", question="Where does the Nova ship from?", options=["Marrowgate", "Quenridge", "Saltcombe", "Ambry"],
            answer="A", cloze_prefix="", kind="name"),
        Mcq(mcq_id="m3", chunk_id="c3", question="What is capped at 2008?", options=["Weekly production", "The lamp", "Nova", "The Bramble Watch price"],
            answer="A", cloze_prefix="", kind="name"),
        Mcq(mcq_id="m4", chunk_id="c4", question='What completes "Weekly production of the Rookhaven Bramble Watch is capped at ___"?',
            options=["2008", "1336", "200", "8"], answer="A", cloze_prefix="Weekly production of the Rookhaven Bramble Watch is capped at ",
            kind="number"),
        Mcq(mcq_id="m5", chunk_id="c5", question="Which lamp is sold in Saltcombe?", options=["Quenridge", "Tellavik", "Rookhaven", "Marrowgate"],
            answer="A", cloze_prefix="", kind="name"),
    ]  # fmt: skip


def _items(fmt: str, retrieved: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Rendered items as the evaluate stage writes them (query, choices, gold), RAG context first; built here so the
    test does not depend on the prompt templates."""
    rows = []
    for mcq in _mcqs():
        context = "Context:\n" + "\n\n".join(retrieved[mcq["mcq_id"]]) + "\n\n" if retrieved.get(mcq["mcq_id"]) else ""
        if fmt == "letter":
            listed = "\n".join(f"{letter}: {option}" for letter, option in zip(LETTERS, mcq["options"]))
            query, choices = f"{context}{mcq['question']}\n{listed}\nAnswer:", [f" {letter}" for letter in LETTERS]
        elif mcq["cloze_prefix"]:
            query, choices = f"{context}{mcq['cloze_prefix']}", list(mcq["options"])
        else:
            query, choices = f"{context}Question: {mcq['question']}\nAnswer:", [f" {option}" for option in mcq["options"]]
        rows.append({"mcq_id": mcq["mcq_id"], "query": query, "choices": choices, "gold": LETTERS.index(mcq["answer"])})
    return rows


def _evaluate(lm: HFLM, configs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    from lm_eval.evaluator import evaluate

    output = evaluate(lm=lm, task_dict=task_manager().load(configs), bootstrap_iters=0, log_samples=True, verbosity="ERROR")
    return {name: sorted(samples, key=lambda sample: sample["doc_id"]) for name, samples in output["samples"].items()}


@pytest.mark.parametrize("family", ["llama", "gemma", "mamba2"])
def test_evaluate_matches_hflm(family: str, tokenizer, tmp_path: Path) -> None:
    model = _build(family, tokenizer)
    # RAG contexts of different lengths (none, one sentence, three): different context lengths in every batch, and the
    # longest prompts exceed MAX_LENGTH.
    retrieved = {"m1": [TEXTS[0]], "m2": TEXTS[:3], "m3": [TEXTS[1], TEXTS[0]], "m4": TEXTS[:3]}
    configs = []
    for fmt in ("letter", "cloze"):
        items = _items(fmt, retrieved)
        write_jsonl(tmp_path / f"{fmt}.jsonl", items)
        configs.append(task_config(f"perpetual_scoring_{family}_{fmt}", tmp_path / f"{fmt}.jsonl"))
    lengths = [len(tokenizer(item["query"])["input_ids"]) for item in items]
    assert max(lengths) > MAX_LENGTH + 1 > min(lengths)  # both truncated and untruncated prompts

    reference_lm, shared_lm = _pair(model, tokenizer, batch_size=3)
    assert shared_lm.shared_context_mode() == ("recurrent" if family == "mamba2" else "attention")
    reference, shared = _evaluate(reference_lm, configs), _evaluate(shared_lm, configs)
    assert reference.keys() == shared.keys() == {config["task"] for config in configs}
    for name in reference:
        assert len(reference[name]) == len(shared[name]) == len(_mcqs())
        for expected, actual in zip(reference[name], shared[name]):
            # resps: one [(log-likelihood, is_greedy)] per option
            assert [float(r[0][0]) for r in actual["resps"]] == pytest.approx([float(r[0][0]) for r in expected["resps"]], abs=1e-4)
            assert [bool(r[0][1]) for r in actual["resps"]] == [bool(r[0][1]) for r in expected["resps"]]
            assert (actual["acc"], actual["acc_norm"]) == (expected["acc"], expected["acc_norm"])
        ours, theirs = rows_from_samples(shared[name]), rows_from_samples(reference[name])
        assert [(row["pred"], row["pred_norm"]) for row in ours] == [(row["pred"], row["pred_norm"]) for row in theirs]


# ---- token level: greedy continuations, truncation, duplicates, one-token continuations ---------------------------


def _greedy(model, context: list[int], steps: int) -> list[int]:
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            tokens.append(int(model(torch.tensor([context + tokens])).logits[0, -1].argmax()))
    return tokens


def _requests(model, vocab: int, seed: int = 0) -> list[tuple[tuple[str, str], list[int], list[int]]]:
    """Questions of 1..70 context tokens with five options each: the model's greedy continuation (is_greedy true),
    that continuation with its last token changed, random ones of 1-4 tokens, one exact duplicate."""
    rng = random.Random(seed)
    requests = []
    for question, context_length in enumerate([1, 5, 70, 12, 60, 33, 2, 47]):
        context = [rng.randrange(2, vocab) for _ in range(context_length)]
        greedy = _greedy(model, context[-(MAX_LENGTH + 1 - 3) :], 3)
        options = [greedy, greedy[:-1] + [(greedy[-1] + 1) % vocab], [rng.randrange(2, vocab)],
                   [rng.randrange(2, vocab) for _ in range(rng.randint(2, 4))], greedy]  # fmt: skip
        requests += [((f"q{question}", f"o{option}"), context, continuation) for option, continuation in enumerate(options)]
    rng.shuffle(requests)
    return requests


@pytest.mark.parametrize("family,overrides", [("llama", {}), ("gemma", {}), ("gpt2", {}), ("mamba2", {}), ("mamba2", {"use_bias": True}), ("mamba", {})])
def test_tokens_match_hflm(family: str, overrides: dict[str, Any], tokenizer) -> None:
    model = _build(family, tokenizer, **overrides)
    requests = _requests(model, len(tokenizer))
    assert any(len(context) + len(continuation) > MAX_LENGTH + 1 for _, context, continuation in requests)
    reference_lm, shared_lm = _pair(model, tokenizer, batch_size=3)
    expected = reference_lm._loglikelihood_tokens(requests, disable_tqdm=True)
    actual = shared_lm._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [value for value, _ in actual] == pytest.approx([value for value, _ in expected], abs=1e-4)
    assert [greedy for _, greedy in actual] == [greedy for _, greedy in expected]
    # Every question's first option is the model's greedy continuation (of the truncated window, for long contexts).
    options = [option for (_, option), _, _ in requests]
    assert [greedy for option, (_, greedy) in zip(options, expected) if option == "o0"] == [True] * 8
    assert sum(greedy for _, greedy in expected) == 16  # o0 and its duplicate o4; o1 differs in its last token


def test_lm_head_runs_only_at_continuation_positions(tokenizer) -> None:
    model = _build("llama", tokenizer)
    requests = _requests(model, len(tokenizer))
    rows: list[int] = []
    handle = model.lm_head.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[:-1].numel()))
    try:
        SharedContextHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu", max_length=MAX_LENGTH)._loglikelihood_tokens(requests)
    finally:
        handle.remove()
    # One row per context and one per continuation token after the first: exactly the positions that are scored.
    contexts = {tuple(context[-(MAX_LENGTH + 1 - len(continuation)) :]) for _, context, continuation in requests}
    assert sum(rows) == len(contexts) + sum(len(continuation) - 1 for _, _, continuation in requests)


def test_cache_hook_receives_every_answer(tokenizer) -> None:
    model = _build("gemma", tokenizer)
    requests = _requests(model, len(tokenizer), seed=1)
    lm = SharedContextHFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu", max_length=MAX_LENGTH)
    recorded: dict[tuple[str, str], tuple[float, bool]] = {}

    class Hook:
        def add_partial(self, kind: str, request: tuple[str, str], answer: tuple[float, bool]) -> None:
            assert kind == "loglikelihood"
            recorded[request] = answer

    lm.cache_hook = Hook()  # type: ignore[assignment]
    answers = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    assert len(recorded) == len(requests)
    assert [recorded[request] for request, _, _ in requests] == answers


def test_short_sliding_window_falls_back_to_hflm(tokenizer) -> None:
    """A window shorter than the inputs would need HFLM's full-sequence masks: the parent's method runs."""
    model = _build("mistral", tokenizer, sliding_window=8)
    reference_lm, shared_lm = _pair(model, tokenizer, batch_size=3)
    assert shared_lm.shared_context_mode() is None
    requests = _requests(model, len(tokenizer))
    assert shared_lm._loglikelihood_tokens(requests, disable_tqdm=True) == reference_lm._loglikelihood_tokens(requests, disable_tqdm=True)
    assert _pair(_build("mistral", tokenizer, sliding_window=None), tokenizer, batch_size=3)[1].shared_context_mode() == "attention"


def test_fixed_vocab_tokenizer_lets_transformers_cache_its_stop_string_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """generate(stop_strings=...) rebuilds StopStringCriteria's tables unless the vocabulary comes back in one order."""
    import copy

    from transformers.generation import stopping_criteria

    tokenizer = train_tokenizer(TEXTS, TokenizerParams(vocab_size=300, min_frequency=1))
    fixed = FixedVocabTokenizer(tokenizer)
    assert fixed.get_vocab() is fixed.get_vocab() and fixed.get_vocab() == tokenizer.get_vocab()
    assert fixed("Nova")["input_ids"] == tokenizer("Nova")["input_ids"] and fixed.eos_token == tokenizer.eos_token
    assert copy.deepcopy(fixed).get_vocab() == fixed.get_vocab()  # no __getattr__ recursion while copying
    built = []
    original = stopping_criteria.StopStringCriteria._stop_string_create_embedding_vec
    monkeypatch.setattr(stopping_criteria.StopStringCriteria, "_stop_string_create_embedding_vec",
                        staticmethod(lambda *args: built.append(1) or original(*args)))  # fmt: skip
    monkeypatch.setattr(stopping_criteria, "STOP_STRING_EMBEDDING_CACHE", type(stopping_criteria.STOP_STRING_EMBEDDING_CACHE)())
    for _ in range(3):
        stopping_criteria.StopStringCriteria(fixed, ["###"])
    assert len(built) == 1


def test_tokenizing_up_front_gives_the_parents_token_ids_with_fewer_encode_calls(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contexts with and without trailing spaces, an empty one, one that starts with the BOS/EOS text: the requests
    reaching `_loglikelihood_tokens` are the parent's, token for token, and each context is encoded once."""
    from lm_eval.api.instance import Instance

    reference_lm, shared_lm = _pair(_build("gemma", tokenizer), tokenizer, batch_size=3)
    contexts = ["Context:\nThe Quenridge lamp is sold in ", "Question: how heavy? Answer:", "", "<|endoftext|>The Tellavik Nova "]
    pairs = [(context, option) for context in contexts for option in (" Saltcombe", "Ambry", " 1336 grams", "1336")]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=0) for pair in pairs]
    captured: dict[str, list] = {}
    calls: dict[str, int] = {}
    for name, lm in (("hflm", reference_lm), ("shared", shared_lm)):
        encode = lm.tokenizer.encode

        def counted(*args: Any, name: str = name, encode: Any = encode, **kwargs: Any) -> list[int]:
            calls[name] = calls.get(name, 0) + 1
            return encode(*args, **kwargs)

        monkeypatch.setattr(lm.tokenizer, "encode", counted)
        monkeypatch.setattr(lm, "_loglikelihood_tokens", lambda requests, disable_tqdm=False, name=name: captured.setdefault(name, requests) and [])
        lm.loglikelihood(instances, disable_tqdm=True)
        monkeypatch.undo()
    assert captured["shared"] == captured["hflm"]
    assert calls["hflm"] == 2 * 12 + 4  # context and context + option per pair; the option alone for the empty context
    assert calls["shared"] < 10, calls  # the empty context's options, and one check per batch of the table


def test_encodings_are_shared_by_hflms_with_the_same_tokenizer_only(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluate stage's base and fine-tuned models share a tokenizer and are asked for the same prompts: with one
    `Encodings`, the second encodes no prompt again and gets the parent's ids; a tokenizer that differs shares nothing."""
    from lm_eval.api.instance import Instance

    other = train_tokenizer(TEXTS[:3], TokenizerParams(vocab_size=320, min_frequency=1))
    pairs = [(context, option) for context in ("Context:\nThe Quenridge lamp is sold in ", "Question: how heavy? Answer:") for option in (" Saltcombe", "Ambry")]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=0) for pair in pairs]
    encodings = Encodings()
    batches: dict[str, int] = {}
    captured: dict[str, list] = {}
    for name, vocabulary in (("first", tokenizer), ("second", tokenizer), ("other", other)):
        lm = SharedContextHFLM(pretrained=_build("gemma", vocabulary), tokenizer=vocabulary, batch_size=2, device="cpu", max_length=MAX_LENGTH)
        lm.encodings = encodings
        call = type(vocabulary).__call__

        def counted(self: Any, text: Any, *args: Any, name: str = name, call: Any = call, **kwargs: Any) -> Any:
            batches[name] = batches.get(name, 0) + isinstance(text, list)
            return call(self, text, *args, **kwargs)

        monkeypatch.setattr(type(vocabulary), "__call__", counted)
        monkeypatch.setattr(lm, "_loglikelihood_tokens", lambda requests, disable_tqdm=False, name=name: captured.setdefault(name, requests) and [])
        lm.loglikelihood(instances, disable_tqdm=True)
        monkeypatch.undo()
        reference = HFLM(pretrained=lm.model, tokenizer=vocabulary, batch_size=2, device="cpu", max_length=MAX_LENGTH)
        monkeypatch.setattr(reference, "_loglikelihood_tokens", lambda requests, disable_tqdm=False, name=name: captured.setdefault(f"{name}-hflm", requests) and [])
        reference.loglikelihood(instances, disable_tqdm=True)
        monkeypatch.undo()
        assert captured[name] == captured[f"{name}-hflm"]
    assert batches.get("first", 0) >= 1 and batches.get("second", 0) == 0 and batches.get("other", 0) >= 1, batches
