"""Rounds end to end: the real round stages through `dvc repro` on a very small project (three slices of the products
catalogue, a tiny Gemma, two replay arms), then the graph's promise checked with `dvc status`: changing the last
round's slice marks its stages only, never an earlier round's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from command_support import run_checked

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLAN = {
    "r1": {"task": "products", "sources": ["catalogue.csv#PX-100*"], "after": "base"},
    "r2": {"task": "products", "sources": ["catalogue.csv#PX-101*"], "after": "r1"},
    "r3": {"task": "products", "sources": ["catalogue.csv#PX-102*"], "after": "r2"},
}


def small_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pipeline"].update({"tasks": ["products"], "models": ["gemma"]})
    params["fetch"]["sources"]["products"]["max_products"] = 30
    params["generate"]["max_mcqs_per_task"] = 90
    params["init"]["models"]["gemma"].update({"hidden_size": 64, "num_hidden_layers": 1})
    params["init"]["tokenizer"]["vocab_size"] = 512
    params["init"]["copying"]["steps"] = 10
    params["train"]["sft"].update({"num_train_epochs": 1, "save_steps": 50})
    params["train"]["task_overrides"] = {}
    params["instruct"]["sft"]["num_train_epochs"] = 1
    params["evaluate"].update({"formats": ["cloze"]})
    params["evaluate"]["retention"]["limit"] = 6
    params["analysis"]["bootstrap_samples"] = 200
    params["rounds"].update({"model": "gemma", "plan": PLAN, "replay": {"arms": ["none", "earlier"], "earlier_fraction": 0.2}})
    return params


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_checked(command, cwd, env, timeout=2400)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("rounds")
    for name in ["dvc.yaml", "stages", "perpetual", "prompts", "data/instruct", "data/retention", "data/rounds/base"]:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__")) if (REPO / name).is_dir() else shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "data/sources/products", root / "data/sources/products")
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(), sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(root / ".dvc-site"), "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["dvc", "repro", "report-round"], root, env)
    return root, env


def marked(root: Path, env: dict[str, str]) -> set[str]:
    """The round stages `dvc status` marks as changed (the single-round stages this project never ran are left out)."""
    return {stage for stage in json.loads(run(["dvc", "status", "--json"], root, env).stdout or "{}") if "round" in stage}


def test_every_round_is_reported(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    report = json.loads((root / "metrics/rounds/gemma/r3.json").read_text())
    assert report["rounds"] == ["r1", "r2", "r3"] and report["arms"] == ["none", "earlier"]
    for arm in ("none", "earlier"):
        matrix = report["matrix"][arm]["cloze"]
        assert {k: sorted(row) for k, row in matrix.items()} == {"r1": ["r1"], "r2": ["r1", "r2"], "r3": ["r1", "r2", "r3"]}
        assert set(report["forgetting"][arm]["cloze"]["r3"]) == {"r1", "r2"}
        assert set(report["retention"][arm]) == {"r1", "r2", "r3"}
    assert set(report["rag"]["cloze"]["r3"]) == {"r1", "r2", "r3", "union"}
    trained = json.loads((root / "metrics/train-round/r1-gemma.json").read_text())
    assert trained["arms"]["earlier"]["same_as"] == "none"  # no earlier round to replay: trained once
    assert json.loads((root / "metrics/train-round/r2-gemma.json").read_text())["arms"]["earlier"]["replayed"]["earlier"] > 0
    assert (root / "metrics/rounds/gemma/r3.png").stat().st_size > 0 and "forgetting matrix" in (root / "metrics/rounds/gemma/r3.md").read_text()


def test_changing_the_last_rounds_slice_leaves_the_earlier_rounds_up_to_date(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    text = (root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["rounds"]["plan"]["r3"]["sources"] = ["catalogue.csv#PX-102*", "catalogue.csv#PX-1030"]
    assert marked(root, env) == set()
    try:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert marked(root, env) == {"round-data@r3", "rag-round@r3"}  # the stages that read its plan entry
        run(["dvc", "repro", "round-data@r3"], root, env)  # its material changed: the stages reading it are next
        assert marked(root, env) == {"train-round@r3", "score-round@r3", "rag-round@r3"}
    finally:
        (root / "params.yaml").write_text(text)
        run(["dvc", "repro", "round-data@r3"], root, env)
    assert marked(root, env) == set()
