"""Python split where a reader would split it: at function and class boundaries, each chunk headed by its place.

langchain's Python splitter cuts at "\\nclass " and "\\ndef " text separators: a decorator or the comment above a
function stays with the previous chunk, methods indented by four spaces are not boundaries at all, and a chunk does
not say which file (or class) it came from. The standard library's `ast` knows where every definition starts
(decorators included) and ends, so units come from it; only a single definition longer than a chunk falls back to
langchain's splitter.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter


@dataclass(frozen=True)
class Unit:
    text: str
    owner: str | None  # the class a method belongs to, for the chunk's header


Room = Callable[[str | None], int]  # the characters a chunk's body may take, given its header's class


def header(path: str, owner: str | None) -> str:
    return f"# {path}" + (f" (class {owner})" if owner else "")


def _start_line(node: ast.stmt, lines: list[str]) -> int:
    """0-based first line of a definition: its decorators, and the comment lines right above it."""
    start = min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _units(body: list[ast.stmt], lines: list[str], first: int, last: int, owner: str | None, room: Room) -> list[Unit]:
    """Lines first..last cut before each statement of `body`; a class too long for a chunk is cut into its methods."""
    starts = [first] + [_start_line(node, lines) for node in body[1:]]
    units = []
    for index, node in enumerate(body):
        end = starts[index + 1] if index + 1 < len(body) else last
        text = "".join(lines[starts[index] : end])
        if isinstance(node, ast.ClassDef) and len(text) > room(owner) and len(node.body) > 1:
            # The class line, its docstring and its first statements stay together; each method becomes a unit.
            units.extend(_units(node.body, lines, starts[index], end, node.name, room))
        else:
            units.append(Unit(text, owner))
    return units


def split_python(text: str, path: str, chunk_size: int, min_chunk_size: int) -> list[str] | None:
    """Chunks of at most chunk_size characters, header included; None when the file is not valid Python."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return None

    def room(owner: str | None) -> int:
        return chunk_size - len(header(path, owner)) - 1

    lines = text.splitlines(keepends=True)
    units = _units(module.body, lines, 0, len(lines), None, room) if module.body else [Unit(text, None)]
    return [f"{header(path, owner)}\n{body.strip(chr(10))}" for body, owner in _pack(units, room, min_chunk_size) if body.strip()]


def _pack(units: list[Unit], room: Room, min_chunk_size: int) -> list[tuple[str, str | None]]:
    """Consecutive units of the same class packed up to the room a chunk has; a longer definition split further."""
    pieces: list[tuple[str, str | None]] = []
    for unit in units:
        budget = room(unit.owner)
        if len(unit.text) > budget:
            fallback = RecursiveCharacterTextSplitter.from_language(
                Language.PYTHON, chunk_size=budget, chunk_overlap=0, strip_whitespace=False
            )
            texts = fallback.split_text(unit.text)
        else:
            texts = [unit.text]
        for text in texts:
            if pieces and pieces[-1][1] == unit.owner and len(pieces[-1][0]) + len(text) <= budget:
                pieces[-1] = (pieces[-1][0] + text, unit.owner)
            else:
                pieces.append((text, unit.owner))
    # A piece below the minimum (a lone constant, the tail of a class) joins a neighbour when the two fit.
    merged: list[tuple[str, str | None]] = []
    for text, owner in pieces:
        if merged and (len(text.strip()) < min_chunk_size or len(merged[-1][0].strip()) < min_chunk_size):
            previous, previous_owner = merged[-1]
            joined_owner = previous_owner if previous_owner == owner else None
            if len(previous) + len(text) <= room(joined_owner):
                merged[-1] = (previous + text, joined_owner)
                continue
        merged.append((text, owner))
    return merged
