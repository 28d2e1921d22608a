"""perpetual/chunking.py: language-aware splitting, one chunk per product (split like prose when longer than a chunk), stable content-hash ids."""

from __future__ import annotations

from perpetual.chunking import chunk_documents
from perpetual.config import ChunkParams
from perpetual.records import Document, content_id


def _settings(chunk_size: int, min_chunk_size: int = 0) -> ChunkParams:
    return ChunkParams(chunk_size=chunk_size, chunk_overlap=0, min_chunk_size=min_chunk_size)


def _doc(text: str, language: str, source: str = "src", task: str = "code") -> Document:
    return Document(doc_id=content_id(task, source), task=task, source=source, language=language, text=text)


def _function(index: int) -> str:
    body = "".join(f"    value_{index}_{line} = {line} * {index}\n" for line in range(6))
    return f"def function_{index}(argument):\n{body}    return argument + {index}\n"


def _module(n: int) -> str:
    return "import math\n\n\n" + "\n\n".join(_function(i) for i in range(n))


def test_python_split_at_definitions_with_a_header_naming_the_file() -> None:
    text = _module(12)
    size = 500
    assert len(_function(0)) < size < len(text) // 4
    chunks, duplicates = chunk_documents([_doc(text, "python", "pkg/mod.py")], _settings(size))
    assert duplicates == 0
    assert len(chunks) >= 4
    assert all(len(chunk["text"]) <= size for chunk in chunks)
    # Chunks are not tiny: several functions are packed up to the limit.
    assert sum(len(chunk["text"]) for chunk in chunks) / len(chunks) > size * 0.5
    for chunk in chunks:
        assert chunk["text"].startswith("# pkg/mod.py\n"), chunk["text"][:40]
    for chunk in chunks[1:]:
        assert chunk["text"].startswith("# pkg/mod.py\ndef function_"), chunk["text"][:40]
    # No function is cut in half: every def is in exactly one chunk together with its return line.
    for i in range(12):
        holders = [chunk for chunk in chunks if f"def function_{i}(" in chunk["text"]]
        assert len(holders) == 1
        assert f"return argument + {i}\n" in holders[0]["text"] + "\n"
    # Nothing is lost (modulo whitespace at the cut points).
    bodies = "".join(chunk["text"].removeprefix("# pkg/mod.py\n") for chunk in chunks)
    assert bodies.replace("\n", "") == text.replace("\n", "")
    assert all(chunk["language"] == "python" and chunk["source"] == "pkg/mod.py" for chunk in chunks)


CLASS_MODULE = '''"""Kilns."""

import functools

LIMIT = 1280


class Kiln:
    """A kiln."""

    shelves = 4

    # The door must be shut before firing.
    @functools.cache
    def fire(self, hours):
        total = 0
        for hour in range(hours):
            total += hour * 2
            total -= hour
        return total + 1

    @property
    def door(self):
        value = "shut"
        other = "open"
        return value if self.shelves else other

    def cool(self, minutes):
        rate = 12
        steps = minutes // rate
        return steps * rate + 3
'''


def test_a_long_class_is_split_into_methods_that_keep_decorators_comments_and_their_class() -> None:
    chunks, _ = chunk_documents([_doc(CLASS_MODULE, "python", "git@host:repo@abc123:kilns/kiln.py")], _settings(260, 60))
    texts = [chunk["text"] for chunk in chunks]
    assert all(len(text) <= 260 for text in texts)
    fire = next(text for text in texts if "def fire" in text)
    assert "# The door must be shut before firing.\n    @functools.cache\n    def fire" in fire
    assert fire.startswith("# kilns/kiln.py (class Kiln)\n")
    door = next(text for text in texts if "def door" in text)
    assert "@property\n    def door" in door and door.startswith("# kilns/kiln.py (class Kiln)\n")
    # The module's head is below the minimum size: it joined the class's opening, and nothing was dropped.
    assert texts[0].startswith("# kilns/kiln.py\n") and "LIMIT = 1280" in texts[0] and "class Kiln:" in texts[0]
    for line in CLASS_MODULE.splitlines():
        assert sum(line in text for text in texts) >= 1, line


