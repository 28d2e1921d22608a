"""Tokens/s of the train stage's trainer against a plain SFTTrainer, same tiny model and data, and the loss each reaches.

    .venv/bin/python benchmarks/train_throughput.py [--model gemma] [--task products] [--epochs 1] [--threads 0]
    .venv/bin/python benchmarks/train_throughput.py --model smollm2 --template chat --methods full,lora --epochs 0.1

Data: data/datasets/<task>/train when `dvc repro` has built it, else the same rows built here from data/sources
(fetch, chunk, offline teacher, interleave). Model: models/base-<model> or models/init-<model> when present, else
the tiny preset from params.yaml with a tokenizer trained on the rows. Runs:
  * stage:     perpetual.training.build_trainer with params.yaml's `train` section (train.sft: batch_rebalance
               sampling, random steps of per_device_train_batch_size x gradient_accumulation_steps rows in
               length-grouped micro-batches; no activation checkpointing),
  * baseline:  SFTConfig defaults (random batches, no group_by_length, no packing, activation checkpointing
               on), given only what must match: epochs, learning rate and scheduler, rows per optimizer step,
               max length, seed, loss on all tokens, CPU/fp32,
  * baseline, checkpointing off: the same without activation checkpointing, to attribute the gain.
tokens/s counts non-padding tokens (epochs x tokens of the tokenized rows) over the trainer's train_runtime
(wall) and over this process's CPU time (steadier on a shared machine); the final loss is the mean per-token
loss of each trained model over the same rows. Target: stage >= 1.3x the baseline at equal final loss.

GPU throughput of a real-sized model (issue: Gemma-2b from random initialisation; throughput needs no trained
weights, so nothing is downloaded):

    python benchmarks/train_throughput.py --preset gemma-2b [--method full|lora] [--seq-len 2048] [--steps 20]
        [--peak-tflops 989]

builds GemmaForCausalLM from Gemma-2b's published config (2.5B parameters, vocabulary 256,000) in bf16 on the
GPU, trains `--steps` optimizer steps of the train stage's trainer (perpetual.training.build_trainer, params.yaml's
`train` section, precision auto) on synthetic rows of `--seq-len` tokens, and prints tokens/s, model FLOP
utilisation (6 x parameters x tokens/s plus attention, over `--peak-tflops`, the GPU's dense bf16 peak) and peak
GPU memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perpetual import paths  # noqa: E402
from perpetual.assembly import interleave  # noqa: E402
from perpetual.config import Params, load_params  # noqa: E402
from perpetual.models import load_local, make_init  # noqa: E402
from perpetual.precision import Choice  # noqa: E402

FP32 = Choice(False, "fp32: the figures in benchmarks/README.md were measured in it")
from perpetual.records import Flashcard  # noqa: E402
from perpetual.rows import Example, Question, Row, Text, examples, from_record  # noqa: E402
from perpetual.templates import make_template  # noqa: E402
from perpetual.testing.params import with_sft  # noqa: E402
from perpetual.training import build_trainer  # noqa: E402


def training_rows(params: Params, task: str) -> tuple[list[Row], str]:
    folder = REPO / paths.dataset(task)
    if (folder / "dataset_dict.json").exists():
        import datasets

        return [from_record(record) for record in datasets.load_from_disk(str(folder))["train"]], str(folder.relative_to(REPO))
    from perpetual.chunking import chunk_documents
    from perpetual.sources import fetch
    from perpetual.teacher.offline import OfflineTeacher

    documents = fetch(task, params.fetch.source(task), REPO / paths.git_cache()).documents
    chunks, _ = chunk_documents(documents, params.chunk)
    cards = OfflineTeacher(params.pipeline.seed, params.generate.near_duplicate_threshold).generate(chunks, params.generate.flashcards_per_chunk, 0).flashcards
    flashcards = [Flashcard(chunk_id=c.chunk_id, question=c.question, answer=c.answer) for c in cards]
    return list(interleave(chunks, flashcards)), f"built from {params.fetch.source(task).model_dump().get('path')}"


def starting_model(params: Params, model: str, rows: list[Row], scratch: Path) -> tuple[Path, str]:
    for folder in (REPO / paths.base_model(model), REPO / paths.init_model(model)):
        if (folder / "config.json").exists():
            return folder, str(folder.relative_to(REPO))
    texts = [row.text if isinstance(row, Text) else row.instruction + row.answer for row in rows if isinstance(row, Text | Question)]
    built, tokenizer = make_init(params.init.models[model], texts, params.init.tokenizer, params.pipeline.seed, model)
    built.save_pretrained(str(scratch / "model"))
    tokenizer.save_pretrained(str(scratch / "model"))
    return scratch / "model", f"{model} from params.yaml, built here"


def baseline_trainer(model: Any, tokenizer: Any, rows: Sequence[Example], train: Any, output_dir: Path, checkpointing: bool) -> Any:
    import datasets
    from trl import SFTConfig, SFTTrainer

    sft = train.sft
    config = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=sft.num_train_epochs,
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler_type,
        per_device_train_batch_size=sft.per_device_train_batch_size * sft.gradient_accumulation_steps,  # same rows per step
        max_length=sft.max_length,
        seed=sft.seed,
        completion_only_loss=False,  # the stage's loss: all (TRL's default masks prompts of prompt/completion rows)
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        activation_checkpointing=checkpointing,  # SFTConfig's default is on
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


def measure(name: str, trainer: Any, epochs: float, pad_id: int, with_loss: bool = True) -> dict[str, Any]:
    tokens = epochs * sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    cpu_start = time.process_time()
    result = trainer.train()
    cpu = time.process_time() - cpu_start
    runtime = float(result.metrics["train_runtime"])
    loss = mean_token_loss(trainer.model, trainer.train_dataset, pad_id) if with_loss else float("nan")
    print(f"{name:<32} {runtime:7.1f} s {tokens / runtime:8.0f} tokens/s | CPU {cpu:7.1f} s {tokens / cpu:8.0f} tokens/CPU-s"
          f" | final loss {loss:.4f}", flush=True)
    return {"tokens_per_s": tokens / runtime, "tokens_per_cpu_s": tokens / cpu, "loss": loss}


# Gemma-2b (google/gemma-2b-it's config.json): the paper's transformer at its real size.
GEMMA_2B: dict[str, Any] = {"hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18, "num_attention_heads": 8,
            "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192}  # fmt: skip


def gpu_preset(args: argparse.Namespace, params: Params) -> None:
    """Train-stage throughput of a Gemma-2b-sized model from random initialisation, in bf16 on one GPU."""
    from transformers import GemmaConfig, GemmaForCausalLM

    if not torch.cuda.is_available():
        sys.exit("error: --preset gemma-2b measures the GPU path; this machine has no CUDA device")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model: Any = GemmaForCausalLM(GemmaConfig(**GEMMA_2B))
        model = model.to(torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    rows_per_step = params.train.sft.per_device_train_batch_size * params.train.sft.gradient_accumulation_steps
    stage = with_sft(params.train.model_copy(update={"method": args.method, "precision": "bf16", "task_overrides": {}}),
        num_train_epochs=1, max_length=args.seq_len, save_steps=10**6, logging_steps=10**6,
        activation_checkpointing=args.method == "full")  # fmt: skip
    # Synthetic rows of exactly seq_len tokens (ids below any real vocabulary): compute is what is measured.
    from perpetual.init_params import TokenizerParams
    from perpetual.models import train_tokenizer

    tokenizer = train_tokenizer(["perpetual throughput"] * 8, TokenizerParams(vocab_size=300, min_frequency=1))
    words = " ".join(f"w{i % 97}" for i in range(args.seq_len * 2))
    ids = tokenizer(words)["input_ids"][: args.seq_len - 1]
    text = tokenizer.decode(ids)
    rows = [Text(str(i), str(text)) for i in range(rows_per_step * args.steps)]
    template = make_template("alpaca", tokenizer)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model, tokenizer, examples(rows, template), stage, Path(scratch), template, Choice(True, "bf16 on the GPU"))
        torch.cuda.reset_peak_memory_stats()
        result = trainer.train()
    dataset: Any = trainer.train_dataset
    tokens = sum(len(example) for example in dataset["input_ids"])
    tokens_per_s = tokens / float(result.metrics["train_runtime"])
    layers, heads, head_dim = GEMMA_2B["num_hidden_layers"], GEMMA_2B["num_attention_heads"], GEMMA_2B["head_dim"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Forward 2N, backward 4N per token for full training; LoRA skips the weight gradients of the frozen base (2N).
    dense = (6 if args.method == "full" else 4) * parameters + 2 * trainable
    attention = 12 * layers * heads * head_dim * args.seq_len  # causal attention, forward + backward, per token
    flops = (dense + attention) * tokens_per_s
    print(f"gemma-2b ({parameters / 1e9:.2f}B parameters, {args.method}, bf16, seq {args.seq_len}, "
          f"{rows_per_step} rows/step, {args.steps} steps): {tokens_per_s:,.0f} tokens/s, "
          f"MFU {flops / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops:.0f} TFLOP/s, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["gemma-2b"], help="GPU throughput of a real-sized model (random init)")
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--model", default="gemma")
    parser.add_argument("--task", default="products")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--methods", help="compare the train stage's methods instead of baselines, e.g. full,lora")
    parser.add_argument("--template", choices=["alpaca", "chat"], help="train.template for this run (default: params.yaml)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(REPO / "params.yaml")
    if args.preset:
        return gpu_preset(args, params)
    stage = with_sft(params.train.model_copy(update={"template": args.template or params.train.template}),
        num_train_epochs=args.epochs, save_steps=10**6, logging_steps=10**6)  # fmt: skip
    rows, data_label = training_rows(params, args.task)

    with tempfile.TemporaryDirectory() as scratch:
        folder, model_label = starting_model(params, args.model, rows, Path(scratch))
        model, tokenizer = load_local(folder, torch.float32)
        print(f"data: {data_label} ({len(rows)} rows); model: {model_label} ({model.config.model_type}, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); epochs {args.epochs}; "
              f"steps of {stage.sft.per_device_train_batch_size}x{stage.sft.gradient_accumulation_steps} rows; threads {torch.get_num_threads()}")
        runs = {}
        template = make_template(stage.template, tokenizer)
        rendered = examples(rows, template)
        if args.methods:  # e.g. SmolLM2: full fine-tuning vs LoRA, same rows, same trainer settings
            for method in args.methods.split(","):
                model, tokenizer = load_local(folder, torch.float32)
                settings = stage.model_copy(update={"method": method})
                trainer = build_trainer(model, tokenizer, rendered, settings, Path(scratch) / method, template, FP32)
                measure(f"train stage, {method}", trainer, args.epochs, tokenizer.pad_token_id, with_loss=False)
            return
        trainer = build_trainer(model, tokenizer, rendered, stage, Path(scratch) / "stage", template, FP32)
        runs["stage"] = measure("train stage (batch_rebalance)", trainer, args.epochs, tokenizer.pad_token_id)
        for name, checkpointing in (("baseline (SFTConfig defaults)", True), ("baseline, checkpointing off", False)):
            model, tokenizer = load_local(folder, torch.float32)
            trainer = baseline_trainer(model, tokenizer, rendered, stage, Path(scratch) / name, checkpointing)
            runs[name] = measure(name, trainer, args.epochs, tokenizer.pad_token_id)

    stage_run, base, unchecked = runs["stage"], runs["baseline (SFTConfig defaults)"], runs["baseline, checkpointing off"]
    for unit in ("tokens_per_s", "tokens_per_cpu_s"):
        print(f"speed-up ({unit}): {stage_run[unit] / base[unit]:.2f}x vs SFTConfig defaults (target >= 1.3x), "
              f"{stage_run[unit] / unchecked[unit]:.2f}x vs defaults without activation checkpointing")
    print(f"final loss: stage {stage_run['loss']:.4f}, baseline {base['loss']:.4f} ({stage_run['loss'] / base['loss'] - 1:+.1%})")


if __name__ == "__main__":
    main()
