"""How an MCQ is shown to a model, in one small module: evaluation scores it and training teaches it.

Kept apart from perpetual/evaluation.py so that editing the evaluation code does not retrain every model.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpetual.records import LETTERS, Mcq
from perpetual.templates import Template


@dataclass(frozen=True)
class Rendered:
    query: str
    choices: list[str]
    gold: int


def render(mcq: Mcq, fmt: str, template: Template, context: str = "") -> Rendered:
    """`letter`: the question and options in `template` (the paper's prompt for alpaca, a user turn for chat), the
    letter scored; `cloze`: each option's text as the continuation of the passage it was cut from (or of
    "Question: ... Answer:"), the same for every template since it continues raw text."""
    gold = LETTERS.index(mcq["answer"])
    if fmt == "letter":
        query, choices = template.letter_prompt(mcq["question"], mcq["options"], context)
        return Rendered(query, choices, gold)
    if mcq.get("cloze_prefix"):
        # lm-eval moves the prefix's trailing whitespace onto the continuation, so tokens match the training text.
        return Rendered(f"{context}{mcq['cloze_prefix']}", list(mcq["options"]), gold)
    return Rendered(f"{context}Question: {mcq['question']}\nAnswer:", [f" {option}" for option in mcq["options"]], gold)
