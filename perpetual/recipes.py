"""Training recipes (`train.recipe`): what a task's knowledge is trained as, and in what order.

A recipe turns a task's material (assemble@'s set: each chunk's raw text, then its flashcards; perpetual/assembly.py)
into phases of training rows (perpetual/rows.py). The phases are trained one after the other, each from the model
the one before left (perpetual/training.py `fine_tune_phases`), so a curriculum is honoured: rows are shuffled within a
phase, never across phases. A recipe that needs material of its own (rephrasings, answers given with the chunk in
the prompt) asks the self-study teacher for it (perpetual/self_study.py: the start model itself, or an
OpenAI-compatible endpoint), and counts what it kept and what it refused.

Adding a recipe is one entry in `RECIPES` and its tests; docs/training.md#what-is-trained-on-recipes says what each is for.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from perpetual.config import SelfStudyParams
from perpetual.errors import UserError
from perpetual.rows import Question, Row, Text
from perpetual.self_study import SelfStudyTeacher, check_answer, check_rephrasing, cut_loop

Phase = list[Row]


@dataclass
class Material:
    """What a recipe draws on for one task × model."""

    rows: Sequence[Text | Question]  # each chunk's text, then its flashcards (held-out chunks' flashcards left out)
    params: SelfStudyParams
    context_template: str  # index.context_template: how a chunk is put before a question
    open_teacher: Callable[[], SelfStudyTeacher]  # train.self_study.teacher, opened the first time a recipe asks
    stats: Counter[str]  # kept and refused material, by reason; the teacher's own counts
    _teacher: SelfStudyTeacher | None = None

    @property
    def texts(self) -> list[Text]:
        return [row for row in self.rows if isinstance(row, Text)]

    @property
    def questions(self) -> list[Question]:
        return [row for row in self.rows if isinstance(row, Question)]

    @property
    def opened(self) -> SelfStudyTeacher | None:
        """The teacher, if a recipe asked for it."""
        return self._teacher

    @property
    def teacher(self) -> SelfStudyTeacher:
        if self._teacher is None:
            self._teacher = self.open_teacher()
        return self._teacher


Recipe = Callable[[Material], list[Phase]]


def interleaved(material: Material) -> list[Phase]:
    return [list(material.rows)]


def docs(material: Material) -> list[Phase]:
    return [list(material.texts)]


def flashcards(material: Material) -> list[Phase]:
    return [list(material.questions)]


def pit(material: Material) -> list[Phase]:
    # Jiang et al. 2024, pre-instruction-tuning: the questions first, so the model learns how knowledge is asked for,
    # then the documents with their questions.
    return [list(material.questions), list(material.rows)]


def rephrase_styles(path: str) -> list[str]:
    """The rephrasing instructions in `path`: one per `## ` section, its body the instruction."""
    file = Path(path)
    if not file.exists():
        raise UserError(f"train.self_study.rephrase_prompts: {file} does not exist; point it at the rephrasing prompts")
    sections = re.split(r"^## ", file.read_text(encoding="utf-8"), flags=re.M)[1:]
    styles = [body.strip() for _, _, body in (section.partition("\n") for section in sections) if body.strip()]
    if not styles:
        raise UserError(f"train.self_study.rephrase_prompts: {file} has no '## ' section with an instruction")
    return styles


def paraphrase(material: Material) -> list[Phase]:
    """Each chunk and its rephrasings (Allen-Zhu & Li 2024: a fact seen in one phrasing is memorised, not extractable;
    diverse rephrasings make it so), written by the teacher in `rephrasings` styles and checked
    (`check_rephrasing`): a refused rephrasing is counted and left out, its chunk keeps its other ones."""
    params = material.params
    styles = rephrase_styles(params.rephrase_prompts)
    teacher = material.teacher
    if params.rephrasings > len(styles) and teacher.temperature == 0:
        temperature = "generate.teacher.temperature" if params.teacher == "openai" else "train.self_study.temperature"
        raise UserError(
            f"train.self_study.rephrasings is {params.rephrasings} but {params.rephrase_prompts} has {len(styles)} "
            f"styles: greedy decoding would repeat them; add styles or set {temperature} above 0"
        )
    texts = material.texts
    asks = [(text, styles[k % len(styles)]) for text in texts for k in range(params.rephrasings)]
    generated = teacher.generate([teacher.prompt(style, text.text) for text, style in asks], params.rephrase_max_new_tokens, "rephrase")
    kept: dict[str, list[Text]] = {}
    for (text, _), generation in zip(asks, generated, strict=True):
        cut = cut_loop(generation)
        if cut is not None:
            material.stats["rephrasings_cut_before_a_loop"] += 1
            generation = cut
        refusal = check_rephrasing(text.text, generation, params)
        material.stats[f"rephrasings_refused_{refusal}" if refusal else "rephrasings_kept"] += 1
        if refusal is None:
            kept.setdefault(text.chunk_id, []).append(Text(text.chunk_id, generation.text))
    return [[row for text in texts for row in (text, *kept.get(text.chunk_id, []))]]


def distill(material: Material) -> list[Phase]:
    """Prompt distillation (Kujanpää et al. 2025): each flashcard's question answered by the start model with its
    chunk in the prompt (the teacher, which reads well: SmolLM2 scores 1.00 with the passage in context) is the answer
    the student learns without the chunk. Greedy answers, not token-level distributions: sequence-level distillation
    (Kim & Rush 2016) needs only text, so the answers are cached, inspected and trained with the same SFT trainer as
    every recipe; matching distributions would need the teacher's logits at every position of every step. An answer
    that falls into a loop is cut before it (`cut_loop`); an empty or unfinished one is counted and left out."""
    questions = material.questions
    chunks = {text.chunk_id: text.text for text in material.texts}
    teacher = material.teacher
    prompts = [teacher.prompt(material.context_template.format(context=chunks[q.chunk_id]) + q.instruction, q.input) for q in questions]
    answers = teacher.generate(prompts, material.params.answer_max_new_tokens, "answer")
    rows: Phase = []
    for question, answer in zip(questions, answers, strict=True):
        cut = cut_loop(answer)
        if cut is not None:
            material.stats["answers_cut_before_a_loop"] += 1
            answer = cut
        refusal = check_answer(answer)
        material.stats[f"answers_refused_{refusal}" if refusal else "answers_kept"] += 1
        if refusal is None:
            rows.append(Question(question.chunk_id, question.instruction, question.input, answer.text))
    return [rows]


# What each is for: the functions' docstrings and docs/training.md#what-is-trained-on-recipes.
RECIPES: dict[str, Recipe] = {
    "interleaved": interleaved,
    "docs": docs,
    "flashcards": flashcards,
    "pit": pit,
    "paraphrase": paraphrase,
    "distill": distill,
}


def build_phases(recipe: str, material: Material) -> list[Phase]:
    """The recipe's phases, none empty."""
    phases = RECIPES[recipe](material)
    for number, phase in enumerate(phases, 1):
        if not phase:
            raise UserError(f"train.recipe={recipe}: phase {number} has no rows (see metrics/recipe for what was refused)")
    return phases
