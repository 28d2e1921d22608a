"""perpetual/teacher/offline.py + perpetual/teacher/quality.py on the real shipped corpora (data/sources)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from perpetual.chunking import chunk_documents
from perpetual.config import load_params
from perpetual.records import LETTERS
from perpetual.sources import fetch
from perpetual.teacher.base import FlashcardDraft, McqDraft
from perpetual.teacher.distractors import DistractorPool, cued, stems
from perpetual.teacher.distractors import form as distractor_form
from perpetual.teacher.offline import OfflineTeacher
from perpetual.teacher.quality import (
    NearDuplicateIndex,
    QualityReport,
    bigram_similarity,
    clean_flashcards,
    clean_mcqs,
    folded_case,
    mcq_set_metrics,
    mentions,
    normalise,
    strip_letter_prefix,
)
from perpetual.teacher.statements import (
    CONTEXT_CHARS,
    FACT_KINDS,
    Statement,
    extract_statements,
    fact_statement,
    left_word,
    pool_key,
    source_name,
    spans,
    subject,
    tail,
)

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")
TASKS = PARAMS.pipeline.tasks
SETTINGS = PARAMS.generate
SEED = PARAMS.pipeline.seed
MCQ_STEM = re.compile(r'what completes "(.*) ___"\?$', re.S)


def load_chunks(task: str) -> list:
    source = PARAMS.fetch.source(task)
    source = source.model_copy(update={"path": str(REPO / source.path)})
    report = fetch(task, source, REPO / "data" / "cache" / "git")
    chunks, _ = chunk_documents(report.documents, PARAMS.chunk)
    return chunks


def generate(task: str, chunks: list) -> dict:
    teacher = OfflineTeacher(seed=SEED, near_duplicate_threshold=SETTINGS.near_duplicate_threshold)
    result = teacher.generate(chunks, SETTINGS.flashcards_per_chunk, SETTINGS.mcqs_per_chunk)
    report = QualityReport()
    flashcards = clean_flashcards(result.flashcards, SETTINGS.near_duplicate_threshold, report)
    mcqs = clean_mcqs(result.mcqs, flashcards, SETTINGS.near_duplicate_threshold, SEED, report)
    return {"result": result, "flashcards": flashcards, "mcqs": mcqs, "report": report}


@pytest.fixture(scope="module")
def corpora() -> dict[str, dict]:
    out = {}
    for task in TASKS:
        chunks = load_chunks(task)
        out[task] = {"chunks": chunks, **generate(task, chunks)}
    return out


@pytest.mark.parametrize("task", TASKS)
def test_enough_mcqs_per_task(corpora: dict, task: str) -> None:
    assert len(corpora[task]["mcqs"]) >= 200


@pytest.mark.parametrize("task", TASKS)
def test_correct_letters_balanced_within_each_kind(corpora: dict, task: str) -> None:
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for mcq in corpora[task]["mcqs"]:
        by_kind[mcq["kind"]][mcq["answer"]] += 1
    assert by_kind
    for kind, counts in by_kind.items():
        n = sum(counts.values())
        for letter in LETTERS:
            assert abs(counts[letter] - n / 4) <= 1, (kind, dict(counts))


@pytest.mark.parametrize("task", TASKS)
def test_mcqs_well_formed_and_grounded_in_their_chunk(corpora: dict, task: str) -> None:
    chunk_text = {chunk["chunk_id"]: chunk["text"] for chunk in corpora[task]["chunks"]}
    ids = [mcq["mcq_id"] for mcq in corpora[task]["mcqs"]]
    assert len(ids) == len(set(ids))
    for mcq in corpora[task]["mcqs"]:
        options = mcq["options"]
        assert len(options) == 4
        assert len({option.casefold() for option in options}) == 4, options
        assert all(option and option == strip_letter_prefix(option) for option in options), options
        correct = options[LETTERS.index(mcq["answer"])]
        text = chunk_text[mcq["chunk_id"]]
        assert correct in text
        assert mcq["cloze_prefix"] and text.find(mcq["cloze_prefix"] + correct) >= 0
        assert MCQ_STEM.search(mcq["question"]), mcq["question"]


@pytest.mark.parametrize("task", TASKS)
def test_no_mcq_question_near_duplicates_a_flashcard(corpora: dict, task: str) -> None:
    """A fact taught by a training flashcard must not be asked by an evaluation MCQ (leakage).

    The offline templates differ ("how does this continue" vs "what completes"), so compare the statements:
    the MCQ's stem completed with its correct option must not be the start of any flashcard's answer.
    """
    taught = [normalise(card["answer"]) for card in corpora[task]["flashcards"]]
    leaked = []
    for mcq in corpora[task]["mcqs"]:
        stem = MCQ_STEM.search(mcq["question"]).group(1)
        fact = normalise(f"{stem} {mcq['options'][LETTERS.index(mcq['answer'])]}")
        if any(answer.startswith(fact) for answer in taught):
            leaked.append(mcq["question"])
    assert leaked == []


@pytest.mark.parametrize("task", TASKS)
def test_longest_option_is_not_a_giveaway(corpora: dict, task: str) -> None:
    assert mcq_set_metrics(corpora[task]["mcqs"])["longest_option_correct_rate"] < 0.4


@pytest.mark.parametrize("task", TASKS)
def test_teacher_drafts_three_flashcards_per_chunk(corpora: dict, task: str) -> None:
    per_chunk = Counter(card.chunk_id for card in corpora[task]["result"].flashcards)
    for chunk in corpora[task]["chunks"]:
        expected = min(SETTINGS.flashcards_per_chunk, len(extract_statements(chunk)))
        assert per_chunk[chunk["chunk_id"]] == expected


@pytest.mark.parametrize("task", TASKS)
def test_three_flashcards_per_chunk_survive_quality_rules(corpora: dict, task: str) -> None:
    """The training set (after clean_flashcards) keeps 3 cards for every chunk with enough statements."""
    per_chunk = Counter(card["chunk_id"] for card in corpora[task]["flashcards"])
    short = {
        chunk["chunk_id"]: per_chunk[chunk["chunk_id"]]
        for chunk in corpora[task]["chunks"]
        if len(extract_statements(chunk)) >= SETTINGS.flashcards_per_chunk
        and per_chunk[chunk["chunk_id"]] != SETTINGS.flashcards_per_chunk
    }
    assert not short, f"{len(short)} of {len(corpora[task]['chunks'])} chunks lost flashcards; dropped: {dict(corpora[task]['report'].dropped)}"


def test_flashcard_answers_are_chunk_statements(corpora: dict) -> None:
    for task in TASKS:
        chunk_text = {chunk["chunk_id"]: chunk["text"] for chunk in corpora[task]["chunks"]}
        for card in corpora[task]["flashcards"]:
            assert card["answer"] in chunk_text[card["chunk_id"]]
            assert card["question"].endswith(' ..."?')


def test_deterministic_in_process(corpora: dict) -> None:
    task = "research"
    again = generate(task, load_chunks(task))
    assert again["mcqs"] == corpora[task]["mcqs"]
    assert again["flashcards"] == corpora[task]["flashcards"]


_DIGEST_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {repo!r})
import tests.test_offline_teacher as t
out = {{task: {{k: t.generate(task, t.load_chunks(task))[k] for k in ("mcqs", "flashcards")}} for task in t.TASKS}}
print(hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest())
"""


