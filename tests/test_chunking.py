"""perpetual/chunking.py: language-aware splitting, one chunk per product (split like prose when longer than a chunk), stable content-hash ids."""

from __future__ import annotations

from perpetual.chunking import chunk_documents
from perpetual.records import Document, content_id


def _doc(text: str, language: str, source: str = "src", task: str = "code") -> Document:
    return Document(doc_id=content_id(task, source), task=task, source=source, language=language, text=text)


def _function(index: int) -> str:
    body = "".join(f"    value_{index}_{line} = {line} * {index}\n" for line in range(6))
    return f"def function_{index}(argument):\n{body}    return argument + {index}\n"


def _module(n: int) -> str:
    return "import math\n\n\n" + "\n\n".join(_function(i) for i in range(n))


def test_python_split_near_chunk_size_at_def_boundaries() -> None:
    text = _module(12)
    size = 500
    assert len(_function(0)) < size < len(text) // 4
    chunks, duplicates = chunk_documents([_doc(text, "python")], chunk_size=size, chunk_overlap=0)
    assert duplicates == 0
    assert len(chunks) >= 4
    assert all(len(chunk["text"]) <= size for chunk in chunks)
    # Chunks are not tiny: the splitter packs several functions up to the limit.
    assert sum(len(chunk["text"]) for chunk in chunks) / len(chunks) > size * 0.5
    for chunk in chunks[1:]:
        assert chunk["text"].startswith("def function_"), chunk["text"][:40]
    # No function is cut in half: every def is in exactly one chunk together with its return line.
    for i in range(12):
        holders = [chunk for chunk in chunks if f"def function_{i}(" in chunk["text"]]
        assert len(holders) == 1
        assert f"return argument + {i}\n" in holders[0]["text"] + "\n"
    # Nothing is lost (modulo whitespace at the cut points).
    assert "".join(chunk["text"] for chunk in chunks).replace("\n", "") == text.replace("\n", "")
    assert all(chunk["language"] == "python" and chunk["source"] == "src" for chunk in chunks)


def test_prose_is_split_too() -> None:
    text = "\n\n".join(f"Paragraph {i} says something about topic {i}. " * 4 for i in range(20))
    chunks, _ = chunk_documents([_doc(text, "markdown", task="research")], chunk_size=300, chunk_overlap=0)
    assert len(chunks) > 5
    assert all(len(chunk["text"]) <= 300 for chunk in chunks)


def test_a_product_is_one_chunk_unless_longer_than_a_chunk() -> None:
    long_product = "Tellavik Nova Kettle\nBrand: Tellavik\n" + "".join(f"The kettle has feature number {i}. " for i in range(40))
    short_product = "Ombrisk Lamp\nBrand: Ombrisk\n"
    docs = [_doc(long_product, "product", "cat#1", "products"), _doc(short_product, "product", "cat#2", "products")]
    chunks, duplicates = chunk_documents(docs, chunk_size=200, chunk_overlap=0)
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
    first, _ = chunk_documents(docs, chunk_size=300, chunk_overlap=0)
    second, _ = chunk_documents(list(reversed(docs)), chunk_size=300, chunk_overlap=0)
    assert sorted(c["chunk_id"] for c in first) == sorted(c["chunk_id"] for c in second)
    for chunk in first:
        assert chunk["chunk_id"] == content_id("code", chunk["text"])
        assert len(chunk["chunk_id"]) == 16
    # A known value: ids must not change between runs, machines or library versions.
    pinned, _ = chunk_documents([_doc("def f():\n    return 1\n", "python")], chunk_size=300, chunk_overlap=0)
    assert pinned[0]["chunk_id"] == "8295e540e9517a7e"
    assert content_id("code", "x") != content_id("research", "x")


def test_equal_text_gets_equal_id_and_duplicates_are_merged_and_counted() -> None:
    shared = _function(1).strip()
    docs = [
        _doc(shared, "python", "a.py"),
        _doc(shared, "python", "copy_of_a.py"),
        _doc(shared + "\n", "python", "trailing_newline.py"),
        _doc(_function(2), "python", "b.py"),
    ]
    chunks, duplicates = chunk_documents(docs, chunk_size=1000, chunk_overlap=0)
    assert duplicates == 2
    assert [chunk["source"] for chunk in chunks] == ["a.py", "b.py"]  # the first occurrence is kept
    assert len({chunk["chunk_id"] for chunk in chunks}) == 2


def test_same_text_in_two_tasks_is_not_merged() -> None:
    docs = [_doc("Shared words.", "text", "x", "code"), _doc("Shared words.", "text", "x", "research")]
    chunks, duplicates = chunk_documents(docs, chunk_size=1000, chunk_overlap=0)
    assert duplicates == 0
    assert len({chunk["chunk_id"] for chunk in chunks}) == 2


def test_blank_documents_give_no_chunks() -> None:
    chunks, duplicates = chunk_documents([_doc("   \n\n", "text"), _doc("  ", "product")], 200, 0)
    assert chunks == [] and duplicates == 0
