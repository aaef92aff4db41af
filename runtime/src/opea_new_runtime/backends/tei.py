"""Text Embeddings Inference (TEI) servers: OPEA's tei-embedding-serving and tei-reranking-serving.

    TEI_EMBEDDING_ENDPOINT   TEIEmbedder's base URL, e.g. http://tei-embedding:80
    TEI_RERANKING_ENDPOINT   TEIReranker's base URL, e.g. http://tei-reranking:80
    BACKEND_TIMEOUT          seconds either may stay silent (default 300)

TEIEmbedder calls `POST {endpoint}/embed` with `{"inputs": [...]}` and reads a
list of vectors; TEIReranker calls `POST {endpoint}/rerank` with `{"query",
"texts"}` and reads `[{"index", "score"}]`.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from ..service import BackendError
from . import backend_timeout, failed, http_client, unreachable


class _TEIServer:
    def __init__(self, endpoint: str, *, timeout: float = 300.0, transport: httpx.AsyncBaseTransport | None = None):
        self.endpoint = endpoint.rstrip("/")
        self.name = f"TEI at {self.endpoint}"
        self._client = http_client(timeout, transport=transport)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(f"{self.endpoint}{path}", json=body)
        except httpx.HTTPError as error:
            raise unreachable(self.name, error) from None
        if response.is_error:
            raise failed(self.name, response.status_code, response.text)
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{self.name} answered something other than JSON") from None

    async def aclose(self) -> None:
        await self._client.aclose()


class TEIEmbedder(_TEIServer):
    """Embeddings from a TEI server: `await embed(texts)` → one vector per text."""

    @classmethod
    def from_environment(cls) -> TEIEmbedder:
        return cls(os.environ["TEI_EMBEDDING_ENDPOINT"], timeout=backend_timeout())

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = await self._post("/embed", {"inputs": texts, "normalize": True, "truncate": True})
        if not (isinstance(vectors, list) and len(vectors) == len(texts) and all(isinstance(v, list) for v in vectors)):
            raise BackendError(f"{self.name} answered something other than {len(texts)} vector(s)")
        return vectors


class TEIReranker(_TEIServer):
    """Relevance scores from a TEI server running a reranker: `await score(query, documents)` → one per document."""

    @classmethod
    def from_environment(cls) -> TEIReranker:
        return cls(os.environ["TEI_RERANKING_ENDPOINT"], timeout=backend_timeout())

    async def score(self, query: str, documents: list[str]) -> list[float]:
        if not documents:
            return []
        answer = await self._post("/rerank", {"query": query, "texts": documents, "truncate": True})
        scores = [0.0] * len(documents)
        try:
            for item in answer:
                scores[item["index"]] = float(item["score"])
        except (ValueError, TypeError, KeyError, IndexError):
            raise BackendError(f"{self.name} answered something other than a list of scores by index") from None
        return scores
