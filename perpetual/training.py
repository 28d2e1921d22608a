"""Training with TRL's SFTTrainer: instruction tuning (instruct@<model>) and knowledge injection (train@<task>-<model>).

One flow for both (`fine_tune`): full or LoRA (PEFT, merged before saving), loss on
everything or on completions only, bf16 where it pays (perpetual/precision.py), resumable from checkpoints, one process or many
(`accelerate launch`: only the main process writes outputs), loss curves through dvclive.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from perpetual.config import TrainingParams
from perpetual.errors import UserError
from perpetual.io import atomic_path
from perpetual.models import load_local, local_config, report_kernels
from perpetual.precision import Choice, choose, training_weights
from perpetual.records import content_id, model_fingerprint
from perpetual.rows import Example, Row, examples
from perpetual.sft_options import PERPETUAL_OWNED, check_sft
from perpetual.templates import Template, TemplateName, make_template


def run_key(params: TrainingParams, rows: Sequence[Mapping[str, Any]], base_config: dict[str, Any]) -> str:
    """Checkpoints are only resumed into the run that wrote them: same params, data and starting model."""
    return content_id(params.model_dump_json(), json.dumps(rows, sort_keys=True), json.dumps(base_config, sort_keys=True, default=str), length=12)


# ---------------------------------------------------------------- callbacks
def is_main_process() -> bool:
    # `accelerate launch` / torchrun set RANK; a plain `python -m stages.train` is the only process.
    return int(os.environ.get("RANK", "0")) == 0


class StopOnNonFiniteLoss(TrainerCallback):
    def __init__(self) -> None:
        self.bad_step: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = [(logs or {}).get(key) for key in ("loss", "grad_norm")]
        if any(value is not None and not math.isfinite(value) for value in values):
            self.bad_step = state.global_step
            control.should_training_stop = True


class TokensThisRun(TrainerCallback):
    """Non-padding tokens trained in this call (a resumed run starts from the checkpoint's count)."""

    def __init__(self) -> None:
        self.start = 0
        self.tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = state.num_input_tokens_seen

    def on_train_end(self, args, state, control, **kwargs):
        self.tokens = state.num_input_tokens_seen - self.start


class ValidationLoss(TrainerCallback):
    """The validation flashcards' answer loss per token after every epoch (assemble.validation_share): what learning
    rate and epochs are chosen on, never the evaluation MCQs. A forward pass per row, no gradient: the set is small."""

    def __init__(self, tokenizer: Any, rendered: Sequence[Example]) -> None:
        def encode(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        self.pairs = [(encode(row["prompt"]), encode(row["completion"])) for row in rendered]
        self.losses: list[float] = []

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.losses.append(answer_loss(model, self.pairs))


@torch.no_grad()
def answer_loss(model: Any, pairs: Sequence[tuple[list[int], list[int]]]) -> float:
    """Mean cross-entropy per answer token, each answer after its prompt."""
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for prompt, answer in pairs:
        ids = torch.tensor([prompt + answer], device=device)
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        total += float(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :], reduction="sum"))
        count += len(answer)
    model.train(training)
    return round(total / max(count, 1), 4)


def loss_curve(folder: Path) -> TrainerCallback:
    """transformers' DVCLiveCallback (dvclive's HF integration) writing the training loss curve to `folder`.

    Only the main process opens a Live, and the callback logs on the main process only. The x axis is the
    optimizer step; a resumed run first redraws the points logged before its checkpoint (dvc repro removed them).
    """
    from transformers.integrations import DVCLiveCallback

    from dvclive import Live

    class LossCurve(DVCLiveCallback):
        step_offset = 0  # the steps of the phases trained before this one (`fine_tune_phases`)

        def setup(self, args, state, model):
            # No args.to_dict() dump: params.yaml and dvc.lock record the run, and the dump holds machine paths.
            self._initialized = True

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            for entry in state.log_history:  # empty unless resuming
                if "loss" in entry:
                    self.point(args, state, control, entry["step"], entry["loss"])

        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if "loss" in (logs or {}):  # the end-of-run summary goes to metrics/<stage>/<cell>.json instead
                self.point(args, state, control, state.global_step, logs["loss"])

        def point(self, args, state, control, step: int, loss: float) -> None:
            if self.live is not None:
                self.live.step = self.step_offset + step
            super().on_log(args, state, control, logs={"loss": loss})

    class StageLive(Live):
        def _init_dvc(self) -> None:
            # No repository probing: dvc.yaml declares the plots and no experiment is saved. dvclive 3.49's probe
            # also crashes in a git repository without commits (scmrepo "Empty git repo": `git init && dvc repro`).
            self._dvc_file = ""

    # dvcyaml=None: dvc.yaml declares these plots itself; save_dvc_exp=False: a stage is not an experiment.
    live = None
    if is_main_process():
        live = StageLive(dir=str(folder), save_dvc_exp=False, dvcyaml=None)
        Path(live.plots_dir, "metrics").mkdir(parents=True, exist_ok=True)  # dvc.yaml's plots out, even before a log
    return LossCurve(live=live)


