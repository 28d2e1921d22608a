"""Tokens/s of the train stage's trainer against a plain SFTTrainer, same tiny model and data, and the loss each reaches.

    .venv/bin/python benchmarks/train_throughput.py [--model gemma] [--task products] [--epochs 1] [--threads 0]

Data: data/datasets/<task>/train when `dvc repro` has built it, else the same rows built here from data/sources
(fetch, chunk, offline teacher, interleave). Model: models/start-<model> or models/base-<model> when present, else
the tiny preset from params.yaml with a tokenizer trained on the rows. Runs:
  * stage:     perpetual.training.build_trainer with params.yaml's `train` section (batch_rebalance sampling:
               random steps of batch_size x gradient_accumulation_steps rows in length-grouped micro-batches;
               no activation checkpointing),
  * baseline:  SFTConfig defaults (random batches, no group_by_length, no packing, activation checkpointing
               on), given only what must match: epochs, learning rate and scheduler, rows per optimizer step,
               max length, seed, loss on all tokens, CPU/fp32,
  * baseline, checkpointing off: the same without activation checkpointing, to attribute the gain.
tokens/s counts non-padding tokens (epochs x tokens of the tokenized rows) over the trainer's train_runtime
(wall) and over this process's CPU time (steadier on a shared machine); the final loss is the mean per-token
loss of each trained model over the same rows. Target: stage >= 1.3x the baseline at equal final loss.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.assembly import interleave  # noqa: E402
from perpetual.config import Params, load_params  # noqa: E402
from perpetual.models import load_local, make_base  # noqa: E402
from perpetual.training import build_trainer  # noqa: E402


def training_rows(params: Params, task: str) -> tuple[list[dict[str, Any]], str]:
    folder = REPO / paths.dataset(task)
    if (folder / "dataset_dict.json").exists():
        import datasets

        return list(datasets.load_from_disk(str(folder))["train"]), str(folder.relative_to(REPO))
    from perpetual.chunking import chunk_documents
    from perpetual.sources import fetch
    from perpetual.teacher.offline import OfflineTeacher

    documents = fetch(task, params.fetch.sources[task], REPO / "data/cache/git").documents
    chunks, _ = chunk_documents(documents, params.chunk.chunk_size, params.chunk.chunk_overlap)
    cards = OfflineTeacher(params.pipeline.seed).generate(chunks, params.generate.flashcards_per_chunk, 0).flashcards
    flashcards = [{"chunk_id": c.chunk_id, "question": c.question, "answer": c.answer} for c in cards]
    return interleave(chunks, flashcards), f"built from {params.fetch.sources[task].model_dump().get('path')}"


def starting_model(params: Params, model: str, rows: list[dict[str, Any]], scratch: Path) -> tuple[Path, str]:
    for folder in (REPO / paths.start_model(model), REPO / paths.base_model(model)):
        if (folder / "config.json").exists():
            return folder, str(folder.relative_to(REPO))
    texts = [row["prompt"] + row["completion"] for row in rows]
    built, tokenizer = make_base(params.base.models[model], texts, params.base.tokenizer, params.pipeline.seed)
    built.save_pretrained(str(scratch / "model"))
    tokenizer.save_pretrained(str(scratch / "model"))
    return scratch / "model", f"tiny {model} preset built here"


def baseline_trainer(model: Any, tokenizer: Any, rows: list[dict[str, Any]], train: Any, output_dir: Path, checkpointing: bool) -> Any:
    import datasets
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        per_device_train_batch_size=train.batch_size * train.gradient_accumulation_steps,  # same rows per step
        max_length=train.max_length,
        seed=train.seed,
        completion_only_loss=False,  # the stage's loss: all (TRL's default masks prompts of prompt/completion rows)
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        **({} if checkpointing else {"activation_checkpointing": False}),
    )
    dataset = datasets.Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in rows])
    return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


@torch.no_grad()
def mean_token_loss(model: Any, dataset: Any, pad_id: int) -> float:
    """Mean loss per predicted token over the tokenized rows (one row at a time: no padding in the figure)."""
    model.eval()
    total, count = 0.0, 0
    for ids in dataset["input_ids"]:
        batch = torch.tensor([ids], device=model.device)
        loss = model(input_ids=batch, labels=batch).loss
        total += float(loss) * (len(ids) - 1)
        count += len(ids) - 1
    return total / count


def measure(name: str, trainer: Any, epochs: float, pad_id: int) -> dict[str, Any]:
    tokens = epochs * sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    cpu_start = time.process_time()
    result = trainer.train()
    cpu = time.process_time() - cpu_start
    runtime = float(result.metrics["train_runtime"])
    loss = mean_token_loss(trainer.model, trainer.train_dataset, pad_id)
    print(f"{name:<32} {runtime:7.1f} s {tokens / runtime:8.0f} tokens/s | CPU {cpu:7.1f} s {tokens / cpu:8.0f} tokens/CPU-s"
          f" | final loss {loss:.4f}", flush=True)
    return {"tokens_per_s": tokens / runtime, "tokens_per_cpu_s": tokens / cpu, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma")
    parser.add_argument("--task", default="products")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(REPO / "params.yaml")
    stage = params.train.model_copy(update={"epochs": args.epochs, "save_steps": 10**6, "logging_steps": 10**6})
    rows, data_label = training_rows(params, args.task)

    with tempfile.TemporaryDirectory() as scratch:
        folder, model_label = starting_model(params, args.model, rows, Path(scratch))
        model, tokenizer = load_local(folder)
        print(f"data: {data_label} ({len(rows)} rows); model: {model_label} ({model.config.model_type}, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); epochs {args.epochs}; "
              f"steps of {stage.batch_size}x{stage.gradient_accumulation_steps} rows; threads {torch.get_num_threads()}")
        runs = {}
        trainer = build_trainer(model, tokenizer, rows, stage, Path(scratch) / "stage")
        runs["stage"] = measure("train stage (batch_rebalance)", trainer, args.epochs, tokenizer.pad_token_id)
        for name, checkpointing in (("baseline (SFTConfig defaults)", True), ("baseline, checkpointing off", False)):
            model, tokenizer = load_local(folder)
            trainer = baseline_trainer(model, tokenizer, rows, stage, Path(scratch) / name, checkpointing)
            runs[name] = measure(name, trainer, args.epochs, tokenizer.pad_token_id)

    stage_run, base, unchecked = runs["stage"], runs["baseline (SFTConfig defaults)"], runs["baseline, checkpointing off"]
    for unit in ("tokens_per_s", "tokens_per_cpu_s"):
        print(f"speed-up ({unit}): {stage_run[unit] / base[unit]:.2f}x vs SFTConfig defaults (target >= 1.3x), "
              f"{stage_run[unit] / unchecked[unit]:.2f}x vs defaults without activation checkpointing")
    print(f"final loss: stage {stage_run['loss']:.4f}, baseline {base['loss']:.4f} ({stage_run['loss'] / base['loss'] - 1:+.1%})")


if __name__ == "__main__":
    main()
