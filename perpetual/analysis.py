"""Every statistic of a results cell, from the predictions the evaluate stage wrote (no model is loaded here).

analysis@<task>-<model> runs this: changing `analysis.alpha` or `analysis.bootstrap_samples` re-runs it and the
report, never the scoring. Per condition and format: accuracy with a bootstrap CI, the paired test against the
condition's reference and its verdict, knowledge consistency; what the flashcards add (two groups of chunks);
retention of assistant behaviour, base vs fine-tuned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perpetual.conditions import BY_NAME
from perpetual.records import FIT_FLAGS, Mcq
from perpetual.statistics import (
    baselines,
    bootstrap_ci,
    cluster_permutation,
    knowledge_consistency,
    mcnemar_exact,
    wilcoxon_paired,
)


def cells_from_predictions(predictions: Sequence[Mapping[str, Any]], bootstrap_samples: int, seed: int, alpha: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Every metric of the table from the per-question predictions alone: condition -> format -> fields.

    acc/acc_norm with a bootstrap CI; an exact McNemar test against the condition's reference, and its verdict
    (e.g. `learned`: fine-tuned beat base); knowledge consistency with the reference where the table asks for it;
    how many contexts were shortened to fit and how many prompts lm-eval still cuts (when the rows carry them).
    """
    outcomes: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in predictions:
        outcomes.setdefault((row["condition"], row["format"]), []).append(row)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for (condition, fmt), rows in sorted(outcomes.items()):
        correct = [row["acc"] for row in rows]
        low, high = bootstrap_ci(correct, bootstrap_samples, seed, alpha)
        cell: dict[str, Any] = {
            "n": len(rows),
            "acc": round(sum(correct) / len(rows), 4),
            "acc_norm": round(sum(row["acc_norm"] for row in rows) / len(rows), 4),
            "ci_low": low,
            "ci_high": high,
        }
        for key in FIT_FLAGS:
            if all(key in row for row in rows):
                cell[key] = sum(bool(row[key]) for row in rows)
        spec = BY_NAME[condition]
        if spec.reference and (spec.reference, fmt) in outcomes:
            paired = _pair(outcomes[(spec.reference, fmt)], rows)
            test = mcnemar_exact([a["acc"] for a, _ in paired], [b["acc"] for _, b in paired])
            cell["p_value_vs_" + spec.reference] = test["p_value"]
            if spec.verdict:
                cell[spec.verdict] = bool(test["only_second"] > test["only_first"] and test["p_value"] < alpha)
            if spec.consistency:
                consistency = knowledge_consistency([a["loglikelihoods"] for a, _ in paired], [b["loglikelihoods"] for _, b in paired])
                cell[f"spearman_vs_{spec.reference}"] = consistency["spearman"]
                cell[f"kl_vs_{spec.reference}"] = consistency["kl"]
        cells.setdefault(condition, {})[fmt] = cell
    return cells


