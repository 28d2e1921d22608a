"""train@<task>-<model>: knowledge injection into models/base-<model>, saved to models/<task>-<model>/."""

import argparse
import shutil
import sys
from pathlib import Path

import datasets

from perpetual import paths
from perpetual.config import load_params
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json
from perpetual.models import load_local, report_kernels
from perpetual.training import run_key, select_rows, train


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    params = load_params()
    params.require_task(args.task)
    params.require_model(args.model)

    model, tokenizer = load_local(paths.base_model(args.model))
    kernels = report_kernels(model)
    rows = list(datasets.load_from_disk(str(paths.dataset(args.task)))["train"])
    replay_path = Path(params.train.replay.path)
    replay = read_jsonl(replay_path) if params.train.replay.fraction > 0 else []
    rows = select_rows(rows, params.train, replay, params.train.seed)

    output_dir = paths.checkpoints(args.task, args.model) / run_key(params.train, rows, model.config.to_dict())
    trained, summary = train(model, tokenizer, rows, params.train, output_dir)

    with atomic_path(paths.trained_model(args.task, args.model)) as tmp:
        trained.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(output_dir, ignore_errors=True)  # the finished model is the out; checkpoints only serve a resume
    write_json(paths.stage_metrics("train", f"{args.task}-{args.model}"), {**summary, "kernels": kernels})
    print(f"train {args.task}-{args.model}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
