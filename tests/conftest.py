from __future__ import annotations

from collections.abc import Iterator

import pytest
from teacher_support import serving

from perpetual.testing.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared machine its barriers cost up to 10x.

    Use it per module with `pytestmark = pytest.mark.usefixtures("one_thread")`; the count is restored after.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The project's OpenAI-compatible server on 127.0.0.1, with the test key in the environment."""
    yield from serving(monkeypatch, FakeOpenAI())


# ChatML, as SmolLM2-Instruct and many instruct models write it; lets tests use a chat template on a tiny tokenizer.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(chat: bool = False):
    """A byte-level BPE tokenizer trained in milliseconds; with `chat`, ChatML special tokens and template."""
    from perpetual.init_params import TokenizerParams
    from perpetual.models import train_tokenizer

    texts = ["What does one return? def one(): return 1", "The Tellavik Nova weighs 1336 grams."]
    tokenizer = train_tokenizer(texts, TokenizerParams(vocab_size=300, min_frequency=1))
    if chat:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tokenizer.chat_template = CHATML
    return tokenizer


@pytest.fixture(scope="session")
def alpaca():
    from perpetual.templates import make_template

    return make_template("alpaca", tiny_tokenizer())


@pytest.fixture(scope="session")
def chat():
    from perpetual.templates import make_template

    return make_template("chat", tiny_tokenizer(chat=True))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A saved tiny Llama-style model with `tiny_tokenizer` (random weights): what a stage loads from models/."""
    from perpetual.init_params import TinyGemma
    from perpetual.models import build_tiny
    from perpetual.testing.params import spec

    tokenizer = tiny_tokenizer()
    folder = tmp_path_factory.mktemp("tiny") / "base-tiny"
    config = spec("tiny-llama", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=16, intermediate_size=64, copying=False)  # fmt: skip
    build_tiny(TinyGemma(**config), tokenizer, seed=0).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
