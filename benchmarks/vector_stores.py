"""How fast each vector store of opea_new_runtime.stores ingests and answers, side by side, in one run.

    python benchmarks/vector_stores.py [--sizes 1000 10000] [--dimension 768] [--duration 5] [--queries 500]

Run it with a Python that has opea-new-runtime[documents,pgvector] and pgserver
installed (pgserver: PostgreSQL with pgvector from PyPI, started here in a
temporary folder on a unix socket and stopped by the end). For each store and
each size it empties the store, then:

* ingests that many chunks (about 500 characters each, vectors of --dimension
  numbers, seeded random: the embedding model is not what is measured) as files
  of CHUNKS_PER_FILE chunks, one add() each, as a dataprep service would:
  chunks per second;
* opens a second store object on the same place, as the retriever process
  does, and searches it for k=TOP_K: the first query (which reads the vectors
  into the embedded store's memory) on its own, then queries for --duration
  seconds or --queries queries, whichever comes first: p50 and p95 in milliseconds.

Search is exact in both stores (no index), so these figures are the price of
exactness. Figures are printed, never asserted (timing on a shared machine is not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opea_new_runtime.stores import VectorStore, open_store

CHUNKS_PER_FILE = 100
TOP_K = 4
WORDS = ("revenue", "footwear", "apparel", "growth", "quarter", "market", "digital", "store", "brand", "fiscal",
         "margin", "supply", "chain", "customer", "direct", "wholesale", "region", "currency", "inventory", "demand")


@dataclass
class Figures:
    store: str
    chunks: int
    ingest_seconds: float
    first_query_ms: float
    latencies_ms: list[float]

    def row(self) -> str:
        p50 = statistics.median(self.latencies_ms)
        p95 = statistics.quantiles(self.latencies_ms, n=20)[-1] if len(self.latencies_ms) > 1 else p50
        return (f"{self.store:<10}{self.chunks:>8,}{self.chunks / self.ingest_seconds:>12,.0f}"
                f"{self.first_query_ms:>12.1f}{p50:>10.2f}{p95:>10.2f}{len(self.latencies_ms):>9}")


def chunk_texts(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[index] for index in rng.integers(0, len(WORDS), 70)) for _ in range(count)]


def unit_vectors(count: int, dimension: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def measure(kind: str, opened, chunks: int, dimension: int, duration: float, queries: int) -> Figures:
    writer: VectorStore = opened()
    await writer.clear()
    texts, matrix = chunk_texts(chunks, seed=chunks), unit_vectors(chunks, dimension, seed=chunks)
    started = time.perf_counter()
    for first in range(0, chunks, CHUNKS_PER_FILE):
        part = slice(first, first + CHUNKS_PER_FILE)
        await writer.add(f"file-{first // CHUNKS_PER_FILE:04d}.txt", texts[part], matrix[part].tolist(),
                         sum(map(len, texts[part])))
    ingest_seconds = time.perf_counter() - started
    assert await writer.count() == chunks
    await writer.aclose()

    reader: VectorStore = opened()
    asked = unit_vectors(queries + 1, dimension, seed=-chunks % 2**32).tolist()
    started = time.perf_counter()
    await reader.search(asked[0], TOP_K)
    first_query_ms = (time.perf_counter() - started) * 1000
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    for vector in asked[1:]:
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        hits = await reader.search(vector, TOP_K)
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(hits) == TOP_K
    await reader.clear()
    await reader.aclose()
    return Figures(kind, chunks, ingest_seconds, first_query_ms, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000], help="chunks stored")
    parser.add_argument("--dimension", type=int, default=768, help="numbers per vector (BGE-base: 768)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of queries per store and size, at most")
    parser.add_argument("--queries", type=int, default=500, help="queries per store and size, at most")
    args = parser.parse_args()
    import pgserver

    work = Path(tempfile.mkdtemp(prefix="opea-new-stores-"))
    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    try:
        stores = {"sqlite": lambda: open_store("sqlite", path=str(work / "vectors.db")),
                  "pgvector": lambda: open_store("pgvector", dsn=server.get_uri())}
        results = [asyncio.run(measure(kind, opened, size, args.dimension, args.duration, args.queries))
                   for size in args.sizes for kind, opened in stores.items()]
    finally:
        server.cleanup()
    print(f"\nvector stores, {args.dimension}-number vectors, files of {CHUNKS_PER_FILE} chunks, top {TOP_K}, "
          f"exact search ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n")
    print(f"{'store':<10}{'chunks':>8}{'ingest/s':>12}{'first ms':>12}{'p50 ms':>10}{'p95 ms':>10}{'queries':>9}")
    for figures in results:
        print(figures.row())


if __name__ == "__main__":
    main()
