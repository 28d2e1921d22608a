"""dvc.yaml's code deps are what scripts/code_deps.py (`make deps`) generates from each stage's imports.

Per module, both ways: a file the stage imports but does not depend on would leave `dvc repro` reporting stale results
as up to date; a dep on a module it never imports would re-run it (say, retrain every model) for nothing. The
generator itself is checked on a tiny fake project: nothing is imported or executed, so this is fast.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
code_deps = importlib.import_module("code_deps")


def write(root: Path, rel: str, text: str = "") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, encoding="utf-8")


def test_dvc_yaml_code_deps_are_generated() -> None:
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    new, changes = code_deps.rewrite(text, ROOT)
    assert new == text, "dvc.yaml's code deps do not match the stages' imports; run `make deps`:\n" + "\n".join(
        f"  {stage}: {what}" for stage, what in changes.items())


def test_every_python_stage_is_covered() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    wanted = code_deps.wanted_deps(dvc, ROOT)
    for name, definition in dvc["stages"].items():
        cmd = code_deps.stage_body(definition)["cmd"]
        if "python" not in str(cmd):
            continue
        assert name in wanted, f"stage {name}: no entry module found in {cmd!r}"
        module, script = code_deps.entry_of(cmd, ROOT)
        entry = code_deps.module_file(ROOT, module) if module else script
        assert entry is not None and entry.relative_to(ROOT).as_posix() in wanted[name], name
        assert "stages/__init__.py" in wanted[name], name


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    write(tmp_path, "stages/__init__.py")
    write(tmp_path, "stages/demo.py", "import os\nfrom perpetual import paths, VERSION\n"
                                      "def main():\n    from perpetual.sub.deep import f\n")
    write(tmp_path, "perpetual/__init__.py", "VERSION = 1\n")
    write(tmp_path, "perpetual/paths.py", "import perpetual.io\n")
    write(tmp_path, "perpetual/io.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from perpetual import typed\n")
    write(tmp_path, "perpetual/typed.py")
    write(tmp_path, "perpetual/sub/__init__.py")
    write(tmp_path, "perpetual/sub/deep.py", "from . import sibling\nfrom ..records import X\nimport importlib\n"
                                             "importlib.import_module('perpetual.plugin')\n")
    write(tmp_path, "perpetual/sub/sibling.py")
    write(tmp_path, "perpetual/records.py")
    write(tmp_path, "perpetual/plugin.py")
    write(tmp_path, "perpetual/unused.py")

    assert code_deps.import_closure(tmp_path, "stages.demo") == {
        "stages/__init__.py", "stages/demo.py", "perpetual/__init__.py", "perpetual/paths.py", "perpetual/io.py",
        "perpetual/sub/__init__.py", "perpetual/sub/deep.py", "perpetual/sub/sibling.py", "perpetual/records.py",
        "perpetual/plugin.py",
    }


STALE = """\
# a comment kept as it is
stages:
  a:   # foreach: the deps are under do:
    foreach: [x, y]
    do:
      cmd: python -m stages.a --task ${item}
      deps:
        - data/${item}.jsonl   # data first
        - perpetual/old.py
        - stages/a.py          # the entry point
        # a comment inside the list
        - perpetual
      outs:
        - out/${item}
  b:
    matrix:
      m: [1, 2]
    cmd: python -m stages.b --m ${item.m}
    deps:
    - data/b.json
    params:
      - b
  c:
    cmd: >-
      python -m stages.b
      --flag
    outs:
      - out/c
  shell:
    cmd: echo hi
    deps:
      - perpetual/io.py   # runs no Python: left alone
"""

FRESH = """\
# a comment kept as it is
stages:
  a:   # foreach: the deps are under do:
    foreach: [x, y]
    do:
      cmd: python -m stages.a --task ${item}
      deps:
        - data/${item}.jsonl   # data first
        - stages/__init__.py
        - stages/a.py          # the entry point
        - perpetual/__init__.py
        - perpetual/io.py
        # a comment inside the list
      outs:
        - out/${item}
  b:
    matrix:
      m: [1, 2]
    cmd: python -m stages.b --m ${item.m}
    deps:
    - stages/__init__.py
    - stages/b.py
    - perpetual/__init__.py
    - perpetual/report.py
    - data/b.json
    params:
      - b
  c:
    cmd: >-
      python -m stages.b
      --flag
    deps:
      - stages/__init__.py
      - stages/b.py
      - perpetual/__init__.py
      - perpetual/report.py
    outs:
      - out/c
  shell:
    cmd: echo hi
    deps:
      - perpetual/io.py   # runs no Python: left alone
"""


def test_generator_rewrites_only_code_deps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "stages/__init__.py")
    write(tmp_path, "stages/a.py", "from perpetual.io import read\n")
    write(tmp_path, "stages/b.py", "def main():\n    from perpetual import report\n")
    for name in ("__init__", "io", "report", "old"):
        write(tmp_path, f"perpetual/{name}.py")
    write(tmp_path, "dvc.yaml", STALE)

    with pytest.raises(SystemExit) as failed:   # --check reports each stale stage and touches nothing
        code_deps.main(["--check"], root=tmp_path)
    assert failed.value.code == 1
    assert (tmp_path / "dvc.yaml").read_text(encoding="utf-8") == STALE
    assert capsys.readouterr().err.splitlines() == [
        "dvc.yaml: stage a is stale (run `make deps`): it adds stages/__init__.py, perpetual/__init__.py, "
        "perpetual/io.py; removes perpetual/old.py, perpetual",
        "dvc.yaml: stage b is stale (run `make deps`): it adds stages/__init__.py, stages/b.py, perpetual/__init__.py, "
        "perpetual/report.py",
        "dvc.yaml: stage c is stale (run `make deps`): it adds stages/__init__.py, stages/b.py, perpetual/__init__.py, "
        "perpetual/report.py",
    ]

    code_deps.main([], root=tmp_path)
    assert (tmp_path / "dvc.yaml").read_text(encoding="utf-8") == FRESH
    assert code_deps.rewrite(FRESH, tmp_path) == (FRESH, {})   # idempotent
    code_deps.main(["--check"], root=tmp_path)


def test_a_code_dep_it_cannot_rewrite_fails_clearly(tmp_path: Path) -> None:
    write(tmp_path, "stages/__init__.py")
    write(tmp_path, "stages/a.py")
    text = "stages:\n  a:\n    cmd: python -m stages.a\n    deps:\n      - stages/a.py:\n          hash: md5\n"
    with pytest.raises(code_deps.CodeDepsError, match="stage a: cannot rewrite"):
        code_deps.rewrite(text, tmp_path)
