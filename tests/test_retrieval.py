"""perpetual/retrieval.py with a real Chroma collection and a small deterministic embedder (no model download)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from perpetual.config import IndexParams
from perpetual.records import Chunk, Mcq
from perpetual.retrieval import open_collection, retrieve, sync_index
from perpetual.testing.params import section


class WordHashEmbedder:
    """Bag of hashed words, unit length: texts sharing words are close. Counts encode calls and texts."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace('"', " ").replace("?", " ").split():
                vectors[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def _chunk(chunk_id: str, text: str) -> Chunk:
    return Chunk(chunk_id=chunk_id, task="demo", source=f"{chunk_id}.txt", language="text", text=text)


CHUNKS = [
    _chunk("kettle", "The Tellavik Nova kettle weighs 1336 grams and boils water."),
    _chunk("watch", "The Rookhaven Bramble watch production is capped at 2008 per week."),
    _chunk("lamp", "The Ombrisk desk lamp glows amber and costs 42 dollars."),
]


def _mcq(mcq_id: str, chunk_id: str, question: str) -> Mcq:
    return Mcq(mcq_id=mcq_id, chunk_id=chunk_id, question=question, options=["a", "b", "c", "d"], answer="A", cloze_prefix="", kind="word")


def test_sync_index_is_incremental_and_embeds_in_one_call(tmp_path: Path) -> None:
    embedder = WordHashEmbedder()
    collection = open_collection(tmp_path, "demo", "hash")
    assert sync_index(collection, CHUNKS, embedder, batch_size=2) == {"chunks": 3, "embedded_now": 3, "reused": 0, "removed": 0}
    assert embedder.calls == [3]  # all missing chunks in one encode call, batched inside it

    again = open_collection(tmp_path, "demo", "hash")  # a new run opens the persisted collection
    assert sync_index(again, CHUNKS, embedder, batch_size=2) == {"chunks": 3, "embedded_now": 0, "reused": 3, "removed": 0}
    assert embedder.calls == [3]

    changed = CHUNKS[:2] + [_chunk("lamp-v2", "The Ombrisk desk lamp glows green now.")]
    assert sync_index(again, changed, embedder, batch_size=2) == {"chunks": 3, "embedded_now": 1, "reused": 2, "removed": 1}
    assert sorted(again.get(include=[])["ids"]) == ["kettle", "lamp-v2", "watch"]


def test_changing_the_embedder_rebuilds_the_collection(tmp_path: Path) -> None:
    embedder = WordHashEmbedder()
    sync_index(open_collection(tmp_path, "demo", "hash"), CHUNKS, embedder, batch_size=8)
    rebuilt = open_collection(tmp_path, "demo", "other-embedder")
    assert rebuilt.count() == 0 and rebuilt.metadata["embedder"] == "other-embedder"
    assert sync_index(rebuilt, CHUNKS, embedder, batch_size=8)["embedded_now"] == 3


def test_retrieve_top_k_and_source_recall(tmp_path: Path) -> None:
    embedder = WordHashEmbedder()
    collection = open_collection(tmp_path, "demo", "hash")
    sync_index(collection, CHUNKS, embedder, batch_size=8)
    mcqs = [
        _mcq("q1", "kettle", 'What completes "The Tellavik Nova kettle weighs ___"?'),
        _mcq("q2", "watch", "How many Rookhaven Bramble watch units per week?"),
        _mcq("q3", "kettle", "What colour does the Ombrisk desk lamp glow?"),  # its source is not the nearest chunk
    ]
    rows = retrieve(collection, mcqs, embedder, top_k=1, batch_size=8)
    assert [row["chunk_ids"] for row in rows] == [["kettle"], ["watch"], ["lamp"]]
    assert [row["source_retrieved"] for row in rows] == [True, True, False]
    assert rows[0]["contexts"] == [CHUNKS[0]["text"]]
    assert [len(row["chunk_ids"]) for row in retrieve(collection, mcqs, embedder, top_k=2, batch_size=8)] == [2, 2, 2]
    assert retrieve(collection, [], embedder, top_k=2, batch_size=8) == []


@pytest.mark.parametrize("template", ["Context: {ctx}\n", "no placeholder", "{context} and {0}", "{context"])
def test_context_template_must_have_only_the_context_field(template: str) -> None:
    with pytest.raises(ValidationError, match="context_template"):
        section(IndexParams, "index", context_template=template)


def test_context_template_accepts_literal_braces() -> None:
    template = section(IndexParams, "index", context_template="Facts {{json}}:\n{context}\n\n").context_template
    assert template.format(context="X") == "Facts {json}:\nX\n\n"
