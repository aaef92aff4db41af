"""The server vector store: PostgreSQL with the pgvector extension, which OPEA's dataprep and retriever support.

Two tables, made at first use (with `CREATE EXTENSION IF NOT EXISTS vector`):
opea_new_files (one row per file, its name UNIQUE) and opea_new_chunks (text and
`vector` embedding, of no fixed dimension, so any embedding model fits). A
search is exact: `ORDER BY embedding <=> query LIMIT k`, score 1 - cosine distance.
Adds are serialised by an advisory lock, so two of the same name cannot both
store, nor two of different dimensions; a file's chunks go in one binary COPY
(formatting millions of floats as text would cost seconds). Tables are created
only where they are missing: DDL on a table in use would lock out, or deadlock
with, other processes' adds.

Connections (psycopg 3, async) are opened on demand and kept idle for the next
call, a few at most. A server that is down answers StoreUnavailable within
CONNECT_TIMEOUT seconds; one that went down and came back is reconnected to at
the next call (a kept connection that the restart broke is retried once on a
fresh one), so the service recovers without restarting.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from .base import (
    DimensionMismatch,
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

__all__ = ["PgvectorStore", "describe_dsn"]

CONNECT_TIMEOUT = 3  # seconds
MAX_CONNECTIONS = 8  # open at once, per store
MAX_IDLE = 4
FILES = "opea_new_files"
CHUNKS = "opea_new_chunks"
SCHEMA_LOCK = 7_346_001  # advisory lock keys: any two numbers other applications are unlikely to take
ADD_LOCK = 7_346_002
SCHEMA = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"CREATE TABLE IF NOT EXISTS {FILES} (name text PRIMARY KEY, chunks integer NOT NULL, bytes bigint NOT NULL,"
    " ingested_at text NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {CHUNKS} (id bigserial PRIMARY KEY,"
    f" file text NOT NULL REFERENCES {FILES} (name) ON DELETE CASCADE, position integer NOT NULL,"
    " text text NOT NULL, embedding vector NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {CHUNKS}_by_file ON {CHUNKS} (file)",
    # In the row, not TOAST, where it fits (768 numbers are 3 KB): a search reads every vector.
    f"ALTER TABLE {CHUNKS} ALTER COLUMN embedding SET STORAGE MAIN",
)
ROLLED_BACK = (psycopg.errors.TransactionRollback, psycopg.errors.DeadlockDetected,
               psycopg.errors.SerializationFailure)
T = TypeVar("T")
Operation = Callable[[psycopg.AsyncConnection], Awaitable[T]]


def describe_dsn(dsn: str) -> str:
    """`postgresql://user:secret@db:5432/rag` → "db:5432/rag": where, never the password; ValueError if unreadable."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error as error:
        raise ValueError(f"PG_CONNECTION_STRING is not a PostgreSQL connection string: {error}") from None
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or 'postgres'}"


