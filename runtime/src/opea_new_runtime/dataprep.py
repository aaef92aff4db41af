"""What a dataprep service does: files and links in, parsed, chunked, embedded and stored; listed and deleted.

    EmbeddingNode(name, port, endpoint, server)   the pipeline's embedding node (the generated service says which)
    embedder_for(node)                            what embeds the chunks, so that they compare with the questions
    DocumentLibrary(store, embedder)              ingest(uploads, links, ...), files(), delete(name), clear()

Chunks are embedded as the pipeline's questions are, or retrieval would compare
vectors of two models: by TEI_EMBEDDING_ENDPOINT when set (a TEI server, as
OPEA's dataprep reads it), else by the pipeline's embedding node at
<NODE>_SERVICE_HOST_IP:<NODE>_SERVICE_PORT (a TEI server node on `/embed`, any
other on its route with OpenAI's `{"input"}`), else — a pipeline without one —
by the hashed bag of words of opea_new_runtime.text (EMBEDDING_DIMENSION, 128).

Nothing is half-stored: every file of a request is read, parsed, chunked and
embedded before the first is stored, each file is stored in one transaction,
and when one of them cannot be stored the files this request stored already are
removed again. A name that is stored already is a 409 (delete it first), also
when two requests race for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from .service import Refused
from .text import hashed_embedding

DEFAULT_DIMENSION = 128
EMBED_BATCH = 32  # chunks per embedding request
LINK_TIMEOUT = 15.0
MAX_NAME_BYTES = 255
_LINK_SUFFIXES = {"text/html": ".html", "application/xhtml+xml": ".html", "application/pdf": ".pdf",
                  "text/markdown": ".md", "text/plain": ".txt"}


@dataclass(frozen=True)
class EmbeddingNode:
    """The pipeline's embedding node, as the megaservice calls it."""

    name: str
    port: int
    endpoint: str
    server: str | None = None  # "tei" when the node is a TEI server itself

    def url(self, environ: Mapping[str, str]) -> str:
        prefix = self.name.replace("-", "_").upper()
        host = environ.get(f"{prefix}_SERVICE_HOST_IP", "").strip() or "127.0.0.1"
        port = environ.get(f"{prefix}_SERVICE_PORT", "").strip() or str(self.port)
        return f"http://{host}:{port}"


class HashEmbedder:
    """The hashed bag of words every opea-new stub embeds with, computed here."""

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        self.dimension = dimension
        self.name = f"hashed bag of words ({dimension} dimensions)"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [hashed_embedding(text, self.dimension) for text in texts]

    async def aclose(self) -> None:
        pass


def embedder_for(node: EmbeddingNode | None, environ: Mapping[str, str] = os.environ) -> Any:
    """What embeds the chunks (see the module docstring); each has `name`, `async embed(texts)`, `aclose()`."""
    from .backends import backend_timeout
    from .backends.embedding_service import EmbeddingService
    from .backends.tei import TEIEmbedder

    tei = environ.get("TEI_EMBEDDING_ENDPOINT", "").strip()
    if tei:
        return TEIEmbedder(tei, timeout=backend_timeout())
    if node is None:
        dimension = environ.get("EMBEDDING_DIMENSION", "").strip()
        return HashEmbedder(int(dimension) if dimension.isdigit() and int(dimension) > 0 else DEFAULT_DIMENSION)
    if node.server == "tei":
        return TEIEmbedder(node.url(environ), timeout=backend_timeout())
    return EmbeddingService(node.url(environ) + node.endpoint, timeout=backend_timeout())


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: its name, its bytes, the content type the client gave."""

    name: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class _Prepared:
    name: str
    chunks: list[str]
    size: int


def file_name(raw: str | None) -> str:
    """The name a file is stored under: the last part of what the client sent; 400 when it cannot be one."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise Refused(f"a file needs a name (got {raw!r})")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise Refused(f"the file name {name!r} contains control characters")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise Refused(f"the file name is longer than {MAX_NAME_BYTES} bytes")
    return name


def parse_link_list(raw: str | None) -> list[str]:
    """OPEA's `link_list` form field: a JSON list of http(s) URLs."""
    if raw is None or not raw.strip():
        return []
    try:
        links = json.loads(raw)
    except ValueError:
        raise Refused('link_list must be a JSON list of URLs, such as ["https://example.com/a.html"]; '
                      f"got {raw[:200]!r}") from None
    if not isinstance(links, list) or not all(isinstance(link, str) for link in links):
        raise Refused("link_list must be a JSON list of URL strings")
    for link in links:
        parts = urlsplit(link)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"{link[:200]!r} is not an http(s) URL")
    return list(dict.fromkeys(links))


