"""A study: DVC experiments that differ in one param (e.g. `train.recipe`), compared on the same questions.

Each experiment is a commit under refs/exps (`dvc exp run --queue ... && dvc exp run --run-all`): its metrics files
are in the commit (metrics/eval, metrics/train, metrics/recipe are `cache: false`), its per-question predictions in
the DVC cache, read at the commit with `dvc.api`. Per arm × task × model: closed-book accuracy in both formats with
its CI and exact McNemar p against base (from analysis@'s metrics), RAG and fine-tuned + RAG, retention, the
training tokens and time, the base's guessability (base − chance in cloze); and every two arms against each other
on the same questions (exact McNemar on the fine-tuned model's outcomes, per format).

Each arm × cell becomes a record (its row and its per-question outcomes), written beside the study
(`metrics/studies/<study>-arms/`) and committed with it: the study is recomputed from the records, so arms run in
earlier sessions, on other machines or before `dvc exp gc` still count, and a rerun arm replaces its record.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perpetual import paths
from perpetual.errors import UserError
from perpetual.statistics import mcnemar_exact

FORMATS = ("cloze", "letter")


@dataclass(frozen=True)
class Arm:
    """One experiment of the study."""

    name: str  # the experiment's name (dvc exp show)
    commit: str
    value: str  # the studied param's value in it, e.g. the recipe


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def experiments(prefix: str) -> dict[str, str]:
    """Experiments whose name starts with `prefix`: name -> commit. HEAD's are preferred; an experiment of another
    baseline counts too (a study run while commits landed), the newest of a name winning."""
    head = git("rev-parse", "HEAD").strip()
    refs = git("for-each-ref", "--sort=committerdate", "--format=%(refname) %(objectname)", "refs/exps/")
    found: dict[str, str] = {}
    on_head: set[str] = set()
    for line in refs.splitlines():
        ref, commit = line.split()
        parts = ref.split("/")  # refs/exps/<2 hex>/<38 hex>/<name>
        name, baseline = parts[-1], parts[2] + parts[3]
        if not name.startswith(prefix) or (name in on_head and baseline != head):
            continue
        found[name] = commit
        if baseline == head:
            on_head.add(name)
    return found


def json_at(commit: str, path: str) -> Any:
    try:
        return json.loads(git("show", f"{commit}:{path}"))
    except subprocess.CalledProcessError:
        raise UserError(f"experiment commit {commit[:10]} has no {path}; did its run finish? (dvc exp show)") from None


def params_at(commit: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(git("show", f"{commit}:params.yaml")))


def value_at(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise UserError(f"params.yaml has no {dotted}; name the param the experiments differ in")
        value = value[key]
    return value


def predictions_at(commit: str, task: str, model: str) -> list[dict[str, Any]]:
    import dvc.api

    text = dvc.api.read(str(paths.predictions(task, model)), rev=commit, mode="r")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def closed_book(predictions: Sequence[Mapping[str, Any]], fmt: str) -> dict[str, float]:
    return {row["mcq_id"]: float(row["acc"]) for row in predictions if row["condition"] == "fine-tuned" and row["format"] == fmt}


def arm_row(arm: Arm, task: str, model: str) -> dict[str, Any]:
    cell = f"{task}-{model}"
    evaluated = json_at(arm.commit, str(paths.stage_metrics("eval", cell)))
    trained = json_at(arm.commit, str(paths.stage_metrics("train", cell)))
    row: dict[str, Any] = {"arm": arm.value, "experiment": arm.name, "task": task, "model": model}
    chance = evaluated["baselines"]["chance"]
    for fmt in FORMATS:
        base, tuned = evaluated["base"][fmt], evaluated["fine-tuned"][fmt]
        row[fmt] = {
            "n": tuned["n"],
            "base": base["acc"],
            "fine_tuned": tuned["acc"],
            "ci": [tuned["ci_low"], tuned["ci_high"]],
            "gain": round(tuned["acc"] - base["acc"], 4),
            "p_value_vs_base": tuned["p_value_vs_base"],
            "rag": evaluated.get("rag", {}).get(fmt, {}).get("acc"),
            "fine_tuned_rag": evaluated.get("fine-tuned+rag", {}).get(fmt, {}).get("acc"),
            "oracle": evaluated.get("oracle", {}).get(fmt, {}).get("acc"),
        }
    row["guessability_cloze"] = round(row["cloze"]["base"] - chance, 4)
    retention = evaluated.get("retention") or {}
    if retention:
        row["retention"] = {
            "format_following": [retention["base"]["format_following"], retention["fine-tuned"]["format_following"]],
            "loglik_per_token": [retention["base"]["loglik_per_token"], retention["fine-tuned"]["loglik_per_token"]],
            "p_value_format": retention["p_value_format"],
            "p_value_loglik": retention["p_value_loglik"],
            "similarity": [retention["base"].get("similarity"), retention["fine-tuned"].get("similarity")],
            "p_value_similarity": retention.get("p_value_similarity"),
        }
    row["training"] = {key: trained.get(key) for key in ("tokens", "epochs", "steps", "rows", "train_runtime_s", "validation_loss")}
    # What the recipe trained on, and what its self-study kept and refused (a recipe whose material was all refused
    # trains on what is left: the table must say so).
    row["recipe"] = json_at(arm.commit, str(paths.stage_metrics("recipe", cell)))
    return row


def pairwise(cell: Sequence[Mapping[str, Any]], task: str, model: str) -> list[dict[str, Any]]:
    """Every two arms on the same questions: exact McNemar on the fine-tuned model's closed-book outcomes."""
    rows = []
    for fmt in FORMATS:
        by_arm = {record["arm"]: record["outcomes"][fmt] for record in cell}
        for first, second in itertools.combinations(by_arm, 2):
            if by_arm[first].keys() != by_arm[second].keys():
                raise UserError(f"{task}: arms {first} and {second} were asked different questions; a study varies training only (rerun the older arm)")
            ids = sorted(by_arm[first])
            test = mcnemar_exact([by_arm[first][i] for i in ids], [by_arm[second][i] for i in ids])
            rows.append({"task": task, "model": model, "format": fmt, "first": first, "second": second, "n": len(ids), **test})
    return rows


