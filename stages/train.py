"""train@<task>-<model>: knowledge injection into models/base-<model>, saved to models/<task>-<model>/.

The rows are recipe@<task>-<model>'s (train.recipe), trained phase after phase, each phase with its share of replayed
instruction data (train.replay).

Runs as one process (`python -m stages.train`) or many (`accelerate launch --config_file
configs/accelerate/ddp.yaml -m stages.train ...`); only the main process writes outputs.
"""

import sys
from itertools import groupby

import datasets

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.config import with_sft
from perpetual.errors import exits_cleanly
from perpetual.io import read_jsonl, write_json
from perpetual.rows import from_record, replay_rows, with_replay
from perpetual.training import Run, epochs_for_budget, fine_tune_phases, is_main_process, loss_curve


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    params.check_sft()  # a misspelt SFTConfig option stops the stage before the model loads
    cell = f"{args.task}-{args.model}"
    settings = params.train.for_task(args.task)
    records = read_jsonl(paths.recipe_rows(args.task, args.model))
    replay, seed = replay_rows(settings), int(settings.sft.seed)
    # The phase number offsets the replay draw, so that each phase replays other rows (phase 1: the seed itself).
    phases = [with_replay([from_record(r) for r in rows], settings, replay, seed + number - 1)
              for number, rows in groupby(records, key=lambda record: record["phase"])]  # fmt: skip
    if settings.token_budget is not None:  # the same budget for every recipe, whatever its size
        epochs = epochs_for_budget(paths.base_model(args.model), phases, settings.template, settings.token_budget)
        settings = with_sft(settings, num_train_epochs=epochs)
    # assemble.validation_share's held-out flashcards, the same for every recipe (none: no such split).
    dataset = datasets.load_from_disk(str(paths.dataset(args.task)))
    validation = [from_record(record) for record in dataset["validation"]] if "validation" in dataset else []
    curve = loss_curve(paths.loss_curve(args.task, args.model))
    run = Run(settings, settings.template, paths.checkpoints(args.task, args.model), f"model {args.model!r}", [curve], validation)
    summary = fine_tune_phases(paths.base_model(args.model), paths.trained_model(args.task, args.model), phases, run)
    summary = {"recipe": settings.recipe, "token_budget": settings.token_budget, "epochs": settings.sft.num_train_epochs, **summary}
    if is_main_process():
        write_json(paths.stage_metrics("train", cell), summary)
        print(f"train {cell}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
