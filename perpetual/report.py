"""The results table (laid out like the paper's Table 2), the flat results rows, and the plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perpetual.conditions import BY_NAME, CONDITIONS, CONTEXT_TITLES, Condition, ContextKind

FORMAT_TITLES = {
    "cloze": "Cloze format: each option scored as the continuation of the passage it was cut from",
    "letter": "Letter format (the paper's): options A-D listed, the letter after `Answer:` scored",
}

# Table 2 of the paper (log-likelihood accuracy, letter format, gpt-4-turbo MCQs), for reference only.
PAPER_TABLE_2 = {
    ("code", "Mamba-2.8b"): (0.2586, 0.2852, 0.2776, 0.2700),
    ("code", "Gemma-2.5b"): (0.3764, 0.2877, 0.4295, 0.2281),
    ("research", "Mamba-2.8b"): (0.3117, 0.3072, 0.3315, 0.3167),
    ("research", "Gemma-2.5b"): (0.3674, 0.1888, 0.2961, 0.1923),
    ("products", "Mamba-2.8b"): (0.3191, 0.3547, 0.3572, 0.3527),
    ("products", "Gemma-2.5b"): (0.2877, 0.2200, 0.4918, 0.1924),
}


def legend(conditions: Sequence[Condition]) -> str:
    return (
        "Every number below is ours unless its heading says *paper*. Accuracy: log-likelihood MCQ accuracy "
        "(lm-eval `acc`) with its 95% percentile-bootstrap CI over questions, in the format named by the section. "
        "p: two-sided exact McNemar test on the same questions ("
        + "; ".join(f"{c.title} vs {BY_NAME[c.reference].title}" for c in conditions if c.reference)
        + "); * p < 0.05, ** p < 0.01; ▲/▼: significantly better/worse than the reference. Learned: fine-tuned "
        "significantly above base. Consistency (Ren et al. 2024, *Learning or Self-aligning?*): per question, Spearman ρ between the "
        "two models' option log-likelihoods and KL(reference ‖ fine-tuned) in nats between their softmax distributions "
        "over the options, averaged over questions (ρ = 1, KL = 0: fine-tuning left the model's preferences unchanged)."
    )


def shown(rows: Sequence[Mapping[str, Any]]) -> list[Condition]:
    """The conditions evaluated in any cell, in the table's order: the columns of the tables and the bars of the plot."""
    present = {row["condition"] for row in rows}
    return [condition for condition in CONDITIONS if condition.name in present]