def test_deterministic_across_processes_and_hash_seeds(corpora: dict) -> None:
    local = {task: {k: corpora[task][k] for k in ("mcqs", "flashcards")} for task in TASKS}
    expected = hashlib.sha256(json.dumps(local, sort_keys=True).encode()).hexdigest()
    script = _DIGEST_SCRIPT.format(repo=str(REPO))
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


# ---------------------------------------------------------------- quality rules on hand-made drafts
def test_strip_letter_prefix() -> None:
    assert strip_letter_prefix("A. foo") == "foo"
    assert strip_letter_prefix("(b) bar") == "bar"
    assert strip_letter_prefix("C) baz") == "baz"
    assert strip_letter_prefix("D: qux") == "qux"
    assert strip_letter_prefix("  B - quux ") == "quux"
    assert strip_letter_prefix("Alpha") == "Alpha"
    assert strip_letter_prefix("A dog") == "A dog"
    assert strip_letter_prefix("Edinburgh") == "Edinburgh"


def _draft(question: str, options: tuple[str, ...], correct: int = 0, kind: str = "name", chunk: str = "c1") -> McqDraft:
    return McqDraft(chunk_id=chunk, question=question, options=options, correct_index=correct, cloze_prefix=question, kind=kind)


def test_clean_mcqs_drops_and_counts_bad_drafts() -> None:
    drafts = [
        _draft("Which city is the capital of France?", ("A. Paris", "B. Lyon", "C. Nice", "D. Lille")),
        _draft("Which river flows through Rome?", ("Tiber", "Arno", "tiber", "Po")),  # duplicate options
        _draft("Which sea borders Odessa?", ("A. Black Sea", "Black Sea", "Red Sea", "Dead Sea")),  # prefixed duplicate
        _draft("Which mountain is highest in the Alps?", ("Mont Blanc", "Eiger", "Matterhorn")),  # 3 options
        _draft("Which lake is the deepest on Earth?", ("Baikal", "", "Tanganyika", "Superior")),  # empty option
        _draft("Which desert is the largest hot one?", ("Sahara", "Gobi", "Kalahari", "Atacama"), correct=4),
        _draft("   ", ("w", "x", "y", "z")),  # empty question
        _draft("Which city is the capital of France?", ("Paris", "Lyon", "Nice", "Lille")),  # repeated MCQ
    ]
    report = QualityReport()
    mcqs = clean_mcqs(drafts, [], threshold=0.9, seed=0, report=report)
    assert len(mcqs) == 1
    assert sorted(mcqs[0]["options"]) == ["Lille", "Lyon", "Nice", "Paris"]
    assert mcqs[0]["options"][LETTERS.index(mcqs[0]["answer"])] == "Paris"
    assert report.dropped == Counter(
        {
            "mcq_duplicate_options": 2,
            "mcq_not_4_options": 1,
            "mcq_empty_option": 1,
            "mcq_bad_answer": 1,
            "mcq_empty_question": 1,
            "mcq_duplicate": 1,
        }
    )
    assert report.as_metrics()["dropped_mcq_duplicate_options"] == 2


