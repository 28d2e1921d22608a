"""`response_format: prompt`, for servers that enforce no format: nothing sent, the worked example shown, replies parsed
out of prose and code fences, cut-off replies keeping their complete items, copies of the example rejected; and
`max_tokens`. The real server (transformers serve + SmolLM2) is tests/test_teacher_real_server.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from teacher_support import REPO, make_chunks, make_teacher

from perpetual.config import TeacherParams
from perpetual.errors import UserError
from perpetual.teacher.base import ItemKind
from perpetual.teacher.cache import KeyField
from perpetual.teacher.items import InvalidResponse, complete_items, json_object_in, parse_reply
from perpetual.teacher.prompts import Messages, load_prompt
from perpetual.teacher.runner import Reply, TeacherRunner
from perpetual.testing.fake_openai import FakeOpenAI
from perpetual.testing.params import section

CARD = {"question": "What does the Zorblax0 river feed?", "answer": "Lake Quell0."}
MCQ = {"question": "Which lake does the Zorblax0 river feed?", "choices": ["Quell0", "Brann", "Ostra", "Vell"], "answer": "A"}


def test_prompt_mode_sends_no_format_shows_the_example_and_parses_fenced_replies(server: FakeOpenAI, tmp_path: Path) -> None:
    result = make_teacher(server, tmp_path, response_format="prompt", max_tokens=300).generate(make_chunks(3), 3, 2)
    assert not result.failures and len(result.flashcards) == 9 and len(result.mcqs) == 6  # replies were JSON in fences
    assert result.stats["invalid_responses"] == 0
    for body in server.bodies:
        assert "response_format" not in body and body["max_tokens"] == 300
        messages = body["messages"]
        assert [message["role"] for message in messages] == ["system", "user", "assistant", "user"]
        assert "Halden Bridge" in messages[1]["content"] and "Zorblax" in messages[3]["content"]
        parse_reply("mcq" if "choices" in messages[2]["content"] else "flashcards", messages[2]["content"], 5)


def test_other_modes_send_neither_the_example_nor_max_tokens_when_null(server: FakeOpenAI, tmp_path: Path) -> None:
    make_teacher(server, tmp_path).generate(make_chunks(1), 3, 2)
    assert all(len(body["messages"]) == 2 and "max_tokens" not in body for body in server.bodies)


@pytest.mark.parametrize(
    "content",
    [
        '{"questions": []}',
        'Sure! Here they are:\n```json\n{"questions": []}\n```\nAnything else?',
        'Here: {"questions": []} -- and {"questions": [1]} after it',
        'A brace { first, then {"questions": []}',
    ],
)
def test_the_json_object_is_found_amid_prose_and_fences(content: str) -> None:
    assert json.loads(json_object_in(content)) == {"questions": []}


def test_a_reply_without_the_object_is_left_for_the_validator_to_describe() -> None:
    assert json_object_in("Question: what? Answer: that.") == "Question: what? Answer: that."
    with pytest.raises(InvalidResponse, match="not valid JSON"):
        parse_reply("flashcards", '{"questions": [{"question": "cut', 3)


def test_a_cut_reply_keeps_only_its_complete_items() -> None:
    looping = '{"questions": [' + ", ".join([json.dumps(CARD)] * 7) + ', {"question": "What does the Zorb'
    assert json.loads(complete_items(looping, 3) or "") == {"questions": [CARD] * 3}
    assert json.loads(complete_items('{"questions": [' + json.dumps(CARD) + ', {"quest', 3) or "") == {"questions": [CARD]}
    assert complete_items('{"questions": [{"question": "What', 3) is None
    assert complete_items("The river feeds a lake and", 3) is None


class Scripted:
    """A transport that answers each kind with its next scripted (content, finish_reason)."""

    def __init__(self, replies: dict[str, list[tuple[str, str]]]) -> None:
        self.replies = replies
        self.sent: list[Messages] = []

    def cache_fields(self) -> Mapping[str, KeyField]:
        return {"backend": "scripted"}

    def send(self, kind: ItemKind, messages: Messages) -> Reply:
        self.sent.append(messages)
        content, finish_reason = self.replies[kind].pop(0)
        return Reply(content=content, prompt_tokens=10, completion_tokens=10, finish_reason=finish_reason, refusal=None)


def runner(transport: Scripted, tmp_path: Path) -> TeacherRunner:
    params = section(TeacherParams, "generate.teacher", backend="openai", response_format="prompt", max_retries=1,
                     concurrency=1, prompts_dir=str(REPO / "prompts"), cache_dir=str(tmp_path))  # fmt: skip
    return TeacherRunner(transport, params, show_progress=False)


def test_cut_replies_are_kept_counted_and_cached_as_their_complete_items(tmp_path: Path) -> None:
    cut_cards = '{"questions": [' + ", ".join([json.dumps(CARD)] * 4) + ', {"ques'
    cut_mcq = '{"questions": [' + json.dumps(MCQ) + ', {"question": "Which'
    transport = Scripted({"flashcards": [(cut_cards, "length")], "mcq": [(cut_mcq, "length")]})
    result = runner(transport, tmp_path).generate(make_chunks(1), 3, 2)
    assert not result.failures and len(result.flashcards) == 3 and len(result.mcqs) == 1
    assert result.stats["cut_replies_kept"] == 2 and result.stats["invalid_responses"] == 0

    again = runner(Scripted({"flashcards": [], "mcq": []}), tmp_path).generate(make_chunks(1), 3, 2)
    assert again.stats["cache_hits"] == 2 and len(again.flashcards) == 3  # the kept items, read back


def test_a_cut_reply_without_enough_complete_items_is_asked_again(tmp_path: Path) -> None:
    cut = '{"questions": [' + json.dumps(CARD) + ', {"ques'
    transport = Scripted({"flashcards": [(cut, "length"), (cut, "length")], "mcq": [(json.dumps({"questions": [MCQ]}), "stop")]})
    result = runner(transport, tmp_path).generate(make_chunks(1), 3, 1)
    assert [failure.kind for failure in result.failures] == ["flashcards"]
    assert "cut off at the length limit" in result.failures[0].reason and "at least 3" in result.failures[0].reason
    assert result.stats["invalid_responses"] == 2 and result.stats["cut_replies_kept"] == 0


def test_a_reply_that_copies_the_worked_example_is_rejected_and_fed_back(tmp_path: Path) -> None:
    example = load_prompt(REPO / "prompts", "mcq").example
    assert example is not None
    copied = json.loads(example[1])["questions"][0]  # "How long is the Halden Bridge?" and its choices
    copy = {**copied, "question": "How long is the Zorblax0 river?"}
    transport = Scripted({"flashcards": [(json.dumps({"questions": [CARD] * 3}), "stop")],
                          "mcq": [(json.dumps({"questions": [copy]}), "stop"), (json.dumps({"questions": [MCQ]}), "stop")]})  # fmt: skip
    result = runner(transport, tmp_path).generate(make_chunks(1), 3, 1)
    assert not result.failures and result.mcqs[0].question == MCQ["question"]
    assert result.stats["invalid_responses"] == 1
    feedback = transport.sent[-1][-1]["content"]
    assert "copies the worked example" in feedback and "298 metres" in feedback


def test_a_worked_example_must_be_a_valid_reply(tmp_path: Path) -> None:
    text = (REPO / "prompts/flashcards.md").read_text().replace('"answer": "In 1931."', '"answer": ""')
    (tmp_path / "flashcards.md").write_text(text)
    with pytest.raises(UserError, match="example assistant.*not a valid flashcards reply"):
        load_prompt(tmp_path, "flashcards")
    (tmp_path / "flashcards.md").write_text(text.rpartition("## example assistant")[0])
    with pytest.raises(UserError, match="needs both"):
        load_prompt(tmp_path, "flashcards")
