"""recipe@<task>-<model>: the training rows of `train.recipe` for the cell, in phases (perpetual/recipes.py).

From assemble@'s set (each chunk's text and its flashcards); the recipes that write material of their own
(paraphrase, distill) ask the teacher `train.self_study.teacher` names (perpetual/self_study.py): the start model,
models/base-<model>, run in-process, or the OpenAI-compatible endpoint of `generate.teacher`, through a cache that makes
a killed run resume. What was kept and refused is counted in metrics/recipe/<task>-<model>.json.
"""

import sys
from collections import Counter

import datasets

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.errors import exits_cleanly
from perpetual.io import write_json, write_jsonl
from perpetual.recipes import Material, build_phases
from perpetual.rows import Question, Text, from_record, to_records
from perpetual.self_study import SelfStudyTeacher, open_teacher


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, task=True, model=True)
    settings = params.train.for_task(args.task)
    rows = [from_record(record) for record in datasets.load_from_disk(str(paths.dataset(args.task)))["train"]]
    stats: Counter[str] = Counter()
    paths.self_study_cache(args.task, args.model).mkdir(parents=True, exist_ok=True)  # a DVC out, used or not

    def open_cell_teacher() -> SelfStudyTeacher:
        return open_teacher(settings.self_study, params.generate.teacher, paths.base_model(args.model), settings.template,
                            paths.self_study_cache(args.task, args.model), params.pipeline.seed, stats)  # fmt: skip

    material = Material([row for row in rows if isinstance(row, Text | Question)], settings.self_study,
                        params.index.context_template, open_cell_teacher, stats)  # fmt: skip
    phases = build_phases(settings.recipe, material)
    records = [{**record, "phase": number} for number, phase in enumerate(phases, 1) for record in to_records(phase)]
    write_jsonl(paths.recipe_rows(args.task, args.model), records)
    summary = {
        "recipe": settings.recipe,
        "phases": [dict(Counter(row.type for row in phase)) for phase in phases],
        "rows": sum(len(phase) for phase in phases),
        "self_study": dict(sorted(stats.items())),
        "self_study_teacher": settings.self_study.teacher if material.opened else None,
        "self_study_precision": material.opened.precision if material.opened else None,
    }
    write_json(paths.stage_metrics("recipe", f"{args.task}-{args.model}"), summary)
    print(f"recipe {args.task}-{args.model}: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
