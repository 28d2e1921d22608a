"""Training rows: one type per kind of study material, each rendered for the trainer one way (`example`).

Rows are content, not prompts: the stages that train render them in `train.template` (Alpaca or the model's own chat
template, perpetual/templates.py) with the model's tokenizer, which assemble@<task> does not know. On disk
(data/datasets/<task>) a row is a record whose `type` names its class (`to_records`, `from_record`).

Where the rows come from: a task's chunks and flashcards (perpetual/assembly.py), the instruction world and its
Alpaca and MCQ files (instruct@, `instruct_rows`), replayed instruction data (`replay_rows`), reading items
(perpetual/reading.py).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypedDict, cast

from perpetual.config import InstructParams, TrainParams
from perpetual.errors import UserError
from perpetual.io import read_jsonl
from perpetual.mcq_format import render
from perpetual.records import LETTERS, Chunk, Letter, Mcq
from perpetual.templates import Template


class Example(TypedDict):
    """A row as the trainer sees it (TRL's prompt/completion format)."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class Text:
    """Raw text: a task's chunk, a section of the instruction world. Trained on as it is, no prompt."""

    type: ClassVar[str] = "doc"
    chunk_id: str
    text: str

    def example(self, template: Template) -> Example:
        return {"prompt": "", "completion": self.text}


@dataclass(frozen=True)
class Question:
    """An instruction and its answer: a flashcard (its question and answer) or an Alpaca record."""

    type: ClassVar[str] = "qna"
    chunk_id: str
    instruction: str
    input: str
    answer: str

    def example(self, template: Template) -> Example:
        return {"prompt": template.instruction(self.instruction, self.input), "completion": template.answer(self.answer)}


@dataclass(frozen=True)
class MultipleChoice:
    """A letter MCQ, rendered exactly as evaluation scores the letter format, the correct letter as the answer: so
    instruction tuning teaches the very format that is measured."""

    type: ClassVar[str] = "mcq"
    chunk_id: str
    question: str
    options: tuple[str, ...]
    answer: str

    def example(self, template: Template) -> Example:
        return letter_example(as_mcq(self), template)


@dataclass(frozen=True)
class Reading:
    """A reading item (perpetual/reading.py): a passage in the context, an MCQ cut from it, asked in one format. In
    the cloze format the completion copies the rest of the passage too."""

    type: ClassVar[str] = "reading"
    chunk_id: str
    question: str
    options: tuple[str, ...]
    answer: str
    cloze_prefix: str
    kind: str
    format: str
    context: str  # the passage as index.context_template puts it before the question
    rest: str
    passage: str

    def example(self, template: Template) -> Example:
        mcq = as_mcq(self, self.cloze_prefix, self.kind)
        if self.format == "letter":
            return letter_example(mcq, template, self.context)
        rendered = render(mcq, "cloze", template, self.context)
        # lm-eval moves the query's trailing whitespace onto the continuation; so here, for the same tokens.
        query = rendered.query.rstrip()
        return {"prompt": query, "completion": rendered.query[len(query) :] + rendered.choices[rendered.gold] + self.rest}


def as_mcq(row: MultipleChoice | Reading, cloze_prefix: str = "", kind: str = "") -> Mcq:
    """The MCQ record evaluation renders (perpetual/mcq_format.py), for a row that asks one."""
    return {"mcq_id": "", "chunk_id": row.chunk_id, "question": row.question, "options": list(row.options),
            "answer": cast(Letter, row.answer), "cloze_prefix": cloze_prefix, "kind": kind}  # fmt: skip


def letter_example(mcq: Mcq, template: Template, context: str = "") -> Example:
    """An MCQ in the letter format exactly as evaluation scores it, the correct letter closed as the template closes
    an answer."""
    rendered = render(mcq, "letter", template, context)
    return {"prompt": rendered.query, "completion": template.answer(rendered.choices[rendered.gold])}


Row = Text | Question | MultipleChoice | Reading
ROW_TYPES: dict[str, type[Row]] = {cls.type: cls for cls in (Text, Question, MultipleChoice, Reading)}


def to_records(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows as records with the same keys (a `datasets.Dataset` takes its columns from the first record)."""
    keys = sorted({field.name for row in rows for field in dataclasses.fields(row)})
    return [{"type": row.type, **dict.fromkeys(keys), **dataclasses.asdict(row)} for row in rows]


def from_record(record: Mapping[str, Any]) -> Row:
    cls = ROW_TYPES[record["type"]]
    values = {field.name: record[field.name] for field in dataclasses.fields(cls)}
    if "options" in values:
        values["options"] = tuple(values["options"])
    return cls(**values)


def examples(rows: Iterable[Row], template: Template) -> list[Example]:
    return [row.example(template) for row in rows]


# ---------------------------------------------------------------- instruction data
def instruction_row(record: Mapping[str, Any], source: str) -> Question | MultipleChoice:
    """An Alpaca record (instruction/input/output) or a letter MCQ (question/options/answer) as a training row."""
    if {"question", "options", "answer"} <= record.keys():
        if len(record["options"]) != len(LETTERS) or record["answer"] not in LETTERS:
            raise UserError(f"{source}: MCQ {record['question'][:60]!r} needs 4 options and an answer in A-D; fix it")
        return MultipleChoice(source, record["question"], tuple(record["options"]), record["answer"])
    if {"instruction", "output"} <= record.keys():
        return Question(source, record["instruction"], record.get("input", ""), record["output"])
    raise UserError(
        f"{source}: a row has neither instruction/output (Alpaca) nor question/options/answer (MCQ) keys; fix the file"
    )


def read_instruction_rows(path: Path | str) -> list[Question | MultipleChoice]:
    return [instruction_row(record, str(path)) for record in read_jsonl(Path(path))]


def world_sections(markdown: str) -> list[str]:
    """The instruction world's Markdown sections, heading kept with its text."""
    return [part.strip() for part in re.split(r"\n(?=#)", markdown) if part.strip()]


def read_world(path: str) -> str:
    world = Path(path)
    if not world.exists():
        raise UserError(f"instruct.world: {world} does not exist; point it at the instruction world's prose")
    return world.read_text(encoding="utf-8")


def instruct_rows(params: InstructParams) -> list[Row]:
    """instruct@'s material: the instruction world's prose (one row per section), its Alpaca records and MCQs."""
    world: list[Row] = [Text(f"{Path(params.world)}#{i}", text) for i, text in enumerate(world_sections(read_world(params.world)))]
    return world + read_instruction_rows(params.alpaca) + read_instruction_rows(params.mcq)


def chunk_text(chunk: Chunk) -> Text:
    return Text(chunk["chunk_id"], chunk["text"])


# ---------------------------------------------------------------- knowledge injection
def replay_rows(params: TrainParams) -> list[Question | MultipleChoice]:
    if params.replay.fraction == 0:
        return []
    return [row for path in params.replay.paths for row in read_instruction_rows(path)]


def with_replay(rows: Sequence[Row], params: TrainParams, replay: Sequence[Row], seed: int) -> list[Row]:
    """`rows` and replay rows that make up `train.replay.fraction` of the result, drawn by `seed`."""
    selected = list(rows)
    fraction = params.replay.fraction
    if fraction > 0:
        if not replay:
            raise UserError(f"train.replay.fraction is {fraction} but {params.replay.paths} have no rows")
        count = round(len(selected) * fraction / (1 - fraction))
        order = list(range(len(replay)))
        random.Random(seed).shuffle(order)
        # Without repeats while the replay data lasts, then cycling through it again.
        selected += [replay[order[i % len(order)]] for i in range(count)]
    return selected
