"""`train.sft` and `instruct.sft`: TRL's SFTConfig options, passed to it as they are, checked against the installed TRL.

The check imports TRL (seconds), so only the stages that train run it (`Params.check_sft`); loading params.yaml
refuses the fields perpetual sets itself (PERPETUAL_OWNED) without it. Nothing here imports TRL at module level.
`SftSection` is the sections' params model (perpetual/config.py's `TrainingParams.sft`).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from perpetual.errors import UserError

SFT_CONFIG_DOCS = "https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig"

# SFTConfig fields perpetual sets itself, with why; params.yaml may not set them. perpetual/training.py's sft_config
# gives each of them its value (some the value TRL would choose, written there so that perpetual decides it).
PERPETUAL_OWNED = {
    "output_dir": "checkpoints/<cell>/<run key>, chosen by the stage",
    "resume_from_checkpoint": "<section>.resume decides whether a run continues from its last checkpoint",
    "save_strategy": "checkpoints are written every save_steps, for <section>.resume",
    "save_total_limit": "only the last checkpoint serves a resume (the folder is removed after training)",
    "report_to": "the stages log the loss curve to dvclive themselves",
    "logging_nan_inf_filter": "the NaN/inf guard needs the loss as it is (the filter logs a NaN loss as 0)",
    "include_num_input_tokens_seen": "tokens_per_s in metrics/<stage>/<cell>.json counts non-padding tokens",
    "eos_token": "train.template decides how an answer ends (the chat template's end-of-turn token, or EOS)",
    "chat_template_path": "train.template: chat uses the model's own chat template",
    "dataset_text_field": "the rows are prompt/completion pairs built by perpetual",
    "bf16": "<section>.precision decides (auto: bf16 where the hardware has bf16 matrix units and it pays)",
    "fp16": "<section>.precision decides (auto: bf16 where the hardware has bf16 matrix units and it pays, else fp32)",
    "use_cpu": "the CPU trains when no CUDA device is present",
}

FieldCheck = tuple[TypeAdapter[Any] | None, list[Any] | None, str]


@functools.cache
def _sft_fields() -> tuple[dict[str, FieldCheck], dict[str, str]]:
    """The installed SFTConfig's fields as {name: (a validator of its type, its choices, the type in words)}, and its deprecated fields
    as {name: what its help says} (transformers marks `gradient_checkpointing` a deprecated alias of
    `activation_checkpointing`; TRL redeclares it with a default of its own, so its parents are read too)."""
    from trl import SFTConfig  # seconds to import: only the stages that train get here

    hints = typing.get_type_hints(SFTConfig)
    fields: dict[str, FieldCheck] = {}
    for field in dataclasses.fields(SFTConfig):
        try:
            adapter: TypeAdapter[Any] | None = TypeAdapter(hints[field.name], config=ConfigDict(arbitrary_types_allowed=True))
        except Exception:  # a type pydantic cannot check: SFTConfig checks the value itself
            adapter = None
        choices = field.metadata.get("choices")
        enums = [arg for arg in typing.get_args(hints[field.name]) if isinstance(arg, type) and issubclass(arg, enum.Enum)]
        if choices is None and len(enums) == 1:  # `SchedulerType | str`: the str must be one of the enum's values
            choices = [member.value for member in enums[0]]
        wanted = getattr(hints[field.name], "__name__", None) or str(hints[field.name]).replace("typing.", "")
        fields[field.name] = (adapter, list(choices) if choices is not None else None, wanted)
    deprecated = {
        field.name: " ".join(field.metadata.get("help", "").split())
        for parent in reversed(SFTConfig.__mro__)
        if dataclasses.is_dataclass(parent)
        for field in dataclasses.fields(parent)
        if field.metadata.get("help", "").lstrip().lower().startswith("deprecated")
    }
    return fields, deprecated


def check_sft(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`options` (one sft section, `where` names it) checked against the installed TRL's SFTConfig: each key must be
    one of its fields and not a deprecated one, each value must fit the field's type and choices. Returns the values
    as the field's type reads them (YAML 1.1 reads 1e-3 as a string; it becomes 0.001); a problem is a one-line
    UserError naming the key."""
    fields, deprecated = _sft_fields()
    checked: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{where}.{key}"
        if key in deprecated:
            alias = re.search(r"alias of `(\w+)`", deprecated[key])
            instead = f"; write '{where}.{alias.group(1)}' instead" if alias else ""
            raise UserError(f"params.yaml: '{name}' is deprecated in the installed transformers/TRL ({deprecated[key]}){instead}")
        if key not in fields:
            guess = next(iter(difflib.get_close_matches(key, list(fields), n=1)), None)
            hint = f"did you mean '{where}.{guess}'?" if guess else f"see the options at {SFT_CONFIG_DOCS}"
            raise UserError(f"params.yaml: unknown key '{name}', not an option of TRL's SFTConfig ({hint})")
        adapter, choices, wanted = fields[key]
        if adapter is not None:
            try:
                value = adapter.validate_python(value)
            except ValidationError as error:
                shown = repr(options[key])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                message = error.errors()[0]["msg"]
                raise UserError(f"params.yaml: '{name}'={shown} is invalid: {message} (SFTConfig's type: {wanted})") from None
        if choices is not None and isinstance(value, str) and value not in choices:
            raise UserError(f"params.yaml: '{name}'={value!r} is invalid: SFTConfig allows {choices}")
        checked[key] = value
    return checked


