"""init.copying: the copy lessons' batches, their config, and that a tiny transformer learns to copy from them."""

from __future__ import annotations

import pytest
import torch
from transformers import GemmaConfig, GemmaForCausalLM

import perpetual.copying
from perpetual.config import parse_params
from perpetual.copying import copy_accuracy, copy_batch, teach_copying
from perpetual.errors import UserError
from perpetual.init_params import CopyingParams
from perpetual.testing.params import params_dict


def tiny_gemma(vocab_size: int, layers: int) -> GemmaForCausalLM:
    torch.manual_seed(0)
    config = GemmaConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=32, intermediate_size=128, eos_token_id=0, pad_token_id=1)  # fmt: skip
    return GemmaForCausalLM(config)


def lessons(**changes: float) -> CopyingParams:
    settings = {"steps": 0, "context_length": 20, "spans": 3, "span_length": 5, "batch_size": 8, "learning_rate": 1e-3,
                "vocabulary": 0, "doubling_steps": 0}  # fmt: skip
    return CopyingParams(**{**settings, **changes})


def test_every_span_is_copied_from_its_rows_context_and_only_its_copyable_tokens_are_scored() -> None:
    params = lessons()
    ids, labels = copy_batch(torch.Generator().manual_seed(0), tiny_gemma(50, 1), params, 8, 16)
    span = params.span_length
    assert ids.shape == labels.shape == (8, 16 + params.spans * (1 + span))
    for row_ids, row_labels in zip(ids.tolist(), labels.tolist()):
        context = row_ids[:16]
        assert min(context) >= 2 and max(context) < 50  # no special token inside the context
        assert row_labels[:16] == [-100] * 16
        for index in range(params.spans):
            start = 16 + index * (1 + span)
            assert row_ids[start] == 0 and row_labels[start] == -100  # end of text before each span
            copied = row_ids[start + 1 : start + 1 + span]
            assert any(context[at : at + span] == copied for at in range(16 - span + 1))
            assert row_labels[start + 1] == -100 and row_labels[start + 2 : start + 1 + span] == copied[1:]


def test_a_two_layer_transformer_learns_to_copy_from_a_context_it_never_saw() -> None:
    """Smaller than the default (which needs ~1,300 steps, see params.yaml): induction heads form after ~500 steps
    here (0.73 copy accuracy after 800, 9 s). Scored on contexts twice the longest taught, of fresh random tokens: a
    model that learned a fixed look-back instead of matching content scores ~0 there."""
    model = tiny_gemma(256, 2)
    settings = lessons(steps=800, context_length=16, span_length=4, batch_size=32, learning_rate=3e-3)
    result = teach_copying(model, settings, seed=0, label="test")
    assert result["copy_accuracy_before"] < 0.1
    assert result["copy_accuracy_after"] > 0.5, result
    assert copy_accuracy(model, torch.Generator().manual_seed(7), settings) > 0.5


def test_spans_longer_than_half_the_context_are_refused_naming_the_setting() -> None:
    raw = params_dict({"init": {"copying": {"context_length": 10, "span_length": 8}}})
    with pytest.raises(UserError, match=r"init\.copying.*2 \* span_length"):
        parse_params(raw)


def test_every_tiny_spec_says_whether_it_takes_the_lessons() -> None:
    raw = params_dict()
    del raw["init"]["models"]["gemma"]["copying"]
    with pytest.raises(UserError, match=r"init\.models\.gemma.*copying"):
        parse_params(raw)


def test_lessons_start_from_a_few_distinct_tokens_and_double_them_up_to_the_whole_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_gemma(40, 1)
    ids, _ = copy_batch(torch.Generator().manual_seed(0), model, lessons(), 64, 20, vocabulary=5)
    context = ids[:, :20]
    assert int(context.min()) >= 2 and int(context.max()) <= 6 and len(set(context.flatten().tolist())) == 5
    ids, _ = copy_batch(torch.Generator().manual_seed(0), model, lessons(), 64, 20, vocabulary=1000)  # capped at the model's
    assert int(ids[:, :20].max()) < 40 and len(set(ids[:, :20].flatten().tolist())) > 30

    drawn: list[int] = []
    original = perpetual.copying.copy_batch

    def recording(generator, model, params, batch_size, length, vocabulary=None):  # type: ignore[no-untyped-def]
        ids, labels = original(generator, model, params, batch_size, length, vocabulary)
        drawn.append(int(ids[:, :length].max()))
        return ids, labels

    monkeypatch.setattr(perpetual.copying, "copy_batch", recording)
    teach_copying(model, lessons(steps=15, vocabulary=4, doubling_steps=3), seed=0, label="test")
    before, *steps, after = drawn  # copy accuracy is measured on the whole vocabulary
    # 4 distinct ids (2..5) for three steps, then 8, 16, 32, and the whole vocabulary (ids up to 39).
    assert [max(steps[step : step + 3]) for step in (0, 3, 6, 9, 12)] == [5, 9, 17, 33, 39]
    assert before == after == 39


def test_a_starting_vocabulary_needs_its_doubling_steps() -> None:
    raw = params_dict({"init": {"copying": {"vocabulary": 32, "doubling_steps": 0}}})
    with pytest.raises(UserError, match=r"init\.copying.*doubling_steps"):
        parse_params(raw)


def test_a_model_may_replace_fields_of_the_lessons_and_a_bad_replacement_is_named() -> None:
    raw = params_dict({"init": {"models": {"gemma": {"copying": {"steps": 7, "context_length": 40}}}}})
    params = parse_params(raw)
    own = params.init.copying_for("gemma")
    assert own is not None and (own.steps, own.context_length) == (7, 40)
    assert own.span_length == params.init.copying.span_length  # the rest as init.copying
    raw = params_dict({"init": {"models": {"gemma": {"copying": {"context_length": 10}}}}})
    with pytest.raises(UserError, match=r"init.*models\.gemma\.copying.*2 \* span_length"):
        parse_params(raw)
    raw = params_dict({"init": {"models": {"gemma": {"copying": {"steps": -1}}}}})
    with pytest.raises(UserError, match=r"models\.gemma\.copying\.steps: .*greater than or equal to 0"):
        parse_params(raw)
    raw = params_dict({"init": {"models": {"gemma": {"copying": {"context_lenght": 10}}}}})
    with pytest.raises(UserError, match=r"context_lenght"):
        parse_params(raw)
    assert parse_params(params_dict({"init": {"models": {"gemma": {"copying": False}}}})).init.copying_for("gemma") is None
