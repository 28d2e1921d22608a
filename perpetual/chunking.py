"""Split documents into chunks with langchain-text-splitters; every chunk gets a content-hash id."""

from __future__ import annotations

from collections.abc import Iterable

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter, TextSplitter

from perpetual.code_chunks import split_python
from perpetual.config import ChunkParams
from perpetual.records import Chunk, Document, content_id

_LANGUAGES = {"python": Language.PYTHON, "markdown": Language.MARKDOWN}


def make_splitter(language: str, chunk_size: int, chunk_overlap: int) -> TextSplitter:
    if language in _LANGUAGES:
        return RecursiveCharacterTextSplitter.from_language(
            _LANGUAGES[language], chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def chunk_documents(documents: Iterable[Document], settings: ChunkParams) -> tuple[list[Chunk], int]:
    """Return the chunks in document order and how many exact duplicate chunks were merged.

    A product is one chunk (the paper's products task) unless it is longer than `chunk_size`: then it is split like
    prose, each piece headed by the product's first line (its title) so that it can still be attributed.
    Python is split at definitions, each chunk headed by its file (and class) (perpetual/code_chunks.py); other
    code and prose are split by language.
    """
    chunk_size, chunk_overlap = settings.chunk_size, settings.chunk_overlap
    splitters: dict[str, TextSplitter] = {}
    chunks: list[Chunk] = []
    seen: set[str] = set()
    duplicates = 0
    for document in documents:
        if document["language"] == "product":
            pieces = _product_pieces(document["text"].strip(), chunk_size, chunk_overlap)
        elif document["language"] == "python" and (
            python := split_python(document["text"], _path_of(document["source"]), chunk_size, settings.min_chunk_size)
        ) is not None:
            pieces = python
        else:
            language = document["language"]
            if language not in splitters:
                splitters[language] = make_splitter(language, chunk_size, chunk_overlap)
            pieces = [piece.strip() for piece in splitters[language].split_text(document["text"])]
        for piece in pieces:
            if not piece:
                continue
            chunk_id = content_id(document["task"], piece)
            if chunk_id in seen:
                duplicates += 1
                continue
            seen.add(chunk_id)
            chunks.append(
                Chunk(chunk_id=chunk_id, task=document["task"], source=document["source"], language=document["language"], text=piece)
            )
    return chunks, duplicates


def _product_pieces(text: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    if len(text) <= chunk_size:
        return [text]
    title, _, rest = text.partition("\n")
    room = max(chunk_size - len(title) - 1, chunk_size // 2)  # a title longer than half a chunk is cut with the rest
    splitter = RecursiveCharacterTextSplitter(chunk_size=room, chunk_overlap=min(chunk_overlap, room // 2))
    return [f"{title}\n{piece.strip()}" for piece in splitter.split_text(rest) if piece.strip()]


def _path_of(source: str) -> str:
    """The file path in a document's source: `url@commit:path` for git sources, the relative path otherwise."""
    return source.rsplit(":", 1)[-1] if "@" in source else source