# ---------------------------------------------------------------- trainer
def sft_config(params: TrainingParams, output_dir: Path, model: PreTrainedModel, template: Template, choice: Choice) -> SFTConfig:
    """TRL's SFTConfig: the section's `sft` options under their own names (checked, no mapping), and what perpetual owns."""
    where = f"{params.section}.sft"
    options = check_sft(params.sft.model_dump(), where)
    if options.get("packing") and "mamba" in model.config.model_type:
        print(f"{params.section}: packing turned off for Mamba (its scan would mix packed sequences)", file=sys.stderr)
        options["packing"] = False
    # Every field of sft_options.PERPETUAL_OWNED, which says why each is not a params.yaml setting.
    owned: dict[str, Any] = {
        "output_dir": str(output_dir),
        "save_strategy": "steps",
        "save_total_limit": 1,
        "report_to": "none",  # the stages add dvclive themselves, with their own folder
        "logging_nan_inf_filter": False,  # the default filter logs a NaN loss as 0, which hides it from the guard
        "include_num_input_tokens_seen": "non_padding",
        # chat: rows end with the template's end-of-turn token, which TRL then treats as EOS (appended to raw text,
        # not appended again after an answer); alpaca: the tokenizer's own EOS.
        "eos_token": template.end_of_answer,
        "bf16": choice.bf16,  # on the CPU: bf16 autocast over fp32 master weights (perpetual/precision.py)
        "fp16": False,
        "use_cpu": not torch.cuda.is_available(),
        "resume_from_checkpoint": None,  # train() passes the checkpoint to trainer.train itself
        "chat_template_path": None,  # the rows are rendered by perpetual/templates.py
        "dataset_text_field": "text",  # TRL's default, unused: the rows are prompt/completion pairs
    }
    if owned.keys() != PERPETUAL_OWNED.keys():
        raise AssertionError(f"sft_config sets {sorted(owned)}, sft_options.PERPETUAL_OWNED names {sorted(PERPETUAL_OWNED)}")
    try:
        return SFTConfig(**options, **owned)
    except ValueError as error:  # SFTConfig's own checks of values that fit their types (e.g. an unknown scheduler)
        raise UserError(f"params.yaml: {where}: {str(error).splitlines()[0]}") from None


# PEFT refuses LoRA on these modules of Mamba-family models (peft.tuners.tuners_utils._check_lora_target_modules_mamba).
MAMBA_MODEL_TYPES = {"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"}
MAMBA_LORA_INCOMPATIBLE = {"out_proj", "conv1d"}


def lora_capable_modules(model: PreTrainedModel) -> list[str]:
    """Module names LoRA can wrap in this model: its linear and conv1d layers but the output head, less those PEFT
    refuses for the architecture."""
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)) and module is not head
    }
    if model.config.model_type in MAMBA_MODEL_TYPES:
        names -= MAMBA_LORA_INCOMPATIBLE
    return sorted(names)


def lora_target_modules(model: PreTrainedModel, requested: str | list[str]) -> list[str]:
    """`auto`: every module LoRA can wrap here; an explicit list is checked against them, one line per mistake."""
    usable = lora_capable_modules(model)
    if requested == "auto":
        return usable
    model_type = model.config.model_type
    for name in requested:
        if name in usable:
            continue
        why = (
            f"PEFT refuses LoRA on {name!r} for {model_type} models"
            if model_type in MAMBA_MODEL_TYPES and name in MAMBA_LORA_INCOMPATIBLE
            else f"{model_type} has no linear module named {name!r}"
        )
        raise UserError(f"train.lora.target_modules: {why}; usable modules: {usable} (or target_modules: auto)")
    return list(requested)


