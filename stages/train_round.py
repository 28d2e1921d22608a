"""train-round@<round>: the round's knowledge injected into the model the round before left, one model per replay arm,
saved to models/<round>-<model>/<arm>/.

The rows are the round's (round-data@<round>) in the phases of `train.recipe` (perpetual/recipes.py; the self-study
teacher of paraphrase and distill is models/base-<model>), with the trainer settings of train@ for the round's task
(`train`, `train.task_overrides`); each arm adds its replay (perpetual/rounds.py `arm_phases`) and starts from its own
model of the round before (the first round: models/base-<model>). Two arms with the same start and rows (the first
round's `none` and `earlier`, `generic` and `mixture`) are trained once and copied.
"""

import json
import shutil
import sys
from collections import Counter

from perpetual import paths
from perpetual.cli import stage_args
from perpetual.config import with_sft
from perpetual.errors import exits_cleanly
from perpetual.io import atomic_path, read_jsonl, write_json
from perpetual.recipes import Material, build_phases
from perpetual.records import content_id
from perpetual.rounds import arm_phases, earlier_flashcards
from perpetual.rows import Question, Text, from_record, replay_rows, to_records
from perpetual.self_study import SelfStudyTeacher, open_teacher
from perpetual.training import Run, epochs_for_budget, fine_tune_phases, is_main_process

SUMMARY = ("train_loss", "final_logged_loss", "steps", "rows", "tokens", "train_runtime_s", "precision", "epochs")


@exits_cleanly
def main() -> None:
    args, params = stage_args(__doc__, round=True)
    params.check_sft()  # a misspelt SFTConfig option stops the stage before a model loads
    rounds, spec = params.rounds, params.rounds.plan[args.round]
    model = rounds.model
    settings = params.train.for_task(spec.task)
    rows = [from_record(record) for record in read_jsonl(paths.round_rows(args.round))]
    stats: Counter[str] = Counter()
    cache = paths.round_self_study_cache(args.round, model)
    cache.mkdir(parents=True, exist_ok=True)  # a DVC out, used or not

    def open_round_teacher() -> SelfStudyTeacher:
        return open_teacher(settings.self_study, params.generate.teacher, paths.base_model(model), settings.template, cache,
                            params.pipeline.seed, stats)  # fmt: skip

    material = Material([row for row in rows if isinstance(row, Text | Question)], settings.self_study, params.index.context_template,
                        open_round_teacher, stats)  # fmt: skip
    phases = build_phases(settings.recipe, material)
    earlier = earlier_flashcards(read_jsonl(paths.union_flashcards(args.round)), args.round)
    generic = replay_rows(settings)

    trained: dict[str, str] = {}  # what an arm trained (start model and rows) -> the arm that trained it first
    arms: dict[str, dict] = {}
    for arm in rounds.replay.arms:
        start = paths.round_start(spec.after, model, arm)
        drawn = arm_phases(arm, phases, settings, generic, earlier, rounds.replay.earlier_fraction, int(settings.sft.seed))
        key = content_id(str(start), json.dumps([to_records(phase) for phase in drawn], sort_keys=True))
        target = paths.round_arm_model(args.round, model, arm)
        replayed = {kind: sum(1 for phase in drawn for row in phase if row.chunk_id in ids)
                    for kind, ids in (("earlier", {row.chunk_id for row in earlier}), ("generic", {row.chunk_id for row in generic}))}  # fmt: skip
        if key in trained:
            if is_main_process():
                with atomic_path(target) as tmp:
                    shutil.copytree(paths.round_arm_model(args.round, model, trained[key]), tmp)
            arms[arm] = {**arms[trained[key]], "same_as": trained[key]}
            continue
        arm_settings = settings
        if settings.token_budget is not None:  # the same budget for every arm, whatever its replay
            arm_settings = with_sft(settings, num_train_epochs=epochs_for_budget(start, drawn, settings.template, settings.token_budget))
        run = Run(arm_settings, settings.template, paths.round_checkpoints(args.round, model, arm), f"model {model!r}")
        summary = fine_tune_phases(start, target, drawn, run)
        summary["epochs"] = arm_settings.sft.num_train_epochs
        arms[arm] = {"start": str(start), "replayed": replayed, **{name: summary[name] for name in SUMMARY if name in summary}}
        trained[key] = arm
    if is_main_process():
        result = {"round": args.round, "task": spec.task, "after": spec.after, "recipe": settings.recipe,
                  "self_study": dict(sorted(stats.items())), "arms": arms}  # fmt: skip
        write_json(paths.stage_metrics("train-round", f"{args.round}-{model}"), result)
        print(f"train-round {args.round}: {json.dumps(arms)}", file=sys.stderr)


if __name__ == "__main__":
    main()
