"""The number format a stage runs a model in: one rule for train, instruct and evaluate (`<section>.precision`).

`auto` is bf16 where the hardware has bf16 matrix units (a CUDA GPU with bf16; a CPU with AMX-BF16 or AVX512-BF16)
*and* the model is large enough for matrix products to dominate its time; fp32 elsewhere. `bf16` insists (a one-line
error on hardware without it), `fp32` forces fp32.

Why the size rule (benchmarks/README.md, measured on 2 cores of an AMD EPYC with AVX512-BF16): SmolLM2-135M (hidden
576) trains 1.85x faster with bf16 autocast and scores 1.6x faster with bf16 weights, while the tiny default models
(hidden 128) gain only 1.2x in training: their time goes to overhead, not to matrix products, and fp32 keeps the
default's committed results as they are.

Training keeps fp32 master weights on the CPU and runs the forward and backward under bf16 autocast (SFTConfig's
`bf16`); pure bf16 weights trained slower (108 vs 157 tokens/s, one thread on an AMX CPU) and lose small updates.
Scoring loads the weights in bf16 and takes the log-softmax in fp32 (perpetual/evaluation.py `make_lm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perpetual.config import Precision
from perpetual.errors import UserError

# auto keeps fp32 below this hidden size: the tiny default (128) gains 1.2x from bf16, SmolLM2 (576) 1.6-1.85x.
MIN_BF16_HIDDEN_SIZE = 512


@dataclass(frozen=True)
class Choice:
    """What a stage runs in, and why (recorded in its metrics)."""

    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.bf16 else torch.float32

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "precision_reason": self.reason}


def bf16_hardware() -> str | None:
    """The bf16 matrix unit this machine runs models on, in words, or None."""
    if torch.cuda.is_available():
        return "a CUDA GPU with bf16" if torch.cuda.is_bf16_supported() else None
    # torch's own CPU probes (private, so looked up defensively): the same flags /proc/cpuinfo shows as amx_bf16 and
    # avx512_bf16, on any OS.
    probes = {"_is_amx_tile_supported": "a CPU with AMX-BF16 matrix units", "_is_avx512_bf16_supported": "a CPU with AVX512-BF16"}
    for probe, words in probes.items():
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return words
    return None


def hidden_size(config: object) -> int | None:
    text_config = getattr(config, "get_text_config", lambda: config)()
    size = getattr(text_config, "hidden_size", None)
    return size if isinstance(size, int) else None


def choose(requested: Precision, section: str, model_config: object) -> Choice:
    """`<section>.precision` for a model with this config on this machine."""
    hardware = bf16_hardware()
    if requested == "fp32":
        return Choice(False, f"{section}.precision is fp32")
    if requested == "bf16":
        if hardware is None:
            raise UserError(
                f"{section}.precision is bf16 but this machine has no bf16 matrix unit (a CUDA GPU with bf16, or a CPU "
                "with AMX-BF16 or AVX512-BF16); use auto or fp32"
            )
        return Choice(True, f"{section}.precision is bf16 ({hardware})")
    if hardware is None:
        return Choice(False, "auto: no bf16 matrix unit on this machine")
    size = hidden_size(model_config)
    if size is not None and size < MIN_BF16_HIDDEN_SIZE:
        return Choice(False, f"auto: hidden size {size} < {MIN_BF16_HIDDEN_SIZE}, too small for bf16 to pay ({hardware})")
    return Choice(True, f"auto: {hardware}")


def training_weights(choice: Choice) -> torch.dtype:
    """The dtype a trained model's weights load in: fp32 master weights under bf16 autocast on the CPU; on a GPU, bf16
    weights as they always were there (a multi-billion-parameter model and its optimizer state fit in half the
    memory)."""
    return torch.bfloat16 if choice.bf16 and torch.cuda.is_available() else torch.float32
