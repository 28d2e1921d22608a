"""The results table (laid out like the paper's Table 2), the flat results rows, and the accuracy plot."""

from __future__ import annotations

from typing import Any, Sequence

CONDITION_COLUMNS = [("base", "Base model"), ("fine-tuned", "Fine-tuned"), ("rag", "RAG"), ("fine-tuned+rag", "Fine-tuned + RAG")]
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


def flatten(task: str, model: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for condition, _ in CONDITION_COLUMNS:
        for fmt, cell in sorted(evaluation.get(condition, {}).items()):
            rows.append({"task": task, "model": model, "condition": condition, "format": fmt, **cell})
    return rows


def _cell_text(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    text = f"{row['acc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    p_value = next((value for key, value in row.items() if key.startswith("p_value_vs_")), None)
    if p_value is not None:
        mark = "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""
        text += f" p={p_value:.3g}{mark}"
    return text


def markdown_table(rows: Sequence[dict[str, Any]], baselines: dict[str, dict[str, float]], formats: Sequence[str]) -> str:
    lookup = {(row["task"], row["model"], row["condition"], row["format"]): row for row in rows}
    cells = sorted({(row["task"], row["model"]) for row in rows}, key=lambda pair: (_order(rows, pair[0]), pair[1]))
    lines = [
        "# Results",
        "",
        "Accuracy [95% bootstrap CI] over the held-out MCQs; p: exact McNemar test on the same questions "
        "(fine-tuned and RAG vs base, fine-tuned + RAG vs RAG); * p < 0.05, ** p < 0.01. n: questions per cell.",
        "",
    ]
    for fmt in formats:
        lines += [f"## {FORMAT_TITLES.get(fmt, fmt)}", ""]
        lines.append("| Task | Model | n | " + " | ".join(title for _, title in CONDITION_COLUMNS) + " | Learned (p < 0.05) |")
        lines.append("|---|---|---|" + "---|" * (len(CONDITION_COLUMNS) + 1))
        for task, model in cells:
            found = [lookup.get((task, model, condition, fmt)) for condition, _ in CONDITION_COLUMNS]
            n = next((row["n"] for row in found if row), 0)
            fine_tuned = lookup.get((task, model, "fine-tuned", fmt))
            learned = "-" if fine_tuned is None or "learned" not in fine_tuned else ("yes" if fine_tuned["learned"] else "no")
            lines.append(f"| {task} | {model} | {n} | " + " | ".join(_cell_text(row) for row in found) + f" | {learned} |")
        lines.append("")
    lines += ["## Baselines from the MCQ sets themselves (letter format)", "", "| Task | chance | majority letter | longest option |", "|---|---|---|---|"]
    for task, values in baselines.items():
        lines.append(f"| {task} | {values['chance']:.3f} | {values['majority_letter']:.3f} | {values['longest_option']:.3f} |")
    lines += [
        "",
        "## The paper's published Table 2 (for reference; other models and MCQ sets, letter format, no CIs)",
        "",
        "| Task | Model | Base model | Fine-tuned | RAG | Fine-tuned + RAG |",
        "|---|---|---|---|---|---|",
    ]
    for (task, model), values in PAPER_TABLE_2.items():
        lines.append(f"| {task} | {model} (paper) | " + " | ".join(f"{value:.4f}" for value in values) + " |")
    return "\n".join(lines) + "\n"


def _order(rows: Sequence[dict[str, Any]], task: str) -> int:
    return next(index for index, row in enumerate(rows) if row["task"] == task)


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = sorted({row["format"] for row in rows})
    groups = sorted({(row["task"], row["model"]) for row in rows})
    figure, axes = plt.subplots(1, len(formats), figsize=(6 * len(formats), 4), squeeze=False)
    width = 0.2
    for axis, fmt in zip(axes[0], formats):
        for offset, (condition, title) in enumerate(CONDITION_COLUMNS):
            xs, ys, errors = [], [], [[], []]
            for index, group in enumerate(groups):
                row = next((r for r in rows if (r["task"], r["model"]) == group and r["condition"] == condition and r["format"] == fmt), None)
                if row is None:
                    continue
                xs.append(index + (offset - 1.5) * width)
                ys.append(row["acc"])
                errors[0].append(row["acc"] - row["ci_low"])
                errors[1].append(row["ci_high"] - row["acc"])
            axis.bar(xs, ys, width, yerr=errors, capsize=2, label=title)
        axis.axhline(0.25, color="grey", linestyle="--", linewidth=1)
        axis.set_xticks(range(len(groups)), [f"{task}\n{model}" for task, model in groups], fontsize=8)
        axis.set_ylim(0, 1)
        axis.set_title(f"{fmt} format")
        axis.set_ylabel("accuracy (95% CI)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
