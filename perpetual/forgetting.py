"""What each round forgets: the forgetting matrix, forgetting per round with paired tests, retention, RAG over the
union, from the predictions of every round so far (report-round@<round>; docs/rounds.md).

History rows (data/rounds/<round>/history.jsonl) are of two kinds. `mcq`: one question asked after round `after` of
the model `arm` (a replay arm, or `base`) in a `context` (`none`, or `rag` over the union) and `format`, with the
question's `round` and `task` and whether it was right (`acc`). `retention`: one retention instruction answered after
round `after` by `model` (an arm, or `base`), as evaluate@ writes it (perpetual/retention.py `answer_rows`).

Per arm and format:
* the matrix: accuracy on round j's MCQs after round k (j ≤ k), with its percentile-bootstrap CI over questions
  (perpetual/statistics.py, as analysis@ computes every cell's); the base row is the base model on round j's questions;
* learned: after round k against base on round k's own questions (exact McNemar, same questions);
* forgetting of round j at round k > j: accuracy right after round j minus after round k on round j's questions, with
  the exact McNemar test of the two (same questions, same arm): `forgot` when it fell at p < alpha;
* per round k: its own accuracy, the pooled accuracy on the earlier rounds' questions, the mean forgetting over them,
  and CKL's FUAR (Jang et al., ICLR 2022: forgotten / (updated + acquired), no fact is updated here): questions of
  earlier rounds right after their own round and wrong after k, over questions of round k wrong for base and right
  after k;
* retention after every round against the base model (perpetual/analysis.py `compare`: Wilcoxon on log-likelihood
  per token and answer similarity, exact McNemar on format following);
and the base model with RAG over the union of the rounds so far, on each round's questions and on all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from perpetual.analysis import compare, retention_from_rows, summary
from perpetual.statistics import bootstrap_ci, mcnemar_exact

MCQ_FIELDS = ("arm", "context", "round", "task", "format", "mcq_id", "acc")
RETENTION_FIELDS = ("model", "index", "loglik_total", "loglik_tokens", "follows", "stop", "similarity", "answer_tokens", "budget")
BASE = "base"


def history_rows(after: str, mcq_rows: Iterable[Mapping[str, Any]], retention_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A round's predictions as history rows: the fields the statistics need, not the texts."""
    rows: list[dict[str, Any]] = [{"kind": "mcq", "after": after, **{key: row[key] for key in MCQ_FIELDS}} for row in mcq_rows]
    rows += [{"kind": "retention", "after": after, **{key: row[key] for key in RETENTION_FIELDS if key in row}} for row in retention_rows]
    return rows


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def cell(outcomes: Mapping[str, float], samples: int, seed: int, alpha: float) -> dict[str, Any]:
    correct = [outcomes[key] for key in sorted(outcomes)]
    low, high = bootstrap_ci(correct, samples, seed, alpha)
    return {"acc": round(sum(correct) / len(correct), 4) if correct else None, "ci_low": low, "ci_high": high, "n": len(correct)}


