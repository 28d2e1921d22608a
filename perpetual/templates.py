"""How an instruction, an answer and a letter MCQ are shown to a model: `train.template`, in one module.

* `alpaca`: the paper's format (unsloth's Alpaca prompt) for every model; the trainer closes answers with EOS.
* `chat`: the tokenizer's own chat template, as an instruct-tuned model was taught: a flashcard is a user turn and
  an assistant turn ending with the template's end-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`).

Training (flashcards, replay), the letter format of evaluation and the retention prompts all render through the
same object, so a model is taught and asked in one format. (The paper taught Gemma-2b-it the Alpaca format instead
of its own; `chat` lets a user test whether that is why it regressed.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from perpetual.errors import UserError
from perpetual.records import LETTERS

TemplateName = Literal["alpaca", "chat"]

# The Alpaca template the paper used (unsloth's alpaca_prompt), with the question as the instruction.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
LETTER_INSTRUCTION = "Answer with the letter of the correct option."
_SENTINEL = "\u2063perpetual-answer\u2063"


def letter_body(question: str, options: Sequence[str], context: str = "") -> str:
    """The paper's letter prompt without its `Answer:` cue: (context), question, options A-D."""
    listed = "\n".join(f"{letter}: {option}" for letter, option in zip(LETTERS, options))
    return f"{context}{question}\n{listed}"


@dataclass(frozen=True)
class Template:
    """One prompt format. `end_of_answer` closes a trained answer (EOS for alpaca, the end-of-turn token for chat);
    a greedy answer is finished at one of `stop_token_ids`, or (alpaca) before a line starting with a stop string."""

    name: TemplateName
    eos_token: str
    end_of_answer: str
    stop_strings: tuple[str, ...] = ()
    _tokenizer: Any = field(default=None, repr=False, compare=False)

    def instruction(self, instruction: str, input_text: str = "") -> str:
        """The prompt an answer follows."""
        if self.name == "alpaca":
            return ALPACA_TEMPLATE.format(instruction=instruction, input=input_text)
        content = f"{instruction}\n\n{input_text}" if input_text else instruction
        return self._chat_prompt(content)

    def answer(self, text: str) -> str:
        """A trained completion: the answer closed as the format closes a turn."""
        return text + self.end_of_answer

    def letter_prompt(self, question: str, options: Sequence[str], context: str = "") -> tuple[str, list[str]]:
        """The letter-format query and its four scored continuations.

        alpaca: the paper's prompt (`... D: ...\\nAnswer:` then " A".." D"); chat: the same question and options as a
        user turn, and the bare letter as the start of the assistant's turn.
        """
        body = letter_body(question, options, context)
        if self.name == "alpaca":
            return f"{body}\nAnswer:", [f" {letter}" for letter in LETTERS]
        return self._chat_prompt(f"{body}\n\n{LETTER_INSTRUCTION}"), list(LETTERS)

    def stop_token_ids(self) -> list[int]:
        """Token ids that end a greedy answer: EOS, and the end-of-turn token for chat."""
        tokens = dict.fromkeys([self.eos_token, self.end_of_answer])
        return [int(self._tokenizer.convert_tokens_to_ids(token)) for token in tokens]

    def _chat_prompt(self, content: str) -> str:
        return str(self._tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True))


def end_of_turn(tokenizer: Any) -> str:
    """The special token the chat template closes an assistant turn with (what the model emits when it is done)."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}]
    rendered = str(tokenizer.apply_chat_template(messages, tokenize=False))
    after = rendered.split(_SENTINEL, 1)[1].strip() if _SENTINEL in rendered else ""
    special = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    token = re.split(r"\s", after, maxsplit=1)[0] if after else ""
    if token not in special:
        token = tokenizer.eos_token
    return str(token)


def make_template(name: TemplateName, tokenizer: Any, model_label: str = "the model") -> Template:
    """The template `name` for this tokenizer; `chat` needs the tokenizer to have a chat template."""
    if name == "alpaca":
        # The trainer would append EOS itself; writing it here keeps training and scoring on one definition.
        return Template("alpaca", tokenizer.eos_token, tokenizer.eos_token, stop_strings=("###",), _tokenizer=tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"train.template is chat but {model_label} has no chat template (its tokenizer defines none); "
            "use train.template: alpaca, or an instruct-tuned model"
        )
    return Template("chat", tokenizer.eos_token, end_of_turn(tokenizer), _tokenizer=tokenizer)
