"""The precision rule (perpetual/precision.py): what auto, bf16 and fp32 mean on hardware with and without bf16 units."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from perpetual import precision
from perpetual.errors import UserError
from perpetual.evaluation import make_lm
from perpetual.init_params import TinyGemma, TokenizerParams
from perpetual.models import build_tiny, load_local, train_tokenizer
from perpetual.precision import MIN_BF16_HIDDEN_SIZE, Choice, choose
from perpetual.testing.params import spec as spec_of

SMALL = SimpleNamespace(hidden_size=128)
LARGE = SimpleNamespace(hidden_size=576)  # SmolLM2-135M


@pytest.fixture
def with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_hardware", lambda: "a CPU with AMX-BF16 matrix units")


@pytest.fixture
def without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_hardware", lambda: None)


@pytest.mark.usefixtures("with_bf16")
def test_auto_takes_bf16_for_a_model_large_enough_and_says_why() -> None:
    choice = choose("auto", "train", LARGE)
    assert choice.bf16 and choice.dtype == torch.bfloat16
    assert choice.record() == {"precision": "bf16", "precision_reason": "auto: a CPU with AMX-BF16 matrix units"}
    small = choose("auto", "evaluate", SMALL)
    assert not small.bf16 and f"hidden size 128 < {MIN_BF16_HIDDEN_SIZE}" in small.reason
    assert choose("bf16", "train", SMALL).bf16  # bf16 insists, whatever the size
    assert not choose("fp32", "train", LARGE).bf16


@pytest.mark.usefixtures("without_bf16")
def test_without_bf16_units_auto_is_fp32_and_bf16_is_a_one_line_error() -> None:
    assert choose("auto", "train", LARGE) == Choice(False, "auto: no bf16 matrix unit on this machine")
    with pytest.raises(UserError, match=r"^evaluate.precision is bf16 but this machine has no bf16 matrix unit.*; use auto or fp32$"):
        choose("bf16", "evaluate", LARGE)


def test_training_weights_stay_fp32_on_the_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("the GPU keeps bf16 weights")
    assert precision.training_weights(Choice(True, "bf16")) == torch.float32


def test_hardware_probe_answers_on_this_machine() -> None:
    found = precision.bf16_hardware()
    assert found is None or found.startswith("a ")


def test_bf16_scoring_keeps_the_log_softmax_in_fp32(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(["the kiln fires at 1200 degrees"] * 4, TokenizerParams(vocab_size=300, min_frequency=1))
    spec = TinyGemma(**spec_of("tiny-gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64, copying=False))
    build_tiny(spec, tokenizer, 0).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, tokenizer = load_local(tmp_path, torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    lm = make_lm(model, tokenizer, 2)
    assert lm.softmax_dtype == torch.float32
    requests = [(("", ""), tokenizer("the kiln fires")["input_ids"], tokenizer(f" at {n}")["input_ids"]) for n in (1200, 900, 40)]
    scored = lm._loglikelihood_tokens(requests)
    assert scored == lm._loglikelihood_tokens(requests)  # deterministic: the same floats twice
    model, tokenizer = load_local(tmp_path, torch.float32)
    assert make_lm(model, tokenizer, 2).softmax_dtype is None  # fp32 scoring exactly as before