def paired(first: Mapping[str, float], second: Mapping[str, float]) -> dict[str, Any]:
    """Exact McNemar of two sets of outcomes on the same questions: `only_first` right only in the first."""
    if first.keys() != second.keys():
        raise ValueError("paired outcomes must be on the same questions")
    ids = sorted(first)
    return mcnemar_exact([first[key] for key in ids], [second[key] for key in ids])


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def rounds_report(history: Sequence[Mapping[str, Any]], bootstrap_samples: int, alpha: float, seed: int) -> dict[str, Any]:
    """Every statistic of the rounds in `history` (see the module's docstring), as nested dicts for `dvc metrics`."""
    mcq = [row for row in history if row["kind"] == "mcq"]
    rounds = _ordered(row["after"] for row in history)
    tasks = {row["round"]: row["task"] for row in mcq}
    arms = _ordered(row["arm"] for row in mcq if row["arm"] != BASE)
    formats = _ordered(row["format"] for row in mcq)
    outcomes: dict[tuple[str, str, str, str, str], dict[str, float]] = {}
    for row in mcq:
        outcomes.setdefault((row["arm"], row["context"], row["after"], row["round"], row["format"]), {})[row["mcq_id"]] = float(row["acc"])

    def got(arm: str, context: str, after: str, round_: str, fmt: str) -> dict[str, float]:
        return outcomes.get((arm, context, after, round_, fmt), {})

    def stats(values: Mapping[str, float]) -> dict[str, Any]:
        return cell(values, bootstrap_samples, seed, alpha)

    report: dict[str, Any] = {"rounds": rounds, "tasks": tasks, "arms": arms, "formats": formats, "alpha": alpha}
    report["base"] = {fmt: {j: stats(got(BASE, "none", j, j, fmt)) for j in rounds if got(BASE, "none", j, j, fmt)} for fmt in formats}
    report["rag"] = {}
    for fmt in formats:
        by_after: dict[str, Any] = {}
        for k in rounds:
            seen = rounds[: rounds.index(k) + 1]
            rag = {j: stats(got(BASE, "rag", k, j, fmt)) for j in seen if got(BASE, "rag", k, j, fmt)}
            if rag:
                union = {f"{j}/{key}": value for j in seen for key, value in got(BASE, "rag", k, j, fmt).items()}
                by_after[k] = {**rag, "union": stats(union)}
        report["rag"][fmt] = by_after
    report["matrix"], report["learned"], report["forgetting"], report["per_round"] = {}, {}, {}, {}
    for arm in arms:
        for part in ("matrix", "learned", "forgetting", "per_round"):
            report[part][arm] = {}
        for fmt in formats:
            matrix: dict[str, Any] = {}
            learned: dict[str, Any] = {}
            forgetting: dict[str, Any] = {}
            per_round: dict[str, Any] = {}
            for position, k in enumerate(rounds):
                seen = rounds[: position + 1]
                after_k = {j: got(arm, "none", k, j, fmt) for j in seen}
                if not any(after_k.values()):
                    continue
                matrix[k] = {j: stats(values) for j, values in after_k.items() if values}
                base_own, own = got(BASE, "none", k, k, fmt), after_k[k]
                acquired = None
                if base_own and own:
                    test = paired(base_own, own)
                    acquired = test["only_second"]
                    gain = matrix[k][k]["acc"] - stats(base_own)["acc"]
                    learned[k] = {"gain": round(gain, 4), "p_value": test["p_value"], "acquired": acquired,
                                  "learned": bool(test["only_second"] > test["only_first"] and test["p_value"] < alpha)}  # fmt: skip
                drops: dict[str, Any] = {}
                for j in seen[:-1]:
                    before, now = got(arm, "none", j, j, fmt), after_k[j]
                    if not before or not now:
                        continue
                    test = paired(before, now)
                    drop = stats(before)["acc"] - matrix[k][j]["acc"]
                    drops[j] = {"forgetting": round(drop, 4), "p_value": test["p_value"], "forgotten": test["only_first"],
                                "recovered": test["only_second"], "forgot": bool(test["only_first"] > test["only_second"] and test["p_value"] < alpha)}  # fmt: skip
                if drops:
                    forgetting[k] = drops
                earlier = {f"{j}/{key}": value for j in seen[:-1] for key, value in after_k[j].items()}
                forgotten = sum(drop["forgotten"] for drop in drops.values())
                per_round[k] = {
                    "own": matrix[k].get(k, {}).get("acc"),
                    "earlier": stats(earlier)["acc"] if earlier else None,
                    "mean_forgetting": _mean([drop["forgetting"] for drop in drops.values()]),
                    "forgotten": forgotten,
                    "acquired": acquired,
                    "fuar": round(forgotten / acquired, 4) if acquired else None,
                    "union": stats({f"{j}/{key}": value for j in seen for key, value in after_k[j].items()})["acc"],
                }
            report["matrix"][arm][fmt] = matrix
            report["learned"][arm][fmt] = learned
            report["forgetting"][arm][fmt] = forgetting
            report["per_round"][arm][fmt] = per_round
    report["retention"] = retention_report(history, arms, rounds)
    return report