class DocumentLibrary:
    """A dataprep service's model: the store the retriever searches, and what embeds for it."""

    def __init__(self, store: Any, embedder: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.name = f"{store.name}, embedded by {embedder.name}"
        self._transport = transport  # tests fetch links through a fake

    async def ingest(self, uploads: Sequence[Upload], links: Sequence[str] = (), *, chunk_size: int = 1500,
                     chunk_overlap: int = 100) -> list[Any]:
        """Store every upload and link, or none of them; answers what was stored (stores.StoredFile)."""
        if not uploads and not links:
            raise Refused("nothing to ingest: send files (multipart `files`) or `link_list`")
        if chunk_size < 1 or chunk_overlap < 0 or chunk_overlap >= chunk_size:
            raise Refused(f"chunk_overlap ({chunk_overlap}) must be at least 0 and less than chunk_size "
                          f"({chunk_size}), which must be at least 1")
        named = [(file_name(upload.name), upload) for upload in uploads]
        sources = [name for name, _ in named] + list(links)
        repeated = sorted({name for name in sources if sources.count(name) > 1})
        if repeated:
            raise Refused(f"{', '.join(repeated)} is sent more than once", 409)
        await self._refuse_stored(sources)
        prepared = []
        for name, upload in named:
            prepared.append(await asyncio.to_thread(self._prepared, name, upload.data, upload.content_type,
                                                    chunk_size, chunk_overlap))
        for link in links:
            name, data, content_type = await self._fetch(link)
            prepared.append(await asyncio.to_thread(self._prepared, link, data, content_type, chunk_size,
                                                    chunk_overlap, parsed_as=name))
        vectors = [await self._embedded(item.chunks) for item in prepared]
        return await self._stored(prepared, vectors)

    @staticmethod
    def _prepared(name: str, data: bytes, content_type: str | None, chunk_size: int, chunk_overlap: int,
                  parsed_as: str | None = None) -> _Prepared:
        """Parsed and chunked in a worker thread: a large PDF must not stall every other request.

        `name` is what is stored (a file's name, a link), `parsed_as` the file name that tells its format."""
        from .documents import DocumentError, chunk, parse

        try:
            text = parse(parsed_as or name, data, content_type)
        except DocumentError as error:
            raise Refused(f"{name}: {error}", error.status) from None
        chunks = chunk(text, chunk_size, chunk_overlap)
        if not chunks:
            raise Refused(f"{name}: there is no text in it to store", 422)
        return _Prepared(name, chunks, len(data))

    async def _embedded(self, chunks: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(chunks), EMBED_BATCH):
            vectors += await self.embedder.embed(chunks[start:start + EMBED_BATCH])
        return vectors

    async def _stored(self, prepared: list[_Prepared], vectors: list[list[list[float]]]) -> list[Any]:
        stored: list[Any] = []
        try:
            for item, item_vectors in zip(prepared, vectors, strict=True):
                stored.append(await self._call(self.store.add, item.name, item.chunks, item_vectors, item.size))
        except BaseException:
            for done in stored:  # this request stores all of its files or none
                with contextlib.suppress(Exception):  # the first failure is what the client is told
                    await self.store.delete(done.name)
            raise
        return stored

    async def _refuse_stored(self, names: list[str]) -> None:
        known = {stored.name for stored in await self.files()}
        taken = [name for name in names if name in known]
        if taken:
            raise Refused(f"{', '.join(taken)} is stored already; delete it first "
                          "(POST /v1/dataprep/delete with {\"file_path\": NAME})", 409)

    async def _fetch(self, link: str) -> tuple[str, bytes, str | None]:
        from .documents import MAX_FILE_BYTES

        client = httpx.AsyncClient(timeout=LINK_TIMEOUT, follow_redirects=True, max_redirects=5,
                                   transport=self._transport)
        try:
            async with client, client.stream("GET", link) as response:
                if response.is_error:
                    raise Refused(f"the link {link} answered {response.status_code}")
                data = bytearray()
                async for piece in response.aiter_bytes():
                    data += piece
                    if len(data) > MAX_FILE_BYTES:
                        raise Refused(f"the link {link} answers more than {MAX_FILE_BYTES} bytes", 413)
                content_type = response.headers.get("content-type")
        except httpx.HTTPError as error:
            raise Refused(f"the link {link} does not answer: {error or type(error).__name__}") from None
        media = (content_type or "").split(";")[0].strip().lower()
        suffix = _LINK_SUFFIXES.get(media) or PurePosixPath(urlsplit(link).path).suffix or ".html"
        return f"link{suffix}", bytes(data), content_type

    async def files(self) -> list[Any]:
        return await self._call(self.store.files)

    async def delete(self, name: str) -> bool:
        return await self._call(self.store.delete, name)

    async def clear(self) -> int:
        return await self._call(self.store.clear)

    async def _call(self, method: Any, *arguments: Any) -> Any:
        """A store operation, its failures as the answers they are (409, 400, 503)."""
        from .stores import DimensionMismatch, FileExists, StoreError

        try:
            return await method(*arguments)
        except FileExists as error:
            raise Refused(f"{error}; delete it first (POST /v1/dataprep/delete with {{\"file_path\": NAME}})",
                          409) from None
        except DimensionMismatch as error:
            raise Refused(f"{error} (stored documents were embedded by another model)") from None
        except StoreError as error:
            raise Refused(f"the vector store {self.store.name} is unavailable: {error}", 503) from None
        except ValueError as error:  # what the store refuses to hold (a NaN in an embedding, ...)
            raise Refused(str(error)) from None

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.embedder.aclose()
