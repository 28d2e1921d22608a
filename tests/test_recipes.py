"""perpetual/recipes.py and perpetual/self_study.py: what each recipe trains on and in what order, the checks of the
material the local teacher writes, its cache, and phases trained one after the other."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import get_args

import pytest

from perpetual import training
from perpetual.config import RecipeName, SelfStudyParams, TrainParams
from perpetual.errors import UserError
from perpetual.recipes import RECIPES, Material, build_phases, rephrase_styles
from perpetual.rows import Question, Text
from perpetual.self_study import Generation, LocalTeacher, check_rephrasing, cut_loop
from perpetual.teacher.statements import facts
from perpetual.testing.params import section

CHUNKS = [
    Text("c0", "The Vellum kettle from Aurora Labs boils 1.5 litres in 41 seconds."),
    Text("c1", "Call parse_config(path) to read settings; it returns a ConfigMap."),
]
CARDS = [
    Question("c0", "How fast does the Vellum kettle boil?", "", "41 seconds"),
    Question("c1", "What does parse_config return?", "", "A ConfigMap"),
]
ROWS = [CHUNKS[0], CARDS[0], CHUNKS[1], CARDS[1]]


def settings(**changes) -> SelfStudyParams:
    return section(TrainParams, "train").self_study.model_copy(update=changes)


class ScriptedTeacher:
    """Answers each prompt from a script (keyed by a substring of the prompt), as the local teacher would."""

    def __init__(self, script: dict[str, Generation]) -> None:
        self.script = script
        self.asked: list[str] = []
        self.stats: Counter[str] = Counter()
        self.temperature = 0.0  # greedy, as params.yaml's local teacher
        self.precision: dict[str, str] = {}

    def prompt(self, instruction: str, content: str = "") -> str:
        return f"{instruction}\n{content}"

    def generate(self, prompts, max_new_tokens, purpose):
        self.asked += prompts
        return [next(reply for key, reply in self.script.items() if key in prompt) for prompt in prompts]


def material(teacher: ScriptedTeacher | None = None, **changes) -> Material:
    def open_teacher():
        if teacher is None:
            raise AssertionError("this recipe must not ask a teacher")
        return teacher

    return Material(ROWS, settings(**changes), "Context:\n{context}\n\n", open_teacher, Counter())


def test_every_recipe_name_params_accept_is_registered() -> None:
    assert set(RECIPES) == set(get_args(RecipeName))


def test_the_plain_recipes_select_and_order_the_rows() -> None:
    assert build_phases("interleaved", material()) == [ROWS]  # the paper's set, as assemble@ wrote it
    assert build_phases("docs", material()) == [CHUNKS]
    assert build_phases("flashcards", material()) == [CARDS]
    assert build_phases("pit", material()) == [CARDS, ROWS]  # questions first, then the documents with them


def test_paraphrase_keeps_checked_rephrasings_after_their_chunk_and_counts_the_rest() -> None:
    teacher = ScriptedTeacher({
        "Rewrite the following text in your own words. Keep every name, number and identifier exactly as written.\nThe Vellum":
            Generation("In 41 seconds, Aurora Labs' Vellum kettle brings 1.5 litres to the boil.", True),
        "colleague in a short paragraph. Keep every name, number and identifier exactly as written.\nThe Vellum":
            Generation("A kettle boils water quickly.", True),  # the facts are gone
        "exactly as written.\nCall": Generation("Call parse_config(path) to read settings; it returns a ConfigMap.", True),  # a copy
    })  # fmt: skip
    made = material(teacher)
    [phase] = build_phases("paraphrase", made)
    assert phase == [CHUNKS[0], Text("c0", "In 41 seconds, Aurora Labs' Vellum kettle brings 1.5 litres to the boil."), CHUNKS[1]]
    assert made.stats == Counter({"rephrasings_kept": 1, "rephrasings_refused_lost_facts": 1, "rephrasings_refused_copy": 2})
    assert len(teacher.asked) == 4  # 2 chunks x 2 rephrasings, in the first two styles


def test_paraphrase_refuses_more_greedy_rephrasings_than_styles() -> None:
    styles = len(rephrase_styles("prompts/rephrase.md"))
    with pytest.raises(UserError, match="styles"):
        build_phases("paraphrase", material(ScriptedTeacher({}), rephrasings=styles + 1))


def test_distill_trains_the_answers_given_with_the_chunk_in_the_prompt() -> None:
    teacher = ScriptedTeacher({"How fast": Generation("It boils in 41 seconds.", True), "parse_config return": Generation("", True)})
    made = material(teacher)
    [phase] = build_phases("distill", made)
    assert phase == [Question("c0", "How fast does the Vellum kettle boil?", "", "It boils in 41 seconds.")]
    assert made.stats == Counter({"answers_kept": 1, "answers_refused_empty": 1})
    assert teacher.asked[0].startswith("Context:\nThe Vellum kettle") and teacher.asked[0].endswith("boil?\n")


def test_a_recipe_left_with_nothing_to_train_is_a_user_error() -> None:
    with pytest.raises(UserError, match="phase 1 has no rows"):
        build_phases("distill", material(ScriptedTeacher({"": Generation("runs on and on", False)})))


def test_facts_are_numbers_identifiers_and_names_not_sentence_capitals() -> None:
    assert facts("The Vellum kettle from Aurora Labs boils 1.5 litres. The kettle is the Vellum.") == {"Vellum", "Aurora Labs", "1.5"}
    assert facts(CHUNKS[1].text) >= {"parse_config", "ConfigMap"}


def test_check_rephrasing_reasons() -> None:
    original = CHUNKS[0].text
    params = settings()
    assert check_rephrasing(original, Generation("", True), params) == "empty"
    assert check_rephrasing(original, Generation("Aurora Labs' Vellum boils 1.5 litres in 41 seconds", False), params) == "unfinished"
    assert check_rephrasing(original, Generation(original, True), params) == "copy"
    assert check_rephrasing(original, Generation("It is a fast kettle.", True), params) == "lost_facts"
    assert check_rephrasing(original, Generation("Aurora Labs' Vellum heats 1.5 litres to boiling in 41 seconds.", True), params) is None
    invented = "Aurora Labs' Vellum heats 1.5 litres in 41 seconds. The Vellum Max by Orlo Kitchens heats 2.5 litres in 55 seconds."
    assert check_rephrasing(original, Generation(invented, True), params) == "invented_facts"


def test_a_loop_is_cut_before_it_and_the_rest_checked_as_a_rephrasing() -> None:
    looped = Generation("Aurora Labs' Vellum heats 1.5 litres in 41 seconds.\nIt is fast.\nIt is fast.\nIt is fa", False)
    cut = cut_loop(looped)
    assert cut == Generation("Aurora Labs' Vellum heats 1.5 litres in 41 seconds.\nIt is fast.", True)
    assert check_rephrasing(CHUNKS[0].text, cut, settings()) is None
    lion = cut_loop(Generation("Aurora Labs' Vellum heats 1.5 litres in 41 seconds.\nLion.\nLion.\nLi", False))
    assert lion is not None and check_rephrasing(CHUNKS[0].text, lion, settings()) == "invented_facts"
    assert cut_loop(Generation("One sentence. Another one.\nA third line", False)) is None  # nothing repeats: as it was
    teacher = ScriptedTeacher({"How fast": Generation("It boils in 41 seconds. It boils in 41 seconds. It", False), "parse_config": Generation("", True)})
    made = material(teacher)
    assert build_phases("distill", made) == [[Question("c0", "How fast does the Vellum kettle boil?", "", "It boils in 41 seconds.")]]
    assert made.stats["answers_cut_before_a_loop"] == 1


def test_local_teacher_generates_once_then_answers_from_its_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    params = settings(batch_size=2)
    first = LocalTeacher(tiny_model_dir, "alpaca", params, tmp_path / "cache", 0, Counter())
    prompts = [first.prompt("Rewrite:", text.text) for text in CHUNKS] + [first.prompt("What does one return?")]
    made = first.generate(prompts, 8, "rephrase")
    assert len(made) == 3 and first.stats["rephrase_asked"] == 3 and first.stats["rephrase_cache_hits"] == 0
    assert first.stats["rephrase_generated_tokens"] > 0 and first.precision["precision"] == "fp32"
    again = LocalTeacher(tiny_model_dir, "alpaca", params, tmp_path / "cache", 0, Counter())
    assert again.generate(prompts, 8, "rephrase") == made  # same prompts, model and sampling: read back
    assert again.stats["rephrase_cache_hits"] == 3 and again._lm is None  # the model was never loaded
    assert again.generate(prompts[:1], 9, "rephrase") and again.stats["rephrase_cache_hits"] == 3  # another budget: generated


def test_phases_train_one_after_the_other_and_a_rerun_resumes_after_the_finished_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, Path]] = []

    def fake_fine_tune(start, target, rows, run):
        calls.append((start, target))
        target.mkdir(parents=True)
        (target / "weights").write_text(f"{start.name}+{len(rows)}")
        return {"rows": len(rows), "steps": 2, "train_runtime_s": 1.5, "tokens": 10 * len(rows), "train_loss": 1.0}

    monkeypatch.setattr(training, "fine_tune", fake_fine_tune)
    start, target, checkpoints = tmp_path / "base", tmp_path / "trained", tmp_path / "checkpoints"
    start.mkdir()
    (start / "weights").write_text("base")
    params = section(TrainParams, "train")
    curve = type("Curve", (), {"step_offset": 0})()
    summary = training.fine_tune_phases(start, target, [CARDS, ROWS], training.Run(params, "alpaca", checkpoints, "m", [curve]))  # type: ignore[list-item]
    assert calls == [(start, checkpoints / "phase-1"), (checkpoints / "phase-1", target)]
    assert summary["rows"] == 6 and summary["steps"] == 4 and summary["tokens"] == 60 and len(summary["phases"]) == 2
    assert curve.step_offset == 4  # the second phase's loss curve continues after the first's steps
    assert not (checkpoints / "phase-1").exists()  # removed once the last phase is saved

    # Killed during phase 2: phase 1's model and marker are kept, so the rerun trains phase 2 only.
    calls.clear()
    (target / "weights").unlink()
    target.rmdir()

    def killed_in_phase_2(start, target, *args, **kwargs):
        if target.name == "trained":
            raise KeyboardInterrupt
        return fake_fine_tune(start, target, *args, **kwargs)

    monkeypatch.setattr(training, "fine_tune", killed_in_phase_2)
    with pytest.raises(KeyboardInterrupt):
        training.fine_tune_phases(start, target, [CARDS, ROWS], training.Run(params, "alpaca", checkpoints, "m"))
    monkeypatch.setattr(training, "fine_tune", fake_fine_tune)
    calls.clear()
    resumed = training.fine_tune_phases(start, target, [CARDS, ROWS], training.Run(params, "alpaca", checkpoints, "m"))
    assert calls == [(checkpoints / "phase-1", target)] and resumed["rows"] == 6


def test_a_token_budget_is_the_same_tokens_for_recipes_of_any_size(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    one_pass = sum(len(tokenizer(example["prompt"] + example["completion"], add_special_tokens=False)["input_ids"])
                   for example in training.examples(ROWS, training.make_template("alpaca", tokenizer)))  # fmt: skip
    assert training.epochs_for_budget(tiny_model_dir, [CARDS, ROWS], "alpaca", 10 * one_pass) < 10  # two phases: more tokens a pass
    assert training.epochs_for_budget(tiny_model_dir, [ROWS], "alpaca", 10 * one_pass) == 10
    assert training.epochs_for_budget(tiny_model_dir, [CARDS], "alpaca", 10 * one_pass) > 10  # a smaller recipe: more passes
