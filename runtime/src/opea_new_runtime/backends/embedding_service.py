"""An embedding microservice (opea-new's generated one, or OPEA's opea/embedding:1.5) as a model.

It is called as `POST {url}` with OpenAI's `{"input": [...]}` (the form both
accept) and answers `{"data": [{"index", "embedding"}]}`. Failures become
BackendError (502, or 504 on a timeout).
"""

from __future__ import annotations

import httpx

from ..service import BackendError
from . import failed, http_client, unreachable


class EmbeddingService:
    """Embeddings from an embedding microservice at `url`: `await embed(texts)` → one vector per text."""

    def __init__(self, url: str, *, timeout: float = 300.0, transport: httpx.AsyncBaseTransport | None = None):
        self.url = url
        self.name = f"the embedding service at {url}"
        self._client = http_client(timeout, transport=transport)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.post(self.url, json={"input": texts})
        except httpx.HTTPError as error:
            raise unreachable(self.name, error) from None
        if response.is_error:
            raise failed(self.name, response.status_code, response.text)
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(value) for value in item["embedding"]] for item in data]
        except (ValueError, TypeError, KeyError):
            raise BackendError(f"{self.name} answered something other than an EmbeddingResponse") from None
        if len(vectors) != len(texts):
            raise BackendError(f"{self.name} answered {len(vectors)} vector(s) for {len(texts)} text(s)")
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()
