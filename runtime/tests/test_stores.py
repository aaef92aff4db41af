"""opea_new_runtime.stores: one suite, run against the embedded SQLite store and a real PostgreSQL with pgvector.

The PostgreSQL server is pgserver's (PyPI: PostgreSQL and pgvector binaries, no root,
a unix socket), started once for the session; the down-and-up test runs its own.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pgserver
import pytest

from opea_new_runtime.stores import (
    DimensionMismatch,
    FileExists,
    StoreError,
    StoreUnavailable,
    VectorStore,
    open_store,
    store_from_environment,
)
from opea_new_runtime.text import hashed_embedding

DIMENSION = 64
OPEA = ["OPEA is the Open Platform for Enterprise AI.", "Its microservices are composed into megaservices.",
        "A retriever finds the documents that answer a question."]
GARDEN = ["Tomatoes need sun and water every day.", "Basil grows well beside tomatoes."]


def vectors(texts: list[str], dimension: int = DIMENSION) -> list[list[float]]:
    return [hashed_embedding(text, dimension) for text in texts]


def query(text: str) -> list[float]:
    return hashed_embedding(text, DIMENSION)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(params=["sqlite", "pgvector"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], VectorStore]:
    """Opens a new store object on one place (empty at the start of the test): call it twice for two processes."""
    if request.param == "sqlite":
        return lambda: open_store("sqlite", path=str(tmp_path / "data" / "vectors.db"))
    uri = request.getfixturevalue("postgres")

    async def empty() -> None:
        store = open_store("pgvector", dsn=uri)
        await store.clear()
        await store.aclose()

    asyncio.run(empty())
    return lambda: open_store("pgvector", dsn=uri)


def run(scenario, *stores: VectorStore):
    """Runs `scenario(*stores)` in an event loop, closing the stores afterwards whatever happens."""
    async def main():
        try:
            return await scenario(*stores)
        finally:
            for store in stores:
                await store.aclose()

    return asyncio.run(main())


async def add(store: VectorStore, name: str, texts: list[str]):
    return await store.add(name, texts, vectors(texts), sum(map(len, texts)))


def test_added_file_is_listed_counted_and_found_best_match_first(opened) -> None:
    async def scenario(store: VectorStore):
        stored = await add(store, "opea.md", OPEA)
        await add(store, "garden.txt", GARDEN)
        return stored, await store.files(), await store.count(), await store.search(query("which retriever finds"), 2)

    stored, files, count, hits = run(scenario, opened())
    assert (stored.name, stored.chunks, stored.bytes) == ("opea.md", 3, sum(map(len, OPEA)))
    assert stored.ingested_at.endswith("+00:00") and stored.ingested_at[:4].isdigit()
    assert [file.name for file in files] == ["garden.txt", "opea.md"] and files[1] == stored
    assert count == 5
    assert len(hits) == 2 and hits[0].text == OPEA[2] and hits[0].id == "opea.md#2" and hits[0].source == "opea.md"
    assert hits[0].score >= hits[1].score
    expected = sum(a * b for a, b in zip(query("which retriever finds"), vectors([OPEA[2]])[0], strict=True))
    norms = math.dist(query("which retriever finds"), [0] * DIMENSION) * math.dist(vectors([OPEA[2]])[0],
                                                                                   [0] * DIMENSION)
    assert hits[0].score == pytest.approx(expected / norms, abs=1e-5)
    assert hits[0].vector == pytest.approx(vectors([OPEA[2]])[0], abs=1e-6)


def test_k_bounds_the_hits_and_every_chunk_is_found_once(opened) -> None:
    async def scenario(store: VectorStore):
        await add(store, "opea.md", OPEA)
        return await store.search(query("OPEA"), 10), await store.search(query("OPEA"), 0)

    every, none = run(scenario, opened())
    assert sorted(hit.id for hit in every) == ["opea.md#0", "opea.md#1", "opea.md#2"] and none == []
    assert [hit.score for hit in every] == sorted((hit.score for hit in every), reverse=True)


def test_what_one_store_object_adds_another_sees_and_a_new_one_still_has(opened) -> None:
    async def scenario(dataprep: VectorStore, retriever: VectorStore):
        before = await retriever.search(query("tomatoes"), 3)  # the retriever has read (and may keep) the vectors
        await add(dataprep, "garden.txt", GARDEN)
        after = await retriever.search(query("tomatoes"), 3)
        await dataprep.delete("garden.txt")
        return before, after, await retriever.search(query("tomatoes"), 3)

    before, after, deleted = run(scenario, opened(), opened())
    assert before == [] and {hit.source for hit in after} == {"garden.txt"} and deleted == []

    run(lambda store: add(store, "opea.md", OPEA), opened())
    reopened = run(lambda store: store.files(), opened())
    assert [file.name for file in reopened] == ["opea.md"]


def test_delete_removes_a_file_and_its_chunks_only(opened) -> None:
    async def scenario(store: VectorStore):
        await add(store, "opea.md", OPEA)
        await add(store, "garden.txt", GARDEN)
        first, again = await store.delete("opea.md"), await store.delete("opea.md")
        hits = await store.search(query("OPEA microservices retriever"), 10)
        return first, again, await store.files(), await store.count(), hits

    first, again, files, count, hits = run(scenario, opened())
    assert first is True and again is False
    assert [file.name for file in files] == ["garden.txt"] and count == 2
    assert {hit.source for hit in hits} == {"garden.txt"}


def test_clear_removes_everything_and_says_how_many_files(opened) -> None:
    async def scenario(store: VectorStore):
        await add(store, "opea.md", OPEA)
        await add(store, "garden.txt", GARDEN)
        removed = await store.clear()
        return removed, await store.files(), await store.count(), await store.search(query("OPEA"), 3), \
            await store.clear()

    assert run(scenario, opened()) == (2, [], 0, [], 0)


def test_a_stored_name_is_file_exists_and_nothing_changes(opened) -> None:
    async def scenario(store: VectorStore):
        await add(store, "opea.md", OPEA)
        with pytest.raises(FileExists):
            await add(store, "opea.md", GARDEN)
        return await store.count(), await store.search(query("tomatoes"), 5)

    count, hits = run(scenario, opened())
    assert count == 3 and {hit.source for hit in hits} == {"opea.md"}
    assert issubclass(FileExists, StoreError)


def test_concurrent_adds_of_one_name_store_it_once(opened) -> None:
    async def scenario(first: VectorStore, second: VectorStore):
        racers = [add(first if index % 2 else second, "race.txt", [f"version {index} of the race"] * 3)
                  for index in range(8)]
        results = await asyncio.gather(*racers, return_exceptions=True)
        return results, await first.files(), await second.count()

    results, files, count = run(scenario, opened(), opened())
    assert sum(not isinstance(result, BaseException) for result in results) == 1
    assert all(isinstance(result, FileExists) for result in results if isinstance(result, BaseException))
    assert [file.name for file in files] == ["race.txt"] and count == 3


def test_concurrent_first_adds_on_a_new_database_create_the_tables_once(postgres: str) -> None:
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS opea_new_chunks, opea_new_files")

    async def scenario(first: VectorStore, second: VectorStore):
        racers = [add(first if index % 2 else second, "race.txt", [f"version {index}"]) for index in range(8)]
        return await asyncio.gather(*racers, return_exceptions=True), await first.count()

    results, count = run(scenario, open_store("pgvector", dsn=postgres), open_store("pgvector", dsn=postgres))
    assert sorted(type(result).__name__ for result in results) == ["FileExists"] * 7 + ["StoredFile"] and count == 1


def test_a_failure_while_adding_stores_nothing(opened) -> None:
    class FailingChunks(list):
        """Chunks whose third one cannot be read: the add fails after its first rows were written."""

        def __iter__(self):
            for index, item in enumerate(list.__iter__(self)):
                if index == 2:
                    raise RuntimeError("the disk went away")
                yield item

    async def scenario(store: VectorStore):
        with pytest.raises(RuntimeError):
            await store.add("opea.md", FailingChunks(OPEA), vectors(OPEA), 10)
        state = await store.files(), await store.count()
        await add(store, "opea.md", OPEA)  # the name is free
        return state, await store.count()

    assert run(scenario, opened()) == (([], 0), 3)


def test_vectors_of_another_length_are_dimension_mismatch(opened) -> None:
    async def scenario(store: VectorStore):
        await add(store, "opea.md", OPEA)
        with pytest.raises(DimensionMismatch):
            await store.add("other.md", GARDEN, vectors(GARDEN, DIMENSION * 2), 10)
        with pytest.raises(DimensionMismatch):
            await store.search(hashed_embedding("OPEA", DIMENSION + 1), 3)
        with pytest.raises(DimensionMismatch):
            await store.add("mixed.md", GARDEN, [query(GARDEN[0]), hashed_embedding(GARDEN[1], 3)], 10)
        with pytest.raises(ValueError):
            await store.add("short.md", GARDEN, vectors(GARDEN[:1]), 10)
        for unfit in (math.nan, math.inf, 1e39):  # 1e39 is beyond float32, the stores' numbers
            with pytest.raises(ValueError):
                await store.add("unfit.md", GARDEN[:1], [[unfit] + query(GARDEN[0])[1:]], 10)
            with pytest.raises(ValueError):
                await store.search([unfit] + query("OPEA")[1:], 3)
        return [file.name for file in await store.files()]

    assert run(scenario, opened()) == ["opea.md"]


def test_an_empty_store_finds_nothing_and_takes_any_dimension_once_emptied(opened) -> None:
    async def scenario(store: VectorStore):
        empty = await store.search(query("anything"), 5)
        await add(store, "opea.md", OPEA)
        await store.delete("opea.md")
        await store.add("wide.md", GARDEN, vectors(GARDEN, DIMENSION * 2), 10)
        return empty, await store.search(hashed_embedding("sun and water every day", DIMENSION * 2), 1)

    empty, hits = run(scenario, opened())
    assert empty == [] and hits[0].text == GARDEN[0]


def test_sqlite_creates_its_folders_and_is_unavailable_where_it_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "vectors.db"
    run(lambda store: add(store, "opea.md", OPEA), open_store("sqlite", path=str(path)))
    assert path.is_file()
    (tmp_path / "not-a-folder").write_text("a file")
    blocked = open_store("sqlite", path=str(tmp_path / "not-a-folder" / "vectors.db"))
    assert blocked.name == f"sqlite ({tmp_path / 'not-a-folder' / 'vectors.db'})"
    with pytest.raises(StoreUnavailable):
        run(lambda store: store.count(), blocked)


def test_pgvector_down_is_unavailable_quickly_and_works_again_when_back(tmp_path: Path) -> None:
    folder = tmp_path / "pg"
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        store = open_store("pgvector", dsn=server.get_uri())

        async def scenario(store: VectorStore):
            nonlocal server
            await add(store, "opea.md", OPEA)
            server.cleanup()  # stops it
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as down:
                await store.search(query("OPEA"), 3)
            took = time.monotonic() - started
            server = pgserver.get_server(folder, cleanup_mode="stop")
            return down.value, took, await store.files(), await store.search(query("retriever"), 1)

        down, took, files, hits = run(scenario, store)
        assert store.name in str(down) and took < 5
        assert [file.name for file in files] == ["opea.md"] and hits[0].text == OPEA[2]
    finally:
        server.cleanup()


def test_pgvector_that_refuses_connections_is_unavailable_within_seconds() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free: nothing listens once the probe is closed
    store = open_store("pgvector", dsn=f"postgresql://rag:s3cret-pw@127.0.0.1:{port}/rag")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        run(lambda store: store.add("opea.md", OPEA, vectors(OPEA), 10), store)
    assert time.monotonic() - started < 5
    assert store.name == f"pgvector (127.0.0.1:{port}/rag)" and "s3cret" not in str(refused.value)


def test_pgvector_that_accepts_but_never_answers_is_unavailable_after_the_connect_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        store = open_store("pgvector", dsn=f"postgresql://rag@127.0.0.1:{silent.getsockname()[1]}/rag")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            run(lambda store: store.count(), store)
        assert time.monotonic() - started < 10


def test_the_name_of_a_pgserver_store_is_its_socket_folder(postgres: str) -> None:
    store = open_store("pgvector", dsn=postgres)
    assert store.name == f"pgvector ({postgres.split('host=')[1]}:5432/postgres)"


def test_the_environment_chooses_the_store(tmp_path: Path) -> None:
    default = store_from_environment({})
    assert default.name == f"sqlite ({Path('data/vectors.db').absolute()})"
    chosen = store_from_environment({"VECTOR_STORE_PATH": str(tmp_path / "v.db")})
    assert chosen.name == f"sqlite ({tmp_path / 'v.db'})"
    server = store_from_environment({"VECTOR_STORE": "pgvector",
                                     "PG_CONNECTION_STRING": "postgresql://u:hunter2@db.internal:6543/rag"})
    assert server.name == "pgvector (db.internal:6543/rag)"
    with pytest.raises(ValueError, match="PG_CONNECTION_STRING"):
        store_from_environment({"VECTOR_STORE": "pgvector"})
    with pytest.raises(ValueError, match="sqlite, pgvector"):
        store_from_environment({"VECTOR_STORE": "redis"})
    with pytest.raises(ValueError, match="PG_CONNECTION_STRING"):
        open_store("pgvector", dsn="not a = connection ' string")