def test_invalid_python_falls_back_to_the_text_splitter() -> None:
    broken = "def f(:\n    return 1\n" * 30
    chunks, _ = chunk_documents([_doc(broken, "python", "bad.py")], _settings(200))
    assert chunks and all(len(chunk["text"]) <= 200 for chunk in chunks)
    assert not chunks[0]["text"].startswith("# bad.py")


def test_prose_is_split_too() -> None:
    text = "\n\n".join(f"Paragraph {i} says something about topic {i}. " * 4 for i in range(20))
    chunks, _ = chunk_documents([_doc(text, "markdown", task="research")], _settings(300))
    assert len(chunks) > 5
    assert all(len(chunk["text"]) <= 300 for chunk in chunks)


def test_a_product_is_one_chunk_unless_longer_than_a_chunk() -> None:
    long_product = "Tellavik Nova Kettle\nBrand: Tellavik\n" + "".join(f"The kettle has feature number {i}. " for i in range(40))
    short_product = "Ombrisk Lamp\nBrand: Ombrisk\n"
    docs = [_doc(long_product, "product", "cat#1", "products"), _doc(short_product, "product", "cat#2", "products")]
    chunks, duplicates = chunk_documents(docs, _settings(200))
    assert duplicates == 0
    assert chunks[-1]["text"] == short_product.strip() and chunks[-1]["source"] == "cat#2"
    pieces = chunks[:-1]
    assert len(pieces) >= len(long_product) // 200
    assert all(len(piece["text"]) <= 200 and piece["source"] == "cat#1" for piece in pieces)
    assert all(piece["text"].startswith("Tellavik Nova Kettle\n") for piece in pieces)  # each piece attributable
    body = " ".join(piece["text"].removeprefix("Tellavik Nova Kettle\n") for piece in pieces)
    assert all(f"feature number {i}." in body for i in range(40))  # nothing lost between pieces


def test_chunk_ids_are_stable_and_content_based() -> None:
    docs = [_doc(_module(6), "python", "a.py"), _doc("Some prose.\n\nMore prose here.", "text", "b.txt")]
    first, _ = chunk_documents(docs, _settings(300))
    second, _ = chunk_documents(list(reversed(docs)), _settings(300))
    assert sorted(c["chunk_id"] for c in first) == sorted(c["chunk_id"] for c in second)
    for chunk in first:
        assert chunk["chunk_id"] == content_id("code", chunk["text"])
        assert len(chunk["chunk_id"]) == 16
    # A known value: ids must not change between runs, machines or library versions.
    pinned, _ = chunk_documents([_doc("def f():\n    return 1\n", "text")], _settings(300))
    assert pinned[0]["chunk_id"] == "8295e540e9517a7e"
    assert content_id("code", "x") != content_id("research", "x")


def test_equal_text_gets_equal_id_and_duplicates_are_merged_and_counted() -> None:
    shared = "A licence header that many files repeat word for word."
    docs = [
        _doc(shared, "text", "a.py"),
        _doc(shared, "text", "copy_of_a.py"),
        _doc(shared + "\n", "text", "trailing_newline.py"),
        _doc("Another text.", "text", "b.py"),
    ]
    chunks, duplicates = chunk_documents(docs, _settings(1000))
    assert duplicates == 2
    assert [chunk["source"] for chunk in chunks] == ["a.py", "b.py"]  # the first occurrence is kept
    assert len({chunk["chunk_id"] for chunk in chunks}) == 2


def test_same_text_in_two_tasks_is_not_merged() -> None:
    docs = [_doc("Shared words.", "text", "x", "code"), _doc("Shared words.", "text", "x", "research")]
    chunks, duplicates = chunk_documents(docs, _settings(1000))
    assert duplicates == 0
    assert len({chunk["chunk_id"] for chunk in chunks}) == 2


def test_blank_documents_give_no_chunks() -> None:
    chunks, duplicates = chunk_documents([_doc("   \n\n", "text"), _doc("  ", "product")], _settings(200))
    assert chunks == [] and duplicates == 0