def _pair(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Rows of two conditions matched by question id (a paired test must compare the same questions)."""
    by_id = {row["mcq_id"]: row for row in first}
    paired = [(by_id[row["mcq_id"]], row) for row in second if row["mcq_id"] in by_id]
    if len(paired) != len(second) or len(paired) != len(first):
        raise ValueError("paired conditions must cover the same questions")
    return paired


PERMUTATIONS = 9999  # random splits when there are more: the p-value's resolution is about 1e-4


def flashcard_comparison(
    predictions: Sequence[Mapping[str, Any]], chunk_of: Mapping[str, str], groups: Mapping[str, Sequence[str]], seed: int, alpha: float
) -> dict[str, Any]:
    """Do the flashcards add anything? Per format, MCQs on chunks trained with their flashcards against MCQs on
    chunks whose flashcards assemble.flashcard_holdout left out (raw text only), for the fine-tuned model, with base
    as the reference.

    The groups are different questions, so no paired test applies; each question has a base and a fine-tuned
    outcome, so the measure is the learning gain (fine-tuned correct - base correct, per question), whose group
    means are compared: base accuracy differs between the groups by chance (some questions are easier to guess),
    and the gain takes that out where fine-tuned accuracy alone (Fisher's exact test on it) would count it as an
    effect of the flashcards. Chunks, not questions, were drawn into the groups, so the test permutes chunks
    (`statistics.cluster_permutation`, seeded). `flashcards_helped`: the gain is larger with flashcards at p < alpha.
    MCQs of chunks in neither group (no flashcards from the teacher) are left out. Empty when a group or the base or
    fine-tuned condition is missing.
    """
    group_of = {chunk_id: group for group in ("with_flashcards", "raw_only") for chunk_id in groups.get(group, [])}
    outcomes: dict[tuple[str, str], dict[str, float]] = {}
    for row in predictions:
        if row["condition"] in ("base", "fine-tuned"):
            outcomes.setdefault((row["condition"], row["format"]), {})[row["mcq_id"]] = float(row["acc"])
    result: dict[str, Any] = {}
    for fmt in sorted({fmt for _, fmt in outcomes}):
        base, tuned = outcomes.get(("base", fmt)), outcomes.get(("fine-tuned", fmt))
        if base is None or tuned is None:
            continue
        # group -> chunk -> [(base, fine-tuned)] for each of its questions
        by_chunk: dict[str, dict[str, list[tuple[float, float]]]] = {"with_flashcards": {}, "raw_only": {}}
        for mcq_id, tuned_correct in sorted(tuned.items()):
            chunk_id = chunk_of.get(mcq_id, "")
            if chunk_id in group_of and mcq_id in base:
                by_chunk[group_of[chunk_id]].setdefault(chunk_id, []).append((base[mcq_id], tuned_correct))
        if not by_chunk["with_flashcards"] or not by_chunk["raw_only"]:
            continue
        cell: dict[str, Any] = {}
        for group, chunks in by_chunk.items():
            pairs = [pair for questions in chunks.values() for pair in questions]
            base_acc, tuned_acc = sum(b for b, _ in pairs) / len(pairs), sum(t for _, t in pairs) / len(pairs)
            cell[group] = {
                "n": len(pairs),
                "chunks": len(chunks),
                "acc_fine_tuned": round(tuned_acc, 4),
                "acc_base": round(base_acc, 4),
                "gain": round(tuned_acc - base_acc, 4),
            }
        test = cluster_permutation(
            [[t - b for b, t in questions] for questions in by_chunk["with_flashcards"].values()],
            [[t - b for b, t in questions] for questions in by_chunk["raw_only"].values()],
            PERMUTATIONS,
            seed,
        )
        cell["gain_difference"] = test["difference"]
        cell["p_value"] = test["p_value"]
        cell["flashcards_helped"] = bool(test["difference"] is not None and test["difference"] > 0 and test["p_value"] is not None and test["p_value"] < alpha)
        result[fmt] = cell
    return result


# Per-item retention values that rows written before they existed lack: left out of the summary, not claimed as 0.
RETENTION_EXTRAS = ("similarity", "answer_tokens")


def retention_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-model measures (`retention.measure`'s) back from the rows evaluate@ wrote, one per instruction and model."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda row: (row["model"], row["index"])):
        by_model.setdefault(row["model"], []).append(row)
    measured: dict[str, dict[str, Any]] = {}
    for which, own in by_model.items():
        values: dict[str, Any] = {
            "per_item_loglik": [(row["loglik_total"], row["loglik_tokens"]) for row in own],
            "follows": [row["follows"] for row in own],
            "stops": [row["stop"] for row in own],
        }
        for key in RETENTION_EXTRAS:
            if all(key in row for row in own):
                values[key] = [row[key] for row in own]
        if all("budget" in row for row in own):
            values["budget"] = max(row["budget"] for row in own)  # one budget for the set
        measured[which] = values
    return measured


def per_token(scored: Sequence[tuple[float, int]]) -> list[float]:
    """Each reference's log-likelihood per token (what the paired test compares)."""
    return [total / count for total, count in scored]


def pooled_per_token(scored: Sequence[tuple[float, int]]) -> float:
    """Log-likelihood summed over every reference token of the set, per token."""
    return sum(total for total, _ in scored) / max(1, sum(count for _, count in scored))


def summary(measured: dict[str, Any]) -> dict[str, Any]:
    """The numbers that go into metrics: no per-item lists. `similarity`: the mean cosine similarity of the greedy
    answers with their references; `budget`: the tokens each answer had; `answer_tokens_mean`: how many it used."""
    follows = measured["follows"]
    result: dict[str, Any] = {
        "n": len(follows),
        "loglik_per_token": round(pooled_per_token(measured["per_item_loglik"]), 4),
        "format_following": round(sum(follows) / len(follows), 4) if follows else 0.0,
        **{f"stop_{kind}": sum(1 for stop in measured["stops"] if stop == kind) for kind in ("eos", "header", "run_on", "empty")},
    }
    if "similarity" in measured:
        result["similarity"] = round(_mean(measured["similarity"]), 4)
    if "budget" in measured:
        result["budget"] = measured["budget"]
    if "answer_tokens" in measured:
        result["answer_tokens_mean"] = round(_mean(measured["answer_tokens"]), 2)
    return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def compare(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Metrics per model ("base", "fine-tuned") and, when both are there, paired tests of the change: Wilcoxon
    signed-rank on per-instruction log-likelihood per token and on per-instruction answer similarity, exact McNemar
    on format following."""
    result: dict[str, Any] = {which: summary(values) for which, values in measured.items()}
    if {"base", "fine-tuned"} <= measured.keys():
        base, tuned = measured["base"], measured["fine-tuned"]
        result["p_value_loglik"] = wilcoxon_paired(per_token(base["per_item_loglik"]), per_token(tuned["per_item_loglik"]))
        result["p_value_format"] = mcnemar_exact(base["follows"], tuned["follows"])["p_value"]
        if "similarity" in base and "similarity" in tuned:
            result["p_value_similarity"] = wilcoxon_paired(base["similarity"], tuned["similarity"])
    return result


def cell_metrics(
    predictions: Sequence[Mapping[str, Any]],
    retention_rows: Sequence[Mapping[str, Any]],
    mcqs: Sequence[Mcq],
    groups: Mapping[str, Any],
    scoring: Mapping[str, Any],
    bootstrap_samples: int,
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    """metrics/eval/<cell>.json: condition -> format -> fields, then baselines, how the cell was scored (`scoring`:
    the template and precisions evaluate@ recorded), what the flashcards add and retention."""
    scored_ids = {row["mcq_id"] for row in predictions}
    scored = [mcq for mcq in mcqs if mcq["mcq_id"] in scored_ids]  # evaluate.limit's first N, in their order
    cells = cells_from_predictions(predictions, bootstrap_samples, seed, alpha)
    metrics: dict[str, Any] = {**cells, "baselines": baselines(scored), **scoring}
    chunk_of = {mcq["mcq_id"]: mcq["chunk_id"] for mcq in scored}
    metrics["flashcards"] = {"share": groups["share"], **flashcard_comparison(predictions, chunk_of, groups, seed, alpha)}
    if retention_rows:
        metrics["retention"] = compare(retention_from_rows(retention_rows))
    return metrics
