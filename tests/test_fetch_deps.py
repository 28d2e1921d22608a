"""A source is a dependency of its fetch stage wherever it lives: editing a catalogue outside the repository, or
changing a git source's pinned commit, makes `dvc status` report the fetch stage changed (real DVC, temp repo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perpetual.testing.params import spec

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def stale(project: Path, env: dict[str, str], stage: str) -> dict:
    """`dvc status --json` for one stage: {} when up to date."""
    return json.loads(run([str(BIN / "dvc"), "status", "--json", stage], project, env) or "{}")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    for name in ["dvc.yaml", "stages", "perpetual"]:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    shutil.copy(REPO / "data/sources/products/catalogue.csv", elsewhere / "catalogue.csv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"]["sources"]["products"]["path"] = str(elsewhere / "catalogue.csv")   # outside the repository
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    run(["git", "init", "--quiet"], root, env)
    run([str(BIN / "dvc"), "init", "--quiet"], root, env)
    return root, elsewhere, env


def test_editing_an_external_catalogue_makes_its_fetch_stale(project: tuple[Path, Path, dict[str, str]]) -> None:
    root, elsewhere, env = project
    run([str(BIN / "dvc"), "repro", "--quiet", "fetch@products"], root, env)
    assert stale(root, env, "fetch@products") == {}
    catalogue = elsewhere / "catalogue.csv"
    header = catalogue.read_text().splitlines()[0]
    extra = [",".join(f"NEW-{n}" if field == "product_id" else "x" for field in header.split(",")) for n in range(3)]
    with catalogue.open("a") as file:
        file.write("\n".join(extra) + "\n")
    changed = stale(root, env, "fetch@products")
    assert changed, "adding products to an external catalogue left fetch@products up to date"
    assert str(catalogue) in json.dumps(changed)


def test_changing_a_git_pin_makes_its_fetch_stale(project: tuple[Path, Path, dict[str, str]]) -> None:
    root, elsewhere, env = project
    upstream = elsewhere / "upstream"
    upstream.mkdir()
    identity = ["-c", "user.email=a@b", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    commits = []
    for version in (1, 2):
        (upstream / "core.py").write_text(f'"""The core."""\n\nVERSION = {version}\n')
        run(["git", "init", "--quiet"], upstream, env)
        run(["git", *identity, "add", "-A"], upstream, env)
        run(["git", *identity, "commit", "--quiet", "-m", f"v{version}"], upstream, env)
        commits.append(run(["git", "rev-parse", "HEAD"], upstream, env).strip())
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["fetch"]["sources"]["code"]
    params["fetch"]["remote_sources"] = {"code": spec("git", url=str(upstream), commit=commits[0], include=["**/*.py"])}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    run([str(BIN / "dvc"), "repro", "--quiet", "fetch-remote@code"], root, env)
    assert stale(root, env, "fetch-remote@code") == {}
    assert json.loads((root / "metrics/fetch/code.json").read_text())["revision"] == commits[0]
    params["fetch"]["remote_sources"]["code"]["commit"] = commits[1]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "fetch.remote_sources.code" in json.dumps(stale(root, env, "fetch-remote@code"))