def evaluated_in(arms: Sequence[Arm], task: str, model: str) -> list[Arm]:
    """The arms that evaluated this cell, one per value (the last given wins): a study may run one task per session
    (`make study-real STUDY_TASKS=research`), each task's arms their own experiments."""
    path = str(paths.stage_metrics("eval", f"{task}-{model}"))
    chosen: dict[str, Arm] = {}
    for arm in arms:
        if subprocess.run(["git", "cat-file", "-e", f"{arm.commit}:{path}"], capture_output=True).returncode == 0:
            chosen[arm.value] = arm
    return list(chosen.values())


def records(arms: Sequence[Arm], tasks: Sequence[str], models: Sequence[str]) -> list[dict[str, Any]]:
    """One record per arm × cell the arms evaluated: its row of the table and the fine-tuned model's closed-book
    outcome on every question. A record is all the study needs: kept in git beside the study, it outlives the
    experiment (refs/exps and the DVC cache are local to the machine that ran it)."""
    found = []
    for model in models:
        for task in tasks:
            for arm in evaluated_in(arms, task, model):
                predictions = predictions_at(arm.commit, task, model)
                outcomes = {fmt: closed_book(predictions, fmt) for fmt in FORMATS}
                found.append({**arm_row(arm, task, model), "commit": arm.commit, "outcomes": outcomes})
    return found


def record_name(record: Mapping[str, Any]) -> str:
    return f"{record['task']}-{record['model']}-{record['arm']}.json"


def study(kept: Sequence[Mapping[str, Any]], tasks: Sequence[str], models: Sequence[str], param: str) -> dict[str, Any]:
    """The study of the records (one per arm × cell; a later record of the same arm and cell replaces an earlier)."""
    by_cell: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for record in kept:
        by_cell.setdefault((record["task"], record["model"]), {})[record["arm"]] = record
    cells = {}
    for model in models:
        for task in tasks:
            if (task, model) not in by_cell:
                raise UserError(f"no experiment of the study evaluated {task}-{model}; run it (make study-real STUDY_TASKS={task}) or leave the task out (--tasks)")
            cells[task, model] = list(by_cell[task, model].values())
    chosen = [record for cell in cells.values() for record in cell]
    return {
        "param": param,
        "arms": [{"value": record["arm"], "task": record["task"], "model": record["model"], "experiment": record["experiment"], "commit": record["commit"]} for record in chosen],
        "rows": [{key: value for key, value in record.items() if key not in ("outcomes", "commit")} for record in chosen],
        "pairwise": [row for (task, model), cell in cells.items() for row in pairwise(cell, task, model)],
    }


