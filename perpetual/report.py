"""The results table (laid out like the paper's Table 2), the flat results rows, and the plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perpetual.conditions import BY_NAME, CONDITIONS

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

LEGEND = (
    "Every number below is ours unless its heading says *paper*. Accuracy: log-likelihood MCQ accuracy "
    "(lm-eval `acc`) with its 95% percentile-bootstrap CI over questions, in the format named by the section. "
    "p: two-sided exact McNemar test on the same questions ("
    + "; ".join(f"{c.title} vs {BY_NAME[c.reference].title}" for c in CONDITIONS if c.reference)
    + "); * p < 0.05, ** p < 0.01; ▲/▼: significantly better/worse than the reference. Learned: fine-tuned "
    "significantly above base. Consistency (Ren et al. 2024, *Learning or Self-aligning?*): per question, Spearman ρ between the "
    "two models' option log-likelihoods and KL(reference ‖ fine-tuned) in nats between their softmax distributions "
    "over the options, averaged over questions (ρ = 1, KL = 0: fine-tuning left the model's preferences unchanged)."
)


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
    lines = [f"## {FORMAT_TITLES.get(fmt, fmt)}", ""]
    lines.append(
        "| Task | Model | Template | n | "
        + " | ".join(condition.title for condition in CONDITIONS)
        + " | Learned (p < 0.05) | Consistency fine-tuned vs base (ρ / KL) | Fine-tuned + RAG vs RAG (ρ / KL) |"
    )
    lines.append("|---|---|---|---|" + "---|" * (len(CONDITIONS) + 3))
    for task, model in cells:
        found = [lookup.get((task, model, condition.name, fmt)) for condition in CONDITIONS]
        n = next((row["n"] for row in found if row), 0)
        template = next((row["template"] for row in found if row), "-")
        fine_tuned = lookup.get((task, model, "fine-tuned", fmt))
        learned = "-" if fine_tuned is None or "learned" not in fine_tuned else ("yes" if fine_tuned["learned"] else "no")
        lines.append(
            f"| {task} | {model} | {template} | {n} | "
            + " | ".join(_cell_text(row) for row in found)
            + f" | {learned} | {_consistency_text(fine_tuned, 'base')} | "
            + f"{_consistency_text(lookup.get((task, model, 'fine-tuned+rag', fmt)), 'rag')} |"
        )
    return lines + [""]


def retention_section(retention: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Retention of assistant behaviour (held-out general instructions, in the cell's template; base vs fine-tuned)",
        "",
        "Log-lik/token: mean log-likelihood per token of the reference answers (+ the closing token: EOS for alpaca, "
        "end-of-turn for chat), pooled; p: Wilcoxon signed-rank over instructions. Format-following: share of greedy "
        "answers that are non-empty and end with that token (or, alpaca, before a new `###` header) within the token "
        "budget (run-on text fails); p: exact McNemar. Answers: `data/predictions/<task>-<model>.retention.jsonl`.",
        "",
        "| Task | Model | n | Log-lik/token base | Log-lik/token fine-tuned | Δ | p | Format-following base | "
        "Format-following fine-tuned | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not retention:
        return lines + ["| - | - | - | - | - | - | - | - | - | - |", ""]
    for (task, model), values in retention.items():
        base, tuned = values.get("base"), values.get("fine-tuned")
        if base is None or tuned is None:
            continue
        delta = tuned["loglik_per_token"] - base["loglik_per_token"]
        lines.append(
            f"| {task} | {model} | {base['n']} | {base['loglik_per_token']:.3f} | {tuned['loglik_per_token']:.3f} | "
            f"{delta:+.3f} | {values.get('p_value_loglik', float('nan')):.2g} | {base['format_following']:.3f} | "
            f"{tuned['format_following']:.3f} | {values.get('p_value_format', float('nan')):.2g} |"
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
    lines = ["# Results", "", LEGEND, ""]
    for fmt in formats:
        lines += format_section(rows, fmt, cells)
    lines += flashcard_section(flashcards or {}, formats)
    lines += retention_section(retention or {})
    if retrieval:
        lines += retrieval_section(retrieval, embedder, template)
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
    width = 0.8 / len(CONDITIONS)
    for axis, fmt in zip(axes[0], formats):
        for offset, spec in enumerate(CONDITIONS):
            condition, title = spec.name, spec.title
            xs: list[float] = []
            ys: list[float] = []
            errors: list[list[float]] = [[], []]
            for index, group in enumerate(groups):
                row = next((r for r in rows if (r["task"], r["model"]) == group and r["condition"] == condition and r["format"] == fmt), None)
                if row is None:
                    continue
                xs.append(index + (offset - (len(CONDITIONS) - 1) / 2) * width)
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
