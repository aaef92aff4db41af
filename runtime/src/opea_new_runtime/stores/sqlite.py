"""The embedded vector store: one SQLite file, the vectors searched exactly with numpy.

Python's stdlib sqlite3 on this machine cannot
load extensions, so sqlite-vec is out: chunks are rows holding their vector as a
float32 BLOB, and a search is an exact cosine over every vector with numpy,
which at 10,000 chunks of 768 numbers takes a few milliseconds (benchmarks/vector_stores.py).
No server, persists on disk, transactions: a file is stored whole or not at all.

Several processes share the file (the dataprep service writes, the retriever
reads): WAL mode lets readers read while a writer writes, and the busy timeout
makes a writer wait for another's transaction instead of failing. Each process
keeps the vectors in memory between searches, keyed by a generation counter
that every write transaction increments in the same file, so a retriever sees
what a dataprep stored at its next search, without restarting (that search
reads every vector again: about 150 ms at 10,000 chunks of 768 numbers).

Blocking calls run in a thread (asyncio.to_thread), one at a time per store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from .base import (
    FileExists,
    Hit,
    StoredFile,
    StoreError,
    StoreUnavailable,
    check_query,
    checked_vectors,
    mismatch,
    now,
)

__all__ = ["SQLiteStore"]

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's transaction
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, chunks INTEGER NOT NULL, bytes INTEGER NOT NULL,
                                  ingested_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, file TEXT NOT NULL, position INTEGER NOT NULL,
                                   text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks (file);
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT OR IGNORE INTO generation VALUES (1, 0);
"""
T = TypeVar("T")


@dataclass
class Vectors:
    """Every stored vector, normalised, as of one generation of the file."""

    generation: int
    ids: np.ndarray  # chunk row ids, int64
    matrix: np.ndarray  # one unit row per chunk, float32


