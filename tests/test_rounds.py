"""Rounds (docs/rounds.md): the `rounds` params, a round's material and replay, the forgetting statistics on synthetic
predictions, and the DVC graph's promise: a round's stages depend on the rounds before it only, so changing a round
re-runs it and the rounds after it, never one before."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import yaml

from perpetual.config import parse_params
from perpetual.errors import UserError
from perpetual.forgetting import history_rows, markdown, plot, rounds_report
from perpetual.rounds import arm_phases, extend_union, in_slice, round_material
from perpetual.rounds_params import RoundSpec
from perpetual.rows import Question, Text, replay_rows, with_replay
from perpetual.statistics import mcnemar_exact
from perpetual.testing.params import params_dict

REPO = Path(__file__).resolve().parents[1]
PLAN = {
    "r1-code": {"task": "code", "sources": None, "after": "base"},
    "r2-research": {"task": "research", "sources": None, "after": "r1-code"},
    "r3-products": {"task": "products", "sources": None, "after": "r2-research"},
}


def with_plan(plan: dict | None = None, **rounds: object) -> dict:
    raw = params_dict()
    raw["rounds"]["plan"] = copy.deepcopy(PLAN if plan is None else plan)
    raw["rounds"].update(rounds)
    return raw


def error_for(raw: dict) -> str:
    with pytest.raises(UserError) as caught:
        parse_params(raw)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# ---------------------------------------------------------------- params
def test_the_shipped_plan_is_empty_and_a_plan_of_three_rounds_loads() -> None:
    assert parse_params(params_dict()).rounds.plan == {}
    rounds = parse_params(with_plan()).rounds
    assert rounds.order() == list(PLAN) and rounds.first("r1-code") and not rounds.first("r2-research")
    assert rounds.plan["r3-products"] == RoundSpec(task="products", sources=None, after="r2-research")


def test_an_empty_plan_constrains_nothing_else() -> None:
    """run-real sets pipeline.models=[smollm2]: with no rounds, rounds.model need not be one of them."""
    raw = params_dict({"pipeline": {"models": ["smollm2"]}})
    assert parse_params(raw).rounds.model == "gemma"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda plan: plan["r2-research"].update(after="base"), "rounds.plan.r2-research.after is 'base'; a round follows the one before it in the plan: write after: r1-code"),
        (lambda plan: plan["r1-code"].update(after="r0"), "write after: base"),
        (lambda plan: plan["r1-code"].update(task="poetry"), "rounds.plan.r1-code.task is 'poetry', which is not in pipeline.tasks"),
        (lambda plan: plan["r1-code"].update(sources=[]), "rounds.plan.r1-code.sources is empty"),
        (lambda plan: plan["r1-code"].update(souces=None), "unknown key 'rounds.plan.r1-code.souces'"),
        (lambda plan: plan["r1-code"].pop("after"), "missing required key 'rounds.plan.r1-code.after'"),
    ],
)
def test_a_bad_round_is_one_line_naming_it(change, named: str) -> None:
    plan = copy.deepcopy(PLAN)
    change(plan)
    assert named in error_for(with_plan(plan))


@pytest.mark.parametrize(("name", "named"), [("code", "cannot be named 'code'"), ("base", "cannot name a round"), ("a/b", "cannot name a round"),
                                             ("init", "cannot be named 'init'")])  # fmt: skip
def test_a_round_is_not_named_like_a_task_or_base(name: str, named: str) -> None:
    assert named in error_for(with_plan({name: {"task": "code", "sources": None, "after": "base"}}))


def test_the_model_and_the_arms_are_checked() -> None:
    assert "rounds.model is 'llama'" in error_for(with_plan(model="llama"))
    assert "more than once" in error_for(with_plan(replay={"arms": ["none", "none"], "earlier_fraction": 0.1}))
    assert "must stay below 1" in error_for(with_plan(replay={"arms": ["mixture"], "earlier_fraction": 0.95}))
    assert "rounds.replay.arms" in error_for(with_plan(replay={"arms": ["everything"], "earlier_fraction": 0.1}))


# ---------------------------------------------------------------- material and replay
def chunk(chunk_id: str, source: str) -> dict:
    return {"chunk_id": chunk_id, "task": "research", "source": source, "language": "markdown", "text": f"text of {chunk_id}"}


def material_of(name: str, sources: list[str] | None, limit: int | None = None):
    chunks = [chunk("a", "paper-1.md"), chunk("b", "paper-2.md"), chunk("c", "notes/paper-3.md")]
    rows = [{"type": "doc", "chunk_id": c["chunk_id"], "text": c["text"]} for c in chunks]
    rows += [{"type": "qna", "chunk_id": c["chunk_id"], "instruction": f"q {c['chunk_id']}", "input": "", "answer": "x"} for c in chunks]
    mcqs = [{"mcq_id": f"{c['chunk_id']}{i}", "chunk_id": c["chunk_id"]} for c in chunks for i in range(3)]
    return round_material(name, RoundSpec(task="research", sources=sources, after="base"), chunks, rows, mcqs, limit)


def test_a_slice_is_its_chunks_rows_and_mcqs() -> None:
    assert in_slice("notes/paper-3.md", None) and in_slice("paper-1.md", ["paper-[12].md"]) and not in_slice("notes/paper-3.md", ["paper-*"])
    material = material_of("r1", ["paper-1.md", "notes/*"], limit=4)
    assert [c["chunk_id"] for c in material.chunks] == ["a", "c"]
    assert {row["chunk_id"] for row in material.rows} == {"a", "c"} and len(material.flashcards) == 2
    assert [mcq["mcq_id"] for mcq in material.mcqs] == ["a0", "a1", "a2", "c0"]  # evaluate.limit: the first N
    with pytest.raises(UserError, match="match no chunk of task 'research'"):
        material_of("r1", ["missing*"])


def test_the_union_grows_by_round_and_slices_must_not_overlap() -> None:
    first = extend_union({}, "r1", "research", material_of("r1", ["paper-1.md"]))
    second = extend_union(first, "r2", "research", material_of("r2", ["paper-2.md"]))
    assert [(m["mcq_id"], m["round"], m["task"]) for m in second["mcq"]][::3] == [("a0", "r1", "research"), ("b0", "r2", "research")]
    assert [c["round"] for c in second["chunks"]] == ["r1", "r2"] and len(second["flashcards"]) == 2
    with pytest.raises(UserError, match=r"in round\(s\) \['r1'\] already"):
        extend_union(second, "r3", "research", material_of("r3", ["paper-[13].md"]))


def train_settings(**replay: object):
    raw = params_dict()
    raw["train"]["replay"].update(replay)
    return parse_params(raw).train


def test_the_arms_replay_what_they_name_at_their_shares() -> None:
    settings = train_settings(fraction=0.1)
    own = [Text(f"c{i}", "t") for i in range(90)]
    generic = replay_rows(settings)
    earlier = [Question(f"old{i}", f"q{i}", "", "a") for i in range(200)]
    phases = [own, own[:45]]
    assert arm_phases("none", phases, settings, generic, earlier, 0.2, 0) == phases
    # generic: train@'s replay, row for row, each phase drawn with seed + phase - 1
    assert arm_phases("generic", phases, settings, generic, earlier, 0.2, 7) == [with_replay(own, settings, generic, 7), with_replay(own[:45], settings, generic, 8)]
    drawn = arm_phases("earlier", [own], settings, generic, earlier, 0.25, 0)[0]
    assert len(drawn) == 120 and sum(row.chunk_id.startswith("old") for row in drawn) == 30
    mixed = arm_phases("mixture", [own], settings, generic, earlier, 0.2, 0)[0]
    shares = {kind: sum(1 for row in mixed if kind(row)) / len(mixed) for kind in (lambda r: r.chunk_id.startswith("old"), lambda r: r in generic)}
    assert list(shares.values()) == pytest.approx([0.2, 0.1], abs=0.01)
    # the first round has no earlier rounds: earlier is none, mixture is generic
    assert arm_phases("earlier", phases, settings, generic, [], 0.2, 0) == phases
    assert arm_phases("mixture", phases, settings, generic, [], 0.2, 3) == arm_phases("generic", phases, settings, generic, [], 0.2, 3)


# ---------------------------------------------------------------- the forgetting statistics
ROUNDS = ["r1", "r2", "r3"]
N = 40


def outcome(seed: str, share: float) -> list[int]:
    """N outcomes, `share` of them right, in an order fixed by `seed`."""
    right = [1] * round(share * N) + [0] * (N - round(share * N))
    random.Random(seed).shuffle(right)
    return right


def synthetic_history() -> list[dict]:
    """One arm: base at 0.25 everywhere; each round learns its questions (0.75 right after it) and arm `none` forgets
    a round's questions by 0.25 per later round; RAG reads 0.5."""
    rows = []
    for position, k in enumerate(ROUNDS):
        mcq = [{"arm": "base", "context": "none", "round": k, "task": f"t{k}", "format": "cloze", "mcq_id": f"{k}-{i}", "acc": acc}
               for i, acc in enumerate(outcome(f"base{k}", 0.25))]  # fmt: skip
        for j in ROUNDS[: position + 1]:
            mcq += [{"arm": "base", "context": "rag", "round": j, "task": f"t{j}", "format": "cloze", "mcq_id": f"{j}-{i}", "acc": acc}
                    for i, acc in enumerate(outcome(f"rag{j}", 0.5))]  # fmt: skip
            # right after its round: the base's right answers and half the rest; later rounds lose the learned ones in turn
            learned = outcome(f"base{j}", 0.25)
            extra = [i for i, acc in enumerate(learned) if not acc][: 20]
            now = [1 if acc or i in extra else 0 for i, acc in enumerate(learned)]
            lost = extra[: 10 * (position - ROUNDS.index(j))]
            mcq += [{"arm": "none", "context": "none", "round": j, "task": f"t{j}", "format": "cloze", "mcq_id": f"{j}-{i}",
                     "acc": 0 if i in lost else acc} for i, acc in enumerate(now)]  # fmt: skip
        retention = [{"model": "base", "index": i, "loglik_total": -2.0, "loglik_tokens": 2, "follows": True, "stop": "eos", "similarity": 0.5}
                     for i in range(10)] if position == 0 else []  # fmt: skip
        retention += [{"model": "none", "index": i, "loglik_total": -2.0 - position - i / 10, "loglik_tokens": 2, "follows": i >= position,
                       "stop": "eos", "similarity": 0.5 - 0.1 * position} for i in range(10)]  # fmt: skip
        rows += history_rows(k, mcq, retention)
    return rows