def test_clean_mcqs_drops_questions_leaked_from_flashcards() -> None:
    cards = clean_flashcards(
        [FlashcardDraft(chunk_id="c1", question="Which city is the capital of France?", answer="Paris")], 0.9, QualityReport()
    )
    report = QualityReport()
    drafts = [_draft("Which city is the capital of France?", ("Paris", "Lyon", "Nice", "Lille"))]
    assert clean_mcqs(drafts, cards, threshold=0.9, seed=0, report=report) == []
    assert report.dropped["mcq_leaked_from_flashcards"] == 1


def test_balance_letters_on_hand_made_drafts() -> None:
    drafts = [_draft(f"Question number {i} about topic {i}?", (f"right {i}", "w1", "w2", "w3"), chunk=f"c{i}") for i in range(40)]
    mcqs = clean_mcqs(drafts, [], threshold=0.9, seed=7, report=QualityReport())
    assert len(mcqs) == 40
    assert Counter(mcq["answer"] for mcq in mcqs) == Counter({letter: 10 for letter in LETTERS})
    for i, mcq in enumerate(mcqs):
        assert mcq["options"][LETTERS.index(mcq["answer"])] == f"right {i}"
    # Not a fixed rotation: position in the file must not predict the letter.
    assert [mcq["answer"] for mcq in mcqs[:8]] != list("ABCDABCD")


# ---------------------------------------------------------------- questions that test knowledge, not surface cues
@pytest.mark.parametrize("task", TASKS)
def test_the_correct_option_is_never_shown_before_the_blank(corpora: dict, task: str) -> None:
    for mcq in corpora[task]["mcqs"]:
        correct = mcq["options"][LETTERS.index(mcq["answer"])]
        assert not mentions(mcq["question"], correct), mcq["question"]
        assert not mentions(mcq["cloze_prefix"], correct), (mcq["cloze_prefix"][-80:], correct)


def test_code_answers_are_no_python_boilerplate(corpora: dict) -> None:
    answers = [mcq["options"][LETTERS.index(mcq["answer"])] for mcq in corpora["code"]["mcqs"]]
    assert not {"None", "True", "False", "self", "cls", "return", "len", "str"} & set(answers)
    assert not any(re.match(r"\s*(from \S+ )?import ", mcq["cloze_prefix"].splitlines()[-1]) for mcq in corpora["code"]["mcqs"])


