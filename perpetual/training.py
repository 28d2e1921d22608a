"""Knowledge injection with TRL's SFTTrainer: full or LoRA, the paper's interleaved mix, resumable."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import datasets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from perpetual.assembly import qna_row
from perpetual.config import TrainParams
from perpetual.errors import UserError
from perpetual.records import content_id


def select_rows(rows: Sequence[dict[str, Any]], params: TrainParams, replay: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Apply `train.mix` and mix in a `train.replay.fraction` of general instruction data."""
    wanted = {"interleaved": {"doc", "qna"}, "docs": {"doc"}, "flashcards": {"qna"}}[params.mix]
    selected = [row for row in rows if row["type"] in wanted]
    fraction = params.replay.fraction
    if fraction > 0:
        if not replay:
            raise UserError(f"train.replay.fraction is {fraction} but {params.replay.path} has no rows")
        count = round(len(selected) * fraction / (1 - fraction))
        rng = random.Random(seed)
        picks = [replay[rng.randrange(len(replay))] for _ in range(count)]
        selected += [
            qna_row("replay", row["instruction"], row["output"], row.get("input", ""), row_type="replay") for row in picks
        ]
    if not selected:
        raise UserError(f"train.mix={params.mix} selects no rows from the training set")
    return selected


def run_key(params: TrainParams, rows: Sequence[dict[str, Any]], base_config: dict[str, Any]) -> str:
    """Checkpoints are only resumed into the run that wrote them: same params, data and starting model."""
    return content_id(params.model_dump_json(), json.dumps(rows, sort_keys=True), json.dumps(base_config, sort_keys=True, default=str), length=12)


class StopOnNonFiniteLoss(TrainerCallback):
    def __init__(self) -> None:
        self.bad_step: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_step = state.global_step
            control.should_training_stop = True


def use_bf16(precision: str) -> bool:
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        raise UserError("train.precision is bf16 but this machine has no bf16-capable GPU; use auto or fp32")
    return precision == "bf16" or (precision == "auto" and supported)


def sft_config(params: TrainParams, output_dir: Path, model: PreTrainedModel) -> SFTConfig:
    packing = params.packing
    if packing and "mamba" in model.config.model_type:
        print("train: packing turned off for Mamba (its scan would mix packed sequences)", file=sys.stderr)
        packing = False
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=params.epochs,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        max_length=params.max_length,
        packing=packing,
        # "wrapped" keeps ordinary attention masks; the default "bfd" switches to padding-free batches.
        packing_strategy="wrapped",
        completion_only_loss=params.loss == "completion",
        gradient_checkpointing=params.gradient_checkpointing,
        bf16=use_bf16(params.precision),
        use_cpu=not torch.cuda.is_available(),
        seed=params.seed,
        data_seed=params.seed,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=1,
        logging_steps=params.logging_steps,
        report_to="none",
        dataloader_num_workers=0,
        group_by_length=params.group_by_length,
    )


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    rows: Sequence[dict[str, Any]],
    params: TrainParams,
    output_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Train and return the (merged, for LoRA) model and a summary for metrics."""
    dataset = datasets.Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in rows])
    peft_config = None
    if params.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=params.lora.r,
            lora_alpha=params.lora.alpha,
            lora_dropout=params.lora.dropout,
            target_modules=params.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    guard = StopOnNonFiniteLoss()
    trainer = SFTTrainer(
        model=model,
        args=sft_config(params, output_dir, model),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[guard, *callbacks],
    )
    last = get_last_checkpoint(str(output_dir)) if output_dir.exists() and params.resume == "auto" else None
    if last:
        print(f"train: resuming from {last}", file=sys.stderr)
    result = trainer.train(resume_from_checkpoint=last)
    if guard.bad_step is not None:
        raise UserError(
            f"training loss became NaN/inf at step {guard.bad_step}; lower train.learning_rate or use precision fp32"
        )
    trained = trainer.model
    if params.method == "lora":
        trained = trained.merge_and_unload()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "train_loss": round(float(result.training_loss), 6),
        "final_logged_loss": round(float(losses[-1]), 6) if losses else None,
        "steps": trainer.state.global_step,
        "rows": len(rows),
        "resumed_from_checkpoint": bool(last),
        "train_runtime_s": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        "tokens_per_s": round(float(result.metrics.get("train_tokens_per_second", 0.0) or 0.0), 1),
    }
    if torch.cuda.is_available():
        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return trained, summary
