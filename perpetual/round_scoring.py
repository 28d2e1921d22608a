"""Scoring after a round: one model asked MCQ sets (closed-book, or with retrieved context) in every format of
`evaluate.formats`, and the retention set, through the evaluation library (perpetual/evaluation.py: lm-eval
log-likelihood scoring with each question's prompt scored once; perpetual/retention.py), as evaluate@ scores a cell.

score-round@<round> asks each replay arm's model every MCQ of the union so far; rag-round@<round> asks the base model
the round's own MCQs closed-book and the union's with RAG over the union's chunks (`union_retrieval`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpetual.config import EvaluateParams
from perpetual.evaluation import budget_for, build_items, make_lm, score, task_config
from perpetual.io import write_jsonl
from perpetual.retention import Instruction, measure
from perpetual.retrieval import open_collection, retrieve, sync_index
from perpetual.scoring import Encodings
from perpetual.templates import TemplateName, make_template

# The context each set is asked with, as the condition of perpetual/conditions.py whose context it is.
CONDITION_OF = {"none": "base", "rag": "rag"}


@dataclass(frozen=True)
class Asked:
    """MCQs asked with one kind of context (`none`, or `rag`: `retrieved`, mcq_id -> index@'s row shape)."""

    context: str
    mcqs: Sequence[Mapping[str, Any]]  # each with its `round` and `task` (the union's records)
    retrieved: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    rows: list[dict[str, Any]]  # per question and format: round, task, context, format, mcq_id, acc, pred, gold
    retention: dict[str, Any] | None  # retention.measure's values, when asked
    precision: dict[str, Any]


def score_model(
    folder: Path,
    asked: Sequence[Asked],
    settings: EvaluateParams,
    template_name: TemplateName,
    context_template: str,
    encodings: Encodings,
    instructions: Sequence[Instruction] = (),
    embedder: Any = None,
    embed_batch_size: int = 64,
) -> Scored:
    """The model in `folder` asked every set in every format of `settings` (and the retention set, if given), in
    the precision `evaluate.precision` chooses for it; contexts fitted to its max length as evaluate@ fits them."""
    from perpetual.models import load_local, local_config
    from perpetual.precision import choose

    choice = choose(settings.precision, "evaluate", local_config(folder))
    model, tokenizer = load_local(folder, choice.dtype)
    lm = make_lm(model, tokenizer, settings.batch_size, encodings)
    budget = budget_for(lm)
    template = make_template(template_name, tokenizer, str(folder))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        configs, names = [], {}
        for index, ask in enumerate(asked):
            for fmt in settings.formats:
                name = f"perpetual_rounds_{index}_{ask.context}_{fmt}"
                items = build_items(ask.mcqs, CONDITION_OF[ask.context], fmt, ask.retrieved, context_template, template, None, budget)  # type: ignore[arg-type]
                data_file = Path(scratch) / f"{name}.jsonl"
                write_jsonl(data_file, items)
                configs.append(task_config(name, data_file))
                names[name] = (ask, fmt)
        if configs:
            for name, scored in score(lm, configs).items():
                ask, fmt = names[name]
                of = {mcq["mcq_id"]: mcq for mcq in ask.mcqs}
                for row in scored:
                    mcq = of[row["mcq_id"]]
                    rows.append({"round": mcq["round"], "task": mcq["task"], "context": ask.context, "format": fmt,
                                 "mcq_id": row["mcq_id"], "acc": row["acc"], "pred": row["pred"], "gold": row["gold"]})  # fmt: skip
    retained = measure(lm, instructions, template, settings.retention.budget_factor, embedder, embed_batch_size) if instructions else None
    rows.sort(key=lambda row: (row["context"], row["format"]))
    return Scored(rows, retained, choice.record())


def union_retrieval(
    chunks: Sequence[Mapping[str, Any]], mcqs: Sequence[Mapping[str, Any]], embedder: Any, embedder_name: str, top_k: int, batch_size: int
) -> tuple[dict[str, dict[str, Any]], float]:
    """Top-k chunks of the union for each MCQ of the union, from a Chroma index of the union's chunks built as
    index@<task> builds a task's (perpetual/retrieval.py), in a scratch folder; and recall@k of the MCQs' own chunks."""
    with tempfile.TemporaryDirectory() as folder:
        collection = open_collection(Path(folder), "rounds", embedder_name)
        sync_index(collection, chunks, embedder, batch_size)  # type: ignore[arg-type]
        rows = retrieve(collection, mcqs, embedder, top_k, batch_size)  # type: ignore[arg-type]
    recall = round(sum(row["source_retrieved"] for row in rows) / len(rows), 4) if rows else 0.0
    return {row["mcq_id"]: row for row in rows}, recall