def flatten(task: str, model: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for condition in BY_NAME:
        for fmt, cell in sorted(evaluation.get(condition, {}).items()):
            row = {"task": task, "model": model, "template": evaluation.get("template", "alpaca"), "condition": condition, "format": fmt}
            rows.append({**row, **cell})
    return rows


def _mark(row: Mapping[str, Any], p_value: float) -> str:
    stars = "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""
    if not stars:
        return ""
    verdict = BY_NAME[row["condition"]].verdict
    direction = "▲" if verdict and row.get(verdict) else "▼"
    return stars + direction


def _cell_text(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "-"
    text = f"{row['acc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    p_value = next((value for key, value in row.items() if key.startswith("p_value_vs_")), None)
    if p_value is not None:
        text += f" p={p_value:.2g}{_mark(row, p_value)}"
    return text


def _consistency_text(row: Mapping[str, Any] | None, reference: str) -> str:
    if row is None or f"kl_vs_{reference}" not in row:
        return "-"
    rho = row.get(f"spearman_vs_{reference}")
    return f"{'-' if rho is None else f'{rho:.2f}'} / {row[f'kl_vs_{reference}']:.3f}"


def format_section(rows: Sequence[dict[str, Any]], fmt: str, cells: Sequence[tuple[str, str]]) -> list[str]:
    lookup = {(row["task"], row["model"], row["condition"], row["format"]): row for row in rows}
    conditions = shown(rows)
    compared = [c for c in conditions if c.consistency and c.reference]
    lines = [f"## {FORMAT_TITLES.get(fmt, fmt)}", ""]
    lines.append(
        "| Task | Model | Template | n | "
        + " | ".join(condition.title for condition in conditions)
        + " | Learned (p < 0.05) | "
        + "".join(f"Consistency {c.title} vs {BY_NAME[str(c.reference)].title} (ρ / KL) | " for c in compared)
    )
    lines[-1] = lines[-1].rstrip()
    lines.append("|---|---|---|---|" + "---|" * (len(conditions) + 1 + len(compared)))
    for task, model in cells:
        found = [lookup.get((task, model, condition.name, fmt)) for condition in conditions]
        n = next((row["n"] for row in found if row), 0)
        template = next((row["template"] for row in found if row), "-")
        fine_tuned = lookup.get((task, model, "fine-tuned", fmt))
        learned = "-" if fine_tuned is None or "learned" not in fine_tuned else ("yes" if fine_tuned["learned"] else "no")
        lines.append(
            f"| {task} | {model} | {template} | {n} | "
            + " | ".join(_cell_text(row) for row in found)
            + f" | {learned} | "
            + "".join(f"{_consistency_text(lookup.get((task, model, c.name, fmt)), str(c.reference))} | " for c in compared)
        )
        lines[-1] = lines[-1].rstrip()
    return lines + [""]


def retention_section(retention: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Retention of assistant behaviour (held-out general instructions, in the cell's template; base → fine-tuned)",
        "",
        "Log-lik/token: mean log-likelihood per token of the reference answers (+ the closing token: EOS for alpaca, "
        "end-of-turn for chat), pooled; p: Wilcoxon signed-rank over instructions. Format-following: share of greedy "
        "answers that are non-empty and end with that token (or, alpaca, before a new `###` header) within the budget "
        "(`evaluate.retention.budget_factor` × the longest reference answer, in the model's tokens; run-on text fails); "
        "p: exact McNemar. Similarity: mean cosine similarity of each greedy answer (stop tokens stripped) with its "
        "reference in the retriever's sentence embeddings (what the answer says, not whether it is right); p: Wilcoxon "
        "signed-rank. Answers: `data/predictions/<task>-<model>.retention.jsonl`.",
        "",
        "| Task | Model | n | Budget (tokens) | Log-lik/token | Δ | p | Format-following | p | Similarity | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not retention:
        return lines + ["| - | - | - | - | - | - | - | - | - | - | - |", ""]
    for (task, model), values in retention.items():
        base, tuned = values.get("base"), values.get("fine-tuned")
        if base is None or tuned is None:
            continue
        delta = tuned["loglik_per_token"] - base["loglik_per_token"]
        budgets = list(dict.fromkeys(str(side["budget"]) for side in (base, tuned) if "budget" in side))
        if "similarity" in base and "similarity" in tuned:
            similarity = f"{base['similarity']:.3f} → {tuned['similarity']:.3f} | {values.get('p_value_similarity', float('nan')):.2g}"
        else:
            similarity = "- | -"  # scored before the measure existed
        lines.append(
            f"| {task} | {model} | {base['n']} | {' / '.join(budgets) or '-'} | "
            f"{base['loglik_per_token']:.3f} → {tuned['loglik_per_token']:.3f} | {delta:+.3f} | {values.get('p_value_loglik', float('nan')):.2g} | "
            f"{base['format_following']:.3f} → {tuned['format_following']:.3f} | {values.get('p_value_format', float('nan')):.2g} | {similarity} |"
        )
    return lines + [""]


def flashcard_section(flashcards: Mapping[tuple[str, str], Mapping[str, Any]], formats: Sequence[str]) -> list[str]:
    lines = [
        "## Do the flashcards add anything? (fine-tuned, MCQs on chunks trained with vs without their flashcards)",
        "",
        "`assemble.flashcard_holdout` left out the flashcards, not the raw text, of a seeded share of the chunks. "
        "Per group: the fine-tuned and base accuracy on those chunks' MCQs and the gain (fine-tuned − base, per "
        "question); Δ: gain with flashcards − gain raw-only; p: two-sided permutation test of Δ that reassigns whole "
        "chunks, as the hold-out drew them (seeded); ▲: flashcards helped at p < 0.05. Chunks the teacher gave no "
        "flashcards are in neither group.",
        "",
        "| Task | Model | Format | Held out | n with / raw-only | Fine-tuned with flashcards | Fine-tuned raw-only | "
        "Base with / raw-only | Gain with | Gain raw-only | Δ gain | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = 0
    for (task, model), values in flashcards.items():
        for fmt in formats:
            cell = values.get(fmt)
            if not isinstance(cell, Mapping):
                continue
            with_cards, raw_only = cell["with_flashcards"], cell["raw_only"]
            p_value, difference = cell["p_value"], cell["gain_difference"]
            p_text = "-" if p_value is None else f"{p_value:.2g}" + ("▲" if cell.get("flashcards_helped") else "")
            lines.append(
                f"| {task} | {model} | {fmt} | {values.get('share', 0):.0%} | {with_cards['n']} / {raw_only['n']} | "
                f"{with_cards['acc_fine_tuned']:.3f} | {raw_only['acc_fine_tuned']:.3f} | "
                f"{with_cards['acc_base']:.3f} / {raw_only['acc_base']:.3f} | {with_cards['gain']:+.3f} | {raw_only['gain']:+.3f} | "
                f"{'-' if difference is None else f'{difference:+.3f}'} | {p_text} |"
            )
            shown += 1
    if not shown:
        lines.append("| - | - | - | off | - | - | - | - | - | - | - | - |")
    return lines + [""]


def retrieval_summary(index: Mapping[str, Any]) -> dict[str, Any]:
    """top_k, recall@k and MCQ count from an index@<task> metrics file."""
    return {"top_k": index["top_k"], "recall_at_k": index["recall_at_k"], "mcqs": index["mcqs"]}


def retrieval_section(retrieval: Mapping[str, Mapping[str, Any]], embedder: str, template: str) -> list[str]:
    lines = [
        "## Retrieval used by the RAG conditions",
        "",
        f"Embedder `{embedder}`; context template `{template!r}`. Recall@k: share of MCQs whose own source chunk is "
        "among the k retrieved chunks.",
        "",
        "| Task | k | Recall@k | MCQs |",
        "|---|---|---|---|",
    ]
    for task, values in retrieval.items():
        recall = values.get("recall_at_k")
        lines.append(f"| {task} | {values.get('top_k') or '-'} | {'-' if recall is None else f'{recall:.3f}'} | {values.get('mcqs') or '-'} |")
    return lines + [""]


def where_rag_loses(rows: Sequence[Mapping[str, Any]], retrieval: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task × model, whether RAG loses at finding or at reading: recall@k next to each scored model's accuracy
    with no context, with the retrieved chunks and with the MCQ's own chunk (the oracle), per format.

    finding_loss = oracle − RAG: what retrieval costs by not handing over the right chunk alone (large with a low
    recall@k: RAG loses at finding). reading_gain = oracle − no context: what reading the right chunk is worth (near 0:
    the model does not use the text even when given it, so RAG loses at reading). Only where an oracle condition ran.
    """
    acc = {(row["task"], row["model"], row["condition"], row["format"]): row["acc"] for row in rows}
    found: dict[str, dict[str, Any]] = {}
    for task, model, _, fmt in sorted(acc):
        for scored in dict.fromkeys(c.model for c in CONDITIONS):
            by_kind: dict[ContextKind, Condition] = {c.context: c for c in CONDITIONS if c.model == scored}
            oracle = by_kind.get("source")
            if oracle is None or (task, model, oracle.name, fmt) not in acc:
                continue
            entry: dict[str, Any] = {c.name: acc[(task, model, c.name, fmt)] for c in by_kind.values() if (task, model, c.name, fmt) in acc}
            for key, other in (("finding_loss", "retrieved"), ("reading_gain", "none")):
                if other in by_kind and by_kind[other].name in entry:
                    entry[key] = round(entry[oracle.name] - entry[by_kind[other].name], 4)
            cell = found.setdefault(f"{task}-{model}", {"task": task, "model": model, **_recall(retrieval.get(task, {}))})
            cell.setdefault(fmt, {})[scored] = entry
    return found


def _recall(index: Mapping[str, Any]) -> dict[str, Any]:
    return {"top_k": index.get("top_k"), "recall_at_k": index.get("recall_at_k")}


def where_rag_loses_section(summary: Mapping[str, Mapping[str, Any]], formats: Sequence[str]) -> list[str]:
    kinds: list[ContextKind] = ["none", "retrieved", "source"]
    lines = [
        "## Where RAG loses: finding or reading (recall@k next to the oracle)",
        "",
        "Oracle: the MCQ's own source chunk as the context, in the same context template: what RAG would score with "
        "perfect retrieval. Finding loss = oracle − RAG (large with a low recall@k: retrieval misses the chunk); "
        "reading gain = oracle − no context (near 0: the model does not use the text even when handed the right one).",
        "",
        "| Task | Model | Format | Scored model | k | Recall@k | "
        + " | ".join(CONTEXT_TITLES[kind][:1].upper() + CONTEXT_TITLES[kind][1:] for kind in kinds)
        + " | Finding loss (oracle − RAG) | Reading gain (oracle − no context) |",
        "|---|---|---|---|---|---|" + "---|" * (len(kinds) + 2),
    ]
    for cell in summary.values():
        for fmt in formats:
            for scored, entry in cell.get(fmt, {}).items():
                by_kind = {c.context: entry.get(c.name) for c in CONDITIONS if c.model == scored}
                recall = cell.get("recall_at_k")
                lines.append(
                    f"| {cell['task']} | {cell['model']} | {fmt} | {scored} | {cell.get('top_k') or '-'} | "
                    f"{'-' if recall is None else f'{recall:.3f}'} | "
                    + " | ".join(_number(by_kind.get(kind)) for kind in kinds)
                    + f" | {_number(entry.get('finding_loss'), signed=True)} | {_number(entry.get('reading_gain'), signed=True)} |"
                )
    return lines + [""]


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def fit_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which cells had contexts shortened to the model's max length, or prompts still cut by lm-eval."""
    counted = [row for row in rows if "truncated" in row]
    if not counted:
        return []  # metrics written before the counts existed
    lines = [
        "## Prompts and the model's max length",
        "",
        "Contexts are fitted to the model's max length before scoring: the lowest-ranked retrieved chunks are dropped "
        'first, then a single chunk too long is cut at its end (marked "…"); the question is never cut. Shortened: '
        "prompts whose context was shortened; over: prompts still longer than the max length (the question alone), "
        "which lm-eval cuts from the left.",
        "",
    ]
    uncounted = f" ({len(rows) - len(counted)} cells evaluated before these counts existed are not counted)" if len(counted) < len(rows) else ""
    affected = [row for row in counted if row.get("context_shortened") or row["truncated"]]
    if not affected:
        return lines + [f"Every prompt fits: no context shortened, no prompt cut{uncounted}.", ""]
    lines += ["| Task | Model | Condition | Format | n | Contexts shortened | Prompts over max length |", "|---|---|---|---|---|---|---|"]
    for row in affected:
        lines.append(
            f"| {row['task']} | {row['model']} | {BY_NAME[row['condition']].title} | {row['format']} | {row['n']} | "
            f"{row.get('context_shortened', '-')} | {row['truncated']} |"
        )
    return lines + ["", f"Every other cell fits whole{uncounted}.", ""]


def markdown_table(
    rows: Sequence[dict[str, Any]],
    baselines: dict[str, dict[str, float]],
    formats: Sequence[str],
    retention: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    retrieval: Mapping[str, Mapping[str, Any]] | None = None,
    embedder: str = "",
    template: str = "",
    flashcards: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> str:
    cells = sorted({(row["task"], row["model"]) for row in rows}, key=lambda pair: (_order(rows, pair[0]), pair[1]))
    lines = ["# Results", "", legend(shown(rows)), ""]
    for fmt in formats:
        lines += format_section(rows, fmt, cells)
    lines += flashcard_section(flashcards or {}, formats)
    lines += fit_section(rows)
    lines += retention_section(retention or {})
    if retrieval:
        lines += retrieval_section(retrieval, embedder, template)
    summary = where_rag_loses(rows, retrieval or {})
    if summary:
        lines += where_rag_loses_section(summary, formats)
    lines += [
        "## Baselines from the MCQ sets themselves (no reading)",
        "",
        "Chance: 1 in 4 (both formats). Majority letter: always answering the most frequent correct letter (letter "
        "format). Longest option: always picking the longest option text (either format). Guessability: the base "
        "model's accuracy minus chance, per model and format (it never read the text: what surface cues are worth).",
        "",
        "| Task | chance | majority letter | longest option | guessability (base − chance) |",
        "|---|---|---|---|---|",
    ]
    guessed = guessability(rows)
    for task, values in baselines.items():
        margins = "; ".join(
            f"{model} " + ", ".join(f"{fmt} {margin:+.3f}" for fmt, margin in sorted(by_format.items()))
            for model, by_format in sorted(guessed.get(task, {}).items())
        )
        lines.append(
            f"| {task} | {values['chance']:.3f} | {values['majority_letter']:.3f} | {values['longest_option']:.3f} | {margins or '-'} |"
        )
    lines += [
        "",
        "## The paper's published Table 2 (paper, not ours: other models and MCQ sets; letter format, no CIs)",
        "",
        "| Task | Model (paper) | Base model | Fine-tuned | RAG | Fine-tuned + RAG |",
        "|---|---|---|---|---|---|",
    ]
    for (task, model), published in PAPER_TABLE_2.items():
        lines.append(f"| {task} | {model} (paper) | " + " | ".join(f"{value:.4f}" for value in published) + " |")
    return "\n".join(lines) + "\n"


def guessability(rows: Sequence[Mapping[str, Any]], chance: float = 0.25) -> dict[str, dict[str, dict[str, float]]]:
    """The base model's accuracy above chance, per task, model and format: what the questions give away unread.

    The base model never saw the task's text, so its margin over chance is what surface cues (an option's form, the
    question's wording) are worth; "learned" is measured against it.
    """
    found: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        if row["condition"] == "base":
            found.setdefault(row["task"], {}).setdefault(row["model"], {})[row["format"]] = round(row["acc"] - chance, 4)
    return found


def _order(rows: Sequence[dict[str, Any]], task: str) -> int:
    return next(index for index, row in enumerate(rows) if row["task"] == task)


def plot(rows: Sequence[dict[str, Any]], path: str, retention: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> None:
    """Accuracy with CIs per cell, one panel per format, and format-following retention when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = sorted({row["format"] for row in rows})
    groups = sorted({(row["task"], row["model"]) for row in rows})
    retained = {key: value for key, value in (retention or {}).items() if "base" in value and "fine-tuned" in value}
    panels = len(formats) + (1 if retained else 0)
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    conditions = shown(rows)
    width = 0.8 / max(1, len(conditions))
    for axis, fmt in zip(axes[0], formats):
        for offset, spec in enumerate(conditions):
            condition, title = spec.name, spec.title
            xs: list[float] = []
            ys: list[float] = []
            errors: list[list[float]] = [[], []]
            for index, group in enumerate(groups):
                row = next((r for r in rows if (r["task"], r["model"]) == group and r["condition"] == condition and r["format"] == fmt), None)
                if row is None:
                    continue
                xs.append(index + (offset - (len(conditions) - 1) / 2) * width)
                ys.append(row["acc"])
                errors[0].append(row["acc"] - row["ci_low"])
                errors[1].append(row["ci_high"] - row["acc"])
            axis.bar(xs, ys, width, yerr=errors, capsize=2, label=title)
        axis.axhline(0.25, color="grey", linestyle="--", linewidth=1)
        axis.set_xticks(range(len(groups)), [f"{task}\n{model}" for task, model in groups], fontsize=8)
        axis.set_ylim(0, 1)
        axis.set_title(f"{fmt} format: accuracy (ours)")
        axis.set_ylabel("accuracy (95% CI); dashed: chance")
    axes[0][0].legend(fontsize=7)
    if retained:
        axis = axes[0][-1]
        keys = sorted(retained)
        for offset, which in enumerate(("base", "fine-tuned")):
            axis.bar([index + (offset - 0.5) * 0.35 for index in range(len(keys))], [retained[key][which]["format_following"] for key in keys], 0.35, label=which)
        axis.set_xticks(range(len(keys)), [f"{task}\n{model}" for task, model in keys], fontsize=8)
        axis.set_ylim(0, 1)
        axis.set_title("retention: format-following rate")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
