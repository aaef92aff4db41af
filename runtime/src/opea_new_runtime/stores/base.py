"""What every vector store is: the VectorStore protocol, what it stores and finds, and how it fails.

    StoredFile(name, chunks, bytes, ingested_at)   a stored file (ingested_at: ISO 8601, UTC)
    Hit(id, text, score, source, vector)           a chunk found: `score` its cosine similarity to the
                                                   query, `id` "<file>#<index>", `vector` as stored (MMR)
    StoreError                                     the store failed (a service answers 503 naming it)
      StoreUnavailable                             it cannot be reached: refused, gone, unwritable
      FileExists                                   add() of a name already stored (409)
      DimensionMismatch                            vectors of another length than those stored (400)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

__all__ = ["DimensionMismatch", "FileExists", "Hit", "StoreError", "StoreUnavailable", "StoredFile", "VectorStore"]


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: its name, how many chunks and bytes it had, when it was stored."""

    name: str
    chunks: int
    bytes: int
    ingested_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class Hit:
    """A chunk a search found."""

    id: str  # "<file>#<index>": the same chunk has the same id in every search
    text: str
    score: float  # cosine similarity to the query, -1 to 1
    source: str  # the file it came from
    vector: list[float]


class StoreError(Exception):
    """The vector store failed; the service answers 503 naming the store."""


class StoreUnavailable(StoreError):
    """The vector store cannot be reached: connection refused, server gone, database file unwritable."""


class FileExists(StoreError):
    """A file of this name is stored already (delete it first)."""


class DimensionMismatch(StoreError):
    """Vectors of another length than the ones stored: the documents were embedded by another model."""


class VectorStore(Protocol):
    """Where a dataprep service stores chunks and their vectors, and a retriever searches them."""

    name: str  # "sqlite (/abs/path.db)", "pgvector (host:port/db)": never a password

    async def add(self, file: str, chunks: list[str], vectors: list[list[float]], size: int) -> StoredFile:
        """Stores every chunk of `file` or none; FileExists if it is stored already, even when adds race."""

    async def files(self) -> list[StoredFile]:
        """Every stored file, sorted by name."""

    async def delete(self, file: str) -> bool:
        """Removes `file` and its chunks; False when it was not stored."""

    async def clear(self) -> int:
        """Removes every file; how many there were."""

    async def search(self, vector: list[float], k: int) -> list[Hit]:
        """The `k` chunks most like `vector` by cosine similarity, best first; [] when the store is empty."""

    async def count(self) -> int:
        """How many chunks are stored."""

    async def aclose(self) -> None:
        """Lets go of connections; the store may be used again afterwards (it reconnects)."""


def now() -> str:
    """This second in ISO 8601, UTC: what `StoredFile.ingested_at` holds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def checked_vectors(file: str, chunks: list[str], vectors: list[list[float]]) -> np.ndarray:
    """The vectors of one add as a float32 matrix, a row per chunk; ValueError or DimensionMismatch when unfit."""
    if not file:
        raise ValueError("a stored file needs a name")
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    dimensions = {len(vector) for vector in vectors}
    if len(dimensions) > 1:
        raise DimensionMismatch(f"the vectors of {file} differ in length: {sorted(dimensions)}")
    if 0 in dimensions:
        raise ValueError("a vector needs at least one number")
    with np.errstate(over="ignore"):  # beyond float32's range is infinity, refused below
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dimensions.pop() if dimensions else 0)
    if not np.isfinite(matrix).all():
        raise ValueError(f"a vector of {file} holds NaN, infinity or a number beyond float32")
    return matrix


def check_query(vector: list[float], k: int) -> None:
    if not vector:
        raise ValueError("a query vector needs at least one number")
    if k < 0:
        raise ValueError(f"k must be at least 0, not {k}")
    with np.errstate(over="ignore"):
        if not np.isfinite(np.asarray(vector, dtype=np.float32)).all():
            raise ValueError("the query vector holds NaN, infinity or a number beyond float32")


def mismatch(stored: int, given: int) -> DimensionMismatch:
    return DimensionMismatch(f"vectors of {given} numbers, but the store holds vectors of {stored}")
