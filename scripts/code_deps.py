#!/usr/bin/env python3
"""Generate dvc.yaml's code deps: each stage depends on exactly the project files its command runs.

For every stage whose `cmd` runs `python -m <module>` (or `python <script>.py`), the entry module is parsed with `ast`
and the project imports (`stages...`, `perpetual...`) are followed transitively: module-level and function-local
imports, `from perpetual import paths` (a submodule) as well as `from perpetual.io import read_jsonl`, relative imports,
and `importlib.import_module("perpetual...")` with a literal name. Every package a module lives in is imported before
it, so its `__init__.py` is in the closure too. Imports under `if TYPE_CHECKING:` never run and are left out. Nothing
is imported or executed: the standard library and PyYAML are all this needs.

A stage's code deps are its dep lines naming a path in stages/ or perpetual/ (a trailing `# comment` allowed). They
are replaced, in place, by the closure (stages/ first, then perpetual/, each sorted), where the first of them was, or
at the top of `deps:` (added after `cmd:` if the stage has none). Every other line of dvc.yaml is kept as it is:
comments, data deps, params, outs, and a trailing comment on a code dep that stays. So editing a module re-runs
exactly the stages whose code imports it: perpetual/report.py re-runs report, not training.

    python scripts/code_deps.py            rewrite dvc.yaml (`make deps`) and print the stages it changed
    python scripts/code_deps.py --check    touch nothing; exit 1, one line per stale stage, if it would change
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("stages", "perpetual")   # top-level packages whose files are code deps, in this order

ENTRY = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)|(?:^|\s)(?:python[\d.]*\s+)((?:[\w.-]+/)*[\w.-]+\.py)\b")
PACKAGES = "|".join(map(re.escape, PROJECT_PACKAGES))
# `- perpetual/io.py   # why`, quoted or not: a code dep line (stripped). A dep with options (`- path:`) is not.
CODE_DEP = re.compile(rf"-\s+(['\"]?)(?:\./)?(?P<path>(?:{PACKAGES})(?:/[^\s'\"#:]*)?)\1(?:\s+#.*|\s*)$")


class CodeDepsError(Exception):
    """A module or dvc.yaml is not what this script can read; the message says where."""


# --- the import closure -------------------------------------------------------------------------------------------

def module_file(root: Path, name: str) -> Path | None:
    """The project file that `import name` runs (a module's .py, a package's __init__.py), or None if not ours."""
    parts = name.split(".")
    if not parts or parts[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def with_parents(name: str) -> list[str]:
    """`a.b.c` imports `a`, then `a.b`, then `a.b.c`."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class ImportCollector(ast.NodeVisitor):
    """Every module name a source file may import at run time (anywhere in it, not only at the top)."""

    def __init__(self, package: str) -> None:
        self.package = package        # the package relative imports are resolved against
        self.names: list[str] = []    # candidate module names, in order
        self.from_names: list[str] = []  # `from X import y`: X.y is a module if such a file exists

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):   # static-only imports: never executed
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.extend(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".") if self.package else []
            if node.level - 1 > len(base):
                return
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if not module:
            return
        self.names.append(module)
        self.from_names.extend(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.names.append(first.value)
        self.generic_visit(node)


def direct_imports(root: Path, path: Path) -> set[Path]:
    """The project files `path` imports directly (with the packages they live in)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as error:   # a missing or half-written file: say which, rather than guess
        raise CodeDepsError(f"cannot parse {path.relative_to(root)}: {error}") from error
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    collector = ImportCollector(package)
    collector.visit(tree)
    found: set[Path] = set()
    for imported in collector.names:
        for candidate in with_parents(imported):
            target = module_file(root, candidate)
            if target is not None:
                found.add(target)
    for imported in collector.from_names:   # `from perpetual import paths`: the submodule, when it is one
        target = module_file(root, imported)
        if target is not None:
            found.add(target)
    return found


def import_closure(root: Path, entry_module: str | None = None, entry_file: Path | None = None) -> set[str]:
    """Every project file (relative POSIX path) that running the entry module or script executes."""
    todo: list[Path] = []
    if entry_module is not None:   # `python -m a.b.c` imports a, a.b, then runs a/b/c.py
        for candidate in with_parents(entry_module):
            target = module_file(root, candidate)
            if target is None:
                raise CodeDepsError(f"entry module {entry_module} has no file under {root}")
            todo.append(target)
    if entry_file is not None:
        todo.append(entry_file)
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(direct_imports(root, path) - seen)
    return {path.relative_to(root).as_posix() for path in seen}


# --- what each stage should depend on -----------------------------------------------------------------------------

def stage_body(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where a stage's cmd and deps are: under `do:` for a foreach stage, at its top otherwise (matrix too)."""
    return definition["do"] if "foreach" in definition else definition


def entry_of(cmd: Any, root: Path) -> tuple[str | None, Path | None] | None:
    """(module, None) for `python -m module`, (None, file) for `python file.py`, None for a cmd that runs no Python."""
    text = " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)
    match = ENTRY.search(text)
    if match is None:
        return None
    if match.group(1):
        return match.group(1), None
    return None, root / match.group(2)


def is_code(path: str) -> bool:
    return path.split("/", 1)[0] in PROJECT_PACKAGES


def ordered(files: Iterable[str]) -> list[str]:
    """stages/ first (the entry point), then perpetual/, each sorted."""
    return sorted(files, key=lambda file: (PROJECT_PACKAGES.index(file.split("/", 1)[0]), file))


def wanted_deps(dvc: Mapping[str, Any], root: Path) -> dict[str, list[str]]:
    """Per stage whose cmd runs Python: the code deps it should have, in order."""
    wanted = {}
    for name, definition in (dvc.get("stages") or {}).items():
        entry = entry_of(stage_body(definition).get("cmd", ""), root)
        if entry is not None:
            wanted[name] = ordered(file for file in import_closure(root, *entry) if is_code(file))
    return wanted


# --- dvc.yaml as text ---------------------------------------------------------------------------------------------

def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def normalised(path: str) -> str:
    return Path(path).as_posix()   # drops a trailing slash and a leading ./


@dataclass
class Deps:
    """Where a stage's deps are in dvc.yaml's lines."""

    insert_at: int                # where the generated code deps go
    item_indent: int              # the indentation of a `- dep` line
    header: str | None            # a `deps:` line to add first (the stage had none), else None
    code: list[tuple[int, str]]   # each code dep line: (index, normalised path)


def stage_spans(lines: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each stage's name -> (index of its `name:` line, index after its block)."""
    start = next((i for i, line in enumerate(lines) if re.match(r"stages:\s*(#.*)?$", line)), None)
    if start is None:
        raise CodeDepsError("dvc.yaml has no top-level `stages:`")
    end = next((i for i in range(start + 1, len(lines)) if is_content(lines[i]) and indent_of(lines[i]) == 0), len(lines))
    keys = [i for i in range(start + 1, end) if is_content(lines[i])]
    if not keys:
        return {}
    indent = indent_of(lines[keys[0]])
    heads = []
    for i in keys:
        if indent_of(lines[i]) == indent:
            match = re.match(rf" {{{indent}}}(['\"]?)([^'\"#:]+)\1:\s*(#.*)?$", lines[i])
            if match is None:
                raise CodeDepsError(f"dvc.yaml line {i + 1}: expected a stage name: {lines[i].strip()}")
            heads.append((match.group(2), i))
    return {name: (i, heads[k + 1][1] if k + 1 < len(heads) else end) for k, (name, i) in enumerate(heads)}


def find_deps(lines: Sequence[str], stage: str, span: tuple[int, int], foreach: bool) -> Deps:
    head, end = span
    start = head + 1
    if foreach:   # the body is under `do:`
        start = next((i + 1 for i in range(head + 1, end) if re.match(r"\s+do:\s*(#.*)?$", lines[i])), end)
    first = next((i for i in range(start, end) if is_content(lines[i])), None)
    if first is None or indent_of(lines[first]) <= indent_of(lines[head]):
        raise CodeDepsError(f"dvc.yaml: cannot find the body of stage {stage}")
    body = indent_of(lines[first])
    end = next((i for i in range(first, end) if is_content(lines[i]) and indent_of(lines[i]) < body), end)
    keys = {}
    for i in range(first, end):
        match = re.match(rf" {{{body}}}(\w+):(.*)$", lines[i])
        if match:
            keys[match.group(1)] = (i, match.group(2).strip())
    if "deps" not in keys:   # a new `deps:` after the cmd (and the lines a multi-line cmd goes on over)
        if "cmd" not in keys:
            raise CodeDepsError(f"dvc.yaml: stage {stage} has no `cmd:` at the indentation of its body")
        after = keys["cmd"][0] + 1
        for i in range(after, end):
            if is_content(lines[i]):
                if indent_of(lines[i]) <= body:
                    break
                after = i + 1
        return Deps(after, body + 2, " " * body + "deps:\n", [])
    at, value = keys["deps"]
    if value and not value.startswith("#"):
        raise CodeDepsError(f"dvc.yaml line {at + 1}: stage {stage}'s deps must be a block list (`- path` lines)")
    item_indent: int | None = None
    code = []
    for i in range(at + 1, end):
        line = lines[i]
        if not is_content(line):
            continue   # a blank line or a comment stays where it is
        indent, stripped = indent_of(line), line.strip()
        if stripped.startswith("-") and indent >= body and item_indent in (None, indent):
            item_indent = indent
            match = CODE_DEP.match(stripped)
            if match:
                code.append((i, normalised(match.group("path"))))
        elif item_indent is None or indent <= item_indent:
            break   # the next key: `params:`, `outs:`, ...
        # else: the rest of a multi-line item (a dep with options)
    return Deps(code[0][0] if code else at + 1, body + 2 if item_indent is None else item_indent, None, code)


def change(current: Sequence[str], wanted: Sequence[str], contiguous: bool) -> str | None:
    """What rewriting a stage's code deps from `current` to `wanted` does, in words; None if nothing."""
    added = [file for file in wanted if file not in current]
    removed = [file for file in dict.fromkeys(current) if file not in wanted]
    parts = [f"adds {', '.join(added)}"] * bool(added) + [f"removes {', '.join(removed)}"] * bool(removed)
    if not parts and list(current) != list(wanted):
        parts = ["reorders its code deps (or drops a repeated one)"]
    if not parts and not contiguous:
        parts = ["puts its code deps together"]
    return "; ".join(parts) or None


def rewrite(text: str, root: Path = ROOT) -> tuple[str, dict[str, str]]:
    """dvc.yaml's text with every Python stage's code deps generated from `root`'s code; and per changed stage, what."""
    dvc = yaml.safe_load(text) or {}
    wanted = wanted_deps(dvc, root)
    lines = text.splitlines(keepends=True)
    spans = stage_spans(lines)
    inserts: dict[int, list[str]] = {}
    removed: set[int] = set()
    changes = {}
    for stage, files in wanted.items():
        if stage not in spans:
            raise CodeDepsError(f"dvc.yaml: cannot find the lines of stage {stage}")
        deps = find_deps(lines, stage, spans[stage], "foreach" in dvc["stages"][stage])
        kept: dict[str, str] = {}   # an existing code dep line keeps its spelling and trailing comment
        for i, path in deps.code:
            kept.setdefault(path, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
        new = [kept.get(file, f"{' ' * deps.item_indent}- {file}\n") for file in files]
        inserts[deps.insert_at] = ([deps.header] if deps.header else []) + new
        removed.update(i for i, _ in deps.code)
        indexes = [i for i, _ in deps.code]
        contiguous = indexes == list(range(indexes[0], indexes[0] + len(indexes))) if indexes else True
        what = change([path for _, path in deps.code], files, contiguous)
        if what:
            changes[stage] = what
    out: list[str] = []
    for i, line in enumerate([*lines, ""]):
        out.extend(inserts.get(i, []))
        if i < len(lines) and i not in removed:
            out.append(line)
    result = "".join(out)
    check_rewritten(result, wanted)
    return result, changes


def check_rewritten(text: str, wanted: Mapping[str, Sequence[str]]) -> None:
    """The rewritten file, read as YAML, has exactly the generated code deps: a code dep this script cannot rewrite
    (one with options, `${...}` in its path) or a layout it misread fails here rather than going unnoticed."""
    stages = (yaml.safe_load(text) or {}).get("stages") or {}
    for stage, files in wanted.items():
        found = []
        for dep in stage_body(stages[stage]).get("deps") or []:
            for raw in dep if isinstance(dep, Mapping) else [dep]:
                if is_code(normalised(str(raw))):
                    found.append(normalised(str(raw)))
        if found != list(files):
            raise CodeDepsError(f"dvc.yaml: stage {stage}: cannot rewrite its code deps {found} as plain `- path` lines; "
                                f"write each as `- stages/...` or `- perpetual/...`")


def update(root: Path = ROOT, write: bool = True) -> dict[str, str]:
    """Rewrite root/dvc.yaml's code deps (unless not `write`); per stage that changes (or would), what."""
    path = root / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    new, changes = rewrite(text, root)
    if write and new != text:
        path.write_text(new, encoding="utf-8")
    return changes


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> None:
    parser = argparse.ArgumentParser(description="Generate dvc.yaml's code deps from the imports of each stage.")
    parser.add_argument("--check", action="store_true", help="touch nothing; exit 1 if dvc.yaml is stale")
    args = parser.parse_args(argv)
    try:
        changes = update(root, write=not args.check)
    except CodeDepsError as error:
        sys.exit(f"error: {error}")
    if args.check:
        for stage, what in changes.items():
            print(f"dvc.yaml: stage {stage} is stale (run `make deps`): it {what}", file=sys.stderr)
        if changes:
            sys.exit(1)
        return
    for stage, what in changes.items():
        print(f"dvc.yaml: stage {stage}: {what}")
    if not changes:
        print("dvc.yaml: code deps up to date")


if __name__ == "__main__":
    main()
