"""dvc.yaml's code deps match the project code each stage actually runs, module by module.

For every stage, the entry module named by its `cmd` (`python -m stages.<name>`) is parsed with `ast` and the
project imports (`perpetual...`, `stages...`) are followed transitively: module-level and function-local imports,
`from perpetual import paths` (a submodule) as well as `from perpetual.io import read_jsonl`, relative imports,
and `importlib.import_module("perpetual...")` with a literal name. Every package a module lives in is imported
before it, so its `__init__.py` is in the closure too. Imports under `if TYPE_CHECKING:` never run and are left out.

Two checks per stage:
* every file of the closure is covered by a dep (the file itself, or a dep folder that contains it): otherwise
  editing that file re-runs nothing and `dvc repro` reports stale results as up to date;
* every code dep (a path inside perpetual/ or stages/) is in the closure, file by file: otherwise editing a module
  the stage never runs (say perpetual/report.py) re-runs it (say, retrains every model) for nothing.

Nothing is imported or executed, so this is fast and needs none of the heavy dependencies.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("perpetual", "stages")   # top-level packages whose files are code deps

INTERPOLATION = re.compile(r"\$\{\s*([^}]*?)\s*\}")
ENTRY = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)|(?:^|\s)(?:python[\d.]*\s+)((?:[\w.-]+/)*[\w.-]+\.py)\b")


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
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
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
    except SyntaxError as error:   # a half-written file: say which, rather than guess its imports
        pytest.fail(f"cannot parse {path.relative_to(root)}: {error}")
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
                raise AssertionError(f"entry module {entry_module} has no file under {root}")
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


# --- dvc.yaml ------------------------------------------------------------------------------------------------------

def lookup(context: Mapping[str, Any], key: str) -> Any:
    value: Any = context
    for part in key.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(key)
    return value


def resolve(text: str, context: Mapping[str, Any]) -> str | None:
    """`${...}` filled from params/vars; None when it needs `${item...}`/`${key}` (per-item data) or is unknown."""
    try:
        return INTERPOLATION.sub(lambda match: str(lookup(context, match.group(1))), text)
    except KeyError:
        return None


def load_context(root: Path, dvc: Mapping[str, Any]) -> dict[str, Any]:
    """What `${...}` outside `item` may refer to: params.yaml (DVC's default vars) and dvc.yaml's top-level vars."""
    context: dict[str, Any] = {}
    params = root / "params.yaml"
    if params.is_file():
        context.update(yaml.safe_load(params.read_text(encoding="utf-8")) or {})
    for entry in dvc.get("vars") or []:
        if isinstance(entry, Mapping):
            context.update(entry)
        elif isinstance(entry, str):
            file = root / entry.split(":", 1)[0]
            if file.is_file():
                context.update(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    return context


def stage_body(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    return definition["do"] if "foreach" in definition else definition


def dep_paths(body: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    """The stage's deps as normalised relative paths, leaving out those that need the stage's item."""
    resolved = []
    for dep in body.get("deps") or []:
        for raw in (dep.keys() if isinstance(dep, Mapping) else [dep]):
            path = resolve(str(raw), context)
            if path is not None:
                resolved.append(Path(path).as_posix().rstrip("/") or ".")
    return resolved


def covers(dep: str, file: str) -> bool:
    return dep in (".", file) or file.startswith(dep + "/")


def entry_of(cmd: Any, root: Path) -> tuple[str | None, Path | None]:
    text = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    match = ENTRY.search(text)
    if match is None:
        raise AssertionError(f"cannot find the entry module in cmd {text!r} (expected `python -m stages.<name>`)")
    if match.group(1):
        return match.group(1), None
    return None, root / match.group(2)


def closures(dvc: Mapping[str, Any], root: Path) -> dict[str, set[str]]:
    result = {}
    for name, definition in (dvc.get("stages") or {}).items():
        module, script = entry_of(stage_body(definition)["cmd"], root)
        result[name] = import_closure(root, module, script)
    return result


def missing_deps(dvc: Mapping[str, Any], root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage: project files it imports (directly or not) that none of its deps covers."""
    context = load_context(root, dvc)
    missing = {}
    for name, closure in closures(dvc, root).items():
        deps = dep_paths(stage_body(dvc["stages"][name]), context)
        uncovered = sorted(file for file in closure if not any(covers(dep, file) for dep in deps))
        if uncovered:
            missing[name] = uncovered
    return missing


def needless_deps(dvc: Mapping[str, Any], root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage: code deps (inside perpetual/ or stages/) naming files the stage never imports."""
    context = load_context(root, dvc)
    needless = {}
    for name, closure in closures(dvc, root).items():
        extra = []
        for dep in dep_paths(stage_body(dvc["stages"][name]), context):
            if dep.split("/", 1)[0] not in PROJECT_PACKAGES:
                continue
            path = root / dep
            files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
            extra += [f"{dep} ({f.relative_to(root).as_posix()})" if path.is_dir() else dep
                      for f in files if f.relative_to(root).as_posix() not in closure]
        if extra:
            needless[name] = extra
    return needless


def describe(per_stage: Mapping[str, Iterable[str]]) -> str:
    return "\n".join(f"  {stage}: {', '.join(files)}" for stage, files in per_stage.items())


def load_dvc(root: Path = ROOT) -> dict[str, Any]:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))


# --- the checks on this project ----------------------------------------------------------------------------------

def test_every_imported_project_file_is_a_dep_of_its_stage() -> None:
    missing = missing_deps(load_dvc())
    assert not missing, (
        "dvc.yaml: these project files are imported by the stage (directly or not) but are not among its deps, "
        "so editing them re-runs nothing; add them to the stage's deps:\n" + describe(missing)
    )


def test_no_stage_depends_on_code_it_does_not_import() -> None:
    needless = needless_deps(load_dvc())
    assert not needless, (
        "dvc.yaml: these code deps are not imported by the stage, so editing them re-runs it for nothing; "
        "remove them (deps are per module):\n" + describe(needless)
    )


def test_every_stage_is_checked() -> None:
    dvc = load_dvc()
    found = closures(dvc, ROOT)
    assert set(found) == set(dvc["stages"])
    for name, closure in found.items():   # each stage's entry point and the packages it lives in
        entry = "fetch" if name == "fetch-remote" else name   # the one script serves both fetch stages
        assert "stages/__init__.py" in closure and f"stages/{entry}.py" in closure, name


# --- the checker itself can fail ---------------------------------------------------------------------------------

def test_a_removed_dep_is_reported() -> None:
    dvc = load_dvc()
    assert "perpetual/models.py" in stage_body(dvc["stages"]["train"])["deps"]
    before = missing_deps(dvc)
    broken = copy.deepcopy(dvc)
    stage_body(broken["stages"]["train"])["deps"].remove("perpetual/models.py")
    after = missing_deps(broken)
    assert after["train"] == sorted(before.get("train", []) + ["perpetual/models.py"])
    assert {k: v for k, v in after.items() if k != "train"} == before
    # a folder dep covers what is inside it, but is coarser than per module
    stage_body(broken["stages"]["train"])["deps"].append("perpetual")
    assert "train" not in missing_deps(broken)
    assert "perpetual/report.py" in " ".join(needless_deps(broken)["train"])


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    def write(rel: str, text: str = "") -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")

    write("stages/__init__.py")
    write("stages/demo.py", "import os\nfrom perpetual import paths, VERSION\n"
                            "def main():\n    from perpetual.sub.deep import f\n")
    write("perpetual/__init__.py", "VERSION = 1\n")
    write("perpetual/paths.py", "import perpetual.io\n")
    write("perpetual/io.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from perpetual import typed\n")
    write("perpetual/typed.py")
    write("perpetual/sub/__init__.py")
    write("perpetual/sub/deep.py", "from . import sibling\nfrom ..records import X\nimport importlib\n"
                                   "importlib.import_module('perpetual.plugin')\n")
    write("perpetual/sub/sibling.py")
    write("perpetual/records.py")
    write("perpetual/plugin.py")
    write("perpetual/unused.py")

    closure = import_closure(tmp_path, "stages.demo")
    assert closure == {
        "stages/__init__.py", "stages/demo.py", "perpetual/__init__.py", "perpetual/paths.py", "perpetual/io.py",
        "perpetual/sub/__init__.py", "perpetual/sub/deep.py", "perpetual/sub/sibling.py", "perpetual/records.py",
        "perpetual/plugin.py",
    }

    dvc = {"stages": {"demo": {
        "foreach": ["a", "b"],
        "do": {"cmd": "python -m stages.demo --task ${item}",
               "deps": ["stages", "perpetual/sub", "perpetual/__init__.py", "perpetual/paths.py",
                        "perpetual/${item}.py", "data/${item}.jsonl"]},
    }}}
    assert missing_deps(dvc, tmp_path) == {"demo": ["perpetual/io.py", "perpetual/plugin.py", "perpetual/records.py"]}


def test_interpolated_deps_resolve_from_params(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("lib:\n  dir: perpetual\n", encoding="utf-8")
    assert resolve("${lib.dir}/io.py", load_context(tmp_path, {})) == "perpetual/io.py"
    assert resolve("models/${item.model}", load_context(tmp_path, {})) is None
