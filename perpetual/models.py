"""Base models: tiny ones built from a config with a BPE tokenizer trained on the corpus, or any HF causal LM."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Mamba2Config,
    Mamba2ForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from perpetual.config import ModelSpec, PretrainedModel, TinyGemma, TinyMamba2, TokenizerParams
from perpetual.errors import UserError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: Iterable[str], params: TokenizerParams) -> PreTrainedTokenizerFast:
    """Byte-level BPE: every string round-trips, so no text in the corpus is ever unknown to the model."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)


def build_tiny(spec: TinyMamba2 | TinyGemma, tokenizer: PreTrainedTokenizerFast, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    ids = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
    }
    if isinstance(spec, TinyMamba2):
        if (spec.hidden_size * spec.expand) % spec.head_dim:
            raise UserError("base.models.*: hidden_size * expand must be a multiple of head_dim for tiny-mamba2")
        config = Mamba2Config(
            hidden_size=spec.hidden_size,
            num_hidden_layers=spec.num_hidden_layers,
            head_dim=spec.head_dim,
            num_heads=spec.hidden_size * spec.expand // spec.head_dim,
            state_size=spec.state_size,
            expand=spec.expand,
            n_groups=spec.n_groups,
            chunk_size=spec.chunk_size,
            **ids,
        )
        return Mamba2ForCausalLM(config)
    common = {
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": spec.max_position_embeddings,
        **ids,
    }
    if spec.kind == "tiny-gemma":
        return GemmaForCausalLM(GemmaConfig(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


def report_kernels(model: PreTrainedModel) -> str:
    """Say which Mamba path runs: the CUDA kernels (mamba-ssm, causal-conv1d) or transformers' PyTorch fallback."""
    if "mamba" not in model.config.model_type:
        return "not a Mamba model"
    found = [name for name in ("mamba_ssm", "causal_conv1d") if importlib.util.find_spec(name) is not None]
    if len(found) == 2 and torch.cuda.is_available():
        message = "Mamba: using the mamba-ssm and causal-conv1d CUDA kernels"
    else:
        message = (
            "Mamba: kernels not in use (install the `gpu` extra on a CUDA machine for them); "
            "running transformers' PyTorch reference path"
        )
    print(message, file=sys.stderr)
    return message


def best_dtype() -> torch.dtype:
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_pretrained(spec: PretrainedModel) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            spec.name_or_path, revision=spec.revision, dtype=best_dtype(), trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load model {spec.name_or_path!r} ({type(error).__name__}); without network, download it elsewhere "
            f"(`hf download {spec.name_or_path} --local-dir models/hub/NAME`) and set base.models.<name>.name_or_path "
            "to that folder"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_local(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a model folder this pipeline wrote (base-* or a fine-tuned one)."""
    if not (folder / "config.json").exists():
        raise UserError(f"no model in {folder}; run `dvc repro` for the stage that writes it")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=best_dtype())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def describe(model: PreTrainedModel) -> dict[str, object]:
    return {
        "model_type": model.config.model_type,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


def make_base(spec: ModelSpec, corpus: Iterable[str], tokenizer_params: TokenizerParams, seed: int) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    if isinstance(spec, PretrainedModel):
        return load_pretrained(spec)
    tokenizer = train_tokenizer(corpus, tokenizer_params)
    return build_tiny(spec, tokenizer, seed), tokenizer
