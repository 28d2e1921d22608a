"""End to end: the real stages through `dvc repro` on a very small slice of the embedded default, in a temp dir."""

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


def small_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"]["sources"]["code"]["include"] = ["brindlewick/kiln.py", "brindlewick/constants.py"]
    params["fetch"]["sources"]["products"]["max_products"] = 40
    params["generate"]["max_mcqs_per_task"] = 40
    for name in params["pipeline"]["models"]:
        params["init"]["models"][name].update({"hidden_size": 64, "num_hidden_layers": 1})
    params["init"]["tokenizer"]["vocab_size"] = 512
    params["init"]["copying"]["steps"] = 10  # the path runs; learning to copy is tests/test_copying.py's
    for spec in params["init"]["models"].values():
        if isinstance(spec.get("copying"), dict):
            spec["copying"]["steps"] = 10
    params["train"]["sft"].update({"num_train_epochs": 1, "save_steps": 5})
    params["instruct"]["sft"]["num_train_epochs"] = 1
    params["analysis"]["bootstrap_samples"] = 200
    return params


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_checked(command, cwd, env, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("project")
    for name in ["dvc.yaml", "stages", "perpetual", "prompts", "data/instruct", "data/retention", "configs"]:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, root / name)
    (root / "prompts").mkdir(exist_ok=True)
    sources = root / "data" / "sources"
    shutil.copytree(REPO / "data/sources/code", sources / "code")
    shutil.copytree(REPO / "data/sources/products", sources / "products")
    (sources / "research").mkdir(parents=True)
    shutil.copy(sorted((REPO / "data/sources/research").glob("*.md"))[0], sources / "research")
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(), sort_keys=False))

    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root / ".dvc-site"),
        "PYTHONPATH": str(root),
        "HF_HUB_OFFLINE": "1",
    }
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["dvc", "repro"], root, env)
    return root, env


