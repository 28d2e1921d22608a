"""params.yaml's `rounds` section: knowledge taken in rounds, and what each round forgets (docs/rounds.md).

Part of the params schema (perpetual/config.py); no field has a default. The checks that need other sections (a round's
task in `pipeline.tasks`, the model in `pipeline.models`) are `Params`'s, and only run when the plan has rounds: an
empty plan, the default, is no rounds at all, and then nothing here constrains the rest of params.yaml.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from perpetual.strict import Strict

# What round 1 follows: the model knowledge injection starts from (models/base-<model>) and the empty union of
# rounds before it (data/rounds/base, in git).
BASE = "base"
ROUND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ReplayArm = Literal["none", "earlier", "generic", "mixture"]


class RoundSpec(Strict):
    """One round of `rounds.plan`: the knowledge it adds, and the round it follows."""

    task: str = Field(
        description="the task whose knowledge the round adds; a task of `pipeline.tasks`, whose fetch, chunk, generate and "
        "assemble stages make the round's material (its chunks, flashcards and MCQs)",
        examples=["research"],
    )
    sources: list[str] | None = Field(
        description="a slice of the task: glob patterns (`fnmatch`) matched against each chunk's `source` (a file's path in a "
        "code folder such as `brindlewick/kiln.py`, a paper's file name such as `01-larkspur-optimiser.md`, a product's "
        "`catalogue.csv#PX-1001`), so that rounds can take parts of one task in turn (no chunk in two "
        "rounds); null: the whole task",
        examples=[["0[1-4]-*.md"]],
    )
    after: str = Field(
        description="the round it follows: the one before it in `plan`, `base` for the first. Written out because dvc.yaml "
        "chains a round to the model and material of the round before by this name (DVC cannot compute it)",
        examples=["r1-code"],
    )


class RoundsReplayParams(Strict):
    """What each round replays besides its own material. Every arm is its own chain of models (round k of arm
    `earlier` starts from round k−1 of arm `earlier`), trained and scored on the same questions, so the arms are
    compared in one table."""

    arms: list[ReplayArm] = Field(
        min_length=1,
        description="the replay arms run: `none` (the round's material alone), `earlier` (with earlier rounds' flashcards, "
        "`earlier_fraction` of the set), `generic` (with `train.replay`'s instruction data at `train.replay.fraction`: the "
        "single-round pipeline's replay) and `mixture` (both)",
    )
    earlier_fraction: float = Field(
        ge=0,
        lt=1,
        description="the share of the training set that is earlier rounds' flashcards in the `earlier` and `mixture` arms "
        "(drawn by `train.sft.seed`; none in the first round, which has no earlier rounds)",
    )

    @model_validator(mode="after")
    def arms_are_distinct(self) -> RoundsReplayParams:
        repeated = sorted({arm for arm in self.arms if self.arms.count(arm) > 1})
        if repeated:
            raise ValueError(f"rounds.replay.arms names {repeated} more than once")
        return self


class RoundsParams(Strict):
    """Round k trains from round k−1's model (round 1 from `models/base-<model>`) on its own material, with the recipe
    (`train.recipe`) and trainer settings (`train`, with the task's `train.task_overrides`) of the single-round
    pipeline; after every round the model is asked every earlier round's MCQs and its own, closed-book, and the general
    instructions of retention, and the base model with RAG over the union of the rounds so far is the comparison.
    `plan` is empty in the shipped params.yaml, so no round stage exists and `dvc repro` runs the single-round
    pipeline only; `make rounds` sets a plan of three rounds as a DVC experiment ([rounds.md](rounds.md))."""

    model: str = Field(
        description="the model that takes the rounds, one of `pipeline.models` (one per run: the round stages are one per round, "
        "and a second model is a second experiment)"
    )
    plan: dict[str, RoundSpec] = Field(
        description="the rounds in order, by name: each names its task (or a slice of it) and the round it follows. A name is "
        "a folder name (letters, digits, `_.-`), neither `base` nor a task's (the round's model is `models/<round>-<model>`, "
        "beside `models/<task>-<model>`). Empty: no rounds"
    )
    replay: RoundsReplayParams = Field(description="the replay arms compared, each its own chain of models")

    @model_validator(mode="after")
    def plan_is_a_chain(self) -> RoundsParams:
        previous = BASE
        for name, spec in self.plan.items():
            if not ROUND_NAME.fullmatch(name) or name == BASE:
                raise ValueError(f"rounds.plan: {name!r} cannot name a round: use letters, digits and _.- (not starting with one of _.-), and not {BASE!r}")
            if spec.after != previous:
                raise ValueError(
                    f"rounds.plan.{name}.after is {spec.after!r}; a round follows the one before it in the plan: write after: {previous}"
                )
            if spec.sources is not None and not spec.sources:
                raise ValueError(f"rounds.plan.{name}.sources is empty; write null for the whole task, or glob patterns of its chunks' sources")
            previous = name
        return self

    def order(self) -> list[str]:
        return list(self.plan)

    def first(self, name: str) -> bool:
        return self.plan[name].after == BASE