def _chunk(chunk_id: str, text: str, language: str = "product") -> dict:
    return {"chunk_id": chunk_id, "task": "products", "source": f"cat.csv#{chunk_id}", "language": language, "text": text}


def test_statements_skip_boilerplate_imports_references_and_answers_shown_earlier() -> None:
    code = _chunk("c", "import os\nfrom kiln import Glaze\nready = True\nlimit = 1280\nwarm = limit\n", "python")
    assert [s.answer for s in extract_statements(code)] == ["1280"]  # `warm = limit`: limit is shown above
    bibliography = "A. Smith. 2024. Tiny kilns. arXiv preprint arXiv:2401.00001."
    prose = _chunk("p", f"Kiln notes\nThe kiln reaches 1280 degrees.\n{bibliography}\nIts door is made of basalt.", "text")
    assert [s.answer for s in extract_statements(prose)] == ["1280", "basalt"]


def test_distractors_come_from_the_answers_language() -> None:
    english = [f"Kettle model {i}\nIt boils water quickly in the kitchen. The lid is stamped \"{words}\"." for i, words in
               enumerate(["boil with care", "keep it dry", "hot water only", "mind the steam", "fill to the line", "made by hand"])]  # fmt: skip
    spanish = [f"Hervidor modelo {i}\nHierve el agua rápidamente en la cocina. La tapa dice \"{words}\"." for i, words in
               enumerate(["hervir con cuidado", "mantener seco", "solo agua caliente", "cuidado con el vapor", "llenar hasta la línea", "hecho a mano"])]  # fmt: skip
    chunks = [_chunk(f"en{i}", text) for i, text in enumerate(english)] + [_chunk(f"es{i}", text) for i, text in enumerate(spanish)]
    result = OfflineTeacher(seed=0, near_duplicate_threshold=SETTINGS.near_duplicate_threshold).generate(chunks, flashcards_per_chunk=0, mcqs_per_chunk=2)
    assert result.mcqs
    for draft in map(McqDraft.complete, result.mcqs):
        assert draft.kind == "quoted"
        own = "en" if draft.chunk_id.startswith("en") else "es"
        others = english if own == "es" else spanish
        assert not any(option in text for option in draft.options for text in others), (draft.question, draft.options)


# ---------------------------------------------------------------- distractors as plausible as the answer
def test_mcqs_ask_facts_only() -> None:
    """A statement ending in a plain word is asked by its last fact instead, or not at all (a flashcard may)."""
    chunk = _chunk("c", "Brindle kettle\nThe Brindle kettle was designed by Oriel Vanthorpe in 2014 for quiet kitchens.\nIt hums softly.", "text")
    result = OfflineTeacher(seed=0, near_duplicate_threshold=0.9).generate([chunk], flashcards_per_chunk=0, mcqs_per_chunk=5)
    assert result.stats["statements_without_facts"] == 1  # "It hums softly."
    assert result.mcqs == []  # 2014 has no other number of its form in the task: no distractors, no MCQ
    assert result.stats["statements_without_distractors"] == 1


def _statement(chunk: dict, answer: str) -> Statement:
    found = [s for s in extract_statements(chunk) if s.answer == answer]
    assert found, [s.answer for s in extract_statements(chunk)]
    return found[0]