def test_the_forgetting_matrix_and_its_tests_on_synthetic_predictions(tmp_path: Path) -> None:
    report = rounds_report(synthetic_history(), bootstrap_samples=200, alpha=0.05, seed=0)
    assert report["rounds"] == ROUNDS and report["arms"] == ["none"] and report["tasks"] == {k: f"t{k}" for k in ROUNDS}
    matrix = report["matrix"]["none"]["cloze"]
    assert {k: {j: cell["acc"] for j, cell in row.items()} for k, row in matrix.items()} == {
        "r1": {"r1": 0.75}, "r2": {"r1": 0.5, "r2": 0.75}, "r3": {"r1": 0.25, "r2": 0.5, "r3": 0.75}}  # fmt: skip
    assert all(cell["ci_low"] <= cell["acc"] <= cell["ci_high"] and cell["n"] == N for row in matrix.values() for cell in row.values())
    assert {j: cell["acc"] for j, cell in report["base"]["cloze"].items()} == dict.fromkeys(ROUNDS, 0.25)
    # forgetting of r1 at r3: 0.75 -> 0.25, the 20 learned answers lost, none recovered: McNemar on the same questions
    drop = report["forgetting"]["none"]["cloze"]["r3"]["r1"]
    assert drop["forgetting"] == 0.5 and drop["forgotten"] == 20 and drop["recovered"] == 0 and drop["forgot"]
    assert drop["p_value"] == mcnemar_exact([1] * 20, [0] * 20)["p_value"]
    assert report["forgetting"]["none"]["cloze"]["r2"]["r1"]["forgotten"] == 10
    learned = report["learned"]["none"]["cloze"]["r2"]
    assert learned["gain"] == 0.5 and learned["acquired"] == 20 and learned["learned"]
    per_round = report["per_round"]["none"]["cloze"]
    assert per_round["r1"] == {"own": 0.75, "earlier": None, "mean_forgetting": None, "forgotten": 0, "acquired": 20, "fuar": 0.0, "union": 0.75}
    assert per_round["r3"]["earlier"] == 0.375 and per_round["r3"]["mean_forgetting"] == 0.375
    assert per_round["r3"]["forgotten"] == 30 and per_round["r3"]["fuar"] == 1.5  # (20 + 10) forgotten / 20 acquired
    assert report["rag"]["cloze"]["r3"]["union"]["acc"] == 0.5 and report["rag"]["cloze"]["r3"]["union"]["n"] == 3 * N
    retention = report["retention"]
    assert retention["base"]["format_following"] == 1.0
    assert retention["none"]["r3"]["after"]["format_following"] == 0.8 and retention["none"]["r3"]["p_value_loglik"] < 0.05
    text = markdown({"model": "tiny", **report}, "tiny")
    assert "| none | r1 | r3 | 0.750 | 0.250 | +0.500 | 20 / 0 |" in text
    assert "| base (before any round) | 0.250 [" in text and "## Retention" in text
    plot(report, str(tmp_path / "rounds.png"))
    assert (tmp_path / "rounds.png").stat().st_size > 0
    json.dumps(report)  # the metrics file