class PgvectorStore:
    """A VectorStore in the PostgreSQL database at `dsn` (OPEA's PG_CONNECTION_STRING, or a pgserver URI)."""

    def __init__(self, dsn: str) -> None:
        self.name = f"pgvector ({describe_dsn(dsn)})"
        self._dsn = dsn
        self._idle: list[psycopg.AsyncConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    async def add(self, file: str, chunks: list[str], vectors: list[list[float]], size: int) -> StoredFile:
        matrix = checked_vectors(file, chunks, vectors)
        dimension = matrix.shape[1] if len(matrix) else None
        stored = StoredFile(file, len(chunks), size, now())

        async def add(connection: psycopg.AsyncConnection) -> StoredFile:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADD_LOCK,))
                if await (await connection.execute(f"SELECT 1 FROM {FILES} WHERE name = %s", (file,))).fetchone():
                    raise FileExists(f"{file} is stored already")
                held = await stored_dimension(connection)
                if dimension is not None and held is not None and held != dimension:
                    raise mismatch(held, dimension)
                await connection.execute(f"INSERT INTO {FILES} VALUES (%s, %s, %s, %s)",
                                         (stored.name, stored.chunks, stored.bytes, stored.ingested_at))
                async with connection.cursor() as cursor, cursor.copy(
                        f"COPY {CHUNKS} (file, position, text, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                    await copy.write(binary_rows(file, chunks, matrix))
            return stored

        return await self._run(add)

    async def files(self) -> list[StoredFile]:
        async def files(connection: psycopg.AsyncConnection) -> list[StoredFile]:
            rows = await (await connection.execute(f"SELECT name, chunks, bytes, ingested_at FROM {FILES}")).fetchall()
            return sorted((StoredFile(*row) for row in rows), key=lambda stored: stored.name)

        return await self._run(files)

    async def delete(self, file: str) -> bool:
        async def delete(connection: psycopg.AsyncConnection) -> bool:
            return (await connection.execute(f"DELETE FROM {FILES} WHERE name = %s", (file,))).rowcount > 0

        return await self._run(delete)

    async def clear(self) -> int:
        async def clear(connection: psycopg.AsyncConnection) -> int:
            async with connection.transaction():
                await connection.execute(f"DELETE FROM {CHUNKS}")
                return (await connection.execute(f"DELETE FROM {FILES}")).rowcount

        return await self._run(clear)

    async def count(self) -> int:
        async def count(connection: psycopg.AsyncConnection) -> int:
            return (await (await connection.execute(f"SELECT count(*) FROM {CHUNKS}")).fetchone())[0]

        return await self._run(count)

    async def search(self, vector: list[float], k: int) -> list[Hit]:
        check_query(vector, k)

        async def search(connection: psycopg.AsyncConnection) -> list[Hit]:
            held = await stored_dimension(connection)
            if held is None or not k:
                return []
            if held != len(vector):
                raise mismatch(held, len(vector))
            # The best ids first, then their rows: selecting text and vectors in the scan would make them all.
            rows = await (await connection.execute(
                f"WITH best AS (SELECT id, embedding <=> %s::vector AS distance FROM {CHUNKS}"
                " ORDER BY distance LIMIT %s)"
                f" SELECT file, position, text, embedding::text, distance FROM best JOIN {CHUNKS} USING (id)"
                " ORDER BY distance", (vector_literal(vector), k))).fetchall()
            return [Hit(id=f"{file}#{position}", text=text, score=similarity(distance), source=file,
                        vector=[float(value) for value in json.loads(embedding)])
                    for file, position, text, embedding, distance in rows]

        return await self._run(search)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def _run(self, operation: Operation[T]) -> T:
        for attempt in range(2):
            reused = self._bound_to_loop() and bool(self._idle)
            try:
                async with self._connection() as connection:
                    return await operation(connection)
            except ROLLED_BACK as error:  # the server is there; the transaction lost a race
                raise StoreError(f"{self.name}: {first_line(error)}") from None
            except psycopg.OperationalError as error:
                await self.aclose()  # the server may have restarted: every kept connection is broken
                if reused and not attempt:
                    continue
                raise StoreUnavailable(f"{self.name}: {first_line(error)}") from None
            except psycopg.errors.DataException as error:
                if "different vector dimensions" in str(error):  # a search raced an add of other vectors
                    raise DimensionMismatch(f"{self.name}: {first_line(error)}") from None
                raise StoreError(f"{self.name}: {first_line(error)}") from None
            except psycopg.Error as error:
                raise StoreError(f"{self.name}: {first_line(error)}") from None
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        self._bound_to_loop()
        assert self._slots is not None
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                yield connection
            except psycopg.Error:
                await connection.close()
                raise
            except BaseException:
                await self._keep(connection)
                raise
            await self._keep(connection)

    async def _connect(self) -> psycopg.AsyncConnection:
        connection = await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=CONNECT_TIMEOUT,
                                                           autocommit=True)
        try:
            await create_tables(connection)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _keep(self, connection: psycopg.AsyncConnection) -> None:
        if (connection.closed or connection.info.transaction_status != TransactionStatus.IDLE
                or len(self._idle) >= MAX_IDLE):
            await connection.close()
        else:
            self._idle.append(connection)

    def _bound_to_loop(self) -> bool:
        """Whether the kept connections belong to the running event loop; if not, starts afresh on this one."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return True
        self._loop, self._slots, self._idle = loop, asyncio.Semaphore(MAX_CONNECTIONS), []
        return False


async def create_tables(connection: psycopg.AsyncConnection) -> None:
    """Creates the tables unless they exist; DDL only when needed, because it locks what other adds use."""
    # pg_class read with this statement's snapshot: to_regclass() may answer from a cache that has not yet
    # seen another connection's CREATE, and then this one's ALTER would deadlock with that one's adds.
    exists = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class"
              f" WHERE relname = '{CHUNKS}' AND relnamespace = current_schema()::regnamespace)")
    if (await (await connection.execute(exists)).fetchone())[0]:
        return
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))  # one creator at a time
        if not (await (await connection.execute(exists)).fetchone())[0]:
            for statement in SCHEMA:
                await connection.execute(statement)


async def stored_dimension(connection: psycopg.AsyncConnection) -> int | None:
    row = await (await connection.execute(f"SELECT vector_dims(embedding) FROM {CHUNKS} LIMIT 1")).fetchone()
    return row[0] if row else None


def binary_rows(file: str, chunks: list[str], matrix: np.ndarray) -> bytes:
    """The chunks as PostgreSQL's binary COPY stream: formatting millions of floats as text would take seconds.

    Each row is (file text, position int4, text text, embedding vector), a vector in
    pgvector's binary form: int16 dimension, int16 0, then big-endian float4s.
    """
    name = file.encode()
    field = struct.Struct(">i")
    stream = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    matrix = matrix.astype(">f4")
    header = struct.pack(">HH", matrix.shape[1] if len(matrix) else 0, 0)
    for index, (text, vector) in enumerate(zip(chunks, matrix, strict=True)):
        encoded, embedding = text.encode(), header + vector.tobytes()
        stream += struct.pack(">hi", 4, len(name)) + name + struct.pack(">ii", 4, index)
        stream += field.pack(len(encoded)) + encoded + field.pack(len(embedding)) + embedding
    stream += struct.pack(">h", -1)
    return bytes(stream)


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form, `[0.1,-2.5]`."""
    return json.dumps([float(value) for value in vector], separators=(",", ":"))


def similarity(distance: float | None) -> float:
    """1 - cosine distance; 0 where a zero vector makes the distance NaN."""
    return 0.0 if distance is None or math.isnan(distance) else 1.0 - float(distance)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
