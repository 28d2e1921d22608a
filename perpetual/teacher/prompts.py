"""Prompt files (prompts_dir/<kind>.md): `## system` and `## user` sections with {count}, {schema} and {text}, and
optionally a worked example, `## example user` and `## example assistant` (a text and a valid reply to it).

Chat messages are what every chat-style backend sends, so prompts are rendered here once, not per backend. The
worked example goes between the system and the user message, as an earlier turn, when the reply's shape is asked
for in the prompt only (`generate.teacher.response_format: prompt`, for servers that enforce no schema): a small
model copies a shape it was shown far more often than it follows a JSON schema it was given.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpetual.errors import UserError
from perpetual.teacher.base import ItemKind
from perpetual.teacher.items import FLASHCARDS_MAX, InvalidResponse, json_schema, parse_reply

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Prompt:
    kind: ItemKind
    version: str  # the file's `version:` line, for people; caching uses `sha256`
    sha256: str  # of the whole file: any edit changes the cache keys
    system: str
    user: str
    example: tuple[str, str] | None = None  # a worked example: a text and the reply to it, rendered as a chat turn

    def render(self, text: str, count: int, *, with_example: bool = False) -> Messages:
        schema = json.dumps(json_schema(self.kind), indent=2)
        messages = [{"role": "system", "content": _fill(self.system, count, schema, text)}]
        if with_example and self.example is not None:
            example_text, example_reply = self.example
            messages += [
                {"role": "user", "content": _fill(self.user, count, schema, example_text)},
                {"role": "assistant", "content": example_reply},
            ]
        return [*messages, {"role": "user", "content": _fill(self.user, count, schema, text)}]

    def copied_example(self, items: list[dict[str, Any]], shown: str) -> str | None:
        """What a reply copies from the worked example instead of the text it was shown (`shown`, the last user message):
        an item whose question, answer or choice is one of the example's and is not in that text. None: nothing."""
        if self.example is None:
            return None
        examples = {value.casefold() for item in json.loads(self.example[1])["questions"] for value in _written(item)}
        for position, item in enumerate(items):
            for value in _written(item):
                if value.casefold() in examples and value.casefold() not in shown.casefold():
                    return f"questions.{position} copies the worked example ({value!r}); ask about the text instead"
        return None


def _written(item: dict[str, Any]) -> list[str]:
    # An MCQ's answer is a letter, which any example shares.
    return [item["question"], *item.get("choices", []), *([item["answer"]] if "choices" not in item else [])]


def _fill(template: str, count: int, schema: str, text: str) -> str:
    # {text} goes last so that braces inside a chunk are never taken for placeholders.
    return template.replace("{count}", str(count)).replace("{schema}", schema).replace("{text}", text)


def load_prompt(prompts_dir: Path, kind: ItemKind) -> Prompt:
    path = Path(prompts_dir) / f"{kind}.md"
    if not path.exists():
        raise UserError(f"prompt file {path} not found; set generate.teacher.prompts_dir to the folder holding {kind}.md")
    raw = path.read_text(encoding="utf-8")
    body = re.sub(r"<!--.*?-->", "", raw, flags=re.DOTALL)
    version_match = re.match(r"\s*version:\s*(\S.*?)\s*$", body, flags=re.MULTILINE)
    names = "system|user|example user|example assistant"
    sections = dict(re.findall(rf"^## ({names})[ \t]*\n(.*?)(?=^## (?:{names})[ \t]*$|\Z)", body, re.M | re.S))
    if "user" not in sections or "{text}" not in sections["user"] + sections.get("system", ""):
        raise UserError(f"{path} needs a '## user' section and a {{text}} placeholder for the chunk")
    example = _example(path, kind, sections.get("example user"), sections.get("example assistant"))
    return Prompt(
        kind=kind,
        version=version_match.group(1) if version_match else "",
        sha256=hashlib.sha256(raw.encode("utf-8")).hexdigest(),
        system=sections.get("system", "").strip(),
        user=sections["user"].strip(),
        example=example,
    )


def _example(path: Path, kind: ItemKind, text: str | None, reply: str | None) -> tuple[str, str] | None:
    """The worked example, checked like any reply: a wrong one would teach the model the wrong shape."""
    if text is None and reply is None:
        return None
    if text is None or reply is None or not text.strip() or not reply.strip():
        raise UserError(f"{path}: a worked example needs both '## example user' and '## example assistant', not empty")
    try:
        parse_reply(kind, reply.strip(), count=FLASHCARDS_MAX)
    except InvalidResponse as error:
        raise UserError(f"{path}: '## example assistant' is not a valid {kind} reply ({error})") from None
    return text.strip(), reply.strip()
