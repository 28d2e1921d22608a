"""Rounds of knowledge injection (docs/rounds.md): a round's material, the union of the rounds so far, and what each
replay arm trains on.

A round takes its task's material as assemble@<task> made it (each chunk's raw text and its flashcards, the MCQs
generate@<task> wrote), or a slice of it: the chunks whose `source` matches the round's glob patterns, with their
rows and MCQs. round-data@<round> writes the round's own training rows and the union of the rounds up to it (their
MCQs, chunks and flashcards, each tagged with its round), from the union of the round before: the chain that lets
every later stage of a round depend on one folder, not on every earlier round's.

The replay arms (`rounds.replay.arms`): `none`, `earlier` (earlier rounds' flashcards at
`rounds.replay.earlier_fraction` of the set), `generic` (`train.replay`, as train@ replays it) and `mixture` (both,
each at its own share). The draw is rows.with_replay's, per phase as train@ draws it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perpetual.config import TrainParams
from perpetual.errors import UserError
from perpetual.rounds_params import RoundSpec
from perpetual.rows import Question, Row, from_record, with_replay

UNION_PARTS = ("mcq", "chunks", "flashcards")


def in_slice(source: str, patterns: Sequence[str] | None) -> bool:
    """Whether a chunk's source is in a round's slice (`sources`: glob patterns; None: the whole task)."""
    return patterns is None or any(fnmatch.fnmatchcase(source, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Material:
    """One round's own material: records as their stages wrote them, of the round's slice."""

    rows: list[dict[str, Any]]  # assemble@'s training rows (perpetual/rows.py records)
    mcqs: list[dict[str, Any]]
    chunks: list[dict[str, Any]]

    @property
    def flashcards(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["type"] == Question.type]


def round_material(
    name: str, spec: RoundSpec, chunks: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], mcqs: Sequence[Mapping[str, Any]], limit: int | None
) -> Material:
    """The round's chunks (its slice of the task), their training rows and their MCQs (the first `limit`, as
    evaluate.limit takes a task's first N)."""
    kept = [dict(chunk) for chunk in chunks if in_slice(chunk["source"], spec.sources)]
    if not kept:
        examples = sorted({chunk["source"] for chunk in chunks})[:3]
        raise UserError(f"rounds.plan.{name}.sources {spec.sources} match no chunk of task {spec.task!r} (its sources are like {examples})")
    ids = {chunk["chunk_id"] for chunk in kept}
    own_mcqs = [dict(mcq) for mcq in mcqs if mcq["chunk_id"] in ids][:limit]
    if not own_mcqs:
        raise UserError(f"rounds.plan.{name}: no MCQ of task {spec.task!r} asks about its chunks; widen its sources")
    return Material([dict(row) for row in rows if row["chunk_id"] in ids], own_mcqs, kept)


def extend_union(previous: Mapping[str, Sequence[Mapping[str, Any]]], name: str, task: str, material: Material) -> dict[str, list[dict[str, Any]]]:
    """The union of the rounds before (`previous`: part -> records, each with its `round`) and this round's
    material, tagged with the round (and the MCQs with the task). A chunk or MCQ already in an earlier round is a
    user error: slices of one task must not overlap, and a task is taken once."""
    seen = {chunk["chunk_id"]: chunk["round"] for chunk in previous.get("chunks", [])}
    overlap = sorted({seen[chunk["chunk_id"]] for chunk in material.chunks if chunk["chunk_id"] in seen})
    if overlap:
        raise UserError(f"rounds.plan.{name}: some of its chunks are in round(s) {overlap} already; a task's slices must not overlap")
    seen_mcqs = {mcq["mcq_id"] for mcq in previous.get("mcq", [])}
    if any(mcq["mcq_id"] in seen_mcqs for mcq in material.mcqs):
        raise UserError(f"rounds.plan.{name}: some of its MCQs are an earlier round's too; rounds must ask different questions")
    own = {
        "mcq": [{**mcq, "round": name, "task": task} for mcq in material.mcqs],
        "chunks": [{**chunk, "round": name} for chunk in material.chunks],
        "flashcards": [{**card, "round": name} for card in material.flashcards],
    }
    return {part: [dict(record) for record in previous.get(part, [])] + own[part] for part in UNION_PARTS}


def earlier_flashcards(union: Sequence[Mapping[str, Any]], name: str) -> list[Row]:
    """The flashcards of the rounds before `name` in its union, as training rows (the `earlier` replay)."""
    return [from_record(record) for record in union if record["round"] != name]


def with_fraction(settings: TrainParams, fraction: float) -> TrainParams:
    return settings.model_copy(update={"replay": settings.replay.model_copy(update={"fraction": fraction})})


def arm_phases(
    arm: str, phases: Sequence[Sequence[Row]], settings: TrainParams, generic: Sequence[Row], earlier: Sequence[Row], earlier_fraction: float, seed: int
) -> list[list[Row]]:
    """Each phase of the round's recipe with the arm's replay, drawn by `seed` + phase − 1 (train@'s draw).

    `generic`: `train.replay.fraction` of the set is `generic` rows (train@'s own replay, row for row). `earlier`:
    `earlier_fraction` of it is earlier rounds' flashcards (nothing in the first round). `mixture`: both shares of
    the final set, the generic rows drawn first. `none`: the recipe's rows alone."""
    uses_earlier = arm in ("earlier", "mixture") and bool(earlier) and earlier_fraction > 0
    uses_generic = arm in ("generic", "mixture") and settings.replay.fraction > 0
    result = []
    for number, rows in enumerate(phases, 1):
        drawn = list(rows)
        if uses_generic:
            # Generic rows first, at a share of the set before the earlier ones join it, so that each source ends at its
            # own share of the final set: f_g / (1 - f_e) of (rows + generic), then f_e of the whole.
            share = settings.replay.fraction / (1 - earlier_fraction) if uses_earlier else settings.replay.fraction
            drawn = with_replay(drawn, with_fraction(settings, share), generic, seed + number - 1)
        if uses_earlier:
            drawn = with_replay(drawn, with_fraction(settings, earlier_fraction), earlier, seed + number - 1)
        result.append(drawn)
    return result