def test_distractors_share_the_answers_form_and_slot_before_nearness() -> None:
    own = _chunk("a", "Tern kettle\nIts colour is called Saltrose. It went on sale in 2018.\nIt holds 1.7 litres. It weighs 950 grams. "
                      "It is sold by Corvel Stores at 89.30 dollars.")  # fmt: skip
    other = _chunk("b", "Wren kettle\nIts colour is called Larkstone. It went on sale in 2016. It holds 1.2 litres and weighs 1100 "
                        "grams. Its colour, Tidewash in some markets, was chosen by Mabry Ketterling. First sold in 2011.")  # fmt: skip
    third = _chunk("c", "## Results\nThe colour is called Ashcoral. Sold in 2009. Weighs 700 grams. Holds 0.8 litres.")
    pool = DistractorPool([own, other, third])
    rng = random.Random(0)
    colour = _statement(own, "Saltrose")
    names = pool.choose(own, colour, "Its colour is called", rng)
    # One-word names that followed "called" come first; "Results" (a heading) is no name; "Corvel Stores" (two words)
    # and "Mabry Ketterling" differ in form.
    assert names is not None and set(names[:2]) == {"Larkstone", "Ashcoral"} and "Results" not in names
    assert "Corvel Stores" not in names and "Mabry Ketterling" not in names
    year = pool.choose(own, _statement(own, "2018"), "It went on sale in", rng)
    assert year is not None and set(year) == {"2016", "2011", "2009"}  # years among years, not 950 grams
    volume = pool.choose(own, _statement(own, "1.7"), "It holds", rng)
    assert volume is not None and set(volume[:2]) == {"1.2", "0.8"}  # decimals among decimals


def test_distractors_from_the_same_chunk_and_its_neighbours_first() -> None:
    def doc(name: str, values: list[int]) -> list[dict]:
        return [{**_chunk(f"{name}{i}", f"Part {i}\nThe valve holds {v} kilopascals. The seal holds {v + 3} kilopascals.",
                          "text"), "source": f"{name}.md"} for i, v in enumerate(values)]  # fmt: skip

    near = doc("manual", [310, 420, 530, 640, 750, 860])
    far = doc("other", [315, 425, 535, 645])
    pool = DistractorPool(near + far)
    chunk = near[2]
    options = pool.choose(chunk, _statement(chunk, "533"), "The seal holds", random.Random(0))
    # Its own chunk's 530 first, then the neighbours' (two either side), never the other document's.
    assert options is not None and options[0] == "530"
    assert set(options[1:]) <= {"310", "313", "420", "423", "640", "643", "750", "753"}


@pytest.mark.parametrize("task", TASKS)
def test_shipped_mcqs_ask_facts_with_distractors_of_the_answers_form(corpora: dict, task: str) -> None:
    mcqs = corpora[task]["mcqs"]
    assert mcqs and all(mcq["kind"] in FACT_KINDS for mcq in mcqs)
    matched = total = 0
    for mcq in mcqs:
        correct = mcq["options"][LETTERS.index(mcq["answer"])]
        for option in mcq["options"]:
            if option != correct:
                total += 1
                matched += distractor_form(option, mcq["kind"]).coarse == distractor_form(correct, mcq["kind"]).coarse
    assert matched / total >= 0.9, matched / total


def test_clean_mcqs_drops_answers_the_question_or_passage_shows() -> None:
    drafts = [
        _draft("Tellavik kettles are made by which brand, Tellavik?", ("Tellavik", "Ombrisk", "Quorra", "Velt")),
        _draft("The kettle boils in how many minutes?", ("4", "5", "6", "7")),
    ]
    drafts[1] = dataclasses.replace(drafts[1], cloze_prefix="Boiling takes 4 minutes. The kettle boils in ")
    report = QualityReport()
    assert clean_mcqs(drafts, [], threshold=0.9, seed=0, report=report) == []
    assert report.dropped == Counter({"mcq_answer_in_question": 1, "mcq_answer_in_passage": 1})


def test_an_answer_found_by_matching_words_is_not_asked() -> None:
    shown = 'def needs_candling(self):\n    """Thick pieces need candling."""\n    return self.thickness_mm > '
    assert stems("CANDLE_THICKNESS_MM") & stems(shown)
    assert cued("CANDLE_THICKNESS_MM", ["MAX_QUEUE_DEPTH", "GRADE_MAX", "ERR_UNKNOWN"], shown)
    assert not cued("CANDLE_THICKNESS_MM", ["CANDLE_HOURS", "THICK_LIMIT_MM", "CANDLING_MINUTES"], shown)
    assert not cued("MAX_QUEUE_DEPTH", ["GRADE_MAX", "ERR_UNKNOWN", "KILN_KIND_GAS"], shown)  # no echo at all
    code = _chunk("k", "class Piece:\n    def needs_candling(self):\n        return self.thickness_mm > CANDLE_THICKNESS_MM\n"
                       "LIMIT = MAX_QUEUE_DEPTH\nGRADE = GRADE_MAX\nFAULT = ERR_UNKNOWN\nHOURS = CANDLE_HOURS_MAX\n", "python")  # fmt: skip
    pool = DistractorPool([code])
    options = pool.choose(code, _statement(code, "CANDLE_THICKNESS_MM"), shown, random.Random(0))
    assert options is not None and options[0] == "CANDLE_HOURS_MAX"  # the one distractor that echoes too comes first