class SQLiteStore:
    """A VectorStore in the SQLite file at `path` (its folders created at first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self.name = f"sqlite ({self.path})"
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._vectors: Vectors | None = None

    async def add(self, file: str, chunks: list[str], vectors: list[list[float]], size: int) -> StoredFile:
        matrix = checked_vectors(file, chunks, vectors)
        dimension = matrix.shape[1] if len(matrix) else None
        blobs = [row.tobytes() for row in matrix]
        stored = StoredFile(file, len(chunks), size, now())

        def add(connection: sqlite3.Connection) -> StoredFile:
            with transaction(connection, write=True):
                if connection.execute("SELECT 1 FROM files WHERE name = ?", (file,)).fetchone():
                    raise FileExists(f"{file} is stored already")
                held = stored_dimension(connection)
                if dimension is not None and held is not None and held != dimension:
                    raise mismatch(held, dimension)
                connection.execute("INSERT INTO files VALUES (?, ?, ?, ?)",
                                   (stored.name, stored.chunks, stored.bytes, stored.ingested_at))
                connection.executemany("INSERT INTO chunks (file, position, text, vector) VALUES (?, ?, ?, ?)",
                                       ((file, index, text, blob)
                                        for index, (text, blob) in enumerate(zip(chunks, blobs, strict=True))))
                bump(connection)
            return stored

        return await self._run(add)

    async def files(self) -> list[StoredFile]:
        def files(connection: sqlite3.Connection) -> list[StoredFile]:
            rows = connection.execute("SELECT name, chunks, bytes, ingested_at FROM files").fetchall()
            return sorted((StoredFile(*row) for row in rows), key=lambda stored: stored.name)

        return await self._run(files)

    async def delete(self, file: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            with transaction(connection, write=True):
                if not connection.execute("DELETE FROM files WHERE name = ?", (file,)).rowcount:
                    return False
                connection.execute("DELETE FROM chunks WHERE file = ?", (file,))
                bump(connection)
            return True

        return await self._run(delete)

    async def clear(self) -> int:
        def clear(connection: sqlite3.Connection) -> int:
            with transaction(connection, write=True):
                removed = connection.execute("DELETE FROM files").rowcount
                connection.execute("DELETE FROM chunks")
                bump(connection)
            return removed

        return await self._run(clear)

    async def count(self) -> int:
        return await self._run(lambda connection: connection.execute("SELECT count(*) FROM chunks").fetchone()[0])

    async def search(self, vector: list[float], k: int) -> list[Hit]:
        check_query(vector, k)
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        query = query / norm if norm else query

        def search(connection: sqlite3.Connection) -> list[Hit]:
            with transaction(connection, write=False):  # one snapshot: the vectors and texts agree
                vectors = self._current(connection)
                if not len(vectors.ids) or not k:
                    return []
                if vectors.matrix.shape[1] != len(query):
                    raise mismatch(vectors.matrix.shape[1], len(query))
                scores = vectors.matrix @ query
                best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
                best = best[np.argsort(-scores[best], kind="stable")]
                ids = [int(vectors.ids[index]) for index in best]
                rows = {row[0]: row[1:] for row in connection.execute(
                    f"SELECT id, file, position, text, vector FROM chunks WHERE id IN ({','.join('?' * len(ids))})",
                    ids)}
            return [Hit(id=f"{rows[row_id][0]}#{rows[row_id][1]}", text=rows[row_id][2], score=float(scores[index]),
                        source=rows[row_id][0], vector=np.frombuffer(rows[row_id][3], dtype=np.float32).tolist())
                    for row_id, index in zip(ids, best, strict=True)]

        return await self._run(search)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                self._vectors = None

        await asyncio.to_thread(close)

    def _current(self, connection: sqlite3.Connection) -> Vectors:
        """The stored vectors, read again only when another write happened since they were last read."""
        generation = connection.execute("SELECT value FROM generation").fetchone()[0]
        if self._vectors is None or self._vectors.generation != generation:
            rows = connection.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            if rows:
                matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = matrix / np.where(norms == 0, 1, norms)
            else:
                matrix = np.zeros((0, 0), dtype=np.float32)
            self._vectors = Vectors(generation, ids, matrix.astype(np.float32, copy=False))
        return self._vectors

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, work)

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._connected())
            except sqlite3.IntegrityError:  # BEGIN IMMEDIATE should make this impossible; a name is a name
                raise FileExists(f"{self.name}: a file of this name is stored already") from None
            except sqlite3.OperationalError as error:  # locked past the timeout, unwritable, disk gone
                self._drop()
                raise StoreUnavailable(f"{self.name}: {error}") from None
            except sqlite3.DatabaseError as error:
                self._drop()
                raise StoreError(f"{self.name}: {error}") from None
            except OSError as error:
                raise StoreUnavailable(f"{self.name}: {error}") from None

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                         check_same_thread=False)
            try:
                _prepare(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        """Forgets a connection that failed: the next call opens the file again."""
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None
        self._vectors = None


def _prepare(connection: sqlite3.Connection) -> None:
    """WAL mode and the tables, on a file other processes may be preparing at the same moment.

    Switching a new file to WAL, and the first reads of a schema another connection is writing,
    answer "database is locked" at once instead of waiting for the busy timeout (SQLite gives up
    rather than risk a deadlock there): so this waits and tries again, up to the same timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("BEGIN IMMEDIATE")  # the write lock first: CREATE ... IF NOT EXISTS is then safe
            try:
                for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would COMMIT first
                    connection.execute(statement)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class transaction:
    """BEGIN IMMEDIATE (a writer: takes the write lock at once, so check-then-insert cannot race) or a
    plain BEGIN (a reader's snapshot); COMMIT on success, ROLLBACK on any exception."""

    def __init__(self, connection: sqlite3.Connection, *, write: bool) -> None:
        self.connection = connection
        self.write = write

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
        return self.connection

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.connection.execute("COMMIT")
        elif self.connection.in_transaction:
            self.connection.execute("ROLLBACK")


def stored_dimension(connection: sqlite3.Connection) -> int | None:
    row = connection.execute("SELECT length(vector) FROM chunks LIMIT 1").fetchone()
    return row[0] // 4 if row else None


def bump(connection: sqlite3.Connection) -> None:
    """Tells every process's cached vectors that they are stale."""
    connection.execute("UPDATE generation SET value = value + 1")
