"""opea_new_runtime.dataprep and .retrieval over a real SQLite store: all or nothing, races, links, embedders."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest

from opea_new_runtime.backends.embedding_service import EmbeddingService
from opea_new_runtime.backends.tei import TEIEmbedder
from opea_new_runtime.dataprep import (
    DocumentLibrary,
    EmbeddingNode,
    HashEmbedder,
    Upload,
    embedder_for,
    file_name,
    parse_link_list,
)
from opea_new_runtime.retrieval import StoreRetriever
from opea_new_runtime.service import BackendError, Refused
from opea_new_runtime.stores import StoreUnavailable, open_store
from opea_new_runtime.text import hashed_embedding

ZEPHYR = Upload("zephyr.txt", b"The Zephyr cluster has 48 nodes. It runs in Oslo.", "text/plain")
QUOKKA = Upload("quokka.md", b"# Quokka\n\nMarta Lindqvist started the Quokka project in 2019.", "text/markdown")


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def library(tmp_path):
    return DocumentLibrary(open_store("sqlite", path=str(tmp_path / "vectors.db")), HashEmbedder())


def refusal(coroutine) -> Refused:
    with pytest.raises(Refused) as caught:
        run(coroutine)
    return caught.value


def query(text: str, **options) -> SimpleNamespace:
    defaults = {"search_type": "similarity", "k": 4, "fetch_k": 20, "lambda_mult": 0.5, "distance_threshold": None,
                "score_threshold": 0.2}
    return SimpleNamespace(query_vector=hashed_embedding(text, 128), **{**defaults, **options})


def test_ingested_files_are_found_by_the_retriever(library):
    stored = run(library.ingest([ZEPHYR, QUOKKA], chunk_size=200, chunk_overlap=20))
    assert [item.name for item in stored] == ["zephyr.txt", "quokka.md"]
    assert [item.name for item in run(library.files())] == ["quokka.md", "zephyr.txt"]
    hits = run(StoreRetriever(library.store).search(query("Who started the Quokka project?", k=1)))
    assert len(hits) == 1 and "Marta Lindqvist" in hits[0].text


def test_an_empty_store_answers_no_documents(library):
    assert run(StoreRetriever(library.store).search(query("anything"))) == []


def test_the_search_types_apply_to_what_the_store_answers(library):
    run(library.ingest([ZEPHYR, QUOKKA]))
    retriever = StoreRetriever(library.store)
    strict = run(retriever.search(query("Quokka Lindqvist", search_type="similarity_score_threshold",
                                        score_threshold=0.3, k=10)))
    assert [hit.source for hit in strict] == ["quokka.md"]
    assert len(run(retriever.search(query("Quokka", search_type="mmr", k=2, fetch_k=5)))) == 2


def test_one_bad_file_stores_none_of_the_request(library):
    error = refusal(library.ingest([ZEPHYR, Upload("tool.exe", b"MZ\x90\x00", None)]))
    assert error.status == 415 and "tool.exe" in error.detail
    assert run(library.files()) == []


def test_a_store_failing_midway_leaves_nothing_of_the_request(library):
    real_add = library.store.add
    calls = []

    async def failing_second(*arguments):
        calls.append(arguments[0])
        if len(calls) == 2:
            raise StoreUnavailable("the disk went away")
        return await real_add(*arguments)

    library.store.add = failing_second
    error = refusal(library.ingest([ZEPHYR, QUOKKA]))
    assert error.status == 503 and "unavailable" in error.detail
    library.store.add = real_add
    assert run(library.files()) == []  # the first file, stored, was removed again


def test_a_stored_name_is_a_409_and_the_stored_file_is_kept(library):
    run(library.ingest([ZEPHYR]))
    error = refusal(library.ingest([Upload("zephyr.txt", b"Something else entirely.", "text/plain")]))
    assert error.status == 409 and "zephyr.txt" in error.detail
    hits = run(StoreRetriever(library.store).search(query("Zephyr nodes", k=1)))
    assert "48 nodes" in hits[0].text


def test_concurrent_ingests_of_one_name_store_it_once(library):
    async def race() -> list[object]:
        uploads = [Upload("same.txt", f"Version {number} of the file.".encode(), "text/plain") for number in range(6)]
        return await asyncio.gather(*(library.ingest([upload]) for upload in uploads), return_exceptions=True)

    results = run(race())
    stored = [result for result in results if isinstance(result, list)]
    refused = [result for result in results if isinstance(result, Refused)]
    assert len(stored) == 1 and len(refused) == 5 and all(error.status == 409 for error in refused)
    assert [(item.name, item.chunks) for item in run(library.files())] == [("same.txt", 1)]


@pytest.mark.parametrize(("uploads", "status"), [
    ([], 400),
    ([ZEPHYR, ZEPHYR], 409),
    ([Upload("", b"text", None)], 400),
    ([Upload("../", b"text", None)], 400),
    ([Upload("bad\x00name.txt", b"text", None)], 400),
    ([Upload("x" * 300 + ".txt", b"text", None)], 400),
])
def test_requests_that_cannot_be_stored_are_refused(library, uploads, status):
    assert refusal(library.ingest(uploads)).status == status
    assert run(library.files()) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_chunk_options_are_checked(library, size, overlap):
    assert refusal(library.ingest([ZEPHYR], chunk_size=size, chunk_overlap=overlap)).status == 400


def test_a_path_in_a_file_name_keeps_only_the_name():
    assert file_name("reports/2024/annual.pdf") == "annual.pdf"
    assert file_name("C:\\Users\\me\\notes.md") == "notes.md"


# ---------------------------------------------------------------- links


def pages(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/about.html":
        return httpx.Response(200, html="<html><body><h1>About</h1><p>The Walrus service listens on port 7311."
                                        "</p><script>ignored()</script></body></html>")
    if request.url.path == "/gone":
        return httpx.Response(404, text="not here")
    raise httpx.ConnectError("connection refused", request=request)


def test_a_link_is_fetched_parsed_and_stored(tmp_path):
    library = DocumentLibrary(open_store("sqlite", path=str(tmp_path / "v.db")), HashEmbedder(),
                              transport=httpx.MockTransport(pages))
    link = "http://127.0.0.1:1/about.html"
    assert [item.name for item in run(library.ingest([], [link]))] == [link]
    hits = run(StoreRetriever(library.store).search(query("Walrus port", k=1)))
    assert "7311" in hits[0].text and "ignored" not in hits[0].text


@pytest.mark.parametrize(("link", "words"), [("http://127.0.0.1:1/gone", "answered 404"),
                                            ("http://127.0.0.1:1/nothing", "does not answer")])
def test_a_link_that_does_not_answer_is_a_400(tmp_path, link, words):
    library = DocumentLibrary(open_store("sqlite", path=str(tmp_path / "v.db")), HashEmbedder(),
                              transport=httpx.MockTransport(pages))
    error = refusal(library.ingest([ZEPHYR], [link]))
    assert error.status == 400 and words in error.detail
    assert run(library.files()) == []


@pytest.mark.parametrize("raw", ["not json", '{"a": 1}', "[1, 2]", '["file:///etc/passwd"]', '["ftp://x/y"]'])
def test_link_lists_must_be_json_lists_of_http_urls(raw):
    with pytest.raises(Refused):
        parse_link_list(raw)


def test_link_lists_of_urls_are_read_once_each():
    assert parse_link_list('["https://a.example/x", "https://a.example/x"]') == ["https://a.example/x"]
    assert parse_link_list(None) == parse_link_list("  ") == []


# ---------------------------------------------------------------- what embeds the chunks


def test_the_embedder_follows_the_pipelines_embedding_node():
    node = EmbeddingNode("embed-er", port=6000, endpoint="/v1/embeddings")
    service = embedder_for(node, {"EMBED_ER_SERVICE_HOST_IP": "embedding", "EMBED_ER_SERVICE_PORT": "6100"})
    assert isinstance(service, EmbeddingService) and service.url == "http://embedding:6100/v1/embeddings"
    tei = embedder_for(EmbeddingNode("tei", port=6006, endpoint="/embed", server="tei"), {})
    assert isinstance(tei, TEIEmbedder) and tei.endpoint == "http://127.0.0.1:6006"
    override = embedder_for(node, {"TEI_EMBEDDING_ENDPOINT": "http://tei.example:80"})
    assert isinstance(override, TEIEmbedder) and override.endpoint == "http://tei.example:80"
    assert embedder_for(None, {"EMBEDDING_DIMENSION": "64"}).dimension == 64
    assert embedder_for(None, {}).dimension == 128


def test_the_embedding_service_client_reads_openai_answers():
    def answer(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        data = [{"index": index, "embedding": hashed_embedding(text, 16)} for index, text in enumerate(texts)]
        return httpx.Response(200, json={"object": "list", "data": list(reversed(data))})

    client = EmbeddingService("http://127.0.0.1:1/v1/embeddings", transport=httpx.MockTransport(answer))
    assert run(client.embed(["a cat", "a dog"])) == [hashed_embedding("a cat", 16), hashed_embedding("a dog", 16)]


@pytest.mark.parametrize("response", [httpx.Response(500, text="boom"), httpx.Response(200, json={"no": "data"}),
                                      httpx.Response(200, json={"data": []})])
def test_the_embedding_service_client_reports_failures(response):
    client = EmbeddingService("http://127.0.0.1:1/v1/embeddings", transport=httpx.MockTransport(lambda _: response))
    with pytest.raises(BackendError):
        run(client.embed(["a cat"]))
