"""What a teacher's reply must hold, as pydantic models: one definition gives the JSON schema sent to the model
(structured outputs, and the schema shown in the prompt) and the validation of what comes back.

A reply that fails validation is asked again with the error fed back (`feedback_message`), so the messages say
what is wrong in terms the model can act on.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from perpetual.teacher.base import ItemKind

FLASHCARDS_MIN, FLASHCARDS_MAX = 3, 5

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _letter(value: object) -> object:
    # Tolerate "b", "B)" or "(B)": the letter is unambiguous; anything else fails the Literal and is fed back.
    found = re.fullmatch(r"\s*\(?([A-Da-d])[).:]?\s*", value) if isinstance(value, str) else None
    return found.group(1).upper() if found else value


class _Item(BaseModel):
    # Strict structured outputs want every property required and nothing extra; forbid gives additionalProperties.
    model_config = ConfigDict(extra="forbid", strict=True)


class Flashcard(_Item):
    question: Text
    answer: Text


class Flashcards(_Item):
    questions: list[Flashcard] = Field(min_length=FLASHCARDS_MIN, max_length=FLASHCARDS_MAX)


class Mcq(_Item):
    question: Text
    choices: list[Text] = Field(min_length=4, max_length=4)
    answer: Annotated[Literal["A", "B", "C", "D"], BeforeValidator(_letter)]


class Mcqs(_Item):
    questions: list[Mcq] = Field(min_length=1)


REPLIES: dict[ItemKind, type[Flashcards] | type[Mcqs]] = {"flashcards": Flashcards, "mcq": Mcqs}


@functools.cache
def json_schema(kind: ItemKind) -> dict[str, Any]:
    """The reply's JSON schema, built once: pydantic takes ~0.7 ms to build it, on every request's path otherwise."""
    return REPLIES[kind].model_json_schema()


class InvalidResponse(ValueError):
    """A reply that breaks the schema; the message is fed back to the model.

    `reason` is the kind of fault without the particulars (item positions, parser offsets), so that the rejections of
    a run can be counted: "not valid JSON", "questions.*.answer: Field required", "the model refused"."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def parse_reply(kind: ItemKind, content: str, count: int) -> list[dict[str, Any]]:
    """The reply's items, validated and stripped, at most `count` of them; InvalidResponse says what is wrong."""
    try:
        reply = REPLIES[kind].model_validate_json(json_object_in(content))
    except ValidationError as error:
        raise InvalidResponse(_describe(error), _reason(error)) from None
    return [item.model_dump() for item in reply.questions[:count]]


def _reason(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "not valid JSON"
    where = ".".join("*" if isinstance(part, int) else str(part) for part in first["loc"]) or "the reply"
    return f"{where}: {first['msg']}"
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)```", re.DOTALL)


def json_object_in(content: str) -> str:
    """The reply's JSON object as text: the first complete object with `questions` in a fenced block, else in the
    reply. A server that enforces no schema (response_format: prompt) gets replies such as "Here are the questions:
    ```json {...} ```" or an object followed by more text; structured outputs give the bare object, which comes back
    as it is. Without such an object the reply comes back unchanged, for the validator to say what is wrong with it
    (not JSON, cut off, another shape)."""
    decoder = json.JSONDecoder()
    for text in [*_FENCE.findall(content), content]:
        start = text.find("{")
        while start != -1:
            try:
                value, end = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                end = start + 1
            else:
                if isinstance(value, dict) and "questions" in value:
                    return text[start:end]
            start = text.find("{", end if end > start + 1 else start + 1)
    return content


_ITEMS_START = re.compile(r'\{\s*"questions"\s*:\s*\[')
_BETWEEN_ITEMS = re.compile(r"\s*,?\s*")


def complete_items(content: str, count: int) -> str | None:
    """A reply cut off at the token limit, as the reply of its first `count` complete items: `{"questions": [...]}`,
    or None when no item is complete. A small model that repeats itself until the limit has often written its items
    whole before it started again; each one is validated like any other."""
    start = _ITEMS_START.search(content)
    if start is None:
        return None
    decoder = json.JSONDecoder()
    items: list[Any] = []
    position = start.end()
    while len(items) < count:
        position = _BETWEEN_ITEMS.match(content, position).end()  # type: ignore[union-attr]  # matches the empty string
        try:
            item, position = decoder.raw_decode(content, position)
        except json.JSONDecodeError:
            break
        items.append(item)
    return json.dumps({"questions": items}, ensure_ascii=False) if items else None


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False)[:3]:
        if detail["type"] == "json_invalid":
            return f"the reply is not valid JSON ({detail['msg']})"
        where = ".".join(str(part) for part in detail["loc"]) or "the reply"
        problems.append(f"{where}: {detail['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def feedback_message(error: InvalidResponse) -> str:
    return f"Your previous reply was rejected: {error}. Reply again with only a JSON object that follows the schema."
