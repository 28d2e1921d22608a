"""The evaluation conditions, in one table that evaluation, statistics, the report and the plot all read.

A condition says which model is scored, what context is put before each question, which condition it is tested
against (same questions, same format: exact McNemar) and what a significant gain over that reference is called.
Adding a condition is one entry here (and, for a new kind of context, one branch in perpetual/evaluation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from perpetual.errors import UserError

ScoredModel = Literal["base", "fine-tuned"]
ContextKind = Literal["none", "retrieved", "source"]

# What each kind of context is, in words, for the report's "where RAG loses" summary (finding vs reading).
CONTEXT_TITLES: dict[ContextKind, str] = {
    "none": "no context",
    "retrieved": "retrieved (RAG)",
    "source": "own source chunk (oracle)",
}


@dataclass(frozen=True)
class Condition:
    name: str  # the key in params (evaluate.conditions), metrics and predictions
    title: str  # the column of the results table
    model: ScoredModel  # base: the model knowledge injection starts from; fine-tuned: the trained one
    # retrieved: the task's top-k chunks from index@<task>; source: the MCQ's own chunk from data/chunks/<task>.jsonl,
    # what a retriever with recall 1 and k = 1 would give (the upper bound of RAG: does the model read, given the text?)
    context: ContextKind
    reference: str | None = None  # the condition it is tested against
    verdict: str | None = None  # the metrics key that says it beat its reference (p < alpha, more right answers)
    consistency: bool = False  # knowledge consistency (rank correlation, KL) with the reference's option scores


CONDITIONS: tuple[Condition, ...] = (
    Condition("base", "Base model", "base", "none"),
    Condition("fine-tuned", "Fine-tuned", "fine-tuned", "none", reference="base", verdict="learned", consistency=True),
    Condition("rag", "RAG", "base", "retrieved", reference="base", verdict="retrieval_helped"),
    Condition("fine-tuned+rag", "Fine-tuned + RAG", "fine-tuned", "retrieved", reference="rag", verdict="improved", consistency=True),
    Condition("oracle", "Oracle (own chunk)", "base", "source", reference="base", verdict="reading_helped"),
    Condition("fine-tuned+oracle", "Fine-tuned + oracle", "fine-tuned", "source", reference="fine-tuned", verdict="reading_helped_fine_tuned"),
)
BY_NAME = {condition.name: condition for condition in CONDITIONS}


def selected(names: list[str]) -> list[Condition]:
    """The conditions `evaluate.conditions` names, in the table's order; an unknown name is a user error."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise UserError(f"evaluate.conditions: unknown condition(s) {unknown}; the conditions are {list(BY_NAME)}")
    return [condition for condition in CONDITIONS if condition.name in names]
