"""The self-study teachers and the checks of what they write. `SelfStudyTeacher` is what a recipe asks; `open_teacher`
picks one by `train.self_study.teacher`: the local teacher here, or an OpenAI-compatible endpoint
(perpetual/teacher/chat_teacher.py), which shares the cache format, the counts and the checks.

The local teacher: a model run in-process writes study material. Run with the cell's start model
(models/base-<model>), it is self-study: the model rephrases its chunks and answers its flashcards' questions with
the chunk in its prompt, in its own template (train.template), and needs no server.

Batched through lm-eval's `generate_until` (the HFLM that scores the MCQs: perpetual/evaluation.py `make_lm`), in the
precision `train.self_study.precision` chooses (perpetual/precision.py), greedy or sampled with a seed. Every
generation goes through the teacher's response cache (perpetual/teacher/cache.py: one file per prompt, written as
each batch finishes), so a run killed half-way resumes and a rerun generates nothing twice; the model is loaded only
when something is missing. What comes back is checked by the recipe that asked (`check_rephrasing` for
rephrasings) and every outcome is counted in `stats`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from perpetual.config import SelfStudyParams, TeacherParams
from perpetual.records import model_fingerprint
from perpetual.teacher.cache import CachedResponse, ResponseCache, cache_key
from perpetual.teacher.quality import bigram_similarity, mentions
from perpetual.teacher.statements import facts
from perpetual.templates import Template, TemplateName, make_template

# Bumped when what a cached generation means changes (its prompt rendering, its checks' inputs).
CACHE_FORMAT = "self-study-1"


@dataclass(frozen=True)
class Generation:
    text: str  # the answer, cut before the stop token (alpaca: before a new "###" section)
    finished: bool  # it ended with a stop within the token budget (a run-on answer was cut off)


class SelfStudyTeacher(Protocol):
    """What a recipe asks of a teacher (perpetual/recipes.py) and what recipe@ reports of it."""

    stats: Counter[str]  # asked, cache hits, generated tokens, per purpose ("rephrase", "answer")
    temperature: float  # 0: greedy, so the same prompt gives the same text
    precision: dict[str, str]  # what the model ran in, once known; empty where the teacher cannot tell (an endpoint)

    def prompt(self, instruction: str, content: str = "") -> str:
        """The prompt that asks `instruction` of `content`, as this teacher reads prompts."""
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int, purpose: str) -> list[Generation]:
        """One generation per prompt, in order, each within `max_new_tokens`; cached ones read back."""
        ...


def open_teacher(
    params: SelfStudyParams, endpoint: TeacherParams, folder: Path, template_name: TemplateName, cache_dir: Path, seed: int,
    stats: Counter[str],
) -> SelfStudyTeacher:  # fmt: skip
    """The teacher `params.teacher` names: the model in `folder` in-process (seeded by `seed`), or the endpoint
    `endpoint` describes; either caches in `cache_dir` and counts in `stats`."""
    if params.teacher == "openai":
        from perpetual.teacher.chat_teacher import OpenAISelfStudyTeacher

        return OpenAISelfStudyTeacher.from_params(endpoint, cache_dir, stats)
    return LocalTeacher(folder, template_name, params, cache_dir, seed, stats)


class LocalTeacher:
    """Generates with the model in `folder` in template `template_name`; `generate` answers from the cache first."""

    def __init__(
        self, folder: Path, template_name: TemplateName, params: SelfStudyParams, cache_dir: Path, seed: int, stats: Counter[str]
    ) -> None:
        from transformers import AutoTokenizer

        self.folder = folder
        self.params = params
        self.seed = seed
        self.cache = ResponseCache(cache_dir)
        self.cache.remove_stale_temps()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.template: Template = make_template(template_name, self.tokenizer, str(folder))
        self.fingerprint = model_fingerprint(folder)
        self.stats = stats  # the recipe's counters: asked, cache hits, generated tokens per purpose
        self.temperature = params.temperature
        self.precision: dict[str, str] = {}  # what the model ran in, once loaded
        self._lm: Any = None

    def prompt(self, instruction: str, content: str = "") -> str:
        return self.template.instruction(instruction, content)

    def generate(self, prompts: Sequence[str], max_new_tokens: int, purpose: str) -> list[Generation]:
        """One generation per prompt, in order: cached ones read back, the rest generated in batches and cached."""
        keys = [self._key(prompt, max_new_tokens) for prompt in prompts]
        found: dict[int, Generation] = {}
        for index, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None:
                found[index] = decode_generation(hit.content)
        missing = [index for index in range(len(prompts)) if index not in found]
        self.stats[f"{purpose}_asked"] += len(prompts)
        self.stats[f"{purpose}_cache_hits"] += len(found)
        if missing:
            lm = self._load()
            size = self.params.batch_size
            with tqdm(total=len(missing), desc=f"self-study: {purpose}", unit="prompt") as progress:
                for start in range(0, len(missing), size):
                    batch = missing[start : start + size]
                    for index, generation, tokens in zip(batch, *self._run(lm, [prompts[i] for i in batch], max_new_tokens), strict=True):
                        self.cache.put(keys[index], CachedResponse(encode_generation(generation), 0, tokens), {"purpose": purpose})
                        self.stats[f"{purpose}_generated_tokens"] += tokens
                        found[index] = generation
                    progress.update(len(batch))
        return [found[index] for index in range(len(prompts))]

    def _key(self, prompt: str, max_new_tokens: int) -> str:
        return cache_key({
            "format": CACHE_FORMAT, "model": self.fingerprint, "template": self.template.name, "prompt": prompt,
            "max_new_tokens": max_new_tokens, "temperature": self.params.temperature,
            "seed": self.seed if self.params.temperature > 0 else None,
        })  # fmt: skip

    def _load(self) -> Any:
        if self._lm is None:
            import torch

            from perpetual.evaluation import make_lm
            from perpetual.models import load_local, local_config
            from perpetual.precision import choose

            choice = choose(self.params.precision, "train.self_study", local_config(self.folder))
            model, tokenizer = load_local(self.folder, choice.dtype)
            self.precision = choice.record()
            torch.manual_seed(self.seed)  # a sampled draw repeats with the same seed, prompts and batches
            self._lm = make_lm(model, tokenizer, self.params.batch_size)
        return self._lm

    def _run(self, lm: Any, prompts: list[str], max_new_tokens: int) -> tuple[list[Generation], list[int]]:
        from perpetual.retention import answer_text, classify, follows_format, greedy_answers

        stop_ids = self.template.stop_token_ids()
        answers = greedy_answers(lm, prompts, self.template, max_new_tokens, stop_ids, self.params.temperature)
        generations = [
            Generation(answer_text(text, self.template), follows_format(classify(tokens, text, self.template, stop_ids)))
            for tokens, text in answers
        ]
        return generations, [len(tokens) for tokens, _ in answers]


def encode_generation(generation: Generation) -> str:
    """A generation as a cache file's content; both teachers cache Generations, read back by `decode_generation`."""
    return json.dumps({"text": generation.text, "finished": generation.finished}, ensure_ascii=False)


