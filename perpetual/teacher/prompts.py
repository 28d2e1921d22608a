"""Prompt files (prompts_dir/<kind>.md): `## system` and `## user` sections with {count}, {schema} and {text}.

Chat messages are what every chat-style backend sends, so prompts are rendered here once, not per backend.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from perpetual.errors import UserError
from perpetual.teacher.base import ItemKind
from perpetual.teacher.items import json_schema

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Prompt:
    kind: ItemKind
    version: str  # the file's `version:` line, for people; caching uses `sha256`
    sha256: str  # of the whole file: any edit changes the cache keys
    system: str
    user: str

    def render(self, text: str, count: int) -> Messages:
        schema = json.dumps(json_schema(self.kind), indent=2)
        return [
            {"role": "system", "content": _fill(self.system, count, schema, text)},
            {"role": "user", "content": _fill(self.user, count, schema, text)},
        ]


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
    sections = dict(re.findall(r"^## (system|user)[ \t]*\n(.*?)(?=^## (?:system|user)[ \t]*$|\Z)", body, re.M | re.S))
    if "user" not in sections or "{text}" not in sections["user"] + sections.get("system", ""):
        raise UserError(f"{path} needs a '## user' section and a {{text}} placeholder for the chunk")
    return Prompt(
        kind=kind,
        version=version_match.group(1) if version_match else "",
        sha256=hashlib.sha256(raw.encode("utf-8")).hexdigest(),
        system=sections.get("system", "").strip(),
        user=sections["user"].strip(),
    )