# ---------------------------------------------------------------- only the MCQs kept get distractors, the same ones
@pytest.mark.parametrize("task", TASKS)
def test_distractors_are_made_for_the_mcqs_kept_only_and_the_same_as_making_all_first(corpora: dict, task: str) -> None:
    """The old path made every draft's distractors, then dropped those over the cap: the same MCQs, reports and stats."""
    drafts, cards = corpora[task]["result"].mcqs, corpora[task]["flashcards"]
    assert drafts and all(draft.make_distractors is not None for draft in drafts)
    for cap in (SETTINGS.max_mcqs_per_task, 40, None):
        made: list[str] = []
        lazy_report, eager_report = QualityReport(), QualityReport()
        lazy = clean_mcqs([_counted(draft, made) for draft in drafts], cards, SETTINGS.near_duplicate_threshold, SEED, lazy_report, cap)
        eager = clean_mcqs([draft.complete() for draft in drafts], cards, SETTINGS.near_duplicate_threshold, SEED, eager_report, cap)
        assert lazy == eager and lazy_report == eager_report
        assert len(made) == len(lazy), "distractors made for MCQs that were not kept"
        if cap is not None and len(drafts) > cap:
            assert lazy_report.dropped["mcq_over_task_cap"] > 0


def _counted(draft: McqDraft, made: list[str]) -> McqDraft:
    """The draft, noting in `made` when its distractors are made."""
    make = draft.make_distractors
    assert make is not None

    def make_counted() -> tuple[str, ...]:
        made.append(draft.question)
        return make()

    return dataclasses.replace(draft, make_distractors=make_counted)


class _ReferencePool:
    """DistractorPool before it cached its spans' features and ranked only the best forms: every span of the task
    ranked in full for every question, `mentions` always a regex."""

    def __init__(self, chunks: list) -> None:
        self.by_chunk: dict[tuple[str, str], list[str]] = {}
        self.document: dict[str, list[str]] = defaultdict(list)
        self.slots: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for chunk in chunks:
            self.document[chunk["source"].split("#", 1)[0]].append(chunk["chunk_id"])
            for kind in FACT_KINDS:
                found = spans(chunk, kind)
                self.by_chunk[chunk["chunk_id"], kind] = [span for span, _ in found]
                for span, slot in found:
                    self.slots[pool_key(chunk, kind)][span].add(slot)

    def choose(self, chunk: dict, statement: Statement, shown: str, rng: random.Random, count: int = 3) -> list[str] | None:
        kind, answer = statement.kind, statement.answer
        slots = self.slots[pool_key(chunk, kind)]
        siblings = self.document[chunk["source"].split("#", 1)[0]]
        at = siblings.index(chunk["chunk_id"])
        near = siblings[max(0, at - 2) : at] + siblings[at + 1 : at + 3]
        rest = [chunk_id for chunk_id in siblings if chunk_id != chunk["chunk_id"] and chunk_id not in near]
        nearness: dict[str, int] = {}
        for level, chunk_ids in enumerate(([chunk["chunk_id"]], near, rest)):
            for chunk_id in chunk_ids:
                for option in self.by_chunk[chunk_id, kind]:
                    nearness.setdefault(option, level)
        distinct: dict[str, str] = {}
        for option in sorted(slots):
            if option.casefold() != answer.casefold() and not _regex_mentions(shown, option):
                distinct.setdefault(option.casefold(), option)
        if len(distinct) < count:
            return None
        candidates = list(distinct.values())
        rng.shuffle(candidates)
        target = distractor_form(answer, kind)
        slot = left_word(statement.text[: statement.span_start])
        cues = stems(shown)
        echo = bool(stems(answer) & cues)

        def rank(option: str) -> tuple[int, ...]:
            shape = distractor_form(option, kind)
            coarse = sum(a != b for a, b in zip(shape.coarse, target.coarse, strict=True))
            fine = sum(abs(a - b) for a, b in zip(shape.fine, target.fine, strict=True))
            echoes = bool(stems(option) & cues) != echo
            return coarse, echoes, slot not in slots[option], fine, nearness.get(option, 3), abs(len(option) - len(answer))

        candidates.sort(key=rank)
        return candidates[:count]


