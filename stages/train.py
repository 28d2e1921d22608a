"""train@<task>-<model>: knowledge injection into models/base-<model>, saved to models/<task>-<model>/.

Runs as one process (`python -m stages.train`) or many (`accelerate launch --config_file
configs/accelerate/ddp.yaml -m stages.train ...`); only the main process writes outputs.
"""

import sys

import datasets

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import write_json
from perpetual.rows import from_record, replay_rows, select_rows
from perpetual.training import fine_tune, is_main_process, loss_curve


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    params.check_sft()  # a misspelt SFTConfig option stops the stage before the model loads
    cell = f"{args.task}-{args.model}"
    settings = params.train.for_task(args.task)
    rows = [from_record(record) for record in datasets.load_from_disk(str(paths.dataset(args.task)))["train"]]
    selected = select_rows(rows, settings, replay_rows(settings), int(settings.sft.seed))
    curve = loss_curve(paths.loss_curve(args.task, args.model))
    summary = fine_tune(paths.base_model(args.model), paths.trained_model(args.task, args.model), selected, settings,
                        settings.template, paths.checkpoints(args.task, args.model), f"model {args.model!r}", [curve])  # fmt: skip
    if is_main_process():
        write_json(paths.stage_metrics("train", cell), summary)
        print(f"train {cell}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