def decode_generation(content: str) -> Generation:
    record = json.loads(content)
    return Generation(str(record["text"]), bool(record["finished"]))


# ---------------------------------------------------------------- checks
def check_answer(generation: Generation) -> str | None:
    """Why a generation is refused as it stands, or None: it must say something and end within its budget."""
    if not generation.text:
        return "empty"
    return None if generation.finished else "unfinished"


def cut_loop(generation: Generation) -> Generation | None:
    """The generation cut before its first sentence or line that repeats an earlier one, or None when none does.

    Greedy decoding of a small model falls into loops ("Lion.\nLion.\nLion." until the budget, SmolLM2-135M in 36
    of 48 rephrasings): what comes before the loop may be a whole rephrasing, and is checked like one; the loop
    itself would teach the repetition."""
    seen: set[str] = set()
    for match in _UNIT.finditer(generation.text):
        unit = " ".join(match.group(0).split())
        if unit in seen:
            return Generation(generation.text[: match.start()].rstrip(), finished=True)
        seen.add(unit)
    return None


_UNIT = re.compile(r"[^\n.!?]+[.!?]*")  # a sentence, or a line without an end mark


def check_rephrasing(original: str, rephrasing: Generation, params: SelfStudyParams) -> str | None:
    """Why a rephrasing is refused, or None when it is kept: it must be finished, not empty, not a copy of the
    original (word-bigram similarity at most `max_copy_similarity`), keep at least `min_fact_recall` of the
    original's facts (its numbers, quoted strings, identifiers and names, perpetual/teacher/statements.py `facts`):
    a rephrasing that loses them teaches the phrasing without the knowledge; and state at least
    `min_fact_precision` of its own facts as the original does: one that invents them ("LarkSparrow reached 18.51")
    teaches falsehoods."""
    refusal = check_answer(rephrasing)
    if refusal:
        return refusal
    if bigram_similarity(original, rephrasing.text) > params.max_copy_similarity:
        return "copy"
    wanted = facts(original)
    if wanted and sum(mentions(rephrasing.text, fact) for fact in wanted) / len(wanted) < params.min_fact_recall:
        return "lost_facts"
    stated = facts(rephrasing.text)
    if stated and sum(mentions(original, fact) for fact in stated) / len(stated) < params.min_fact_precision:
        return "invented_facts"
    return None