def test_a_round_without_earlier_ones_has_no_forgetting() -> None:
    history = [row for row in synthetic_history() if row["after"] == "r1"]
    report = rounds_report(history, 200, 0.05, 0)
    assert report["forgetting"]["none"]["cloze"] == {} and report["per_round"]["none"]["cloze"]["r1"]["mean_forgetting"] is None


# ---------------------------------------------------------------- the DVC graph
def dvc_project(tmp_path: Path, plan: dict) -> Path:
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    raw = params_dict()
    raw["rounds"]["plan"] = plan
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def stages_of(root: Path):
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        return {stage.name: stage for stage in graph.nodes}, graph


def test_no_round_stage_exists_without_a_plan(tmp_path: Path) -> None:
    stages, _ = stages_of(dvc_project(tmp_path, {}))
    assert stages and not [name for name in stages if "round" in name]


def test_a_rounds_stages_depend_on_the_rounds_before_it_only(tmp_path: Path) -> None:
    """What `dvc repro` re-runs after a change is a changed stage and the stages that depend on it: so a round's stages
    must have no earlier round's stage downstream of any later round's, and read no later round's params."""
    stages, graph = stages_of(dvc_project(tmp_path, PLAN))
    kinds = ["round-data", "train-round", "score-round", "rag-round", "report-round"]
    assert {name for name in stages if "round" in name} == {f"{kind}@{name}" for kind in kinds for name in PLAN}
    order = list(PLAN)
    for name, stage in stages.items():
        if "round@" not in name and not name.startswith("round-data@"):
            continue
        own = order.index(name.partition("@")[2])
        upstream = {dep.name.partition("@")[2] for dep in nx.descendants(graph, stage) if "round" in dep.name}
        assert all(order.index(round_) <= own for round_ in upstream), (name, upstream)
        if own:
            assert f"train-round@{order[own - 1]}" in {dep.name for dep in nx.descendants(graph, stage)} or name.startswith(("round-data", "rag-round"))
        keys = [key for dep in stage.params for key in dep.params]
        assert not [key for key in keys if key in ("rounds", "rounds.plan") or (key.startswith("rounds.plan.") and key != f"rounds.plan.{order[own]}")], (name, keys)
    # The chain: round 3's training starts from round 2's models, its report from round 2's history.
    assert stages["train-round@r2-research"] in nx.descendants(graph, stages["train-round@r3-products"])
    assert stages["report-round@r2-research"] in nx.descendants(graph, stages["report-round@r3-products"])
    assert stages["round-data@r2-research"] in nx.descendants(graph, stages["round-data@r3-products"])