def retention_report(history: Sequence[Mapping[str, Any]], arms: Sequence[str], rounds: Sequence[str]) -> dict[str, Any]:
    """Retention of the base model, and of each arm after every round against it (`analysis.compare`)."""
    rows = [row for row in history if row["kind"] == "retention"]
    base = [row for row in rows if row["model"] == BASE]
    if not base:
        return {}
    measured_base = retention_from_rows(base)[BASE]
    result: dict[str, Any] = {BASE: summary(measured_base)}
    for arm in arms:
        for k in rounds:
            own = [{**row, "model": "fine-tuned"} for row in rows if row["model"] == arm and row["after"] == k]
            if not own:
                continue
            compared = compare({"base": measured_base, "fine-tuned": retention_from_rows(own)["fine-tuned"]})
            result.setdefault(arm, {})[k] = {"after": compared["fine-tuned"], **{key: value for key, value in compared.items() if key.startswith("p_value")}}
    return result


# ---------------------------------------------------------------- the report's text and figure
def _acc(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("acc") is None:
        return "-"
    return f"{value['acc']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    stars = "**" if value < 0.01 else "*" if value < 0.05 else ""
    return f"{value:.2g}{stars}"


def markdown(report: Mapping[str, Any], model: str) -> str:
    rounds, tasks, arms = report["rounds"], report["tasks"], report["arms"]
    named = ", ".join(f"{j} ({tasks.get(j, '?')})" for j in rounds)
    lines = [
        f"# Rounds: {model}, after {rounds[-1]}",
        "",
        f"Rounds in order: {named}. Each replay arm is its own chain of models: `none` (the round's material alone), `earlier` "
        "(with earlier rounds' flashcards), `generic` (with the instruction data of `train.replay`) and `mixture` (both). Accuracy: "
        "log-likelihood MCQ accuracy, closed-book, with its 95% percentile-bootstrap CI over questions. p: two-sided exact McNemar "
        "on the same questions; * p < 0.05, ** p < 0.01. Forgetting of round j at round k: accuracy on round j's questions right "
        "after round j minus after round k. FUAR (Jang et al. 2022): questions of earlier rounds forgotten at round k over questions "
        "of round k acquired (wrong for base, right after k); below 1, the round taught more than it made forget. RAG: the base model "
        "with the top chunks of the union of the rounds so far before each question.",
        "",
    ]
    for fmt in report["formats"]:
        lines += [f"## {fmt} format: per round", "",
                  "| Arm | After | Own round | Learned (gain, p) | Earlier rounds | Mean forgetting | Forgotten / acquired (FUAR) | All rounds so far | RAG, all rounds so far |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm in arms:
            for k, values in report["per_round"][arm][fmt].items():
                learned = report["learned"][arm][fmt].get(k)
                learned_text = "-" if learned is None else f"{learned['gain']:+.3f}, p={_p(learned['p_value'])}"
                fuar = "-" if values["acquired"] is None else f"{values['forgotten']} / {values['acquired']} ({_num(values['fuar'])})"
                rag = report["rag"][fmt].get(k, {}).get("union")
                lines.append(
                    f"| {arm} | {k} | {_num(values['own'])} | {learned_text} | {_num(values['earlier'])} | {_num(values['mean_forgetting'], signed=True)} "
                    f"| {fuar} | {_num(values['union'])} | {_num(rag['acc'] if rag else None)} |"
                )
        lines.append("")
        for arm in arms:
            lines += [f"### The forgetting matrix: {arm}, {fmt} (rows: after the round; columns: the round's questions)", "",
                      "| After | " + " | ".join(f"{j} ({tasks.get(j, '?')})" for j in rounds) + " |", "|---|" + "---|" * len(rounds)]  # fmt: skip
            lines.append("| base (before any round) | " + " | ".join(_acc(report["base"][fmt].get(j)) for j in rounds) + " |")
            for k, row in report["matrix"][arm][fmt].items():
                lines.append(f"| {k} | " + " | ".join(_acc(row.get(j)) for j in rounds) + " |")
            for k, row in report["rag"][fmt].items():
                lines.append(f"| RAG over the union after {k} | " + " | ".join(_acc(row.get(j)) for j in rounds) + " |")
            lines.append("")
        lines += [f"### Forgetting per round, {fmt} (exact McNemar: right after its round vs after round k)", "",
                  "| Arm | Round | After | Right after its round | After k | Forgetting | Forgotten / recovered | p | Forgot |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm in arms:
            matrix = report["matrix"][arm][fmt]
            for k, drops in report["forgetting"][arm][fmt].items():
                for j, drop in drops.items():
                    lines.append(
                        f"| {arm} | {j} | {k} | {_num(matrix[j][j]['acc'])} | {_num(matrix[k][j]['acc'])} | {_num(drop['forgetting'], signed=True)} "
                        f"| {drop['forgotten']} / {drop['recovered']} | {_p(drop['p_value'])} | {'yes' if drop['forgot'] else 'no'} |"
                    )
        lines.append("")
    retention = report.get("retention") or {}
    if retention:
        base = retention[BASE]
        lines += ["## Retention of assistant behaviour after every round (held-out general instructions; against the base model)", "",
                  "Log-lik/token: mean log-likelihood per token of the reference answers, pooled (p: Wilcoxon signed-rank); format-following: "
                  "share of greedy answers ending cleanly within the budget (p: exact McNemar); similarity: mean cosine similarity of each "
                  "answer with its reference (p: Wilcoxon).", "",
                  "| Arm | After | Log-lik/token | Δ vs base | p | Format-following | p | Similarity | p |", "|---|---|---|---|---|---|---|---|---|",
                  f"| base | - | {base['loglik_per_token']:.3f} | - | - | {base['format_following']:.3f} | - | {_num(base.get('similarity'))} | - |"]  # fmt: skip
        for arm in arms:
            for k, values in retention.get(arm, {}).items():
                after = values["after"]
                lines.append(
                    f"| {arm} | {k} | {after['loglik_per_token']:.3f} | {after['loglik_per_token'] - base['loglik_per_token']:+.3f} | {_p(values.get('p_value_loglik'))} "
                    f"| {after['format_following']:.3f} | {_p(values.get('p_value_format'))} | {_num(after.get('similarity'))} | {_p(values.get('p_value_similarity'))} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: str) -> None:
    """Per arm, in the first format: the forgetting matrix as a heatmap (base row first), and the curves of each
    round's questions over the rounds (dashed: RAG over the union)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds, arms, fmt = report["rounds"], report["arms"], report["formats"][0]
    figure, axes = plt.subplots(2, len(arms), figsize=(4.2 * len(arms) + 1, 8), squeeze=False)
    figure.suptitle(f"Accuracy on each round's MCQs ({fmt}), per replay arm:\nthe matrix (rows: after the round) and the curves")
    labels = ["base", *rounds]
    colours = plt.get_cmap("tab10")
    for column, arm in enumerate(arms):
        matrix = report["matrix"][arm][fmt]
        grid = [[report["base"][fmt].get(j, {}).get("acc") for j in rounds]]
        grid += [[matrix.get(k, {}).get(j, {}).get("acc") for j in rounds] for k in rounds]
        values = [[float("nan") if value is None else value for value in row] for row in grid]
        axis = axes[0][column]
        image = axis.imshow(values, vmin=0, vmax=1, cmap="viridis")
        for r, row in enumerate(values):
            for c, value in enumerate(row):
                if value == value:  # not NaN
                    axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value < 0.6 else "black")
        axis.set_xticks(range(len(rounds)), rounds, fontsize=7, rotation=30, ha="right")
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_ylabel("after", fontsize=7)
        axis.set_title(arm, fontsize=9)
        curves = axes[1][column]
        for index, j in enumerate(rounds):
            xs = [0] + [rounds.index(k) + 1 for k in rounds if j in matrix.get(k, {})]
            ys = [report["base"][fmt].get(j, {}).get("acc")] + [matrix[k][j]["acc"] for k in rounds if j in matrix.get(k, {})]
            curves.plot(xs, ys, marker="o", color=colours(index), label=f"{j}")
        rag = [(rounds.index(k) + 1, values["union"]["acc"]) for k, values in report["rag"].get(fmt, {}).items()]
        if rag:
            curves.plot(*zip(*rag), linestyle="--", color="grey", label="RAG, union")
        curves.axhline(0.25, color="lightgrey", linewidth=1)
        curves.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
        curves.set_ylim(0, 1)
        curves.set_xlabel("after round", fontsize=7)
        curves.set_title(f"{arm}: each round's MCQs", fontsize=9)
        curves.legend(fontsize=6)
    figure.subplots_adjust(hspace=0.45)
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
