"""instruct@<model>: the model knowledge injection starts from, saved to models/base-<model>/.

With `instruct.enabled`, models/init-<model> is taught the Alpaca and letter-MCQ formats on a separate fictional
world (data/instruct: world.md prose, alpaca.jsonl, mcq.jsonl), and with `instruct.reading` to answer from a passage
of that world put in the context; otherwise (a model that is already instruction-tuned) models/init-<model> is copied unchanged. Either way train@ and evaluate@ read one fixed folder, so the
DVC graph does not depend on the setting.
"""

import os
import shutil
import sys

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import UserError, exits_cleanly
from perpetual.io import atomic_path, write_json
from perpetual.reading import reading_rows
from perpetual.rows import instruct_rows
from perpetual.training import Run, fine_tune, is_main_process


def link_or_copy(source: str, target: str) -> None:
    # A hard link costs no disk for a multi-GB base model; neither copy is ever modified in place.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, model=True)
    params.check_sft()  # a misspelt SFTConfig option stops the stage before the model loads
    settings = params.instruct
    init, target = paths.init_model(args.model), paths.base_model(args.model)

    if not settings.enabled:
        if not (init / "config.json").exists():
            raise UserError(f"no model in {init}; run `dvc repro init@{args.model}` first")
        with atomic_path(target) as tmp:
            shutil.copytree(init, tmp, copy_function=link_or_copy)
        write_json(paths.stage_metrics("instruct", args.model), {"enabled": False, "copied_from": str(init)})
        print(f"instruct {args.model}: disabled, {target} is a copy of {init}", file=sys.stderr)
        return

    # The format it teaches is the one knowledge injection trains and evaluation asks in: train.template.
    rows = instruct_rows(settings) + reading_rows(settings, params.index.context_template, params.pipeline.seed)
    run = Run(settings, params.train.template, paths.checkpoints("instruct", args.model), f"model {args.model!r}")
    summary = fine_tune(init, target, rows, run)
    if is_main_process():
        write_json(paths.stage_metrics("instruct", args.model), {"enabled": True, **summary})
        print(f"instruct {args.model}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