# Names, types and choices are checked against the installed TRL by `check_sft` (above), which the
# stages that train call first: importing TRL takes seconds, and every stage loads params.yaml. The fields perpetual
# sets itself (PERPETUAL_OWNED) are refused here, at load. The declared fields' types are SFTConfig's.
class SftSection(BaseModel):
    """Passed to [`SFTConfig`](https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig) as they are: any of its
    fields, or of the `TrainingArguments` it inherits (`optim`, `max_grad_norm`, `lr_scheduler_kwargs`, `torch_compile`,
    …), may be added. The stages that train check each against the installed TRL before loading a model: an unknown
    option is one line with the name it probably meant.

    The keys below must be written, because TRL's defaults would change results: they turn activation checkpointing on,
    completion-only loss on for prompt/completion rows, and packing into padding-free batches. Why each is set as it is:
    [training.md](training.md#trainer-options-trainsft-and-instructsft).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    num_train_epochs: Any = Field(
        description="passes over the training set (the paper: 3, on a pretrained 2.8B model; a tiny model from scratch needs more)"
    )
    learning_rate: Any = Field(description="the peak learning rate (the paper: 2e-4)")
    lr_scheduler_type: Any = Field(description="the learning-rate schedule")
    warmup_steps: Any = Field(description="warm-up steps; below 1, a fraction of the steps (transformers 5 folded `warmup_ratio` into it)")
    weight_decay: Any = Field(description="the optimizer's weight decay")
    max_length: Any = Field(description="tokens per row at most; longer rows are truncated")
    per_device_train_batch_size: Any = Field(
        description="rows per micro-batch; an optimizer step takes it × `gradient_accumulation_steps` × processes"
    )
    gradient_accumulation_steps: Any = Field(description="micro-batches per optimizer step")
    train_sampling_strategy: Any = Field(
        description="`batch_rebalance`: each step's rows are a random sample, run as micro-batches of similar length (less padding, "
        "the same gradient; 1.3–1.5x on CPU). `group_by_length` is faster but costs final loss; `random` is plain shuffling"
    )
    completion_only_loss: Any = Field(description="false: the loss on every token (the paper's); true: on the answers only")
    packing: Any = Field(description="pack rows into full-length sequences; never for Mamba (its scan would mix packed sequences)")
    packing_strategy: Any = Field(description="`wrapped` keeps ordinary attention masks (TRL's `bfd` makes padding-free batches)")
    activation_checkpointing: Any = Field(
        description="transformers' name for gradient checkpointing: less memory, about 30% slower (TRL defaults it on); true for a "
        "large model on a small GPU. `gradient_checkpointing`, its deprecated alias, is refused"
    )
    save_steps: Any = Field(description="a checkpoint every N optimizer steps: what a resume continues from")
    logging_steps: Any = Field(description="a loss point every N optimizer steps in the stage's dvclive folder (`dvc plots show`)")
    seed: Any = Field(description="the trainer's seed")
    data_seed: Any = Field(description="the seed of the order of the rows")
    dataloader_num_workers: Any = Field(description="data-loading processes (0: the training process loads the rows)")
    ddp_find_unused_parameters: Any = Field(
        description="false: every parameter gets a gradient each step, so the search for unused ones only costs time"
    )

    @model_validator(mode="before")
    @classmethod
    def refuse_perpetual_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in PERPETUAL_OWNED:
                    raise PydanticCustomError("perpetual_owned", "{reason}", {"key": key, "reason": PERPETUAL_OWNED[key]})
        return data