def lora_config(params: TrainingParams, model: PreTrainedModel) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=params.lora.r,
        lora_alpha=params.lora.alpha,
        lora_dropout=params.lora.dropout,
        target_modules=lora_target_modules(model, params.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    params: TrainingParams,
    output_dir: Path,
    template: Template,
    choice: Choice,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    dataset = datasets.Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in examples])
    try:
        trainer = SFTTrainer(
            model=model,
            args=sft_config(params, output_dir, model, template, choice),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(params, model) if params.method == "lora" else None,
            callbacks=list(callbacks),
        )
    except ValueError as error:
        if params.method != "lora" or "PEFT" not in str(error) and "target module" not in str(error).lower():
            raise
        # PEFT's own refusal of a module the check above could not foresee: one line, with what is usable.
        raise UserError(
            f"train.lora.target_modules: {str(error).splitlines()[0][:200]}; usable modules: {lora_capable_modules(model)}"
        ) from None
    if params.method == "lora" and trainer.is_fsdp_enabled:
        raise UserError(
            "train.method lora is not supported under FSDP here; launch with configs/accelerate/ddp.yaml "
            "(the base model is frozen, so each GPU holds it) or use method: full"
        )
    return trainer


def last_checkpoint(output_dir: Path, resume: str) -> str | None:
    return get_last_checkpoint(str(output_dir)) if resume == "auto" and output_dir.is_dir() else None


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    params: TrainingParams,
    output_dir: Path,
    template: Template,
    choice: Choice,
    callbacks: Sequence[TrainerCallback] = (),
) -> tuple[SFTTrainer, dict[str, Any]]:
    """Train on rendered examples in `choice`'s precision (resuming from the last checkpoint in `output_dir`); return
    the trainer and a summary for metrics."""
    guard, tokens = StopOnNonFiniteLoss(), TokensThisRun()
    trainer = build_trainer(model, tokenizer, examples, params, output_dir, template, choice, [guard, tokens, *callbacks])
    last = last_checkpoint(output_dir, params.resume)
    if last:
        print(f"train: resuming from {last}", file=sys.stderr)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(resume_from_checkpoint=last)
    if guard.bad_step is not None:
        raise UserError(
            f"training loss became NaN/inf at step {guard.bad_step}; lower the learning_rate or use precision fp32"
        )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    runtime = float(result.metrics.get("train_runtime", 0.0))
    summary: dict[str, Any] = {
        "train_loss": round(float(result.training_loss), 6),
        "final_logged_loss": round(float(losses[-1]), 6) if losses else None,
        "steps": trainer.state.global_step,
        "rows": len(examples),
        "template": template.name,
        "resumed_from_checkpoint": bool(last),
        "train_runtime_s": round(runtime, 2),
        "tokens": int(trainer.state.num_input_tokens_seen),  # non-padding tokens trained, a resumed run's included
        "tokens_per_s": round(tokens.tokens / runtime, 1) if runtime > 0 else None,
        "processes": trainer.args.world_size,
        **choice.record(),
    }
    if params.method == "lora":
        peft_model: Any = trainer.model  # a PeftModel; the trainer's annotation does not say so
        summary["lora_target_modules"] = sorted(peft_model.peft_config["default"].target_modules)
    if torch.cuda.is_available():
        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return trainer, summary


