"""Vector stores: where a dataprep service keeps chunks and their vectors and a retriever searches them.

    open_store(kind, path=, dsn=)       "sqlite" (the embedded default, one file) or "pgvector" (a server)
    store_from_environment(environ)     the one the environment chooses:

    VECTOR_STORE            sqlite (default) or pgvector
    VECTOR_STORE_PATH       the SQLite file (default data/vectors.db; its folders are created)
    PG_CONNECTION_STRING    postgresql://user:password@host:port/db, OPEA's variable (pgvector only, required)

Every store is a VectorStore (base.py): the same methods, results and errors, so
a service is written once for both. The pgvector store needs the `pgvector`
extra (psycopg), the SQLite one the `documents` extra (numpy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .base import DimensionMismatch, FileExists, Hit, StoredFile, StoreError, StoreUnavailable, VectorStore

__all__ = ["KINDS", "DimensionMismatch", "FileExists", "Hit", "StoreError", "StoreUnavailable", "StoredFile",
           "VectorStore", "open_store", "store_from_environment"]

KINDS = ("sqlite", "pgvector")
DEFAULT_PATH = "data/vectors.db"


def open_store(kind: str, *, path: str | None = None, dsn: str | None = None) -> VectorStore:
    """The store of `kind` at `path` (sqlite) or `dsn` (pgvector); nothing is connected to until first use."""
    if kind == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(path or DEFAULT_PATH)
    if kind == "pgvector":
        if not dsn:
            raise ValueError("the pgvector store needs PG_CONNECTION_STRING (postgresql://user:password@host:port/db)")
        from .pgvector import PgvectorStore

        return PgvectorStore(dsn)
    raise ValueError(f"VECTOR_STORE must be one of {', '.join(KINDS)}, not {kind!r}")


def store_from_environment(environ: Mapping[str, str] = os.environ) -> VectorStore:
    """The store VECTOR_STORE, VECTOR_STORE_PATH and PG_CONNECTION_STRING describe; ValueError when they cannot."""
    kind = (environ.get("VECTOR_STORE") or "sqlite").strip().lower()
    return open_store(kind, path=environ.get("VECTOR_STORE_PATH") or DEFAULT_PATH,
                      dsn=environ.get("PG_CONNECTION_STRING") or None)
