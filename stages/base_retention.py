"""base-retention@<model>: the base model's answers to the retention set (perpetual/retention.py), scored once per
model and template, for every evaluate@<task>-<model> to compare its fine-tuned model with.

The base model, the instructions and the template are the same in every task, so are its answers: generated here once
instead of once per task, and once per study rather than once per arm (DVC's run cache restores them). On the tiny
default that saves little (about 11 s a model); a real model's answers run to hundreds of tokens. The templates are
those the tasks are taught in (`train.template`, or a task's override): one file each, all written even when retention
is off (then empty), since dvc.yaml declares the folder.
"""

from pathlib import Path

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.evaluation import make_lm
from perpetual.io import atomic_path, write_jsonl
from perpetual.models import load_local, local_config
from perpetual.precision import choose
from perpetual.retention import answer_rows, load_instructions, measure
from perpetual.retrieval import load_embedder
from perpetual.scoring import Encodings
from perpetual.templates import make_template


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, model=True)
    settings = params.evaluate
    templates = sorted({params.train.for_task(task).template for task in params.pipeline.tasks})
    folder = paths.base_model(args.model)
    with atomic_path(paths.base_retention_folder(args.model)) as out:
        out.mkdir()
        if not settings.retention.enabled:
            for name in templates:
                write_jsonl(out / paths.base_retention(args.model, name).name, [])
            return
        instructions = load_instructions(Path(settings.retention.path), settings.retention.limit)
        embedder = load_embedder(params.index.embedder)
        model, tokenizer = load_local(folder, choose(settings.precision, "evaluate", local_config(folder)).dtype)
        lm = make_lm(model, tokenizer, settings.batch_size, Encodings())
        for name in templates:
            template = make_template(name, tokenizer, str(folder))
            measured = measure(lm, instructions, template, settings.retention.budget_factor, embedder, params.index.batch_size)
            write_jsonl(out / paths.base_retention(args.model, name).name, answer_rows(instructions, {"base": measured}))


if __name__ == "__main__":
    main()