def save_trained(trainer: SFTTrainer, target: Path) -> None:
    """Write the trained model (LoRA merged into its base) and tokenizer to `target`, atomically.

    Every process must call this: under FSDP, saving gathers the shards from all of them; only the main process
    writes.
    """
    main = trainer.is_world_process_zero()
    model: Any = trainer.model
    if hasattr(model, "merge_and_unload"):  # a PEFT model: save plain weights that load without peft
        merged = model.merge_and_unload()
        if main:
            tokenizer: Any = trainer.processing_class
            with atomic_path(target) as tmp:
                merged.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))
        return
    if not main:
        with tempfile.TemporaryDirectory() as scratch:
            trainer.save_model(scratch)
        return
    with atomic_path(target) as tmp:
        trainer.save_model(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # the run's settings are in params.yaml and dvc.lock


@dataclass(frozen=True)
class Run:
    """What every training a stage starts shares: its section's params, the template rows are rendered in, the folder
    of resumable checkpoints, the model's name for messages, extra callbacks, and validation rows (evaluated after every
    epoch, never trained on)."""

    params: TrainingParams
    template_name: TemplateName
    checkpoints: Path
    label: str
    callbacks: Sequence[TrainerCallback] = ()
    validation: Sequence[Row] = ()


def fine_tune(start: Path, target: Path, rows: Sequence[Row], run: Run) -> dict[str, Any]:
    """The flow instruct@ and train@ share: the model in `start` loaded for training in the precision its section
    chooses, `rows` rendered in its template, a run resumable from the checkpoints of the same run (same params, data,
    model and precision), the result saved to `target`. Returns the summary for metrics."""
    params = run.params
    choice = choose(params.precision, params.section, local_config(start))
    model, tokenizer = load_local(start, training_weights(choice))
    kernels = report_kernels(model)
    template = make_template(run.template_name, tokenizer, run.label)
    rendered = examples(rows, template)
    output_dir = run.checkpoints / run_key(params, rendered, {**model.config.to_dict(), "precision": choice.name})
    validating = [ValidationLoss(tokenizer, examples(run.validation, template))] if run.validation else []
    trainer, summary = train(model, tokenizer, rendered, params, output_dir, template, choice, [*run.callbacks, *validating])
    if validating:
        summary["validation_loss"] = validating[0].losses  # after each epoch (of this run: a resumed one, after its checkpoint)
    save_trained(trainer, target)
    if is_main_process():
        shutil.rmtree(output_dir, ignore_errors=True)  # the finished model is the out; checkpoints only serve a resume
    return {**summary, "kernels": kernels}


def epochs_for_budget(start: Path, phases: Sequence[Sequence[Row]], template_name: TemplateName, budget: int) -> float:
    """The (fractional) epochs that train about `budget` tokens: the budget over the tokens of one pass over every
    phase's rows, rendered in the template and counted with the start model's tokenizer (prompt and completion, as
    the trainer's `num_input_tokens_seen` counts them; metrics/train records what was trained)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(start))
    template = make_template(template_name, tokenizer, str(start))
    rendered = [row for phase in phases for row in examples(phase, template)]
    one_pass = sum(len(tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]) for row in rendered)
    return round(budget / max(one_pass, 1), 4)


PHASE_TOTALS = ("steps", "rows", "train_runtime_s", "tokens")


def fine_tune_phases(start: Path, target: Path, phases: Sequence[Sequence[Row]], run: Run) -> dict[str, Any]:
    """A recipe's phases trained one after the other (perpetual/recipes.py): each phase from the model the one
    before saved, its rows shuffled by the trainer within the phase only. A finished phase's model stays under
    `checkpoints` until the last phase is saved to `target`, so a rerun after a crash resumes at the phase it was in.
    Returns the last phase's summary with the totals over all phases (steps, rows, runtime, tokens) and each phase's."""
    done: list[dict[str, Any]] = []
    current = start
    for number, rows in enumerate(phases, 1):
        last = number == len(phases)
        out = target if last else run.checkpoints / f"phase-{number}"
        key = content_id(model_fingerprint(current), run_key(run.params, [dataclasses.asdict(row) for row in rows], {"phase": number}))
        marker = out / "phase.json"
        if not last and marker.exists() and json.loads(marker.read_text())["key"] == key:
            print(f"{run.params.section}: phase {number} finished before, resuming after it", file=sys.stderr)
            summary = json.loads(marker.read_text())["summary"]
        else:
            summary = fine_tune(current, out, rows, run)
            if not last and is_main_process():
                marker.write_text(json.dumps({"key": key, "summary": summary}))
        done.append(summary)
        for callback in run.callbacks:
            if hasattr(callback, "step_offset"):
                callback.step_offset += summary["steps"]
        current = out
    if is_main_process():
        for number in range(1, len(phases)):
            shutil.rmtree(run.checkpoints / f"phase-{number}", ignore_errors=True)
    totals = {name: round(sum(summary[name] for summary in done), 2) for name in PHASE_TOTALS}
    per_phase = [{name: summary[name] for name in ("rows", "steps", "train_loss", "tokens", "validation_loss") if name in summary} for summary in done]
    validation_loss = [loss for summary in done for loss in summary.get("validation_loss", [])]
    return {**done[-1], **totals, "phases": per_phase, **({"validation_loss": validation_loss} if validation_loss else {})}