@functools.cache
def _answer_pattern(answer: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(answer)}(?!\w)", re.IGNORECASE)


def _regex_mentions(text: str, answer: str) -> bool:
    answer = answer.strip()
    return bool(answer) and _answer_pattern(answer).search(text) is not None


@pytest.mark.parametrize("task", TASKS)
def test_distractor_pool_chooses_as_ranking_every_span_did(corpora: dict, task: str) -> None:
    """choose, usable and cued against the reference, for every fact statement of the task, asked or not."""
    chunks = corpora[task]["chunks"]
    pool, reference = DistractorPool(chunks), _ReferencePool(chunks)
    asked = echoing = without = 0
    for chunk in chunks:
        for found in extract_statements(chunk):
            statement = fact_statement(chunk, found)
            if statement is None:
                continue
            shown = statement.text[: statement.span_start].rstrip()
            cloze_prefix = tail(chunk["text"][: statement.start + statement.span_start], CONTEXT_CHARS)
            passage = f'In {source_name(chunk)} ({subject(chunk)}), what completes "{shown} ___"? {cloze_prefix}'
            expected = reference.choose(chunk, statement, passage, random.Random(statement.text))
            assert pool.choose(chunk, statement, passage, random.Random(statement.text)) == expected
            assert pool.usable(chunk, statement, passage) == (expected is not None)
            asked += 1
            if expected is None:
                without += 1
                continue
            assert pool.cued(chunk, statement, passage) == cued(statement.answer, expected, passage), (passage, expected)
            echoing += pool.cued(chunk, statement, passage)
    assert asked > 100 and echoing > 0, (asked, echoing, without)


def test_mentions_needs_no_regex_for_an_ascii_answer_missing_from_the_folded_text() -> None:
    """Every character re.IGNORECASE matches to an ASCII character folds to it: the shortcut never misses a match."""
    ascii_char = re.compile(r"[\x00-\x7f]", re.IGNORECASE)
    for code in range(0x80, 0x110000):
        char = chr(code)
        if ascii_char.fullmatch(char):
            matched = [c for c in map(chr, range(0x80)) if re.fullmatch(re.escape(c), char, re.IGNORECASE)]
            assert folded_case(char) in {c.lower() for c in matched}, (hex(code), matched)
    for text, answer in [("\u212aelvin scale", "kelvin"), ("\u0130stanbul", "istanbul"), ("ı", "I"), ("Cla\u017f\u017f", "class"),
                         ("Straße", "STRASSE"), ("the KILN", "kiln"), ("kiln_max", "kiln"), ("ÅNGSTRÖM", "ångström")]:  # fmt: skip
        assert mentions(text, answer) == _regex_mentions(text, answer), (text, answer)


@pytest.mark.parametrize("threshold", [0.9, 0.5, 0.75, 1.0, 0.05])
def test_near_duplicate_index_finds_what_comparing_every_item_finds(threshold: float) -> None:
    """Looking through the rarest shingles only misses nothing: the same answers as comparing with every item."""
    rng = random.Random(threshold)
    words = "kiln glaze cone clay fire vent shelf ware bisque slip".split()
    template = "In kiln.py (class Kiln), what completes"
    index, added = NearDuplicateIndex(threshold), []
    hits = 0
    for _ in range(400):
        text = f"{template} {' '.join(rng.choices(words, k=rng.randint(0, 12)))}"
        if added and rng.random() < 0.3:  # a near copy of an earlier one
            base = rng.choice(added).split()
            base[rng.randrange(len(base))] = rng.choice(words)
            text = " ".join(base[: rng.randint(len(base) - 2, len(base))])
        expected = any(bigram_similarity(text, other) >= threshold for other in added)
        assert index.find(text) == expected, text
        hits += expected
        if rng.random() < 0.7:
            index.add(text)
            added.append(text)
    assert 0 < hits
