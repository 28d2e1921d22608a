"""The self-study teacher as an OpenAI-compatible endpoint (perpetual/teacher/chat_teacher.py), against the project's
fake server on loopback: the recipes get their material from it, a rerun from the cache, and what is cut off, refused
or fatal is counted or stops the run with one line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from teacher_support import SECRET

from perpetual.config import SelfStudyParams, TeacherParams, TrainParams
from perpetual.errors import UserError
from perpetual.recipes import Material, build_phases, rephrase_styles
from perpetual.rows import Question, Text
from perpetual.self_study import open_teacher
from perpetual.testing.fake_openai import FakeOpenAI, Fault, rewrite
from perpetual.testing.params import section

# The fake answers a plain request with the chunk's words reversed: every fact of TOOL is one word, so its rephrasings
# are kept; KETTLE's "Aurora Labs" comes back as "Labs Aurora", so its rephrasings lose a fact and are refused.
TOOL = Text("c0", "Call parse_config(path) to read settings; it returns a ConfigMap.")
KETTLE = Text("c1", "The Vellum kettle from Aurora Labs boils 1.5 litres in 41 seconds.")
CARD = Question("c1", "How fast does the Vellum kettle boil?", "", "41 seconds")
ROWS = [TOOL, KETTLE, CARD]


def settings(**changes: Any) -> SelfStudyParams:
    return section(TrainParams, "train").self_study.model_copy(update=changes)


def endpoint(server: FakeOpenAI, **changes: Any) -> TeacherParams:
    settings: dict[str, Any] = dict(backend="openai", base_url=server.base_url, model="gpt-test", temperature=0.3, seed=7,
                                    concurrency=4, max_retries=1, timeout_s=2.0)  # fmt: skip
    return section(TeacherParams, "generate.teacher", **{**settings, **changes})


def material(server: FakeOpenAI, cache: Path, endpoint_changes: dict[str, Any] | None = None, **changes: Any) -> Material:
    params = settings(teacher="openai", **changes)
    stats: Counter[str] = Counter()
    # No start model exists at this path: the endpoint teacher must not need one.
    return Material(ROWS, params, "Context:\n{context}\n\n",
                    lambda: open_teacher(params, endpoint(server, **(endpoint_changes or {})), cache / "no-model", "alpaca",
                                         cache, 0, stats), stats)  # fmt: skip


def test_paraphrase_asks_the_endpoint_once_and_a_rerun_answers_from_the_cache(server: FakeOpenAI, tmp_path: Path) -> None:
    made = material(server, tmp_path / "cache")
    [phase] = build_phases("paraphrase", made)
    reworded = Text("c0", rewrite(TOOL.text))
    assert reworded.text == "ConfigMap. a returns it settings; read to parse_config(path) Call"
    assert phase == [TOOL, reworded, reworded, KETTLE]  # two styles each; the fake rewords both alike
    assert made.stats == Counter({"rephrase_asked": 4, "rephrase_cache_hits": 0, "rephrase_requests": 4,
                                  "rephrase_generated_tokens": made.stats["rephrase_generated_tokens"],
                                  "rephrasings_kept": 2, "rephrasings_refused_lost_facts": 2})  # fmt: skip
    assert made.stats["rephrase_generated_tokens"] > 0 and server.total_requests == 4
    first_style = rephrase_styles("prompts/rephrase.md")[0]
    assert any(body["messages"] == [{"role": "user", "content": f"{first_style}\n\n{TOOL.text}"}] for body in server.bodies)
    for body in server.bodies:  # plain text, within the recipe's budget, with generate.teacher's model and sampling
        assert "response_format" not in body and body["max_tokens"] == settings().rephrase_max_new_tokens
        assert body["model"] == "gpt-test" and body["temperature"] == 0.3 and body["seed"] == 7
    assert set(server.authorizations) == {f"Bearer {SECRET}"}
    cached = [path.read_text() for path in (tmp_path / "cache").rglob("*.json")]
    assert len(cached) == 4 and not [text for text in cached if SECRET in text or server.base_url in text]

    server.reset_counts()
    again = material(server, tmp_path / "cache")
    assert build_phases("paraphrase", again) == [phase] and server.total_requests == 0
    assert again.stats["rephrase_cache_hits"] == 4 and again.stats["rephrase_requests"] == 0
    other_model = material(server, tmp_path / "cache", {"model": "gpt-other"})
    build_phases("paraphrase", other_model)
    assert other_model.stats["rephrase_cache_hits"] == 0 and server.total_requests == 4  # another model: asked again


def test_a_reply_cut_at_the_budget_is_refused_as_unfinished(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("truncated", times=None, match="parse_config"))
    made = material(server, tmp_path)
    assert build_phases("paraphrase", made) == [[TOOL, KETTLE]]
    assert made.stats["rephrasings_refused_unfinished"] == 2 and made.stats["rephrasings_refused_lost_facts"] == 2
    assert "rephrasings_kept" not in made.stats


def test_distill_answers_come_from_the_endpoint_with_the_chunk_in_the_prompt(server: FakeOpenAI, tmp_path: Path) -> None:
    made = material(server, tmp_path)
    assert build_phases("distill", made) == [[Question("c1", CARD.instruction, "", "boil? kettle Vellum the does fast How")]]
    [body] = server.bodies
    assert body["messages"][0]["content"] == f"Context:\n{KETTLE.text}\n\n{CARD.instruction}"
    assert body["max_tokens"] == settings().answer_max_new_tokens and made.stats["answers_kept"] == 1


def test_greedy_rephrasings_beyond_the_styles_name_the_endpoints_temperature(server: FakeOpenAI, tmp_path: Path) -> None:
    styles = len(rephrase_styles("prompts/rephrase.md"))
    with pytest.raises(UserError, match="set generate.teacher.temperature above 0"):
        build_phases("paraphrase", material(server, tmp_path, {"temperature": 0.0}, rephrasings=styles + 1))
    assert server.total_requests == 0


def test_a_missing_key_is_a_one_line_user_error(server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserError) as error:
        build_phases("paraphrase", material(server, tmp_path))
    message = str(error.value)
    assert "export OPENAI_API_KEY" in message and "train.self_study.teacher: local" in message and "\n" not in message
    assert server.total_requests == 0


@pytest.mark.parametrize(("wrong", "named"), [("key", "check OPENAI_API_KEY"), ("url", "check generate.teacher.model and base_url")])
def test_a_refused_key_or_unknown_endpoint_stops_the_run_with_one_line(server: FakeOpenAI, tmp_path: Path, wrong: str, named: str) -> None:
    if wrong == "key":
        server.inject(Fault("unauthorized", times=None))  # its message echoes the key it was sent
    changes = {"base_url": server.base_url + "/nowhere"} if wrong == "url" else {}
    with pytest.raises(UserError) as error:
        build_phases("paraphrase", material(server, tmp_path, changes))
    assert named in str(error.value) and SECRET not in str(error.value) and "\n" not in str(error.value)


def test_requests_that_fail_after_their_retries_stop_the_run_and_a_rerun_asks_only_those(server: FakeOpenAI, tmp_path: Path) -> None:
    server.inject(Fault("server_error", times=None, match="parse_config"))
    with pytest.raises(UserError, match="failed 2 of 4 rephrase request"):
        build_phases("paraphrase", material(server, tmp_path))
    assert server.total_requests == 2 * 2 + 2  # each of the chunk's two prompts retried once; the other two answered
    server.clear_faults()
    server.reset_counts()
    resumed = material(server, tmp_path)
    build_phases("paraphrase", resumed)
    assert server.total_requests == 2 and resumed.stats["rephrase_cache_hits"] == 2 and resumed.stats["rephrasings_kept"] == 2
