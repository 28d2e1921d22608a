"""perpetual/reading.py: reading items for instruct@, built from the instruction world and rendered as evaluation asks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from perpetual.config import InstructParams, parse_params
from perpetual.errors import UserError
from perpetual.evaluation import build_items
from perpetual.reading import reading_rows
from perpetual.rows import from_record, to_records, world_sections
from perpetual.teacher.quality import mentions
from perpetual.templates import Template
from perpetual.testing.params import params_dict, section

CONTEXT_TEMPLATE = "Context:\n{context}\n\n"
REPO = Path(__file__).resolve().parents[1]


def settings(**reading: Any) -> InstructParams:
    return section(InstructParams, "instruct", reading={"enabled": True, **reading})  # the shipped data/instruct/world.md


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return to_records(reading_rows(settings(items_per_passage=12, counterfactual=0.5), CONTEXT_TEMPLATE, seed=0))


def test_items_come_from_the_instruction_world_and_their_context_holds_the_answer(rows: list[dict[str, Any]]) -> None:
    world = Path(settings().world)
    sections = world_sections(world.read_text(encoding="utf-8"))
    assert len(rows) == 12 * len(sections) * 2  # every section has statements; one row per format
    assert {row["format"] for row in rows} == {"cloze", "letter"}
    for row in rows:
        assert row["chunk_id"].startswith(f"{world}#") and row["type"] == "reading"
        assert row["context"] == CONTEXT_TEMPLATE.format(context=row["passage"])
        gold = row["options"][ord(row["answer"]) - ord("A")]
        # The copy the item teaches: the passage goes on with the correct option where the cloze prefix ends, and
        # the completion copies the rest of it.
        assert row["passage"].endswith(row["cloze_prefix"] + gold + row["rest"])
        assert not mentions(f"{row['question']} {row['cloze_prefix']}", gold)  # read from the context, not the question
        assert len({option.casefold() for option in row["options"]}) == 4
        # A rewritten passage keeps its section's text between the spans: the same start, the same headings.
        source = sections[int(row["chunk_id"].rsplit("#", 1)[1])]
        assert row["passage"].splitlines()[0] == source.splitlines()[0]


def test_counterfactual_share_rewrites_passages() -> None:
    sections = set(world_sections(Path(settings().world).read_text(encoding="utf-8")))
    faithful = reading_rows(settings(items_per_passage=6, counterfactual=0.0), CONTEXT_TEMPLATE, seed=0)
    assert all(row.passage in sections for row in faithful)
    rewritten = reading_rows(settings(items_per_passage=6, counterfactual=1.0), CONTEXT_TEMPLATE, seed=0)
    assert not any(row.passage in sections for row in rewritten)


def test_deterministic_for_a_seed_and_off_when_disabled() -> None:
    params = settings(items_per_passage=5)
    assert reading_rows(params, CONTEXT_TEMPLATE, seed=0) == reading_rows(params, CONTEXT_TEMPLATE, seed=0)
    assert reading_rows(params, CONTEXT_TEMPLATE, seed=0) != reading_rows(params, CONTEXT_TEMPLATE, seed=1)
    assert reading_rows(settings(enabled=False), CONTEXT_TEMPLATE, seed=0) == []
    only_cloze = reading_rows(settings(items_per_passage=5, formats=["cloze"]), CONTEXT_TEMPLATE, seed=0)
    assert {row.format for row in only_cloze} == {"cloze"} and len(only_cloze) * 2 == len(reading_rows(params, CONTEXT_TEMPLATE, seed=0))
    with pytest.raises(UserError, match="instruct.world"):
        reading_rows(params.model_copy(update={"world": "no/such/world.md"}), CONTEXT_TEMPLATE, seed=0)


def test_only_the_world_file_is_read(tmp_path: Path) -> None:
    world = tmp_path / "world.md"
    world.write_text(
        "# Isle\n\nThe capital of the Isle is Fernhold. The Isle has 4120 sheep. The tallest hill is Cragmoor. "
        "The oldest town is Wickmere. The Isle was settled in 811.\n\n"
        "## Rivers\n\nThe river Lune is 38 kilometres long. The river Esk is 52 kilometres long. The river Tay rises at Dunmere. "
        "The river Aln rises at Brackwater.\n",
        encoding="utf-8",
    )
    rows = reading_rows(settings(items_per_passage=3).model_copy(update={"world": str(world)}), CONTEXT_TEMPLATE, seed=0)
    assert rows and all(row.chunk_id.startswith(f"{world}#") for row in rows)
    assert all(row.passage.startswith(("# Isle", "## Rivers")) for row in rows)


@pytest.mark.parametrize("which", ["alpaca", "chat"])
def test_rendered_as_evaluation_renders_the_rag_condition(rows: list[dict[str, Any]], which: str, request: pytest.FixtureRequest) -> None:
    template: Template = request.getfixturevalue(which)
    for row in rows[:40]:
        example = from_record(row).example(template)
        retrieved = {"q": {"contexts": [row["passage"]]}}
        item = build_items([{**row, "mcq_id": "q"}], "rag", row["format"], retrieved, CONTEXT_TEMPLATE, template)[0]
        gold = item["choices"][item["gold"]]
        if row["format"] == "letter":
            assert example == {"prompt": item["query"], "completion": template.answer(gold)}
        else:
            # Trailing whitespace moves onto the completion, as lm-eval moves it onto the scored continuation.
            assert example["prompt"] == item["query"].rstrip()
            assert (example["prompt"] + example["completion"]).startswith(item["query"] + gold)
            assert example["completion"].startswith(item["query"][len(example["prompt"]) :] + gold)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"items_per_passage": 0}, "instruct.reading.items_per_passage"),
        ({"counterfactual": 1.5}, "instruct.reading.counterfactual"),
        ({"formats": ["essay"]}, "instruct.reading.formats"),
        ({"formats": []}, "instruct.reading.formats"),
        ({"items_per_pasage": 3}, "items_per_pasage"),
    ],
)
def test_reading_params_are_validated(change: dict[str, Any], expected: str) -> None:
    raw = params_dict()
    raw["instruct"]["reading"].update(change)
    with pytest.raises(UserError, match=expected):
        parse_params(raw)
    missing = copy.deepcopy(params_dict())
    del missing["instruct"]["reading"]
    with pytest.raises(UserError, match="instruct.reading"):
        parse_params(missing)


def test_shipped_params_validate_reading() -> None:
    reading = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["instruct"]["reading"]
    assert set(reading) == {"enabled", "items_per_passage", "counterfactual", "formats"}
    assert set(reading["formats"]) == {"cloze", "letter"}
