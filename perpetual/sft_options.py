"""`train.sft` and `instruct.sft`: TRL's SFTConfig options, passed to it as they are, checked against the installed TRL.

The check imports TRL (seconds), so only the stages that train run it (`Params.check_sft`); loading params.yaml
refuses the fields perpetual sets itself (PERPETUAL_OWNED) without it. Nothing here imports TRL at module level.
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

from pydantic import ConfigDict, TypeAdapter, ValidationError

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