def test_full_pipeline_writes_every_cell(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    rows = json.loads((root / "metrics/results.json").read_text())["rows"]
    cells = {(row["task"], row["model"], row["condition"], row["format"]) for row in rows}
    conditions = small_params()["evaluate"]["conditions"]   # params.yaml's default: all six of the table
    assert len(conditions) == 6
    assert len(cells) == 3 * 2 * len(conditions) * 2
    for row in rows:
        assert 0.0 <= row["ci_low"] <= row["acc"] <= row["ci_high"] <= 1.0
        assert row["n"] > 0
    table = (root / "metrics/results.md").read_text()
    assert "| Task | Model | Template | n | Base model | Fine-tuned | RAG | Fine-tuned + RAG |" in table
    assert {row["template"] for row in rows} == {"alpaca"}
    assert (root / "metrics/results.png").stat().st_size > 0
    copying = {name: spec["copying"] for name, spec in small_params()["init"]["models"].items() if "copying" in spec}
    for name in small_params()["pipeline"]["models"]:
        base = json.loads((root / f"metrics/init/{name}.json").read_text())
        assert ("copy_accuracy_after" in base) == bool(copying[name])


def test_second_repro_is_a_no_op(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    result = run(["dvc", "repro"], root, env)
    assert "Running stage" not in result.stdout


def test_one_cell_reruns_deterministically(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    metrics_file = root / "metrics/eval/products-gemma.json"
    before = metrics_file.read_text()
    run(["dvc", "repro", "--force", "--single-item", "train@products-gemma", "evaluate@products-gemma"], root, env)
    assert metrics_file.read_text() == before, "the same params must give identical metrics"


def marked(root: Path, env: dict[str, str]) -> set[str]:
    """The stages `dvc status` marks as changed."""
    return set(json.loads(run(["dvc", "status", "--json"], root, env).stdout or "{}"))


def test_one_tasks_param_marks_only_that_tasks_stages(project: tuple[Path, dict[str, str]]) -> None:
    """The graph in dvc.yaml keeps tasks apart: a change to products' source marks products' stages and no other
    task's. Its stages read it in turn: first fetch@products alone (the only stage whose params it is), then, once
    its data has changed, every stage that reads products' chunks, and stages per model (which read every task's)."""
    root, env = project
    tasks, models = small_params()["pipeline"]["tasks"], small_params()["pipeline"]["models"]
    assert "products" in tasks and len(tasks) > 1
    text = (root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["fetch"]["sources"]["products"]["max_products"] -= 1

    def task_of(stage: str) -> str | None:
        item = stage.partition("@")[2]
        return next((task for task in tasks if item == task or item.startswith(f"{task}-")), None)

    assert marked(root, env) == set()
    try:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert marked(root, env) == {"fetch@products"}
        run(["dvc", "repro", "chunk@products"], root, env)  # fetch@products and chunk@products: a few seconds
        after = marked(root, env)
        assert {stage for stage in after if task_of(stage)} == {
            "generate@products", "assemble@products", "index@products", *(f"evaluate@products-{model}" for model in models)}  # fmt: skip
        assert all(stage.partition("@")[2] in models for stage in after if not task_of(stage)), after
    finally:
        (root / "params.yaml").write_text(text)
        run(["dvc", "repro", "chunk@products"], root, env)  # back to the cached outputs, for the tests after
    assert marked(root, env) == set()


def test_bad_params_is_one_line(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    params = (root / "params.yaml").read_text()
    try:
        (root / "params.yaml").write_text(params.replace("chunk_size:", "chunk_sise:"))
        result = subprocess.run(
            [sys.executable, "-m", "stages.chunk", "--task", "code"], cwd=root, env=env, capture_output=True, text=True
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "chunk.chunk_sise" in result.stderr
    finally:
        (root / "params.yaml").write_text(params)


def test_push_then_pull_into_a_second_clone_restores_everything(project: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = project
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "-d", "test", str(remote)], root, env)
    run(["dvc", "push", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run"], root, env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    run(["dvc", "remote", "add", "--local", "-d", "test", str(remote)], clone, env)
    run(["dvc", "pull", "-q"], clone, env)
    assert (clone / "models/products-gemma/config.json").exists()
    assert (clone / "data/datasets/code").is_dir()
    status = run(["dvc", "status"], clone, {**env, "PYTHONPATH": str(clone)})
    assert "up to date" in status.stdout, status.stdout


def test_a_recipe_study_is_experiments_compared_on_the_same_questions(project: tuple[Path, dict[str, str]]) -> None:
    """`make study-real`'s path on the small project: one DVC experiment per recipe (the local teacher's included),
    then scripts/study.py reads them back. Runs last: it commits the project (dvc exp needs a commit)."""
    root, env = project
    # dvc exp commits each experiment: an identity of its own, whatever the machine's git config says.
    env = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline", "--allow-empty"], root, env)
    tiny_self_study = ["-S", "train.self_study.rephrasings=1", "-S", "train.self_study.rephrase_max_new_tokens=8"]
    for recipe in ("docs", "paraphrase"):
        result = run(["dvc", "exp", "run", "--name", f"study-{recipe}", "-S", f"train.recipe={recipe}", *tiny_self_study], root, env)
        ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
        assert not {stage for stage in ran if stage.startswith(("generate@", "assemble@", "index@"))}, ran  # material reused
    counted = json.loads((root / "metrics/recipe/code-gemma.json").read_text())  # the last experiment's, in the workspace
    assert counted["recipe"] == "paraphrase"
    kept = counted["self_study"].get("rephrasings_kept", 0)
    refused = sum(count for key, count in counted["self_study"].items() if key.startswith("rephrasings_refused_"))
    chunks = json.loads((root / "metrics/assemble/code.json").read_text())["train_docs"]
    assert kept + refused == counted["self_study"]["rephrase_asked"] == chunks  # every rephrasing accounted for
    assert counted["phases"] == [{"doc": chunks + kept}]  # each chunk and the rephrasings kept

    study = run([sys.executable, str(REPO / "scripts/study.py"), "--prefix", "study-", "--param", "train.recipe",
                 "--out", "metrics/studies/recipes"], root, env)  # fmt: skip
    result = json.loads((root / "metrics/studies/recipes.json").read_text())
    tasks, models = small_params()["pipeline"]["tasks"], small_params()["pipeline"]["models"]
    assert {arm["value"] for arm in result["arms"]} == {"docs", "paraphrase"}
    assert {(row["task"], row["model"], row["arm"]) for row in result["rows"]} == {
        (task, model, arm) for task in tasks for model in models for arm in ("docs", "paraphrase")}  # fmt: skip
    assert len(result["pairwise"]) == len(tasks) * len(models) * 2  # one pair per cell and format
    assert all(pair["n"] == 40 or pair["task"] != "products" for pair in result["pairwise"])
    assert (root / "metrics/studies/recipes.png").stat().st_size > 0 and "| paraphrase |" in study.stdout

    # The records outlive the experiments: with one experiment gone, the study is the same.
    assert len(list((root / "metrics/studies/recipes-arms").glob("*.json"))) == len(tasks) * len(models) * 2
    run(["dvc", "exp", "remove", "study-docs"], root, env)
    run([sys.executable, str(REPO / "scripts/study.py"), "--prefix", "study-", "--param", "train.recipe",
         "--out", "metrics/studies/recipes"], root, env)  # fmt: skip
    assert json.loads((root / "metrics/studies/recipes.json").read_text()) == result