def markdown(result: Mapping[str, Any]) -> str:
    lines = [
        f"# Study: `{result['param']}`",
        "",
        "Closed-book accuracy of the fine-tuned model (95% CI), its gain over base with the exact McNemar p, the",
        "retrieval conditions, retention (format-following and reference log-likelihood per token, base → fine-tuned)",
        "and the training cost. Guessability: base − chance in cloze.",
        "",
        "| task | model | arm | rows trained | n | cloze (CI) | gain (p) | letter | gain (p) | RAG cloze | FT+RAG cloze | guess. "
        "| format-following | loglik/token | similarity | tokens | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        cloze, letter = row["cloze"], row["letter"]
        retention = row.get("retention")
        following = "{:.2f} → {:.2f}".format(*retention["format_following"]) if retention else "—"
        loglik = "{:.2f} → {:.2f}".format(*retention["loglik_per_token"]) if retention else "—"
        similar = "{:.2f} → {:.2f}".format(*retention["similarity"]) if retention and None not in retention["similarity"] else "—"
        trained = ", ".join(f"{count} {kind}" for phase in row["recipe"]["phases"] for kind, count in phase.items())
        lines.append(
            f"| {row['task']} | {row['model']} | {row['arm']} | {trained} | {cloze['n']} | {cloze['fine_tuned']:.3f} ({cloze['ci'][0]:.2f}–{cloze['ci'][1]:.2f}) "
            f"| {cloze['gain']:+.3f} ({cloze['p_value_vs_base']:.3g}) | {letter['fine_tuned']:.3f} | {letter['gain']:+.3f} ({letter['p_value_vs_base']:.3g}) "
            f"| {_number(cloze['rag'])} | {_number(cloze['fine_tuned_rag'])} | {row['guessability_cloze']:+.3f} | {following} | {loglik} | {similar} "
            f"| {row['training']['tokens'] or '—'} | {row['training']['train_runtime_s'] or '—'} |"
        )
    refused = [(row["arm"], row["task"], row["recipe"]["self_study"]) for row in result["rows"] if row["recipe"].get("self_study")]
    if refused:
        lines += ["", "Self-study (the start model's own material: asked, kept, refused by reason):", ""]
        lines += [f"* {arm}, {task}: " + ", ".join(f"{key} {value}" for key, value in counts.items()) for arm, task, counts in refused]
    lines += ["", "Arms against each other, closed-book, on the same questions (exact McNemar):", "",
              "| task | model | format | first | second | only first right | only second right | p |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for pair in result["pairwise"]:
        lines.append(
            f"| {pair['task']} | {pair['model']} | {pair['format']} | {pair['first']} | {pair['second']} "
            f"| {pair['only_first']} | {pair['only_second']} | {pair['p_value']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def plot(result: Mapping[str, Any], target: str) -> None:
    """Closed-book cloze accuracy per arm and task, with its CI; base and RAG as marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(row["task"], row["model"]) for row in result["rows"]})
    figure, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.5), squeeze=False, sharey=True)
    for axis, (task, model) in zip(axes[0], cells, strict=True):
        rows = [row for row in result["rows"] if (row["task"], row["model"]) == (task, model)]
        xs = range(len(rows))
        accuracy = [row["cloze"]["fine_tuned"] for row in rows]
        errors = [[a - row["cloze"]["ci"][0] for a, row in zip(accuracy, rows)], [row["cloze"]["ci"][1] - a for a, row in zip(accuracy, rows)]]
        axis.bar(xs, accuracy, yerr=errors, capsize=3, color="tab:blue", label="fine-tuned (closed book)")
        axis.axhline(rows[0]["cloze"]["base"], color="grey", linestyle="--", label="base")
        if rows[0]["cloze"]["rag"] is not None:
            axis.axhline(rows[0]["cloze"]["rag"], color="tab:green", linestyle=":", label="RAG (base)")
        axis.set_xticks(list(xs), [row["arm"] for row in rows], rotation=30, ha="right")
        axis.set_title(f"{task} · {model}")
        axis.set_ylim(0, 1)
    axes[0][0].set_ylabel("cloze accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(target, dpi=120)
    plt.close(figure)
