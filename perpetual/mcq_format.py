"""How an MCQ is shown to a model, in one small module: evaluation scores it and training teaches it.

Kept apart from perpetual/evaluation.py so that editing the evaluation code does not retrain every model.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpetual.records import LETTERS, Mcq


@dataclass(frozen=True)
class Rendered:
    query: str
    choices: list[str]
    gold: int


def render(mcq: Mcq, fmt: str, context: str = "") -> Rendered:
    gold = LETTERS.index(mcq["answer"])
    if fmt == "letter":
        # The paper's prompt: question, options A-D, then the letter after "Answer:".
        listed = "\n".join(f"{letter}: {option}" for letter, option in zip(LETTERS, mcq["options"]))
        return Rendered(f"{context}{mcq['question']}\n{listed}\nAnswer:", [f" {letter}" for letter in LETTERS], gold)
    if mcq.get("cloze_prefix"):
        # lm-eval moves the prefix's trailing whitespace onto the continuation, so tokens match the training text.
        return Rendered(f"{context}{mcq['cloze_prefix']}", list(mcq["options"]), gold)
    return Rendered(f"{context}Question: {mcq['question']}\nAnswer:", [f" {option}" for option in mcq["options"]], gold)
