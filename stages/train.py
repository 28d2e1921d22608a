"""train@<task>-<model>: knowledge injection into models/base-<model>, saved to models/<task>-<model>/.

Runs as one process (`python -m stages.train`) or many (`accelerate launch --config_file
configs/accelerate/ddp.yaml -m stages.train ...`); only the main process writes outputs.
"""

import shutil
import sys

import datasets

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import write_json
from perpetual.models import load_local, local_config, report_kernels
from perpetual.precision import choose, training_weights
from perpetual.templates import make_template
from perpetual.training import (
    is_main_process,
    loss_curve,
    replay_rows,
    run_key,
    save_trained,
    select_rows,
    train,
    training_examples,
)


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    params.check_sft()  # a misspelt SFTConfig option stops the stage before the model loads
    cell = f"{args.task}-{args.model}"

    settings = params.train.for_task(args.task)
    start = paths.base_model(args.model)
    choice = choose(settings.precision, "train", local_config(start))
    model, tokenizer = load_local(start, training_weights(choice))
    kernels = report_kernels(model)
    rows = list(datasets.load_from_disk(str(paths.dataset(args.task)))["train"])
    template = make_template(settings.template, tokenizer, f"model {args.model!r}")
    examples = training_examples(select_rows(rows, settings, replay_rows(settings), int(settings.sft.seed)), template)

    output_dir = paths.checkpoints(args.task, args.model) / run_key(settings, examples, {**model.config.to_dict(), "precision": choice.name})
    curve = loss_curve(paths.loss_curve(args.task, args.model))
    trainer, summary = train(model, tokenizer, examples, settings, output_dir, template, choice, [curve])
    save_trained(trainer, paths.trained_model(args.task, args.model))
    if is_main_process():
        shutil.rmtree(output_dir, ignore_errors=True)  # the finished model is the out; checkpoints only serve a resume
        write_json(paths.stage_metrics("train", cell), {**summary, "kernels": kernels})
        print(f"train {cell}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
